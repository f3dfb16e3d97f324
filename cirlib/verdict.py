r"""The verdict rule: a paired interval over seeds and test queries, with a minimum effect.

A claim "method :math:`a` retrieves better than method :math:`b` on metric :math:`M`" is judged
on per-query hits. For training run :math:`r` (one seed; both methods trained with it on the
same features) and test query :math:`q`, let :math:`h^a_{rq} \in \{0, 1\}` say whether :math:`a`
puts the target within the cut-off (:math:`\mathrm{rank}_q(t) < K` for :math:`M = \mathrm{R@}K`;
the rank in the image set for :math:`\mathrm{Rs@}K`; the best rank over the valid targets for
:math:`\mathrm{mR@}K`). With :math:`n_r` shared seeds and :math:`n_q` test queries, the paired
differences

.. math:: D_{rq} = h^a_{rq} - h^b_{rq} \in \{-1, 0, 1\}, \qquad
          \hat\Delta = \frac{100}{n_r\,n_q} \sum_{r=1}^{n_r} \sum_{q=1}^{n_q} D_{rq}

give the difference of the two recalls in points (:math:`\hat\Delta` equals the mean over seeds
of the per-seed differences of the table). The index :math:`r` is a run, not the logit scale
:math:`s` of the notation page.

**Two sources of noise, one standard error.** The number would change with other seeds
(training noise) and with other test queries (which queries the split happens to hold). Seeds
and queries are crossed (every seed is scored on every query), so the standard error has one
term for each. With the per-seed differences :math:`d_r = \frac{100}{n_q}\sum_q D_{rq}` and the
per-query differences averaged over seeds :math:`m_q = \frac{100}{n_r}\sum_r D_{rq}`,

.. math::

    V_{\text{seed}} = \frac{1}{n_r}\,\frac{\sum_r (d_r - \hat\Delta)^2}{n_r - 1}, \qquad
    V_{\text{query}} = \frac{1}{n_q}\,\frac{\sum_q (m_q - \hat\Delta)^2}{n_q - 1}, \qquad
    \mathrm{SE} = \sqrt{V_{\text{seed}} + V_{\text{query}}}.

Under the two-way model :math:`D_{rq} = \mu + \alpha_r + \beta_q + \varepsilon_{rq}`
(:math:`\alpha`: a lucky training run, :math:`\beta`: a query one method finds easier,
:math:`\varepsilon`: their interaction), :math:`\mathrm{Var}(\hat\Delta) = \sigma_\alpha^2/n_r +
\sigma_\beta^2/n_q + \sigma_\varepsilon^2/(n_r n_q)`; each of the two terms above also holds
:math:`\sigma_\varepsilon^2/(n_r n_q)` in expectation, so :math:`\mathrm{SE}^2` errs on the wide
side by that one small term. With five seeds :math:`V_{\text{seed}}` rests on four degrees of
freedom, so the interval is Student's, with the Welch–Satterthwaite degrees of freedom

.. math::

    \nu = \frac{(V_{\text{seed}} + V_{\text{query}})^2}
               {V_{\text{seed}}^2/(n_r-1) + V_{\text{query}}^2/(n_q-1)}, \qquad
    [\mathrm{low}, \mathrm{high}] = \hat\Delta \mp t_{\nu,\,(1+\text{level})/2}\,\mathrm{SE}

(:math:`\nu` is near :math:`n_r - 1` when the seeds dominate, near :math:`n_q - 1` when the
queries do). This replaced a two-way percentile bootstrap (seeds and queries resampled with
replacement), whose interval was too narrow with five seeds: a bootstrap over :math:`n_r` values
has :math:`(n_r-1)/n_r` of the plug-in variance and normal, not Student, tails, so it ranked a
method against its own other runs far more often than its nominal 5%. The error rate of the whole rule is measured, not
assumed.

**Rule.** With a stated minimum effect :math:`\delta` (points):

.. math::

    \text{supported} &\iff \mathrm{low} > 0 \ \wedge\ \hat\Delta \ge \delta, \\
    \text{contradicted} &\iff \mathrm{high} < 0 \ \wedge\ \hat\Delta \le -\delta,

and "no difference" otherwise: a gap whose interval touches zero, or one too small to matter,
never ranks two methods. Nor does a comparison on fewer than ``min_seeds`` shared seeds
(default 2): with one seed the seed term cannot be measured, the interval then reflects
only the choice of test queries, and a lucky training run would read as a finding.

**Breakdowns.** A claim about a group of queries (``values`` of a meta key, e.g. colour edits)
uses only those queries; a claim that a gain is *larger* on one group than on the rest is the
contrast :math:`\hat\Delta_{\text{named}} - \hat\Delta_{\text{rest}}`. Its per-seed values are
the per-seed contrasts, and its query term adds one :math:`V_{\text{query}}` per group (each
over that group's queries, as in a two-sample standard error), with one term per group in
:math:`\nu`'s denominator.

**Determinism.** No random draws: the hit sums are exact integers, the rest a few float
operations in a fixed order and SciPy's Student quantile (SciPy is installed with POT). The same
inputs give the same verdict on any machine with the pinned packages.

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
# One seed shows no training noise: the interval would see only the test queries' sampling.
DEFAULT_MIN_SEEDS = 2

__all__ = [
    "FRAGILE_BELOW",
    "NOT_ISOLATED",
    "Agreement",
    "FalsePositiveRate",
    "PairedInterval",
    "Verdict",
    "claim_verdict",
    "describe_best",
    "describe_comparison",
    "false_positive_rate",
    "gallery_agreements",
    "hard_gallery_record",
    "judge",
    "judge_pairs",
    "paired_interval",
    "paired_verdict",
    "per_query_hits",
    "query_hits",
    "query_labels",
    "rebuild_agreement",
    "rejudge",
    "rejudge_record",
    "verdict_agreement",
    "verdict_frame",
    "verdict_rule",
]


# ----------------------------------------------------------------------------- the verdict


# fields of the earlier bootstrap rule's records, read and dropped by Verdict.from_dict
_LEGACY_FIELDS = ("n_boot", "boot_seed")


@dataclass(frozen=True)
class Verdict:
    """One judged claim "``a`` > ``b`` on ``metric``" (percentage points, ``a`` − ``b``).

    ``estimate`` is :math:`\\hat\\Delta`, ``low``/``high`` the interval at ``level``, ``se`` its
    standard error, ``v_seed`` the seed term of its square (None in records written before it
    was kept; :func:`rejudge` fills it) and ``df`` its degrees of freedom (None when the
    standard error is 0);
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
    se: float = 0.0
    df: float | None = None
    group: str | None = None
    versus: str | None = None
    v_seed: float | None = None

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
        """Inverse of :meth:`to_dict`. A record written by the earlier bootstrap rule (with
        ``n_boot`` and ``boot_seed``, without ``se`` and ``df``) reads too; :func:`rejudge` gives
        its claim this rule's interval."""
        d = {k: v for k, v in dict(d).items() if k not in _LEGACY_FIELDS}
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
    supported, contradicted = _beyond_noise(estimate, low, high, min_effect)
    if supported:
        return "supported"
    if contradicted:
        return "contradicted"
    return "no difference"


def _beyond_noise(estimate, low, high, min_effect):
    """The rule's two conditions, ``(supported, contradicted)``; numbers or arrays alike."""
    return (low > 0) & (estimate >= min_effect), (high < 0) & (estimate <= -min_effect)


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
    """``(seeds, hits [seeds, queries])`` of ``method`` from a results record (the JSON of
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


# ----------------------------------------------------------------------------- the interval


@dataclass(frozen=True)
class PairedInterval:
    """The pieces of the rule's interval (points): the estimate, the seed and query variance
    terms, the standard error, the degrees of freedom (None when the standard error is 0) and
    the interval at ``level``."""

    estimate: float
    v_seed: float
    v_query: float
    se: float
    df: float | None
    low: float
    high: float
    level: float


def _student_quantile(p: float, df):
    """Student's quantile for a number or an array of degrees of freedom."""
    from scipy.stats import t  # SciPy comes with POT, one of the book's packages

    return t.ppf(p, df)


def paired_interval(
    diffs: np.ndarray,
    strata: Sequence[tuple[np.ndarray, int]] | None = None,
    level: float = DEFAULT_LEVEL,
) -> PairedInterval:
    r"""The interval of the module docstring for integer hit differences ``diffs`` ``[seeds, queries]``.

    ``strata`` is a list of ``(columns, coefficient)`` (default: all queries, coefficient 1):
    the statistic is :math:`\sum_k \mathrm{coef}_k \hat\Delta_k` with :math:`\hat\Delta_k` the
    difference on the columns of stratum :math:`k`. The seed term is the variance of the
    per-seed statistic over seeds, divided by :math:`n_r`; the query term adds, per stratum,
    :math:`\mathrm{coef}_k^2` times the variance of the seed-averaged per-query differences
    over its queries, divided by :math:`n_k`. A term with one seed (or a stratum with one
    query) has nothing to measure a spread with and counts 0.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), e.g. 0.95; got {level}")
    d = np.asarray(diffs)
    if d.ndim != 2 or not np.issubdtype(d.dtype, np.integer):
        raise ValueError(
            "diffs must be integer hit differences [seeds, queries] (exact sums); got "
            f"{d.dtype} of shape {d.shape}"
        )
    n_seeds, n = d.shape
    if strata is None:
        strata = [(np.arange(n), 1)]
    if n_seeds < 1 or not strata or any(len(cols) < 1 for cols, _ in strata):
        raise ValueError(
            f"the interval needs at least one seed and one query per group; got {n_seeds} "
            f"seeds, group sizes {[len(c) for c, _ in strata]}"
        )
    per_seed = np.zeros(n_seeds)
    v_query, df_terms = 0.0, 0.0
    for cols, coef in strata:
        block = d[:, np.asarray(cols, dtype=np.int64)]
        per_seed += coef * 100.0 * block.sum(axis=1) / block.shape[1]
        if block.shape[1] > 1:
            per_query = 100.0 * block.sum(axis=0) / n_seeds
            term = coef**2 * per_query.var(ddof=1) / block.shape[1]
            v_query += term
            df_terms += term**2 / (block.shape[1] - 1)
    estimate = float(per_seed.mean())
    v_seed = float(per_seed.var(ddof=1) / n_seeds) if n_seeds > 1 else 0.0
    if n_seeds > 1:
        df_terms += v_seed**2 / (n_seeds - 1)
    variance = v_seed + v_query
    if variance <= 0.0:
        return PairedInterval(estimate, v_seed, v_query, 0.0, None, estimate, estimate, level)
    se = math.sqrt(variance)
    df = variance**2 / df_terms
    half = float(_student_quantile(0.5 + level / 2, df)) * se
    return PairedInterval(
        estimate, v_seed, float(v_query), se, float(df), estimate - half, estimate + half, level
    )


def paired_verdict(
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
) -> Verdict:
    """Judge "``a`` > ``b``" from paired 0/1 hits ``[seeds, queries]`` (row ``r`` of both = seed ``r``).

    ``strata`` defaults to all queries with coefficient 1 (see :func:`paired_interval`).
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
    iv = paired_interval(d, strata, level)
    return Verdict(
        a=a,
        b=b,
        metric=metric,
        estimate=iv.estimate,
        low=iv.low,
        high=iv.high,
        verdict=verdict_rule(iv.estimate, iv.low, iv.high, min_effect, n_seeds, min_seeds),
        seeds=tuple(int(s) for s in (seeds if seeds is not None else range(n_seeds))),
        n_queries=int(sum(len(c) for c, _ in strata)),
        level=level,
        min_effect=min_effect,
        min_seeds=min_seeds,
        se=iv.se,
        df=iv.df,
        group=group,
        versus=versus,
        v_seed=iv.v_seed,
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
    contrast "the gain of ``a`` over ``b`` is larger on ``values`` than on ``versus``", each
    group with its own query term. ``rule``: ``level``, ``min_effect``, ``min_seeds``.
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
    return paired_verdict(
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
    same rule: level, minimum effect, minimum seeds and groups. For
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
        **groups,
    )


def rejudge_record(record: Mapping) -> list[Verdict]:
    """A results record's claims judged again on its own per-query ranks by this code's rule
    (its level, minimum effect and groups kept), so that two builds judged by different
    versions of the rule compare claim for claim. A record without ranks (``"per_query"``)
    gives its verdicts as written."""
    stored = _verdict_list(record["verdicts"])
    if "per_query" not in record:
        return stored
    return [rejudge(record, v) for v in stored]


# ----------------------------------------------------------------------------- rebuilds

# a verdict that a rebuild would give again with a probability below this is called fragile
FRAGILE_BELOW = 0.8


def rebuild_agreement(verdict: Verdict, *, draws: int = 20000, rng_seed: int = 0) -> float:
    """The probability that a rebuild (the same test queries, every run trained again with
    fresh rounding) gives ``verdict`` again, under the model of :mod:`cirlib.verdict_flips`
    ("One verdict's chance to hold"): only the seed term is drawn anew; the seed variance from
    its posterior given the :math:`n_r` per-seed differences, the rebuild's difference around
    ours with twice the seed term's variance, its own interval judged by the rule.

    Needs the verdict's seed term (``v_seed``; :func:`cirlib.verdict.rejudge` fills it in an old
    record). Deterministic for a given ``rng_seed``; ``draws`` sets the Monte Carlo error (about
    0.3 points of probability at 20,000). A comparison on fewer seeds than the rule's minimum is
    "no difference" in every build (1.0); so is one whose per-seed differences are all equal
    (the seeds show no training noise to redraw).
    """
    n = len(verdict.seeds)
    if n < verdict.min_seeds:
        return 1.0
    if verdict.v_seed is None:
        raise ValueError(
            f"the verdict {verdict.a} > {verdict.b} on {verdict.metric} has no seed term "
            "(v_seed); judge it again with cirlib.verdict.rejudge(record, verdict) first"
        )
    if draws < 1:
        raise ValueError(f"draws must be a positive number of simulated rebuilds, got {draws}")
    v_seed = float(verdict.v_seed)
    if v_seed <= 0.0 or n < 2:
        return 1.0
    v_query = max(verdict.se**2 - v_seed, 0.0)
    # the query part of the Welch-Satterthwaite denominator, recovered from the stored df
    q_terms = 0.0
    if verdict.df is not None:
        q_terms = max(verdict.se**4 / verdict.df - v_seed**2 / (n - 1), 0.0)
    rng = np.random.default_rng(rng_seed)
    s2 = n * v_seed
    sigma2 = (n - 1) * s2 / rng.chisquare(n - 1, draws)
    estimate = verdict.estimate + rng.normal(0.0, 1.0, draws) * np.sqrt(2.0 * sigma2 / n)
    v_seed_new = sigma2 * rng.chisquare(n - 1, draws) / (n - 1) / n
    variance = v_seed_new + v_query
    df = variance**2 / (v_seed_new**2 / (n - 1) + q_terms)
    half = _student_quantile(0.5 + verdict.level / 2, df) * np.sqrt(variance)
    supported, contradicted = _beyond_noise(
        estimate, estimate - half, estimate + half, verdict.min_effect
    )
    same = {
        "supported": supported,
        "contradicted": contradicted,
        "no difference": ~(supported | contradicted),
    }[verdict.verdict]
    return float(same.mean())


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
                v = paired_verdict(
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

    ``table``: one row per reference claim (the build's verdict None when it lacks the claim),
    with ``holds``, the probability that a rebuild gives the reference's verdict again
    (:func:`rebuild_agreement`; None for a verdict without its seed term),
    and ``fragile`` (``holds`` below :data:`FRAGILE_BELOW`);
    ``extra``: keys of claims only the build judges. ``settled_agree`` of ``settled_total``
    non-fragile verdicts agree; ``expected_changes`` is how many verdicts the reference's own
    intervals expect a rebuild to change (the sum of 1 − ``holds``; None when unknown).
    """

    agree: int
    total: int
    table: pd.DataFrame = field(repr=False)
    extra: tuple = ()
    settled_agree: int = 0
    settled_total: int = 0
    expected_changes: float | None = None

    def __str__(self) -> str:
        text = f"{self.agree} of {self.total} verdicts agree with the reference"
        if self.expected_changes is None:
            return text
        return (
            f"{text} ({self.settled_agree} of the {self.settled_total} settled ones; its "
            f"intervals expected about {self.expected_changes:.1f} to change)"
        )


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
    lists of :class:`Verdict`/dicts), claim by claim (:attr:`Verdict.key`). A reference verdict
    judged by this rule (with its seed term; :func:`rejudge_record` gives one) also says how
    likely a rebuild was to give it again, and whether it is fragile."""
    ours = {v.key: v for v in _verdict_list(build)}
    ref = _verdict_list(reference)
    if len({v.key for v in ref}) != len(ref):
        raise ValueError("the reference judges one claim twice; keys must be unique")
    rows = []
    for v in ref:
        mine = ours.get(v.key)
        holds = None if v.v_seed is None else rebuild_agreement(v)
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
                "holds": holds,
                "fragile": holds is not None and holds < FRAGILE_BELOW,
            }
        )
    table = pd.DataFrame(rows)
    extra = tuple(k for k in ours if k not in {v.key for v in ref})
    if not rows:
        return Agreement(0, 0, table, extra)
    known = table["holds"].notna().all()
    settled = table[~table["fragile"]]
    return Agreement(
        int(table["agree"].sum()),
        len(ref),
        table,
        extra,
        settled_agree=int(settled["agree"].sum()),
        settled_total=len(settled),
        expected_changes=float((1 - table["holds"]).sum()) if known else None,
    )


def _claims_naming_only(record: Mapping, methods: set[str]) -> dict:
    """``record`` with only the verdicts whose two methods are both in ``methods``."""
    kept = [v for v in record["verdicts"] if {v["a"], v["b"]} <= methods]
    return {**record, "verdicts": kept}


def gallery_agreements(
    build: Mapping,
    reference: Mapping,
    *,
    rejudge_claims: bool = True,
    methods: Iterable[str] | None = None,
):
    """The reference's verdicts against a build's, gallery by gallery: ``{"test gallery":
    Agreement, "hard gallery": Agreement}`` (the second only when the reference judged claims
    on the hard gallery; a build without them counts those verdicts as missing).

    ``methods`` (registry names) compares only the reference's claims that name no other
    method: for a build that trained some of the methods again (``record_verdicts.py
    --methods``), whose other claims are then neither agreements nor disagreements.

    With ``rejudge_claims`` (the default) both sides are judged by this code's rule: each
    reference claim again on the build's per-query ranks (:func:`rejudge`) and on the
    reference's own ranks (:func:`rejudge_record`), so two builds written by different versions
    of the rule compare claim for claim, and each reference verdict carries its chance to hold.
    Without it, the stored verdicts of both (the claims judged on the build's ranks only when it
    stores none). Raises ``ValueError``, naming the gallery, when a claim cannot be judged on
    the build's ranks (none kept, a method missing, too few seeds)."""
    if methods is not None:
        keep = set(methods)
        named = {n for v in _verdict_list(reference) for n in (v.a, v.b)}
        if not keep & named:
            raise ValueError(
                f"methods={sorted(keep)}: the reference's claims name none of them (they name "
                f"{sorted(named)})"
            )
        reference = _claims_naming_only(reference, keep)
        if reference.get("hard_gallery", {}).get("verdicts"):
            hard = reference["hard_gallery"]
            reference["hard_gallery"] = _claims_naming_only(hard, keep)
    parts = {"test gallery": (build, reference)}
    hard_reference = hard_gallery_record(reference)
    if hard_reference is not None:
        parts["hard gallery"] = (hard_gallery_record(build), hard_reference)
    found = {}
    for gallery, (ours, ref) in parts.items():
        mine = [] if ours is None else ours
        if ours is not None and (rejudge_claims or "verdicts" not in ours):
            try:
                mine = [rejudge(ours, v) for v in _verdict_list(ref)]
            except ValueError as err:
                raise ValueError(
                    f"the reference's {gallery} claims cannot be judged on the build's ranks: {err}"
                ) from err
        found[gallery] = verdict_agreement(mine, rejudge_record(ref) if rejudge_claims else ref)
    return found


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
    ablation) a first sentence says that it is a lead, not a finding, whatever the verdict. A
    verdict that a rebuild would give again with a probability below
    :data:`FRAGILE_BELOW` (:func:`rebuild_agreement`;
    known when the verdict keeps its seed term) gets a last sentence saying it is fragile.
    """
    text = _describe_comparison(a, b, verdict)
    if verdict.v_seed is not None:
        holds = rebuild_agreement(verdict)
        if holds < FRAGILE_BELOW:
            text += (
                f" A fragile verdict: a rebuild of these runs would give it again with a "
                f"probability of only {holds:.2f}."
            )
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
