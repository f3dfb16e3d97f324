"""Recall on the toy test split and on its hard gallery (one-attribute near misses per query),
for chapter 3's Combiner runs and the zero-shot floors.

    python data_scripts/eval_hard_gallery.py --profile smoke [--per-query all|N] [--seeds 0,1]

Uses (or trains, when missing) the Combiner checkpoints chapter 3 names, on the shipped toy
encoder's cached features, and prints one row per query set and gallery: R@1/10/50 and mR@50 on
the normal test gallery and on the gallery with ``--per-query`` near misses per query
(:mod:`cirlib.data.hard_gallery`), mean ± std over seeds for the Combiner.
"""

from __future__ import annotations

import argparse
import logging

import pandas as pd
import torch

from cirlib.baselines import zero_shot_queries
from cirlib.config import resolve
from cirlib.data.features import cached_features, encoder_id
from cirlib.data.hard_gallery import DEFAULT_PER_QUERY, hard_test_split
from cirlib.data.registry import load_splits
from cirlib.eval.evaluate import evaluate
from cirlib.methods.combiner import combiner_queries, train_combiner
from cirlib.models.backbone import load_backbone
from cirlib.notebook import pinned_threads
from cirlib.paths import subdir
from cirlib.registry import checkpoint_path
from cirlib.report import format_mean_std
from cirlib.seed import deterministic

COLUMNS = ["R@1", "R@10", "R@50", "mR@1", "mR@50"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="smoke", choices=["smoke", "toy"])
    ap.add_argument(
        "--per-query",
        default="all" if DEFAULT_PER_QUERY is None else str(DEFAULT_PER_QUERY),
        help="near misses per query, or 'all' (every one-attribute neighbour allowed)",
    )
    ap.add_argument("--seeds", help="Combiner seeds, comma-separated (default: the profile's)")
    args = ap.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)
    torch.set_num_threads(pinned_threads() or 1)
    deterministic(True)
    cfg = resolve(args.profile)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else list(cfg.seeds)

    splits = load_splits(cfg)
    per_query = None if args.per_query == "all" else int(args.per_query)
    hard = hard_test_split(cfg, per_query=per_query, base=splits["test"])
    model, preprocess, tokenizer = load_backbone(cfg.encoder, cfg.encoder_pretrained)
    enc = encoder_id(cfg.encoder, cfg.encoder_pretrained)

    def features(split):
        return cached_features(
            split, model, preprocess, tokenizer, encoder=enc, cache_dir=subdir("features")
        )

    train, test = features(splits["train"]), features(splits["test"])
    hard_f = features(hard)
    print(
        f"{cfg.name}: {len(splits['test'])} test queries; gallery {len(splits['test'].gallery)} "
        f"images, hard gallery {len(hard.gallery)} (+{len(hard.gallery) - len(test.images)})"
    )
    combiners = [
        train_combiner(train, cfg, seed=s, checkpoint=checkpoint_path(cfg, "combiner", s)).model
        for s in seeds
    ]
    rows = {}
    for label, split, feats in (("test", splits["test"], test), ("hard", hard, hard_f)):
        rows[f"image+text sum · {label}"] = [
            evaluate(zero_shot_queries(feats, "sum"), feats, split)["all"]
        ]
        rows[f"Combiner · {label}"] = [
            evaluate(combiner_queries(m, feats), feats, split)["all"] for m in combiners
        ]
    with pd.option_context("display.width", 200):
        print(format_mean_std(rows, COLUMNS).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
