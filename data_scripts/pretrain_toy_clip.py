"""Pretrain the toy CLIP encoder and write the checkpoint that ships with cirlib.

    python data_scripts/pretrain_toy_clip.py --model toy-vit-tiny --steps 600 --seed 0

writes ``cirlib/models/weights/<model>.pt`` (fp16 weights + the command, seed and held-out
metrics that produced them) atomically, and prints the metrics. The chapter "A tiny CLIP for a
tiny world" runs the same function in the ``toy`` profile.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

from cirlib.io import atomic_torch_save
from cirlib.models.backbone import load_backbone, shipped_weights, toy_model_names
from cirlib.models.pretrain import image_to_caption_recall, pretrain_toy_clip
from cirlib.seed import seed_everything


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="toy-vit-tiny", choices=toy_model_names())
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--scenes", type=int, default=30000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="default: the shipped checkpoint path")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    model, _, tokenizer = load_backbone(args.model, pretrained=None)
    t0 = time.time()
    history = pretrain_toy_clip(
        model,
        tokenizer,
        steps=args.steps,
        batch_size=args.batch_size,
        n_scenes=args.scenes,
        seed=args.seed,
        lr=args.lr,
    )
    seconds = time.time() - t0
    metrics = image_to_caption_recall(model, tokenizer, n=1000, seed=args.seed)
    meta = {
        "command": "python data_scripts/pretrain_toy_clip.py " + " ".join(sys.argv[1:]),
        "model": args.model,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "scenes": args.scenes,
        "lr": args.lr,
        "seed": args.seed,
        "train_seconds": round(seconds, 1),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "final_loss": history[-1]["loss"],
        "held_out": metrics,
        "loss_curve": [h["loss"] for h in history],
    }
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    out = args.out or shipped_weights(args.model)
    atomic_torch_save(out, {"state_dict": state, "meta": meta})
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) in {seconds:.0f} s; held-out {metrics}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
