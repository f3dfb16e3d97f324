r"""How often the verdict rule would give another verdict in a second build: a simulation.

Two builds of the book train every method again with the same seeds; on another machine the
runs round differently and end elsewhere, as if they were new training runs. So a verdict can
flip between builds. This module estimates how often, on simulated per-query hits whose noise
matches a toy table (no training needed).

Model (as ``data_scripts/simulate_verdict_rule.py``): ``n`` test queries with an ease
:math:`z_q \sim N(0, 1.5^2)` shared by every run; run :math:`s` of a method finds query
:math:`q` with probability :math:`\sigma(z_q - 1.2 + \text{shift} + u_s + e_{sq})`, with a
run offset :math:`u_s \sim N(0, \text{seed\_sd}^2)` (a lucky training run) and a per-query
jitter :math:`e_{sq} \sim N(0, \text{query\_sd}^2)`. One *build* draws fresh runs of both
methods (``shift`` for :math:`a`, 0 for :math:`b`) and judges :math:`a > b` on R@1 with
:func:`cirlib.verdict.paired_verdict`; a trial draws two builds and counts a flip when
their verdicts differ. For identical methods (shift 0) the flip rate is about
:math:`2p(1-p)` for a false-positive rate :math:`p`; it is largest for a gap near the rule's
threshold, where either verdict is likely.

**One verdict's chance to hold** (:func:`rebuild_agreement`). The simulation above needs a
model of the methods; a single judged claim carries what is needed to predict its own rebuild.
A rebuild keeps the test queries (the toy world is the same to the bit) and trains every run
again, so of the two terms of the rule's standard error only the seed term is drawn anew. With
:math:`n_r` seeds whose per-seed differences have spread :math:`s^2 = n_r V_{\text{seed}}`, the
unknown seed variance is :math:`\sigma^2 = (n_r-1)s^2/\chi^2_{n_r-1}` (the usual posterior
under a flat prior), the true difference on these queries is :math:`N(\hat\Delta,
\sigma^2/n_r)`, and a rebuild's difference is therefore :math:`\hat\Delta' \sim N(\hat\Delta,
2\sigma^2/n_r)` with its own seed spread :math:`s'^2 \sim \sigma^2\chi^2_{n_r-1}/(n_r-1)`. Each
draw is judged by the rule (its own interval, degrees of freedom and minimum effect, the query
term kept); the share of draws that give the verdict again is the verdict's *rebuild
agreement*. A verdict whose interval ends near zero, or whose difference sits near the minimum
effect, gets a low one: about one half for a difference right at the edge. A rebuild with the
same seeds starts from the same weights and batches and drifts apart only through rounding; the
model treats its runs as new ones, so if they stay closer to ours than new seeds would, the
chance it gives errs low (on the safe side).

Introduced in chapter "Comparing the methods".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

# rebuild_agreement lives beside the rule (cirlib.verdict, whose prose calls it); it is
# re-exported here, with the simulation it belongs with
from cirlib.verdict import FRAGILE_BELOW, paired_verdict, rebuild_agreement

__all__ = [
    "simulated_hits",
    "build_flip_rate",
    "rebuild_agreement",
    "chance_of_at_least",
    "FRAGILE_BELOW",
]


def simulated_hits(
    rng: np.random.Generator,
    ease: np.ndarray,
    n_seeds: int,
    shift: float = 0.0,
    seed_sd: float = 0.12,
    query_sd: float = 0.8,
) -> np.ndarray:
    """0/1 hits ``[n_seeds, n]`` of one method's runs on queries of ease ``ease`` ``[n]``."""
    offset = rng.normal(0.0, seed_sd, (n_seeds, 1))
    jitter = rng.normal(0.0, query_sd, (n_seeds, len(ease)))
    p = 1.0 / (1.0 + np.exp(-(ease - 1.2 + shift + offset + jitter)))
    return (rng.random((n_seeds, len(ease))) < p).astype(np.int64)


def build_flip_rate(
    n_seeds: int,
    shifts: Sequence[float] = (0.0,),
    *,
    trials: int = 100,
    queries: int = 2400,
    seed_sd: float = 0.12,
    query_sd: float = 0.8,
    rng_seed: int = 0,
    **rule,
) -> pd.DataFrame:
    """For each ``shift`` (logit), ``trials`` pairs of builds of two methods on ``n_seeds``
    seeds: one row with the mean simulated gap (points), how often the first build's verdict
    is not "no difference" (``flagged``) and how often the two builds' verdicts differ
    (``flips``, a fraction). ``rule`` goes to :func:`~cirlib.verdict.paired_verdict`
    (``level``, ``min_effect``, ``min_seeds``)."""
    if n_seeds < 1 or trials < 1 or queries < 1:
        raise ValueError(
            f"need at least one seed, trial and query; got {n_seeds}, {trials}, {queries}"
        )
    rng = np.random.default_rng(rng_seed)
    ease = rng.normal(0.0, 1.5, queries)
    rows = []
    for shift in shifts:
        flips = flagged = 0
        gaps = []
        for _ in range(trials):
            verdicts = []
            for _build in range(2):
                a = simulated_hits(rng, ease, n_seeds, shift, seed_sd, query_sd)
                b = simulated_hits(rng, ease, n_seeds, 0.0, seed_sd, query_sd)
                v = paired_verdict(a, b, "R@1", **rule)
                verdicts.append(v.verdict)
                gaps.append(v.estimate)
            flagged += verdicts[0] != "no difference"
            flips += verdicts[0] != verdicts[1]
        rows.append(
            {
                "shift": float(shift),
                "mean gap": float(np.mean(gaps)),
                "flagged": flagged / trials,
                "flips": flips / trials,
                "trials": trials,
                "seeds": n_seeds,
            }
        )
    return pd.DataFrame(rows)


def chance_of_at_least(changes: int, probabilities: Sequence[float]) -> float:
    """The probability that at least ``changes`` of several verdicts change in a rebuild, when
    verdict ``i`` changes with probability ``probabilities[i]`` (one minus its
    :func:`rebuild_agreement`), each independently of the others.

    Exact (the Poisson-binomial distribution, by convolution). Read it as a check of the chances
    themselves: a small value for the changes a real rebuild showed says they were too
    confident. Verdicts that rest on the same runs (one pair of methods on two galleries) tend to
    change together, which makes a cluster of changes likelier than this says.
    """
    p = np.asarray(probabilities, dtype=float)
    if p.ndim != 1 or ((p < 0) | (p > 1)).any():
        raise ValueError(f"probabilities must be a list of numbers in [0, 1]; got {p!r}")
    if changes <= 0:
        return 1.0
    # dist[k]: probability that exactly k of the verdicts seen so far changed
    dist = np.zeros(len(p) + 1)
    dist[0] = 1.0
    for pi in p:
        dist[1:] = dist[1:] * (1 - pi) + dist[:-1] * pi
        dist[0] *= 1 - pi
    return float(min(1.0, dist[changes:].sum()))
