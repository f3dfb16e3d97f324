"""Judge the reference build's claims on another toy build's checkpoints (or on runs it trains).

    python data_scripts/record_verdicts.py OUT.json --note "How this build was made." \\
        [--reference book/data/results_toy_reference.json] [--methods combiner,mgur] [--train]

A full build of the book writes its own results file (``_build/stage/book/results_toy.json``),
which ``compare_verdicts.py`` reads. This script is for a build whose checkpoints exist but
whose chapter 9 did not run, or ran with other code: it loads, for the toy profile's seeds,
every method and control the reference's verdicts name from the checkpoints under
``CIRLIB_DATA_DIR``, evaluates them on the toy test split and on its hard gallery, judges the
reference's claims on them with this code's rule, and writes a results record
(``cirlib.harness.write_results``, atomic) holding the per-query ranks, the verdicts, the hard
gallery's verdicts and ranks, how each run was trained (``trained_with``: torch, device,
threads) and ``--note``. Without ``--train`` nothing is trained: a missing checkpoint stops it
with the command that trains it.

``--methods`` keeps only the reference's claims that name no other method (the rest are left
out of the record, not counted as disagreements), and ``--train`` trains the runs that have no
checkpoint instead of stopping: with an empty ``CIRLIB_DATA_DIR`` and ``CIRLIB_THREADS=2``, it
measures what training on two threads does to those verdicts, at a fraction of a build's cost::

    CIRLIB_DATA_DIR=/tmp/two-threads CIRLIB_THREADS=2 python data_scripts/record_verdicts.py \\
        book/data/results_toy_two_threads.json --train \\
        --methods combiner,mgur,dqe,dqe_tokens,mapnet,combiner_tokens \\
        --note "..."
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REFERENCE = REPO / "book" / "data" / "results_toy_reference.json"


def _specs(names):
    """Registry names to what compare() takes (MGUR + RP is a spec of chapter 9's own)."""
    from cirlib.methods.mgur_rp import MGUR_RP

    return [MGUR_RP if n == MGUR_RP.name else n for n in names]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="results file to write (JSON)")
    ap.add_argument("--note", required=True, help="how the build was made (kept in the file)")
    ap.add_argument("--reference", default=str(DEFAULT_REFERENCE), help="reference results file")
    ap.add_argument(
        "--methods",
        help="comma-separated registry names: judge only the claims that name no other method",
    )
    ap.add_argument(
        "--train", action="store_true", help="train the runs without a checkpoint (else stop)"
    )
    args = ap.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)

    from cirlib import (
        cached_features,
        encoder_id,
        load_backbone,
        load_splits,
        resolve,
        setup_notebook,
        subdir,
    )
    from cirlib.data.hard_gallery import hard_test_split
    from cirlib.harness import compare, per_query_record, training_environment, write_results
    from cirlib.registry import checkpoint_path
    from cirlib.verdict import Verdict, hard_gallery_record, rejudge

    reference = json.loads(Path(args.reference).read_text())
    claims = [Verdict.from_dict(v) for v in reference["verdicts"]]
    hard_ref = hard_gallery_record(reference)
    hard_claims = [Verdict.from_dict(v) for v in hard_ref["verdicts"]] if hard_ref else []
    if args.methods:
        keep = set(args.methods.split(","))
        named = {n for v in claims + hard_claims for n in (v.a, v.b)}
        if keep - named:
            sys.exit(
                f"error: --methods names {sorted(keep - named)}, which no claim of "
                f"{args.reference} names; its claims name {sorted(named)}"
            )
        claims = [v for v in claims if {v.a, v.b} <= keep]
        hard_claims = [v for v in hard_claims if {v.a, v.b} <= keep]
        if not claims + hard_claims:
            sys.exit(
                f"error: no claim of {args.reference} names only {sorted(keep)}: add the other "
                "method of a pair (e.g. combiner)"
            )
    names = list(dict.fromkeys(n for v in claims + hard_claims for n in (v.a, v.b)))
    cfg = resolve(reference.get("profile", "toy"))
    missing = [
        str(checkpoint_path(cfg, n, s))
        for n in names
        for s in cfg.seeds
        if not checkpoint_path(cfg, n, s).is_file()
    ]
    if missing and not args.train:
        sys.exit(
            f"error: {len(missing)} checkpoint(s) missing under {subdir('checkpoints')}, e.g. "
            f"{missing[0]}; this script trains nothing unless told: build the book in that data folder "
            "first (CIRLIB_DATA_DIR=... bash data_scripts/build_book.sh), or pass --train"
        )
    setup_notebook(cfg)  # the chapters' seeds, deterministic kernels and pinned thread count
    splits = load_splits(cfg)
    encoder, preprocess, tokenizer = load_backbone(
        cfg.encoder, cfg.encoder_pretrained, device=cfg.device
    )
    enc = encoder_id(cfg.encoder, cfg.encoder_pretrained)

    def features(split):
        return cached_features(
            split, encoder, preprocess, tokenizer, encoder=enc, cache_dir=subdir("features"),
            tokens=True, device=cfg.device,
        )  # fmt: skip

    feats = {s: features(splits[s]) for s in ("train", "test")}
    results = compare(_specs(names), cfg, feats, splits, cfg.seeds)
    verdicts = [rejudge(results, v) for v in claims]
    hard = {}
    if hard_claims:
        split = hard_test_split(
            cfg, per_query=reference["hard_gallery"]["near_misses_per_query"], base=splits["test"]
        )
        hard_names = list(dict.fromkeys(n for v in hard_claims for n in (v.a, v.b)))
        hard_results = compare(
            _specs(hard_names),
            cfg,
            {"train": feats["train"], "hard": features(split)},
            {"train": splits["train"], "hard": split},
            cfg.seeds,
            eval_split="hard",
        )
        hard = {
            "near_misses_per_query": reference["hard_gallery"]["near_misses_per_query"],
            "verdicts": [rejudge(hard_results, v).to_dict() for v in hard_claims],
            "per_query": per_query_record(hard_results),
        }
    extra = {
        "note": args.note,
        "verdicts": [v.to_dict() for v in verdicts],
        # how each run was trained (torch, device, threads), as chapter 9's own file says
        "trained_with": training_environment(_specs(names), cfg, cfg.seeds),
    }
    if hard:
        extra["hard_gallery"] = hard
    out = write_results(args.out, results, cfg, extra=extra)
    print(f"wrote {out}: {len(verdicts)} verdicts, {len(hard.get('verdicts', []))} on the hard "
          "gallery; compare: python data_scripts/compare_verdicts.py "
          f"{out} {args.reference} --rejudge")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
