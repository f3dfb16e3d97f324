"""Benchmark: the batched log-domain Sinkhorn of cirlib against a per-pair loop over POT.

Prints the speed ratio (POT loop time / batched time) and the largest difference between the two
plans, for a batch of random costs (default: 64 problems of 32×32, MAPNet's 32 schemas).

    python data_scripts/bench_sinkhorn.py [--batch 64] [--size 32] [--tau 0.1] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import ot
import torch

from cirlib.ot import sinkhorn, sinkhorn_potentials


def best_time(fn, repeats: int) -> float:
    """Fastest of ``repeats`` runs, after one warm-up (the minimum is the least noisy estimate
    on a shared machine)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--tau", type=float, default=0.1)
    parser.add_argument("--tol", type=float, default=1e-9, help="marginal error to stop at (both)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    gen = torch.Generator().manual_seed(0)
    # cosine costs in [0, 2], as MAPNet's -log C = 1 - cos between schemas
    cost = 2 * torch.rand(args.batch, args.size, args.size, generator=gen, dtype=torch.float64)
    cost_np = cost.numpy()
    uniform = np.full(args.size, 1.0 / args.size)

    def ours():
        return sinkhorn(cost, args.tau, tol=args.tol)

    cost32 = cost.float()

    def ours_float32():
        # float32 cannot resolve marginals to 1e-9; stop at 1e-7 instead
        return sinkhorn(cost32, args.tau, tol=max(args.tol, 1e-7))

    def pot_loop():
        return np.stack(
            [
                ot.sinkhorn(uniform, uniform, c, args.tau, method="sinkhorn_log", stopThr=args.tol)
                for c in cost_np
            ]
        )

    t_ours = best_time(ours, args.repeats)
    t_pot = best_time(pot_loop, args.repeats)
    t_ours32 = best_time(ours_float32, args.repeats)
    plan, reference = ours().numpy(), pot_loop()
    iters = sinkhorn_potentials(cost, args.tau, tol=args.tol)[2]
    row_error = np.abs(plan.sum(2) - uniform).max()
    col_error = np.abs(plan.sum(1) - uniform).max()
    print(
        f"batch {args.batch}, {args.size}x{args.size} costs, tau {args.tau}, tol {args.tol}, "
        f"{torch.get_num_threads()} thread(s)"
    )
    print(
        f"batched log-domain Sinkhorn (cirlib): {1e3 * t_ours:8.2f} ms ({iters} iterations, float64)"
    )
    print(f"per-pair loop over ot.sinkhorn(log):  {1e3 * t_pot:8.2f} ms")
    print(f"speed ratio (POT loop / batched):     {t_pot / t_ours:8.1f}x")
    print(f"max |plan difference|:                {np.abs(plan - reference).max():.2e}")
    print(f"max marginal error (rows, columns):   {row_error:.1e}, {col_error:.1e}")
    plan32 = ours_float32().double().numpy()
    print(
        f"float32 batched: {1e3 * t_ours32:.2f} ms, ratio {t_pot / t_ours32:.1f}x, "
        f"max |plan difference| {np.abs(plan32 - reference).max():.2e}"
    )


if __name__ == "__main__":
    main()
