"""Train a method on several processes (GPUs) with torchrun and DistributedDataParallel.

    torchrun --nproc_per_node=2 data_scripts/train_ddp.py --method combiner --profile smoke
    torchrun --nproc_per_node=4 data_scripts/train_ddp.py --method combiner --profile paper

Every rank encodes nothing twice: rank 0 prepares the data and fills the feature cache, the
others wait and then read it. Each rank trains on its slice of every global batch (the profile's
``batch_size``, which must be a multiple of the number of processes) and the Combiner's loss
gathers queries and targets from all ranks, so the objective is CLIP4Cir's over the whole batch
(cirlib.distributed). Rank 0 writes the checkpoint under the name the chapter uses for its main
run, evaluates on the test split, prints the metrics and writes them to
``$CIRLIB_DATA_DIR/results/ddp-<method>-<profile>-s<seed>.json``.

With a plain ``python`` (no torchrun) the same script trains on one process. On CPU the
backend is gloo (fine for checking the set-up), on GPUs NCCL.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings

import torch
import torch.nn.functional as F

from cirlib.config import resolve
from cirlib.data.features import cached_features, encoder_id
from cirlib.data.registry import load_splits
from cirlib.distributed import barrier, global_batch, init_distributed
from cirlib.eval.evaluate import evaluate
from cirlib.io import atomic_write_json
from cirlib.losses import batch_classification_loss
from cirlib.methods.combiner import LOGIT_SCALE, combiner_queries
from cirlib.models.backbone import load_backbone
from cirlib.models.combiner import Combiner
from cirlib.paths import subdir
from cirlib.registry import checkpoint_path
from cirlib.train import fit

METHODS = ("combiner",)


def distributed_combiner_loss(features, device, scale: float = LOGIT_SCALE):
    """The Combiner's ``loss_fn`` with queries and targets gathered from every rank.

    Same tensors as :func:`cirlib.methods.combiner.combiner_loss`; only the loss is taken over
    the global batch (:func:`cirlib.distributed.global_batch`).
    """
    ref = features.images[features.reference_index].to(device)
    tgt = F.normalize(features.images[features.target_index], dim=-1).to(device)
    texts = features.texts.to(device)

    def loss_fn(model, idx):
        idx = idx.to(device)
        queries = model(ref[idx], texts[idx])
        return global_batch(batch_classification_loss, queries, tgt[idx], scale=scale)

    return loss_fn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=METHODS, default="combiner")
    parser.add_argument("--profile", default="smoke", help="smoke, toy or paper")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="override the profile's epochs")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    args = parser.parse_args()

    ctx = init_distributed()
    torch.set_num_threads(args.threads)
    logging.getLogger().setLevel(logging.ERROR)  # open_clip's toy-model notice, once per rank
    warnings.filterwarnings("ignore", category=FutureWarning)
    overrides = {"device": str(ctx.device)}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    cfg = resolve(args.profile, seed=args.seed, **overrides)
    if cfg.batch_size % ctx.world_size:
        raise SystemExit(
            f"the global batch {cfg.batch_size} is not a multiple of {ctx.world_size} processes"
        )

    # Rank 0 builds the data and the feature cache; the others then only read them.
    if not ctx.is_main:
        barrier()
    splits = load_splits(cfg)
    model, preprocess, tokenizer = load_backbone(cfg.encoder, cfg.encoder_pretrained, ctx.device)
    enc = encoder_id(cfg.encoder, cfg.encoder_pretrained)
    cache = subdir("features")
    feats = {
        s: cached_features(
            splits[s], model, preprocess, tokenizer, encoder=enc, cache_dir=cache, device=cfg.device
        )
        for s in ("train", "test")
    }
    if ctx.is_main:
        barrier()
    del model

    # The settings of cirlib.methods.combiner.train_combiner, so the chapter loads this
    # checkpoint instead of training again (the global batches are the same; the dropout masks
    # are drawn per rank, so the weights equal a one-process run in distribution, not bit for bit).
    dropout = 0.5
    torch.manual_seed(args.seed)
    head = Combiner(feats["train"].images.shape[1], dropout=dropout)
    ckpt = checkpoint_path(cfg, args.method, args.seed)
    start = time.perf_counter()
    result = fit(
        head,
        distributed_combiner_loss(feats["train"], ctx.device),
        len(feats["train"].texts),
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        seed=args.seed,
        checkpoint=ckpt,
        settings={"method": "combiner", "dropout": dropout, "scale": LOGIT_SCALE},
        device=ctx.device,
        amp=cfg.amp,
        desc=f"Combiner seed {args.seed} (rank {ctx.rank}/{ctx.world_size})",
        distributed=True,
    )
    seconds = time.perf_counter() - start
    if ctx.is_main:
        metrics = evaluate(
            combiner_queries(result.model, feats["test"]), feats["test"], splits["test"]
        )
        report = {
            "method": args.method,
            "profile": cfg.name,
            "seed": args.seed,
            "world_size": ctx.world_size,
            "device": str(ctx.device),
            "epochs_trained_now": result.trained_epochs,
            "train_seconds": seconds,
            "checkpoint": str(ckpt),
            "final_loss": result.history[-1]["loss"],
            "test": metrics["all"],
        }
        out = atomic_write_json(
            subdir("results") / f"ddp-{args.method}-{cfg.name}-s{args.seed}.json", report, indent=1
        )
        print(json.dumps(report, indent=1))
        print(f"results written to {out}")
    barrier()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
