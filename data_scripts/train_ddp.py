"""Train a method on several processes (GPUs) with torchrun and DistributedDataParallel.

    torchrun --nproc_per_node=2 data_scripts/train_ddp.py --method mapnet --profile smoke
    torchrun --nproc_per_node=4 data_scripts/train_ddp.py --method combiner --profile paper

``--method`` is any registered method (``cirlib.methods.registered()``: combiner, mgur, cala,
mapnet, dqe, mgur_rp, ...). Every rank encodes
nothing twice: rank 0 prepares the data and fills the feature cache, the others wait and then
read it. The method trains through its spec (``MethodSpec.train``: the chapter's settings and
budget, e.g. for MAPNet off the toy world the README's learning rate, batch size and epochs)
with ``distributed=True``: each rank trains on its slice of every global batch (the batch size
must be a multiple of the number of processes) and the recipe's loss gathers everything that
spans the batch from all ranks, so the objective is the one-process objective over the whole
batch (cirlib.distributed). Rank 0 writes the checkpoint under the name and settings
fingerprint of the chapter's main run (``registry.checkpoint_path``), so the chapter loads it
instead of training again; it evaluates on the test split, prints the metrics and writes them to
``$CIRLIB_DATA_DIR/results/ddp-<method>-<profile>-s<seed>.json``.

``--epochs`` makes a run that is not the chapter's: its checkpoint is tagged ``ddp-e<epochs>``
(``<method>-ddp-e<epochs>-<profile>-...``) and never replaces the chapter's, and its report is
``ddp-<method>-e<epochs>-<profile>-s<seed>.json``.

With a plain ``python`` (no torchrun) the same script trains on one process. On CPU the
backend is gloo (fine for checking the set-up), on GPUs NCCL.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
import warnings

import torch

from cirlib.config import PROFILES, resolve
from cirlib.data.features import cached_features, encoder_id
from cirlib.data.registry import load_splits
from cirlib.distributed import barrier, init_distributed
from cirlib.eval.evaluate import evaluate
from cirlib.io import atomic_write_json
from cirlib.methods import registered
from cirlib.models.backbone import load_backbone
from cirlib.paths import subdir
from cirlib.registry import checkpoint_path, get_method, training_profile
from cirlib.train import checkpoint_epoch, load_checkpoint


def _parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=list(registered()), default="combiner")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="smoke")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--epochs", type=int, default=None, help="override the epochs (a tagged, non-chapter run)"
    )
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    return args


def run_plan(method: str, cfg, world_size: int, epochs: int | None = None):
    """The profile ``method`` trains with, its checkpoint and the options passed to its recipe.

    Raises ``SystemExit`` with what to do when the global batch cannot be split over
    ``world_size`` processes.
    """
    train_cfg = training_profile(method, cfg)
    options = {}
    tag = "main"
    if epochs is not None:
        train_cfg = dataclasses.replace(train_cfg, epochs=epochs)
        # train_method's own override, applied after the method's budget (MAPNet's paper
        # budget sets its epochs)
        options["epochs"] = epochs
        tag = f"ddp-e{epochs}"
    if train_cfg.batch_size % world_size:
        multiples = [w for w in range(1, train_cfg.batch_size + 1) if train_cfg.batch_size % w == 0]
        raise SystemExit(
            f"{method} trains with a global batch of {train_cfg.batch_size} under profile "
            f"{cfg.name!r}, which cannot be split evenly over {world_size} processes; run with "
            f"--nproc_per_node set to one of {multiples[:12]}"
        )
    return train_cfg, checkpoint_path(cfg, method, cfg.seed, tag=tag), options


def main(argv=None) -> None:
    args = _parse(argv)
    ctx = init_distributed()
    torch.set_num_threads(args.threads)
    logging.getLogger().setLevel(logging.ERROR)  # open_clip's toy-model notice, once per rank
    warnings.filterwarnings("ignore", category=FutureWarning)
    cfg = resolve(args.profile, seed=args.seed, device=str(ctx.device))
    spec = get_method(args.method)
    try:
        train_cfg, ckpt, options = run_plan(args.method, cfg, ctx.world_size, args.epochs)
    except SystemExit:
        if ctx.is_main:
            raise
        raise SystemExit(1) from None  # rank 0 prints the message, once

    # Rank 0 builds the data and the feature cache; the others then only read them.
    if not ctx.is_main:
        barrier()
    splits = load_splits(cfg)
    model, preprocess, tokenizer = load_backbone(cfg.encoder, cfg.encoder_pretrained, ctx.device)
    enc = encoder_id(cfg.encoder, cfg.encoder_pretrained)
    feats = {
        s: cached_features(
            splits[s],
            model,
            preprocess,
            tokenizer,
            encoder=enc,
            cache_dir=subdir("features"),
            tokens=spec.needs_tokens,
            device=cfg.device,
        )
        for s in ("train", "test")
    }
    if ctx.is_main:
        barrier()
    del model

    # The chapter's own recipe and options (registry), so its settings fingerprint is the
    # chapter's. The global batches are the same as on one process; dropout masks (and, with
    # dropout on, MGUR's noise and DQE-CIR's negatives) are drawn per rank, so the weights equal
    # a one-process run's in distribution, not bit for bit.
    done_before = checkpoint_epoch(ckpt)
    start = time.perf_counter()
    head = spec.train(
        feats["train"],
        train_cfg,
        seed=args.seed,
        split=splits["train"],
        checkpoint=ckpt,
        distributed=True,
        **options,
    )
    seconds = time.perf_counter() - start
    if ctx.is_main:
        state = load_checkpoint(ckpt)
        test = feats["test"]
        gallery = spec.gallery(head, test) if spec.gallery is not None else None
        metrics = evaluate(
            spec.embed_queries(head, test, splits["test"]), test, splits["test"], gallery=gallery
        )
        report = {
            "method": args.method,
            "profile": cfg.name,
            "seed": args.seed,
            "world_size": ctx.world_size,
            "device": str(ctx.device),
            "epochs": state["epoch"],
            "batch_size": train_cfg.batch_size,
            "lr": train_cfg.lr,
            "epochs_trained_now": state["epoch"] - done_before,
            "train_seconds": seconds,
            "checkpoint": str(ckpt),
            "chapter_checkpoint": args.epochs is None,
            "final_loss": state["history"][-1]["loss"],
            "test": metrics["all"],
        }
        run = args.method if args.epochs is None else f"{args.method}-e{args.epochs}"
        out = atomic_write_json(
            subdir("results") / f"ddp-{run}-{cfg.name}-s{args.seed}.json", report, indent=1
        )
        print(json.dumps(report, indent=1))
        print(f"results written to {out}")
    barrier()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
