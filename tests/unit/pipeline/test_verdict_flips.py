"""The build-to-build flip simulation: limiting cases and determinism; one verdict's rebuild
agreement against explicitly simulated rebuilds and its calibration on simulated builds."""

import math

import numpy as np
import pytest
from scipy import stats

from cirlib.verdict import Verdict, paired_verdict, verdict_rule
from cirlib.verdict_flips import build_flip_rate, rebuild_agreement, simulated_hits


def test_hits_follow_the_shift():
    rng = np.random.default_rng(0)
    ease = rng.normal(0, 1.5, 4000)
    low = simulated_hits(rng, ease, 3, shift=-2.0).mean()
    high = simulated_hits(rng, ease, 3, shift=2.0).mean()
    assert set(np.unique(simulated_hits(rng, ease, 2))) <= {0, 1}
    assert low < 0.15 < 0.55 < high


def test_no_flip_when_the_rule_can_never_flag_or_always_does():
    never = build_flip_rate(3, [0.0, 0.5], trials=5, queries=300, min_effect=101.0)
    assert (never["flips"] == 0).all() and (never["flagged"] == 0).all()
    always = build_flip_rate(3, [4.0], trials=5, queries=300)
    assert always["flips"].iloc[0] == 0 and always["flagged"].iloc[0] == 1


def test_flips_are_counted_and_reproducible():
    kw = dict(trials=30, queries=300, seed_sd=0.3, rng_seed=3)
    one = build_flip_rate(2, [0.0, 0.15], **kw)
    assert one.equals(build_flip_rate(2, [0.0, 0.15], **kw))
    assert ((0 <= one["flips"]) & (one["flips"] <= 1)).all()
    # near the threshold builds disagree sometimes (a large seed sd, two seeds)
    assert one["flips"].max() > 0


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="at least one seed"):
        build_flip_rate(0)


def _verdict(estimate, v_seed, v_query, n_seeds=5, n_queries=2400, **kw):
    """A verdict with the given terms, judged by the rule (df as paired_interval computes it)."""
    se = math.sqrt(v_seed + v_query)
    df = se**4 / (v_seed**2 / (n_seeds - 1) + v_query**2 / (n_queries - 1))
    half = stats.t.ppf(0.975, df) * se
    verdict = verdict_rule(estimate, estimate - half, estimate + half, 1.0, n_seeds)
    return Verdict(
        "a",
        "b",
        "R@1",
        estimate,
        estimate - half,
        estimate + half,
        verdict,
        tuple(range(n_seeds)),
        n_queries,
        se=se,
        df=df,
        v_seed=v_seed,
        **kw,
    )


def _explicit_rebuilds(v, n_queries, draws, rng):
    """The model written out: a seed variance, a true difference, then n_r per-seed
    differences of a new build, judged with the rule's formulas one draw at a time."""
    n = len(v.seeds)
    s2 = n * v.v_seed
    v_query = v.se**2 - v.v_seed
    same = 0
    for _ in range(draws):
        sigma2 = (n - 1) * s2 / rng.chisquare(n - 1)
        truth = rng.normal(v.estimate, math.sqrt(sigma2 / n))
        per_seed = rng.normal(truth, math.sqrt(sigma2), n)
        est = per_seed.mean()
        v_seed = per_seed.var(ddof=1) / n
        df = (v_seed + v_query) ** 2 / (v_seed**2 / (n - 1) + v_query**2 / (n_queries - 1))
        half = stats.t.ppf(0.975, df) * math.sqrt(v_seed + v_query)
        same += verdict_rule(est, est - half, est + half, 1.0, n) == v.verdict
    return same / draws


@pytest.mark.parametrize("estimate", [2.2, -2.0, 0.4, 3.5])
def test_rebuild_agreement_equals_explicit_rebuilds(estimate):
    v = _verdict(estimate, v_seed=0.5, v_query=0.25)
    explicit = _explicit_rebuilds(v, 2400, 3000, np.random.default_rng(7))
    # two Monte Carlo estimates of one probability: 3,000 and 20,000 draws
    assert rebuild_agreement(v) == pytest.approx(explicit, abs=0.035)


def test_rebuild_agreement_limits():
    far = _verdict(30.0, v_seed=0.3, v_query=0.2)
    assert far.verdict == "supported" and rebuild_agreement(far) > 0.999
    # a difference whose interval ends right at zero: a rebuild lands on either side
    edge = _verdict(1.5, v_seed=1e-300, v_query=0.2)
    half_se = math.sqrt(0.4 + 0.1)
    at_edge = _verdict(stats.t.ppf(0.975, 6) * half_se, v_seed=0.4, v_query=0.1)
    assert 0.3 < rebuild_agreement(at_edge) < 0.7
    assert rebuild_agreement(edge) == 1.0  # (almost) no seed noise: nothing to redraw
    flat = Verdict(
        "a", "b", "R@1", 1.5, 0.6, 2.4, "supported", (0, 1, 2), 2400, se=0.45, df=2399.0, v_seed=0.0
    )
    assert rebuild_agreement(flat) == 1.0
    one_seed = Verdict("a", "b", "R@1", 5.0, 5.0, 5.0, "no difference", (0,), 10, v_seed=None)
    assert rebuild_agreement(one_seed) == 1.0  # below min_seeds in every build
    assert rebuild_agreement(at_edge) == rebuild_agreement(at_edge)  # deterministic
    with pytest.raises(ValueError, match="rejudge"):
        rebuild_agreement(Verdict("a", "b", "R@1", 2.0, 1.0, 3.0, "supported", (0, 1, 2), 10))


def test_rebuild_agreement_is_calibrated_on_simulated_builds():
    # pairs of builds of two methods a little apart: the first build's predicted agreement,
    # averaged, matches how often the second build gave the same verdict
    rng = np.random.default_rng(1)
    ease = rng.normal(0.0, 1.5, 2400)
    predicted, held = [], []
    for shift in (0.0, 0.06, 0.1, 0.14, 0.2, 0.3):
        for _ in range(40):
            first, second = (
                paired_verdict(
                    simulated_hits(rng, ease, 5, shift), simulated_hits(rng, ease, 5), "R@1"
                )
                for _ in range(2)
            )
            predicted.append(rebuild_agreement(first, draws=4000))
            held.append(first.verdict == second.verdict)
    predicted, held = np.array(predicted), np.array(held)
    assert 0.6 < held.mean() < 0.9  # the shifts straddle the threshold: flips do happen
    assert predicted.mean() == pytest.approx(held.mean(), abs=0.07)
    # and it tells fragile from settled verdicts
    assert held[predicted >= 0.9].mean() > held[predicted < 0.6].mean()


def test_chance_of_at_least_matches_counting_every_outcome():
    import itertools

    from scipy.stats import binom

    from cirlib.verdict_flips import chance_of_at_least

    p = [0.02, 0.3, 0.5, 0.11, 0.9]
    for k in range(len(p) + 2):
        brute = 0.0
        for outcome in itertools.product((0, 1), repeat=len(p)):
            if sum(outcome) >= k:
                brute += np.prod([pi if o else 1 - pi for pi, o in zip(p, outcome)])
        assert chance_of_at_least(k, p) == pytest.approx(brute, abs=1e-12)
    # equal chances: the binomial tail; none can change: only zero changes is possible
    assert chance_of_at_least(3, [0.2] * 10) == pytest.approx(binom.sf(2, 10, 0.2), abs=1e-12)
    assert chance_of_at_least(1, [0.0] * 4) == 0.0 and chance_of_at_least(0, [0.0] * 4) == 1.0
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        chance_of_at_least(1, [1.2])
