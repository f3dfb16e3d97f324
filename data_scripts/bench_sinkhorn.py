"""Benchmark: cirlib's batched Sinkhorn against POT's batched solver (``ot.batch.solve_batch``)
on the same torch tensors, kernel and log domain, and against a per-pair loop of ``ot.sinkhorn``.

Two problems: a batch of random costs (default 64 problems of 32 x 32 in float64, cosine-like
costs in [0, 2], tau 0.1, tolerance 1e-9), and the one MAPNet's MSI loss solves at every
training step (``--step-batch`` problems of ``--step-size`` x ``--step-size`` in float32, tau
0.1, at most 100 iterations, tolerance 1e-4; defaults: the toy profile's 256 triplets of 8
schemas). The solvers take turns for ``--rounds`` rounds and the fastest time of each is
printed with its ratio to cirlib's; with one thread the clock is the process's CPU time (time
spent waiting for a core does not count). Then the iterations each solver ran, the largest
difference between the plans, and, on the step problem, how often the row-argmax assignments
(what MSI uses) agree.

The two libraries stop differently: cirlib when every row sum of the batch is within ``tol`` of
its marginal (max-norm), POT when the largest per-problem L2 norm of the row-sum error is, each
checked every 10 iterations, so at one ``tol`` POT may run a few more iterations.

    python data_scripts/bench_sinkhorn.py [--batch 64] [--size 32] [--tau 0.1] [--rounds 7]
        [--threads 1] [--step-batch 256] [--step-size 8] [--pot-loop]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import ot
import torch
from ot.batch import solve_batch

from cirlib.ot import plan_assignment, sinkhorn, sinkhorn_potentials


def time_in_turns(solvers: dict, rounds: int, now) -> dict[str, float]:
    """Fastest time of each solver over ``rounds`` rounds in which every solver runs once, in
    turn (after one warm-up call each)."""
    for solve in solvers.values():
        solve()
    best = dict.fromkeys(solvers, float("inf"))
    for _ in range(rounds):
        for name, solve in solvers.items():
            start = now()
            solve()
            best[name] = min(best[name], now() - start)
    return best


def pot_batch(cost: torch.Tensor, tau: float, method: str, tol: float, max_iters: int):
    """POT's batched entropic solver; returns (plan, iterations)."""
    result = solve_batch(cost, tau, method=method, tol=tol, max_iter=max_iters, grad="detach")
    return result.plan, int(result.log["n_iter"]) + 1


def compare(title: str, cost: torch.Tensor, tau: float, tol: float, max_iters: int, args) -> None:
    now = time.process_time if args.threads == 1 else time.perf_counter
    solvers = {
        "cirlib (auto: kernel domain here)": lambda: sinkhorn(
            cost, tau, tol=tol, max_iters=max_iters
        ),
        "cirlib, log domain": lambda: sinkhorn(
            cost, tau, tol=tol, max_iters=max_iters, domain="log"
        ),
        "POT ot.batch, kernel ('sinkhorn')": lambda: pot_batch(
            cost, tau, "sinkhorn", tol, max_iters
        )[0],
        "POT ot.batch, log ('log_sinkhorn')": lambda: pot_batch(
            cost, tau, "log_sinkhorn", tol, max_iters
        )[0],
    }
    if args.pot_loop and cost.dtype == torch.float64:
        costs, n, m = cost.numpy(), cost.shape[1], cost.shape[2]
        a, b = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
        solvers["POT per-pair loop of ot.sinkhorn (log)"] = lambda: np.stack(
            [ot.sinkhorn(a, b, c, tau, method="sinkhorn_log", stopThr=tol) for c in costs]
        )
    best = time_in_turns(solvers, args.rounds, now)
    reference = best["cirlib (auto: kernel domain here)"]
    print(title)
    for name, seconds in best.items():
        print(f"  {name:<40} {1e3 * seconds:8.3f} ms   {seconds / reference:5.2f}x cirlib's")

    ours = sinkhorn(cost, tau, tol=tol, max_iters=max_iters).double()
    iters = {
        "cirlib kernel": sinkhorn_potentials(cost, tau, tol=tol, max_iters=max_iters)[2],
        "cirlib log": sinkhorn_potentials(cost, tau, tol=tol, max_iters=max_iters, domain="log")[2],
    }
    plans = {}
    for method in ("sinkhorn", "log_sinkhorn"):
        plans[method], iters[f"POT {method}"] = pot_batch(cost, tau, method, tol, max_iters)
    print("  iterations: " + ", ".join(f"{k} {v}" for k, v in iters.items()))
    for method, plan in plans.items():
        gap = (plan.double() - ours).abs().max().item()
        same = (plan_assignment(plan) == plan_assignment(ours)).double().mean().item()
        print(
            f"  POT {method:<13} vs cirlib: max |plan difference| {gap:.2e}; "
            f"same row-argmax for {100 * same:.2f}% of rows"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--tau", type=float, default=0.1)
    parser.add_argument("--tol", type=float, default=1e-9, help="marginal error to stop at")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--step-batch", type=int, default=256, help="MSI problems per step")
    parser.add_argument("--step-size", type=int, default=8, help="schemas (toy 8, paper 32)")
    parser.add_argument("--pot-loop", action="store_true", help="also time a loop of ot.sinkhorn")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, POT {ot.__version__}, {torch.get_num_threads()} thread(s), "
        f"{'CPU' if args.threads == 1 else 'wall'} time, fastest of {args.rounds} rounds"
    )

    gen = torch.Generator().manual_seed(0)
    # cosine-like costs in [0, 2], as MAPNet's -log C = 1 - cos between schemas
    cost = 2 * torch.rand(args.batch, args.size, args.size, generator=gen, dtype=torch.float64)
    compare(
        f"{args.batch} random problems of {args.size}x{args.size}, float64, tau {args.tau}, "
        f"tol {args.tol}",
        cost,
        args.tau,
        args.tol,
        10_000,
        args,
    )

    gen = torch.Generator().manual_seed(1)
    shape = (args.step_batch, args.step_size, 64)
    t = torch.nn.functional.normalize(torch.randn(shape, generator=gen), dim=-1)
    q = torch.nn.functional.normalize(t + 0.5 * torch.randn(shape, generator=gen), dim=-1)
    step_cost = 1.0 - t @ q.transpose(1, 2)  # the cosine distance, as the MSI loss's -log C
    compare(
        f"MSI step problem: {args.step_batch} plans of {args.step_size}x{args.step_size}, "
        "float32, tau 0.1, <= 100 iterations, tol 1e-4",
        step_cost,
        0.1,
        1e-4,
        100,
        args,
    )


if __name__ == "__main__":
    main()
