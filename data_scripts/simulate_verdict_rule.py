"""How often the verdict rule flags two identical methods, and how often it finds a real gap,
on simulated per-query hits (a check of ``cirlib.verdict`` that needs no training).

Model (``cirlib.verdict_flips.simulated_hits``): ``--queries`` test queries with an ease ``z_q ~ N(0, 1.5)`` shared by every run; run ``s``
of a method finds query ``q`` with probability ``sigmoid(z_q - 1.2 + shift + u_s + e_sq)``,
with a run-level offset ``u_s ~ N(0, --seed-sd)`` (a lucky or unlucky training run) and a
per-query jitter ``e_sq ~ N(0, --query-sd)``. Method ``b`` is the same with ``shift = 0``.
For each number of seeds it draws ``--trials`` pairs of methods (independent runs, paired by
position as seeds are), judges "a > b" on R@1 with ``cirlib.verdict.paired_verdict`` and
counts the verdicts: with ``--shift 0`` every "supported" or "contradicted" is a false positive;
with a shift, "supported" is a found gap. Prints the seed-to-seed standard deviation of R@1
the model produces, so the noise can be matched to a real table (the toy book's: 1-2 points).

    python data_scripts/simulate_verdict_rule.py --seeds 2 5 --trials 200
    python data_scripts/simulate_verdict_rule.py --shift 0.15
"""

from __future__ import annotations

import argparse

import numpy as np

from cirlib.verdict import DEFAULT_LEVEL, DEFAULT_MIN_EFFECT, paired_verdict
from cirlib.verdict_flips import simulated_hits


def simulate(args) -> list[dict]:
    rng = np.random.default_rng(args.rng_seed)
    ease = rng.normal(0.0, 1.5, args.queries)

    def runs(n_seeds, shift):
        return simulated_hits(rng, ease, n_seeds, shift, args.seed_sd, args.query_sd)

    sd = 100 * runs(50, 0.0).mean(axis=1).std(ddof=1)
    rows = []
    for n_seeds in args.seeds:
        counts = {"supported": 0, "contradicted": 0, "no difference": 0}
        effects = []
        for _ in range(args.trials):
            v = paired_verdict(
                runs(n_seeds, args.shift),
                runs(n_seeds, 0.0),
                "R@1",
                level=args.level,
                min_effect=args.min_effect,
            )
            counts[v.verdict] += 1
            effects.append(v.estimate)
        rows.append(
            {"seeds": n_seeds, "trials": args.trials, "mean effect": np.mean(effects), **counts}
        )
    print(f"seed-to-seed sd of R@1 in this model: {sd:.2f} points (50 runs)")
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[2, 5])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--queries", type=int, default=2400)
    parser.add_argument("--seed-sd", type=float, default=0.12, help="run offset sd (logit)")
    parser.add_argument("--query-sd", type=float, default=0.8, help="per-query jitter sd (logit)")
    parser.add_argument("--shift", type=float, default=0.0, help="a's advantage (logit)")
    parser.add_argument("--level", type=float, default=DEFAULT_LEVEL)
    parser.add_argument("--min-effect", type=float, default=DEFAULT_MIN_EFFECT)
    parser.add_argument("--rng-seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.trials < 1 or args.queries < 1 or min(args.seeds) < 1:
        parser.error("--trials, --queries and every --seeds value must be positive")
    for row in simulate(args):
        flagged = row["supported"] + row["contradicted"]
        print(
            f"{row['seeds']} seeds: mean effect {row['mean effect']:+.2f} points; supported "
            f"{row['supported']}, contradicted {row['contradicted']}, no difference "
            f"{row['no difference']} of {row['trials']} ({100 * flagged / row['trials']:.1f}% "
            "flagged)"
        )


if __name__ == "__main__":
    main()
