"""Benchmark: what one training step of the Combiner costs, and what the two CPU speed-ups buy.

Times a full step (forward, batch-based classification loss, backward, Adam) of the book's
Combiner on random features of the toy world's size, in four variants: ``nn.Dropout`` or
``cirlib.models.dropout.Dropout``, times the per-tensor or the fused Adam. Prints milliseconds
per step (best of several rounds: the least noisy figure on a shared machine) and each variant's
speed relative to the first, then the dropout masks alone: ``bernoulli_``, one uniform float per
entry, and cirlib's 16-bit integer lanes.

    python data_scripts/bench_train_step.py [--dim 128] [--batch 256] [--steps 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from cirlib.losses import batch_classification_loss
from cirlib.models.combiner import Combiner
from cirlib.models.dropout import dropout


def uniform_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """The mask from one uniform float per entry (cirlib's dropout before the integer lanes)."""
    return x * torch.rand(x.shape, dtype=x.dtype).ge_(p).mul_(1.0 / (1.0 - p))


def best_ms(fn, steps: int, rounds: int = 3) -> float:
    """Fastest mean over ``rounds`` rounds of ``steps`` calls, in ms, after a warm-up."""
    for _ in range(3):
        fn()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        best = min(best, (time.perf_counter() - start) / steps)
    return 1000 * best


def step_fn(dim: int, batch: int, torch_dropout: bool, fused: bool):
    torch.manual_seed(0)
    model = Combiner(dim).train()
    if torch_dropout:
        model.dropout = nn.Dropout(model.dropout.p)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused)
    n = 14_000  # the toy world's training queries
    ref, txt = torch.randn(n, dim), torch.randn(n, dim)
    tgt = F.normalize(torch.randn(n, dim), dim=-1)
    gen = torch.Generator().manual_seed(0)

    def step():
        idx = torch.randint(n, (batch,), generator=gen)
        loss = batch_classification_loss(model(ref[idx], txt[idx]), tgt[idx], 100.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=128, help="feature size D (toy world: 128)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"Combiner step, D={args.dim}, batch {args.batch}, {args.threads} thread(s), "
        f"torch {torch.__version__}"
    )
    variants = [
        ("nn.Dropout + Adam (per-tensor loop)", True, False),
        ("nn.Dropout + Adam (fused)", True, True),
        ("cirlib Dropout + Adam (per-tensor loop)", False, False),
        ("cirlib Dropout + Adam (fused): fit's default", False, True),
    ]
    base = None
    for name, torch_dropout, fused in variants:
        ms = best_ms(step_fn(args.dim, args.batch, torch_dropout, fused), args.steps)
        base = base or ms
        print(f"  {name:<46} {ms:7.2f} ms/step   {base / ms:4.2f}x")

    x = torch.randn(args.batch, 8 * args.dim, requires_grad=True)
    print(f"dropout of a {args.batch} x {8 * args.dim} activation, forward + backward:")
    ref = best_ms(lambda: F.dropout(x, 0.5, True).sum().backward(), 10 * args.steps)
    uniform = best_ms(lambda: uniform_dropout(x, 0.5).sum().backward(), 10 * args.steps)
    ours = best_ms(lambda: dropout(x, 0.5).sum().backward(), 10 * args.steps)
    print(f"  torch.nn.functional.dropout (bernoulli_)  {ref:6.3f} ms   1.00x")
    print(f"  mask from torch.rand >= p                 {uniform:6.3f} ms   {ref / uniform:4.2f}x")
    print(f"  cirlib dropout (16-bit integer lanes)     {ours:6.3f} ms   {ref / ours:4.2f}x")


if __name__ == "__main__":
    main()
