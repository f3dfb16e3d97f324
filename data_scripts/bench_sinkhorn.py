"""Benchmark: the batched Sinkhorn of cirlib against a per-pair loop over POT, and its two
iterations (log domain, kernel domain) on MAPNet's per-step problem.

Prints the speed ratio (POT loop time / batched time) and the largest difference between the two
plans, for a batch of random costs (default: 64 problems of 32×32, MAPNet's 32 schemas); then
times the log-domain and the kernel-domain iterations on the problem MAPNet's MSI loss solves at
every step (``--step-batch`` problems of ``--step-size`` x ``--step-size``, tau 0.1, at most 100
iterations, tolerance 1e-4; defaults: the toy profile's 256 triplets of 8 schemas) and says how
often the two plans' row-argmax assignments agree.

    python data_scripts/bench_sinkhorn.py [--batch 64] [--size 32] [--tau 0.1] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import ot
import torch

from cirlib.ot import plan_assignment, sinkhorn, sinkhorn_potentials


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
    parser.add_argument("--step-batch", type=int, default=256, help="MSI problems per step")
    parser.add_argument("--step-size", type=int, default=8, help="schemas (toy 8, paper 32)")
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
        f"batched Sinkhorn (cirlib, auto):      {1e3 * t_ours:8.2f} ms ({iters} iterations, float64)"
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
    step_problem(args)


def step_problem(args) -> None:
    """Log against kernel domain on the MSI loss's float32 problem of one training step."""
    gen = torch.Generator().manual_seed(1)
    shape = (args.step_batch, args.step_size, 64)
    t = torch.nn.functional.normalize(torch.randn(shape, generator=gen), dim=-1)
    q = torch.nn.functional.normalize(t + 0.5 * torch.randn(shape, generator=gen), dim=-1)
    cost = 1.0 - t @ q.transpose(1, 2)  # the cosine distance, as the MSI loss's -log C
    print(
        f"MSI step problem: {args.step_batch} plans of {args.step_size}x{args.step_size}, "
        "tau 0.1, float32, <= 100 iterations, tol 1e-4"
    )
    plans, times = {}, {}
    for domain in ("log", "kernel"):

        def solve(d=domain):
            return sinkhorn(cost, 0.1, max_iters=100, tol=1e-4, domain=d)

        times[domain] = best_time(solve, args.repeats)
        plans[domain] = solve()
        print(f"  {domain:<6} domain: {1e3 * times[domain]:7.2f} ms")
    print(f"  speed ratio (log / kernel): {times['log'] / times['kernel']:.2f}x")
    gap = (plans["log"] - plans["kernel"]).abs().max().item()
    same = (plan_assignment(plans["log"]) == plan_assignment(plans["kernel"])).float().mean()
    print(f"  max |plan difference| {gap:.2e}; same row-argmax for {100 * same:.2f}% of rows")


if __name__ == "__main__":
    main()
