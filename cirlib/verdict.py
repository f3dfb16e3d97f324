r"""The verdict rule: a paired bootstrap over seeds and test queries, with a minimum effect.

A claim "method :math:`a` retrieves better than method :math:`b` on metric :math:`M`" is judged
on per-query hits. For training seed :math:`s` (both methods trained with it on the same
features) and test query :math:`q`, let :math:`h^a_{sq} \in \{0, 1\}` say whether :math:`a` puts
the target within the cut-off (:math:`r_{sq} < K` for :math:`M = \mathrm{R@}K`; the rank in
the image set for :math:`\mathrm{Rs@}K`; the best rank over the valid targets for
:math:`\mathrm{mR@}K`). The paired differences

.. math:: D_{sq} = h^a_{sq} - h^b_{sq} \in \{-1, 0, 1\}, \qquad
          \hat\Delta = \frac{100}{S\,n} \sum_{s=1}^{S} \sum_{q=1}^{n} D_{sq}

give the difference of the two recalls in points, averaged over the :math:`S` shared seeds
(:math:`\hat\Delta` equals the mean over seeds of the per-seed differences of the table).

**Two-way paired bootstrap.** The number would change with other seeds (training noise) and
with other test queries (sampling noise). Seeds and queries are crossed (every seed is scored
on every query), so both are resampled, independently: replicate :math:`b = 1 \dots B` draws
:math:`S` seeds with replacement (counts :math:`w^b_s`, :math:`\sum_s w^b_s = S`) and :math:`n`
queries with replacement (counts :math:`c^b_q`), the same queries for every seed and both
methods, so the pairing is kept:

.. math:: \hat\Delta^{b} = \frac{100}{S\,n} \sum_{s} \sum_{q} w^b_s\, c^b_q\, D_{sq}.

This is the "pigeonhole" bootstrap for crossed data of Owen (2007), applied to paired
differences. The interval at level :math:`1 - \alpha` holds the order statistics
:math:`\hat\Delta^{(j)}` and :math:`\hat\Delta^{(B-1-j)}` of the sorted replicates,
:math:`j = \lfloor \alpha B / 2 \rfloor` (0-based): the percentile interval of Efron &
Tibshirani (1993). With five seeds its nominal level is an approximation, so the error rate of
the whole rule is measured, not assumed (:func:`false_positive_rate`).

**Rule.** With a stated minimum effect :math:`\delta` (points):

.. math::

    \text{supported} &\iff \mathrm{low} > 0 \ \wedge\ \hat\Delta \ge \delta, \\
    \text{contradicted} &\iff \mathrm{high} < 0 \ \wedge\ \hat\Delta \le -\delta,

and "no difference" otherwise: a gap whose interval touches zero, or one too small to matter,
never ranks two methods. Nor does a comparison on fewer than ``min_seeds`` shared seeds
(default 2): with one seed the seed stage has nothing to resample, the interval then reflects
only the choice of test queries, and a lucky training run would read as a finding.

**Breakdowns.** A claim about a group of queries (``values`` of a meta key, e.g. colour edits)
uses only those queries; a claim that a gain is *larger* on one group than on the rest is the
contrast :math:`\hat\Delta_{\text{named}} - \hat\Delta_{\text{rest}}`, and the query stage then
resamples each group within itself (a stratified bootstrap), so both groups keep their sizes.

**Determinism.** The replicates come from NumPy's PCG64 generator seeded with ``seed`` and are
summed in exact integer arithmetic; the only floating-point steps are one division per group
and one subtraction, correctly rounded everywhere. The same inputs give the same verdict on any
machine with the pinned NumPy (NEP 19 lets ``Generator`` streams change between NumPy releases).

Introduced in chapter "Comparing the methods".
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from cirlib.eval.query_ranks import decode_groups, decode_ranks

VERDICTS = ("supported", "contradicted", "no difference")
# A claim "method > baseline" whose ordering holds while the method does not also beat its
# control (the baseline given the method's inputs, trained without the method's objective).
NOT_ISOLATED = "ordering reproduced, mechanism not isolated"
DEFAULT_LEVEL = 0.95
DEFAULT_MIN_EFFECT = 1.0
DEFAULT_N_BOOT = 2000
# One seed shows no training noise: the bootstrap would see only the test queries' sampling.
DEFAULT_MIN_SEEDS = 2
# Replicates summed at a time: bounds the memory of the [chunk, n] count tables.
_CHUNK = 256

__all__ = [
    "NOT_ISOLATED",
    "Agreement",
    "FalsePositiveRate",
    "Verdict",
    "bootstrap_differences",
    "bootstrap_indices",
    "bootstrap_verdict",
    "claim_verdict",
    "describe_best",
    "describe_comparison",
    "false_positive_rate",
    "hard_gallery_record",
    "judge",
    "judge_pairs",
    "per_query_hits",
    "query_hits",
    "query_labels",
    "rejudge",
    "verdict_agreement",
    "verdict_frame",
    "verdict_rule",
]


# ----------------------------------------------------------------------------- the verdict


@dataclass(frozen=True)
class Verdict:
    """One judged claim "``a`` > ``b`` on ``metric``" (percentage points, ``a`` − ``b``).

    ``estimate`` is :math:`\\hat\\Delta`, ``low``/``high`` the bootstrap interval at ``level``;
    ``seeds`` the shared seeds, ``n_queries`` the test queries used; ``group`` describes a
    breakdown (None for all queries). With ``versus`` (the other group) the claim is a contrast:
    the gain of ``a`` over ``b`` is larger on ``group`` than on ``versus``.
    """

    a: str
    b: str
    metric: str
    estimate: float
    low: float
    high: float
    verdict: str
    seeds: tuple[int, ...]
    n_queries: int
    level: float = DEFAULT_LEVEL
    min_effect: float = DEFAULT_MIN_EFFECT
    min_seeds: int = DEFAULT_MIN_SEEDS
    n_boot: int = DEFAULT_N_BOOT
    boot_seed: int = 0
    group: str | None = None
    versus: str | None = None

    @property
    def key(self) -> tuple:
        """What identifies the claim across builds: ``(a, b, metric, group, versus)``."""
        return (self.a, self.b, self.metric, self.group, self.versus)

    def to_dict(self) -> dict:
        """JSON-ready (seeds as a list)."""
        out = asdict(self)
        out["seeds"] = list(self.seeds)
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> Verdict:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["seeds"] = tuple(d["seeds"])
        return cls(**d)


def verdict_rule(
    estimate: float,
    low: float,
    high: float,
    min_effect: float,
    n_seeds: int | None = None,
    min_seeds: int = DEFAULT_MIN_SEEDS,
) -> str:
    """``"supported"`` iff low > 0 and estimate >= min_effect; ``"contradicted"`` iff high < 0
    and estimate <= −min_effect; ``"no difference"`` otherwise, and always when ``n_seeds`` (if
    given) is below ``min_seeds`` (see the module docstring)."""
    if min_effect < 0 or not math.isfinite(min_effect):
        raise ValueError(f"min_effect must be a finite number of points >= 0, got {min_effect}")
    if n_seeds is not None and n_seeds < min_seeds:
        return "no difference"
    if low > 0 and estimate >= min_effect:
        return "supported"
    if high < 0 and estimate <= -min_effect:
        return "contradicted"
    return "no difference"


# ----------------------------------------------------------------------------- per-query hits

_METRIC = re.compile(r"^(R|Rs|mR)@([1-9][0-9]*)$")


def query_hits(ranks: Mapping[str, np.ndarray], metric: str) -> np.ndarray:
    """Per-query 0/1 hits (int64 ``[n]``) of ``metric`` from 0-based ranks:
    ``"R@K"`` reads ``ranks["R"] < K``, ``"Rs@K"`` ``ranks["Rs"]``, ``"mR@K"`` ``ranks["mR"]``.
    """
    m = _METRIC.match(metric)
    if m is None:
        raise ValueError(
            f"metric {metric!r} is not a per-query recall; use 'R@K', 'Rs@K' or 'mR@K' (an "
            "average such as 'Avg' mixes two recalls: judge each one)"
        )
    kind, k = m.group(1), int(m.group(2))
    if kind not in ranks:
        raise ValueError(f"{metric} needs {kind!r} ranks; these runs have {sorted(ranks)}")
    return (np.asarray(ranks[kind]) < k).astype(np.int64)


def _is_record(source) -> bool:
    return isinstance(source, Mapping) and "methods" in source and "seeds" in source


def per_query_hits(source, method: str, metric: str) -> tuple[tuple[int, ...], np.ndarray]:
    """``(seeds, hits [S, n])`` of ``method`` from a results record (the JSON of
    :func:`cirlib.harness.write_results`, with ``"per_query"``) or from in-memory
    :func:`cirlib.harness.compare` results (``{method: {seed: RankedEvaluation}}``)."""
    if _is_record(source):
        pq = source.get("per_query")
        if pq is None:
            raise ValueError(
                "this results file has no per-query ranks (written before they were stored, "
                "or from runs evaluated without keep_ranks); rebuild it with "
                "cirlib.harness.compare and write_results"
            )
        if method not in pq["ranks"]:
            raise ValueError(
                f"no per-query ranks for {method!r}; the file has {sorted(pq['ranks'])}"
            )
        runs = {int(s): decode_ranks(r, pq["n_queries"]) for s, r in pq["ranks"][method].items()}
    else:
        if method not in source:
            raise ValueError(f"no results for {method!r}; have {sorted(source)}")
        if not isinstance(source[method], Mapping):
            raise ValueError(
                f"the runs of {method!r} are a {type(source[method]).__name__}; pass them as "
                "{seed: evaluate(..., keep_ranks=True)} so that two methods pair by seed"
            )
        runs = {}
        for s, r in source[method].items():
            if getattr(r, "ranks", None) is None:
                raise ValueError(
                    f"{method} seed {s} has no per-query ranks: evaluate with keep_ranks=True "
                    "(cirlib.harness.compare does)"
                )
            runs[int(s)] = r.ranks
    seeds = tuple(sorted(runs))
    return seeds, np.stack([query_hits(runs[s], metric) for s in seeds])


def query_labels(source, key: str) -> list:
    """Each test query's label for the breakdown ``key`` (e.g. ``"edit_type"``)."""
    if _is_record(source):
        groups = decode_groups(source["per_query"]["groups"], source["per_query"]["n_queries"])
    else:
        first = next(iter(next(iter(source.values())).values()))
        groups = first.groups
    if key not in groups:
        raise ValueError(f"the queries have no {key!r} labels; they have {sorted(groups)}")
    return groups[key]


# ----------------------------------------------------------------------------- the bootstrap


def bootstrap_indices(
    n_seeds: int, strata_sizes: Sequence[int], n_boot: int = DEFAULT_N_BOOT, seed: int = 0
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The resampling draws: seed positions ``[B, S]`` and, per query stratum of size
    :math:`n_k`, query positions ``[B, n_k]`` (each uniform with replacement; PCG64 seeded with
    ``seed``, seeds drawn first, then the strata in order)."""
    if n_seeds < 1 or n_boot < 1 or any(n < 1 for n in strata_sizes):
        raise ValueError(
            f"the bootstrap needs at least one seed, one replicate and one query per group; got "
            f"{n_seeds} seeds, {n_boot} replicates, group sizes {list(strata_sizes)}"
        )
    rng = np.random.Generator(np.random.PCG64(seed))
    seed_idx = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    query_idx = [rng.integers(0, n, size=(n_boot, n)) for n in strata_sizes]
    return seed_idx, query_idx


def _counts(idx: np.ndarray, size: int) -> np.ndarray:
    """Row-wise occurrence counts ``[B, size]`` of the positions in ``idx`` ``[B, m]``."""
    rows = np.arange(len(idx))[:, None] * size
    return np.bincount((rows + idx).ravel(), minlength=len(idx) * size).reshape(len(idx), size)


def bootstrap_differences(
    diffs: np.ndarray,
    seed_idx: np.ndarray,
    query_idx: Sequence[np.ndarray],
    strata: Sequence[tuple[np.ndarray, int]],
) -> np.ndarray:
    r"""Replicates :math:`\hat\Delta^b` ``[B]`` for integer differences ``diffs`` ``[S, n]``.

    ``strata`` is a list of ``(columns, coefficient)``: the statistic is
    :math:`\sum_k \mathrm{coef}_k \cdot \frac{100}{S n_k} \sum_s \sum_{q \in k} w_s c_q D_{sq}`
    with the counts of ``seed_idx`` and of ``query_idx[k]`` (positions into ``columns``).
    Sums are exact (int64) and computed in chunks of replicates.
    """
    d = np.asarray(diffs)
    if not np.issubdtype(d.dtype, np.integer):
        raise ValueError("diffs must be integer hit differences (exact sums); got " + str(d.dtype))
    n_boot, n_seeds = seed_idx.shape
    out = np.zeros(n_boot, dtype=np.float64)
    for start in range(0, n_boot, _CHUNK):
        stop = min(start + _CHUNK, n_boot)
        w = _counts(seed_idx[start:stop], n_seeds)  # [b, S]
        stat = np.zeros(stop - start, dtype=np.float64)
        for (cols, coef), idx in zip(strata, query_idx):
            c = _counts(idx[start:stop], len(cols))  # [b, n_k]
            total = ((w @ d[:, cols]) * c).sum(axis=1)  # exact int64
            stat += coef * (100.0 * total / (n_seeds * len(cols)))
        out[start:stop] = stat
    return out


def _interval(replicates: np.ndarray, level: float) -> tuple[float, float]:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), e.g. 0.95; got {level}")
    srt = np.sort(replicates)
    j = int(math.floor((1 - level) * len(srt) / 2))
    return float(srt[j]), float(srt[len(srt) - 1 - j])


def bootstrap_verdict(
    hits_a: np.ndarray,
    hits_b: np.ndarray,
    metric: str,
    *,
    a: str = "a",
    b: str = "b",
    seeds: Sequence[int] | None = None,
    strata: Sequence[tuple[np.ndarray, int]] | None = None,
    group: str | None = None,
    versus: str | None = None,
    level: float = DEFAULT_LEVEL,
    min_effect: float = DEFAULT_MIN_EFFECT,
    min_seeds: int = DEFAULT_MIN_SEEDS,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
) -> Verdict:
    """Judge "``a`` > ``b``" from paired 0/1 hits ``[S, n]`` (row ``s`` of both = seed ``s``).

    ``strata`` defaults to all queries with coefficient 1 (see :func:`bootstrap_differences`).
    """
    ha, hb = np.asarray(hits_a), np.asarray(hits_b)
    if ha.shape != hb.shape or ha.ndim != 2:
        raise ValueError(
            f"hits must be two [seeds, queries] arrays of one shape (paired by seed and query); "
            f"got {ha.shape} and {hb.shape}"
        )
    if not (np.isin(ha, (0, 1)).all() and np.isin(hb, (0, 1)).all()):
        raise ValueError("hits must be 0/1 per query (see query_hits)")
    d = ha.astype(np.int64) - hb.astype(np.int64)
    n_seeds, n = d.shape
    if strata is None:
        strata = [(np.arange(n), 1)]
    strata = [(np.asarray(cols, dtype=np.int64), int(coef)) for cols, coef in strata]
    estimate = sum(
        coef * 100.0 * int(d[:, cols].sum()) / (n_seeds * len(cols)) for cols, coef in strata
    )
    seed_idx, query_idx = bootstrap_indices(n_seeds, [len(c) for c, _ in strata], n_boot, seed)
    low, high = _interval(bootstrap_differences(d, seed_idx, query_idx, strata), level)
    return Verdict(
        a=a,
        b=b,
        metric=metric,
        estimate=float(estimate),
        low=low,
        high=high,
        verdict=verdict_rule(estimate, low, high, min_effect, n_seeds, min_seeds),
        seeds=tuple(int(s) for s in (seeds if seeds is not None else range(n_seeds))),
        n_queries=int(sum(len(c) for c, _ in strata)),
        level=level,
        min_effect=min_effect,
        min_seeds=min_seeds,
        n_boot=n_boot,
        boot_seed=seed,
        group=group,
        versus=versus,
    )


def _paired(source, a: str, b: str, metric: str):
    seeds_a, ha = per_query_hits(source, a, metric)
    seeds_b, hb = per_query_hits(source, b, metric)
    shared = sorted(set(seeds_a) & set(seeds_b))
    if not shared:
        raise ValueError(f"{a!r} (seeds {seeds_a}) and {b!r} (seeds {seeds_b}) share no seed")
    ha = ha[[seeds_a.index(s) for s in shared]]
    hb = hb[[seeds_b.index(s) for s in shared]]
    return tuple(shared), ha, hb


def judge(
    source,
    a: str,
    b: str,
    metric: str,
    *,
    group: str | None = None,
    values: Iterable[str] | None = None,
    versus: Iterable[str] | None = None,
    **rule,
) -> Verdict:
    """Judge "``a`` > ``b`` on ``metric``" from a results record or :func:`~cirlib.harness.compare`
    results, paired over the seeds both methods ran and over the test queries.

    ``group``/``values`` restrict to the queries whose label is in ``values`` (e.g.
    ``group="edit_type", values=["colour"]``); with ``versus`` as well, the claim is the
    contrast "the gain of ``a`` over ``b`` is larger on ``values`` than on ``versus``", judged
    with a stratified bootstrap. ``rule``: ``level``, ``min_effect``, ``min_seeds``,
    ``n_boot``, ``seed``.
    """
    seeds, ha, hb = _paired(source, a, b, metric)
    strata, label, other = None, None, None
    if group is not None:
        if values is None:
            raise ValueError(f"group={group!r} needs values=[...], the labels to keep")
        labels = np.asarray(query_labels(source, group), dtype=object)
        values = list(values)

        def cols(vals):
            idx = np.flatnonzero(np.isin(labels, vals))
            if len(idx) == 0:
                known = sorted({v for v in labels if v is not None})
                raise ValueError(f"no query has {group} in {vals}; the labels are {known}")
            return idx

        strata = [(cols(values), 1)]
        label = f"{group}: {', '.join(values)}"
        if versus is not None:
            versus = list(versus)
            if set(versus) & set(values):
                raise ValueError(f"values {values} and versus {versus} overlap")
            strata.append((cols(versus), -1))
            other = f"{group}: {', '.join(versus)}"
    elif values is not None or versus is not None:
        raise ValueError("values/versus need group=, the meta key they are labels of")
    return bootstrap_verdict(
        ha, hb, metric, a=a, b=b, seeds=seeds, strata=strata, group=label, versus=other, **rule
    )


def claim_verdict(ordering: Verdict, mechanism: Verdict | None = None) -> str:
    """The verdict of a published claim "``a`` > ``b``" given its control.

    ``ordering`` judges ``a`` against ``b``; ``mechanism`` judges ``a`` against its control (the
    same inputs as ``a`` without ``a``'s objective), or is None when ``a`` has none. The claim is
    "supported" only when both are supported; an ordering that holds while ``a`` is not above
    its control is :data:`NOT_ISOLATED` ("ordering reproduced, mechanism not isolated"): the
    gain could come from the extra inputs. "contradicted" and "no difference" are the
    ordering's own verdicts.
    """
    if mechanism is not None and (mechanism.a, mechanism.metric, mechanism.group) != (
        ordering.a, ordering.metric, ordering.group
    ):  # fmt: skip
        raise ValueError(
            f"the control verdict {mechanism.a} > {mechanism.b} on {mechanism.metric} is not "
            f"about {ordering.a} on {ordering.metric} (same method, metric and queries needed)"
        )
    if ordering.verdict == "supported" and mechanism is not None:
        return "supported" if mechanism.verdict == "supported" else NOT_ISOLATED
    return ordering.verdict


def judge_pairs(source, names: Sequence[str], metric: str, **kw) -> list[Verdict]:
    """:func:`judge` "``names[i]`` > ``names[j]``" for every pair ``i < j`` (the input of
    :func:`describe_best`); ``kw`` as in :func:`judge`."""
    names = list(names)
    if len(set(names)) != len(names) or len(names) < 2:
        raise ValueError(f"need at least two distinct names, got {names}")
    return [judge(source, a, b, metric, **kw) for a, b in itertools.combinations(names, 2)]


def _parse_group(text: str) -> tuple[str, list[str]]:
    key, sep, values = text.partition(": ")
    if not sep or not values:
        raise ValueError(f"cannot read the group {text!r}; expected 'key: value, value'")
    return key, values.split(", ")


def rejudge(source, verdict: Verdict) -> Verdict:
    """Judge ``verdict``'s claim again on other runs (``source`` as in :func:`judge`), with the
    same rule: level, minimum effect, minimum seeds, replicates, bootstrap seed and groups. For
    a build against a reference, or one build's runs on two thread counts."""
    groups = {}
    if verdict.group is not None:
        key, values = _parse_group(verdict.group)
        groups = {"group": key, "values": values}
        if verdict.versus is not None:
            other_key, versus = _parse_group(verdict.versus)
            if other_key != key:
                raise ValueError(f"a contrast between two keys ({key}, {other_key}) is not a claim")
            groups["versus"] = versus
    return judge(
        source,
        verdict.a,
        verdict.b,
        verdict.metric,
        level=verdict.level,
        min_effect=verdict.min_effect,
        min_seeds=verdict.min_seeds,
        n_boot=verdict.n_boot,
        seed=verdict.boot_seed,
        **groups,
    )


# ----------------------------------------------------------------------------- error rate


@dataclass(frozen=True)
class FalsePositiveRate:
    """How often the rule ranks a method against itself (two disjoint seed sets).

    ``flagged`` of ``total`` comparisons got a verdict other than "no difference";
    ``table`` has one row per comparison.
    """

    flagged: int
    total: int
    seeds_per_side: int
    table: pd.DataFrame = field(repr=False)

    @property
    def rate(self) -> float:
        return self.flagged / self.total


def _disjoint_halves(seeds: Sequence[int], size: int) -> list[tuple[tuple, tuple]]:
    out = []
    for first in itertools.combinations(seeds, size):
        rest = [s for s in seeds if s not in first]
        for second in itertools.combinations(rest, size):
            if first < second:  # each unordered pair once
                out.append((first, second))
    return out


def false_positive_rate(
    source,
    methods: Iterable[str] | None = None,
    metrics: Iterable[str] = ("R@1", "R@5", "R@10"),
    **rule,
) -> FalsePositiveRate:
    r"""The rule's false-positive rate, measured: for each method and metric, every split of
    its seeds into two disjoint sets of :math:`h = \lfloor S/2 \rfloor` seeds (paired in sorted
    order) is judged as if the two sets were two methods. Both sides are the same method, so
    any verdict other than "no difference" is a false positive.

    The rate is that of the rule run on :math:`h` seeds per side (fewer than a real comparison
    uses), and the splits share seeds, so they are not independent trials: read it as an
    estimate. Needs :math:`h \ge` ``min_seeds`` (four seeds at the default 2). ``rule`` as in
    :func:`judge`.
    """
    if _is_record(source):
        names = list(source["per_query"]["ranks"]) if methods is None else list(methods)
    else:
        names = list(source) if methods is None else list(methods)
    rows = []
    size = None
    for name in names:
        for metric in metrics:
            seeds, hits = per_query_hits(source, name, metric)
            size = len(seeds) // 2
            if size < rule.get("min_seeds", DEFAULT_MIN_SEEDS):
                raise ValueError(
                    f"{name} has {len(seeds)} seed(s): two disjoint sets of {size} seed(s) are "
                    f"below the rule's min_seeds={rule.get('min_seeds', DEFAULT_MIN_SEEDS)}, so "
                    "it would never flag them and the rate would mean nothing; train more seeds "
                    "(5 give 2 per side) or pass min_seeds=1 to measure the one-seed rule"
                )
            for first, second in _disjoint_halves(seeds, size):
                v = bootstrap_verdict(
                    hits[[seeds.index(s) for s in first]],
                    hits[[seeds.index(s) for s in second]],
                    metric,
                    a=f"{name} {first}",
                    b=f"{name} {second}",
                    seeds=range(size),
                    **rule,
                )
                rows.append(
                    {
                        "method": name,
                        "metric": metric,
                        "seeds a": first,
                        "seeds b": second,
                        "estimate": v.estimate,
                        "low": v.low,
                        "high": v.high,
                        "verdict": v.verdict,
                    }
                )
    if not rows:
        raise ValueError("no method and metric to measure the error rate on")
    table = pd.DataFrame(rows)
    flagged = int((table["verdict"] != "no difference").sum())
    return FalsePositiveRate(flagged, len(table), size, table)


# ----------------------------------------------------------------------------- agreement


@dataclass(frozen=True)
class Agreement:
    """``agree`` of the reference's ``total`` verdicts are the same in the build.

    ``table``: one row per reference claim (the build's verdict None when it lacks the claim);
    ``extra``: keys of claims only the build judges.
    """

    agree: int
    total: int
    table: pd.DataFrame = field(repr=False)
    extra: tuple = ()

    def __str__(self) -> str:
        return f"{self.agree} of {self.total} verdicts agree with the reference"


def _verdict_list(x) -> list[Verdict]:
    if isinstance(x, Mapping):
        if "verdicts" not in x:
            raise ValueError(
                "this results record has no 'verdicts' list; store [v.to_dict() for v in "
                "verdicts] under 'verdicts' when writing it (write_results(..., extra=...))"
            )
        x = x["verdicts"]
    return [v if isinstance(v, Verdict) else Verdict.from_dict(v) for v in x]


def hard_gallery_record(record: Mapping) -> dict | None:
    """A results record's hard-gallery verdicts as a results record of their own (None when it
    has none): the same seeds, and the hard gallery's per-query ranks when it kept them, so that
    :func:`verdict_agreement` and :func:`rejudge` read it like the test gallery's."""
    hard = record.get("hard_gallery") or {}
    if not hard.get("verdicts"):
        return None
    own = {"methods": {}, "seeds": record.get("seeds", []), "verdicts": hard["verdicts"]}
    return own | ({"per_query": hard["per_query"]} if hard.get("per_query") else {})


def verdict_agreement(build, reference) -> Agreement:
    """Compare a build's verdicts with a reference's (records with a ``"verdicts"`` list, or
    lists of :class:`Verdict`/dicts), claim by claim (:attr:`Verdict.key`)."""
    ours = {v.key: v for v in _verdict_list(build)}
    ref = _verdict_list(reference)
    if len({v.key for v in ref}) != len(ref):
        raise ValueError("the reference judges one claim twice; keys must be unique")
    rows = []
    for v in ref:
        mine = ours.get(v.key)
        rows.append(
            {
                "claim": f"{v.a} > {v.b}",
                "metric": v.metric,
                "group": "all" if v.group is None else v.group,
                "versus": "" if v.versus is None else v.versus,
                "reference": v.verdict,
                "reference estimate": v.estimate,
                "build": None if mine is None else mine.verdict,
                "build estimate": None if mine is None else mine.estimate,
                "agree": mine is not None and mine.verdict == v.verdict,
            }
        )
    table = pd.DataFrame(rows)
    extra = tuple(k for k in ours if k not in {v.key for v in ref})
    return Agreement(int(table["agree"].sum()) if rows else 0, len(ref), table, extra)


# ----------------------------------------------------------------------------- prose


def verdict_frame(verdicts: Sequence[Verdict], titles: Mapping[str, str] | None = None):
    """One row per claim, for display: ``claim`` ("A > B" with ``titles`` for the names),
    ``metric``, ``queries`` (all, a group, or "group vs other"), ``difference`` and
    ``interval`` (points, 1 decimal), ``seeds`` and ``verdict``."""
    titles = dict(titles or {})
    rows = []
    for v in verdicts:
        queries = "all" if v.group is None else v.group
        if v.versus is not None:
            queries += f" vs {v.versus.partition(': ')[2]}"
        rows.append(
            {
                "claim": f"{titles.get(v.a, v.a)} > {titles.get(v.b, v.b)}",
                "metric": v.metric,
                "queries": queries,
                "difference": _points(v.estimate),
                "interval": f"{_points(v.low)} to {_points(v.high)} ({100 * v.level:g}%)",
                "seeds": len(v.seeds),
                "verdict": v.verdict,
            }
        )
    return pd.DataFrame(rows)


def _points(x: float) -> str:
    text = f"{x:+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text  # no signed zero: "-0.0" reads as a loss


def _seed_list(seeds: Sequence[int]) -> str:
    seeds = list(seeds)
    word = "seed" if len(seeds) == 1 else "seeds"
    return f"{len(seeds)} {word} ({', '.join(str(s) for s in seeds)})"


_LEAD = "A lead, not a finding (fewer seeds or a shorter budget than the main table): "


def describe_comparison(a: str, b: str, verdict: Verdict, *, lead: bool = False) -> str:
    """The one sentence that ranks ``a`` against ``b`` (display names) for ``verdict``.

    It names the metric (and the group of queries), the difference, the interval with its
    level and the seeds and queries behind it. It says "above"/"below" (for a contrast between
    two groups of queries: "larger"/"smaller" gain) only for "supported" or "contradicted";
    within noise it says the two are level (the gain the same), never which number is larger.
    With ``lead`` (runs on fewer seeds or a shorter budget than the main table, e.g. an
    ablation) a first sentence says that it is a lead, not a finding, whatever the verdict.
    """
    text = _describe_comparison(a, b, verdict)
    if lead:
        text = (
            f"A lead, not a finding (fewer seeds or a shorter budget than the main table): {text}"
        )
    return text


def _describe_comparison(a: str, b: str, verdict: Verdict) -> str:
    if verdict.verdict not in VERDICTS:
        raise ValueError(f"unknown verdict {verdict.verdict!r}; expected one of {VERDICTS}")
    on = verdict.metric if verdict.group is None else f"{verdict.metric} ({verdict.group})"
    evidence = (
        f"{_points(verdict.estimate)} points, {100 * verdict.level:g}% interval "
        f"{_points(verdict.low)} to {_points(verdict.high)} over {_seed_list(verdict.seeds)} "
        f"and {verdict.n_queries:,} test queries"
    )
    if verdict.verdict == "no difference":
        if len(verdict.seeds) < verdict.min_seeds:
            why = (
                f"measured on fewer seeds than the {verdict.min_seeds} the rule needs to tell it "
                "from training noise"
            )
        elif verdict.low > 0 or verdict.high < 0:
            why = f"smaller than the {verdict.min_effect:g}-point minimum effect"
        else:
            why = "an interval that includes zero"
        if verdict.versus is not None:
            return (
                f"The gain of {a} over {b} on {verdict.metric} is the same on "
                f"{verdict.group} as on {verdict.versus}: the difference ({evidence}) is {why}."
            )
        return f"{a} and {b} are level on {on}: the difference ({evidence}) is {why}."
    if verdict.versus is not None:
        size = "larger" if verdict.verdict == "supported" else "smaller"
        return (
            f"The gain of {a} over {b} on {verdict.metric} is {size} on {verdict.group} than on "
            f"{verdict.versus}: {evidence}."
        )
    side = "above" if verdict.verdict == "supported" else "below"
    return f"{a} is {side} {b} on {on}: {evidence}."


def _evidence_of(v: Verdict, first: str, second: str, titles: Mapping[str, str]) -> str:
    """``first − second`` (names) from ``v``, which judges either orientation of the pair."""
    if {v.a, v.b} != {first, second}:
        raise ValueError(f"the verdict {v.a} > {v.b} is not about {first} and {second}")
    sign = 1.0 if (v.a, v.b) == (first, second) else -1.0
    low, high = sorted((sign * v.low, sign * v.high))
    return (
        f"{titles[first]} − {titles[second]} = {_points(sign * v.estimate)} points "
        f"({_points(low)} to {_points(high)})"
    )


def describe_best(
    verdicts: Sequence[Verdict], titles: Mapping[str, str] | None = None, *, lead: bool = False
) -> str:
    """The one sentence that says which of several methods or variants is best on a metric,
    from their pairwise verdicts (:func:`judge_pairs`, one per pair, either orientation).

    A name is "above every other" only when each of its pairs is decided in its favour
    ("supported" as ``a``, "contradicted" as ``b``); otherwise the sentence says that none is
    ahead of all the others beyond noise and lists the pairs that are decided, if any. It names
    the metric, every pair's difference and interval, the level, seeds and queries. ``lead`` as
    in :func:`describe_comparison`.
    """
    text = _describe_best(verdicts, titles)
    return _LEAD + text if lead else text


def _name_list(titles) -> str:
    """Titles joined by commas, or by semicolons when a title holds a comma itself ("MGUR,
    augmenter alone"), so that a reader can tell where one name ends."""
    titles = list(titles)
    return ("; " if any("," in t for t in titles) else ", ").join(titles)


def _describe_best(verdicts: Sequence[Verdict], titles: Mapping[str, str] | None) -> str:
    verdicts = list(verdicts)
    if not verdicts:
        raise ValueError("no verdicts to describe")
    first = verdicts[0]
    for v in verdicts:
        if (v.metric, v.group, v.versus, v.level, v.seeds, v.n_queries) != (
            first.metric, first.group, first.versus, first.level, first.seeds, first.n_queries
        ):  # fmt: skip
            raise ValueError(
                "describe_best needs verdicts on one metric, one set of queries and seeds, at "
                f"one level; {v.a} > {v.b} differs from {first.a} > {first.b}"
            )
    pairs = {frozenset((v.a, v.b)): v for v in verdicts}
    if len(pairs) != len(verdicts) or any(v.a == v.b for v in verdicts):
        raise ValueError("each pair of distinct names must be judged exactly once")
    names = list(dict.fromkeys(n for v in verdicts for n in (v.a, v.b)))
    missing = [
        (x, y) for x, y in itertools.combinations(names, 2) if frozenset((x, y)) not in pairs
    ]
    if missing:
        raise ValueError(f"pairs not judged: {missing}; use judge_pairs for every pair")
    titles = {n: dict(titles or {}).get(n, n) for n in names}

    def wins(x, y):
        v = pairs[frozenset((x, y))]
        return v.verdict == ("supported" if v.a == x else "contradicted")

    on = first.metric if first.group is None else f"{first.metric} ({first.group})"
    tail = (
        f"{100 * first.level:g}% intervals over {_seed_list(first.seeds)} and "
        f"{first.n_queries:,} test queries"
    )
    if len(first.seeds) < first.min_seeds:
        return (
            f"On {on}, none of {_name_list(titles[n] for n in names)} can be ranked: they were "
            f"measured on fewer seeds than the {first.min_seeds} the rule needs to tell a "
            f"difference from training noise ({tail})."
        )
    best = [x for x in names if all(wins(x, y) for y in names if y != x)]
    if best:
        x = best[0]
        others = [y for y in names if y != x]
        evidence = "; ".join(_evidence_of(pairs[frozenset((x, y))], x, y, titles) for y in others)
        whom = (
            titles[others[0]]
            if len(others) == 1
            else "each of " + _name_list(titles[y] for y in others)
        )
        return f"On {on}, {titles[x]} is above {whom}, beyond noise ({evidence}; {tail})."
    decided = []
    for x, y in itertools.combinations(names, 2):
        if wins(x, y):
            decided.append(_evidence_of(pairs[frozenset((x, y))], x, y, titles))
        elif wins(y, x):
            decided.append(_evidence_of(pairs[frozenset((x, y))], y, x, titles))
    if not decided:
        return (
            f"On {on}, none of {_name_list(titles[n] for n in names)} is ahead of another beyond "
            f"noise: every pairwise difference is within it ({tail})."
        )
    return (
        f"On {on}, none of {_name_list(titles[n] for n in names)} is ahead of all the others "
        f"beyond noise; the differences beyond noise are {'; '.join(decided)} ({tail})."
    )
