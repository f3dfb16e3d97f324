"""The verdict rule: its interval equals the formulas written out as loops and, in its
limits, Student's paired t interval (SciPy's); the limiting cases (identical methods, a large
shift, a sign flip, a gap below the minimum effect, one lucky seed); its calibration on
simulated runs; the measured false-positive rate, build-vs-reference agreement, and the one
sentence that ranks two results."""

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats

from cirlib.eval.query_ranks import RankedEvaluation
from cirlib.verdict import (
    Verdict,
    describe_best,
    describe_comparison,
    false_positive_rate,
    judge,
    judge_pairs,
    paired_interval,
    paired_verdict,
    query_hits,
    rejudge,
    rejudge_record,
    verdict_agreement,
    verdict_frame,
    verdict_rule,
)
from cirlib.verdict_flips import simulated_hits


def _hits(n_seeds, n_queries, p, seed):
    rng = np.random.default_rng(seed)
    return (rng.random((n_seeds, n_queries)) < p).astype(np.int64)


def _loop_interval(d, strata, level):
    """The interval written out with plain loops over seeds and queries."""
    n_seeds = len(d)
    per_seed = []
    for s in range(n_seeds):
        stat = 0.0
        for cols, coef in strata:
            stat += coef * 100.0 * sum(int(d[s, q]) for q in cols) / len(cols)
        per_seed.append(stat)
    est = sum(per_seed) / n_seeds
    v_seed = sum((x - est) ** 2 for x in per_seed) / (n_seeds - 1) / n_seeds
    v_query, denominator = 0.0, v_seed**2 / (n_seeds - 1)
    for cols, coef in strata:
        means = [100.0 * sum(int(d[s, q]) for s in range(n_seeds)) / n_seeds for q in cols]
        centre = sum(means) / len(means)
        term = coef**2 * sum((m - centre) ** 2 for m in means) / (len(means) - 1) / len(means)
        v_query += term
        denominator += term**2 / (len(means) - 1)
    se = math.sqrt(v_seed + v_query)
    df = (v_seed + v_query) ** 2 / denominator
    half = stats.t.ppf(0.5 + level / 2, df) * se
    return est, v_seed, v_query, df, est - half, est + half


@pytest.mark.parametrize("two_strata", [False, True])
def test_the_interval_equals_the_formulas_written_as_loops(two_strata):
    d = _hits(3, 40, 0.5, 0) - _hits(3, 40, 0.4, 1)
    strata = [(np.arange(40), 1)]
    if two_strata:
        strata = [(np.arange(0, 40, 3), 1), (np.setdiff1d(np.arange(40), np.arange(0, 40, 3)), -1)]
    iv = paired_interval(d, strata, level=0.9)
    est, v_seed, v_query, df, low, high = _loop_interval(d, strata, 0.9)
    assert iv.estimate == pytest.approx(est, abs=1e-12)
    assert (iv.v_seed, iv.v_query, iv.df) == pytest.approx((v_seed, v_query, df), rel=1e-12)
    assert (iv.low, iv.high) == pytest.approx((low, high), rel=1e-12)
    assert iv.se == pytest.approx(math.sqrt(v_seed + v_query), rel=1e-12)
    # the verdict keeps the seed term (what a rebuild draws anew: cirlib.verdict_flips)
    v = paired_verdict((d == 1).astype(np.int64), (d == -1).astype(np.int64), "R@1", strata=strata)
    assert v.v_seed == pytest.approx(v_seed, rel=1e-12) and v.se == pytest.approx(iv.se)


def test_when_only_the_seeds_vary_the_interval_is_the_paired_t_interval():
    # d_sq = x_s on every query: the seed-averaged per-query differences are all equal, so the
    # query term vanishes and only the spread of the per-seed differences is left
    x = np.array([1, 0, 1, 1, 0])
    d = np.repeat(x[:, None], 50, axis=1).astype(np.int64)
    iv = paired_interval(d, level=0.95)
    assert iv.v_query == 0.0 and iv.df == pytest.approx(len(x) - 1)
    # Student's paired interval on the per-seed recall differences (points), from SciPy
    scipy_ci = stats.ttest_1samp(100.0 * x, 0.0).confidence_interval(0.95)
    assert (iv.low, iv.high) == pytest.approx((scipy_ci.low, scipy_ci.high), rel=1e-12)


def test_when_only_the_queries_vary_the_interval_is_the_one_sample_t_interval_over_queries():
    # every seed has the same per-query differences: no seed term, n - 1 degrees of freedom
    row = _hits(1, 200, 0.5, 3)[0] - _hits(1, 200, 0.3, 4)[0]
    d = np.repeat(row[None], 4, axis=0)
    iv = paired_interval(d, level=0.95)
    assert iv.v_seed == 0.0 and iv.df == pytest.approx(199)
    scipy_ci = stats.ttest_1samp(100.0 * row, 0.0).confidence_interval(0.95)
    assert (iv.low, iv.high) == pytest.approx((scipy_ci.low, scipy_ci.high), rel=1e-12)


def test_estimate_is_the_mean_over_seeds_of_the_per_seed_recall_differences():
    a, b = _hits(4, 300, 0.5, 0), _hits(4, 300, 0.45, 1)
    v = paired_verdict(a, b, "R@1")
    per_seed = 100 * a.mean(axis=1) - 100 * b.mean(axis=1)
    assert v.estimate == pytest.approx(per_seed.mean(), abs=1e-12)
    assert v.low <= v.estimate <= v.high
    assert v.seeds == (0, 1, 2, 3) and v.n_queries == 300


def test_identical_methods_are_no_difference_with_a_zero_interval():
    a = _hits(5, 500, 0.3, 0)
    v = paired_verdict(a, a.copy(), "R@1")
    assert (v.estimate, v.low, v.high, v.se, v.df) == (0.0, 0.0, 0.0, 0.0, None)
    assert v.verdict == "no difference"


def test_a_large_constant_shift_is_supported_and_its_flip_contradicted():
    # a finds the first 20% of the queries on every seed, b none: 20 points on every seed
    a = np.zeros((5, 500), dtype=np.int64)
    a[:, :100] = 1
    b = np.zeros_like(a)
    up = paired_verdict(a, b, "R@1")
    assert up.verdict == "supported" and up.estimate == pytest.approx(20.0) and up.low > 15
    down = paired_verdict(b, a, "R@1")
    assert down.verdict == "contradicted" and down.high < -15
    assert (down.low, down.high) == pytest.approx((-up.high, -up.low), abs=1e-12)  # mirrored


def test_a_consistent_gap_below_the_minimum_effect_is_no_difference():
    # a finds 20 more queries out of 1000 on every seed: the interval excludes zero, but
    # 2 points fall short of a 5-point minimum effect
    a = np.zeros((3, 1000), dtype=np.int64)
    a[:, :20] = 1
    b = np.zeros_like(a)
    v = paired_verdict(a, b, "R@1", min_effect=5.0)
    assert v.low > 0 and v.estimate == pytest.approx(2.0)
    assert v.verdict == "no difference"
    assert paired_verdict(a, b, "R@1", min_effect=1.0).verdict == "supported"


def test_a_gap_driven_by_one_seed_is_no_difference():
    # on seed 0, b misses every query a finds (a ~40-point gap), on the others they agree: the
    # mean (~8 points) is large, but the per-seed gaps (40, 0, 0, 0, 0) give a t interval with
    # 4 degrees of freedom that reaches zero
    a = _hits(5, 400, 0.4, 0)
    b = a.copy()
    b[0] = 0
    v = paired_verdict(a, b, "R@1")
    assert v.estimate > 5 and v.low <= 0
    assert v.verdict == "no difference"


def test_one_seed_never_ranks_however_large_the_gap():
    a = np.zeros((1, 500), dtype=np.int64)
    a[:, :200] = 1
    b = np.zeros_like(a)
    v = paired_verdict(a, b, "R@1")
    assert v.estimate == pytest.approx(40.0) and v.low > 30  # the queries alone are clear
    assert v.verdict == "no difference"
    assert "fewer seeds than the 2 the rule needs" in describe_comparison("A", "B", v)
    assert paired_verdict(a, b, "R@1", min_seeds=1).verdict == "supported"
    assert verdict_rule(40.0, 30.0, 50.0, 1.0, n_seeds=1) == "no difference"
    assert verdict_rule(40.0, 30.0, 50.0, 1.0, n_seeds=2) == "supported"


def test_on_simulated_identical_methods_five_seeds_flag_near_the_nominal_rate():
    # 300 pairs of identical methods (independent runs with run-level and per-query noise, as
    # in cirlib.verdict_flips): a 95% rule should flag about 5%; allow sampling error (+-2.6
    # points is two standard errors at 300 trials) but not the bootstrap's ~8%
    rng = np.random.default_rng(0)
    ease = rng.normal(0.0, 1.5, 1200)
    flagged = 0
    for _ in range(300):
        a, b = simulated_hits(rng, ease, 5), simulated_hits(rng, ease, 5)
        flagged += paired_verdict(a, b, "R@1", min_effect=0.0).verdict != "no difference"
    assert flagged / 300 < 0.075


@pytest.mark.parametrize(
    "estimate, low, high, expected",
    [
        (2.0, 0.5, 3.5, "supported"),
        (-2.0, -3.5, -0.5, "contradicted"),
        (2.0, -0.5, 3.5, "no difference"),  # interval reaches zero
        (0.5, 0.1, 0.9, "no difference"),  # excludes zero, below the 1-point effect
        (1.0, 0.0, 2.0, "no difference"),  # low must be strictly above zero
        (1.0, 0.2, 2.0, "supported"),  # exactly the minimum effect counts
    ],
)
def test_rule_limits(estimate, low, high, expected):
    assert verdict_rule(estimate, low, high, 1.0) == expected


def test_same_inputs_same_verdict_and_the_level_widens_the_interval():
    a, b = _hits(3, 300, 0.5, 0), _hits(3, 300, 0.47, 1)
    v1 = paired_verdict(a, b, "R@1")
    assert paired_verdict(a, b, "R@1") == v1
    wide = paired_verdict(a, b, "R@1", level=0.99)
    assert wide.low < v1.low and wide.high > v1.high and wide.estimate == v1.estimate


def test_query_hits_reads_the_right_ranks():
    ranks = {"R": np.array([0, 4, 5, 60]), "Rs": np.array([1, 0, 2, 3]), "mR": [0, 0, 3, 9]}
    assert query_hits(ranks, "R@5").tolist() == [1, 1, 0, 0]
    assert query_hits(ranks, "R@50").tolist() == [1, 1, 1, 0]
    assert query_hits(ranks, "Rs@2").tolist() == [1, 1, 0, 0]
    assert query_hits(ranks, "mR@1").tolist() == [1, 1, 0, 0]
    with pytest.raises(ValueError, match="Avg"):
        query_hits(ranks, "Avg")
    with pytest.raises(ValueError, match="needs 'Rs'"):
        query_hits({"R": ranks["R"]}, "Rs@1")


def _results(rank_tables, groups):
    """In-memory compare() results from {method: {seed: R ranks}}."""
    return {
        name: {
            s: RankedEvaluation({"all": {}}, {"R": np.asarray(r)}, groups) for s, r in runs.items()
        }
        for name, runs in rank_tables.items()
    }


def test_judge_pairs_by_seed_and_restricts_to_a_group():
    # "a" ranks colour queries first and is worse on the others; seed 2 only for "a"
    labels = ["colour"] * 100 + ["shape"] * 100
    good, bad = [0] * 100 + [9] * 100, [9] * 100 + [0] * 100
    results = _results(
        {"a": {0: good, 1: good, 2: bad}, "b": {1: bad, 0: bad}}, {"edit_type": labels}
    )
    v = judge(results, "a", "b", "R@1")
    assert v.seeds == (0, 1) and v.estimate == 0.0 and v.verdict == "no difference"
    colour = judge(results, "a", "b", "R@1", group="edit_type", values=["colour"])
    assert colour.estimate == 100.0 and colour.verdict == "supported"
    assert colour.n_queries == 100 and colour.group == "edit_type: colour"
    contrast = judge(
        results, "a", "b", "R@1", group="edit_type", values=["colour"], versus=["shape"],
    )  # fmt: skip
    assert contrast.estimate == 200.0 and contrast.verdict == "supported"
    assert (contrast.group, contrast.versus) == ("edit_type: colour", "edit_type: shape")
    assert contrast.key != colour.key
    with pytest.raises(ValueError, match="no query has edit_type"):
        judge(results, "a", "b", "R@1", group="edit_type", values=["size"])
    with pytest.raises(ValueError, match="pair by seed"):
        judge({"a": list(results["a"].values()), "b": results["b"]}, "a", "b", "R@1")
    with pytest.raises(ValueError, match="keep_ranks=True"):
        judge({"a": {0: {"all": {}}}, "b": results["b"]}, "a", "b", "R@1")
    with pytest.raises(ValueError, match="share no seed"):
        judge(_results({"a": {0: good}, "b": {1: bad}}, {}), "a", "b", "R@1")


def test_false_positive_rate_of_a_method_against_itself():
    rng = np.random.default_rng(0)
    # a method whose seeds differ only by query-level noise: the rule should rarely flag it
    skill = rng.random(600)
    runs = {s: np.where(rng.random(600) < skill, 0, 20) for s in range(5)}
    same = false_positive_rate(_results({"m": runs}, {}), metrics=["R@1"])
    assert same.total == 15 and same.seeds_per_side == 2  # {0,1,2,3,4}: 15 pairs of 2-sets
    assert set(map(tuple, same.table[["seeds a", "seeds b"]].values.tolist())) >= {
        ((0, 1), (2, 3)),
        ((0, 4), (1, 3)),
    }
    assert same.flagged <= 2 and same.rate == same.flagged / 15
    # seeds that really differ (one seed set far better) are flagged: the measure can fail
    runs_bad = {s: np.where(rng.random(600) < (0.2 if s < 2 else 0.6), 0, 20) for s in range(4)}
    bad = false_positive_rate(_results({"m": runs_bad}, {}), metrics=["R@1"])
    assert bad.total == 3
    assert bad.table.set_index(["seeds a", "seeds b"]).loc[((0, 1), (2, 3)), "verdict"] == (
        "contradicted"
    )
    with pytest.raises(ValueError, match="two disjoint sets"):
        false_positive_rate(_results({"m": {0: runs[0]}}, {}), metrics=["R@1"])


def _v(a, b, metric, verdict, estimate=0.0, group=None):
    return Verdict(
        a, b, metric, estimate, estimate - 1, estimate + 1, verdict, (0, 1), 100, group=group
    )


def test_agreement_counts_verdicts_claim_by_claim():
    reference = {
        "verdicts": [
            _v("x", "y", "R@1", "supported", 3).to_dict(),
            _v("x", "y", "Rs@1", "no difference").to_dict(),
            _v("y", "z", "R@1", "contradicted", -3).to_dict(),
        ]
    }
    build = [
        _v("y", "z", "R@1", "contradicted", -2.5),
        _v("x", "y", "R@1", "supported", 2),
        _v("x", "y", "Rs@1", "supported", 1.5),  # flipped
        _v("x", "z", "R@1", "no difference"),  # not in the reference
    ]
    agreement = verdict_agreement(build, reference)
    assert (agreement.agree, agreement.total) == (2, 3)
    assert str(agreement) == "2 of 3 verdicts agree with the reference"
    assert agreement.table["agree"].tolist() == [True, False, True]
    assert agreement.table["group"].tolist() == ["all"] * 3
    assert agreement.extra == (("x", "z", "R@1", None, None),)
    missing = verdict_agreement(build[:1], reference)
    assert (missing.agree, missing.total) == (1, 3)
    assert missing.table["build"].isna().tolist() == [True, True, False]
    assert missing.table["build"].iloc[2] == "contradicted"
    assert verdict_agreement(reference, reference).agree == 3
    # verdicts without their seed term (old records) say nothing of rebuilds
    assert agreement.expected_changes is None and agreement.table["holds"].isna().all()
    with pytest.raises(ValueError, match="no 'verdicts'"):
        verdict_agreement({}, reference)


def test_verdict_round_trips_through_json():
    import json

    v = _v("x", "y", "R@1", "supported", 3, group="edit_type: colour")
    assert Verdict.from_dict(json.loads(json.dumps(v.to_dict()))) == v
    # a record of the earlier bootstrap rule (the committed reference build's) still reads
    legacy = {k: w for k, w in v.to_dict().items() if k not in ("se", "df")}
    assert Verdict.from_dict(legacy | {"n_boot": 2000, "boot_seed": 0}) == v


def test_describe_never_ranks_within_noise():
    base = dict(seeds=(0, 1, 2), n_queries=2400, level=0.95, min_effect=1.0)
    level = Verdict("mapnet", "cala", "Rs@1", 0.8, -0.4, 2.0, "no difference", **base)
    text = describe_comparison("MAPNet", "CaLa", level)
    assert text.startswith("MAPNet and CaLa are level on Rs@1")
    assert "includes zero" in text
    for word in ("above", "below", "better", "worse", "beats", "higher", "lower"):
        assert word not in text
    for part in ("+0.8 points", "95% interval -0.4 to +2.0", "3 seeds (0, 1, 2)", "2,400 test"):
        assert part in text
    small = Verdict("a", "b", "R@1", 0.5, 0.2, 0.9, "no difference", **base)
    assert "smaller than the 1-point minimum effect" in describe_comparison("A", "B", small)
    up = Verdict("a", "b", "R@10", 2.5, 1.1, 3.9, "supported", **base, group="edit_type: colour")
    assert describe_comparison("DQE-CIR", "Combiner", up).startswith(
        "DQE-CIR is above Combiner on R@10 (edit_type: colour): +2.5 points, 95% interval +1.1"
    )
    down = Verdict("a", "b", "R@1", -2.5, -3.9, -1.1, "contradicted", **base)
    assert describe_comparison("A", "B", down).startswith("A is below B on R@1: -2.5 points")
    contrast = dict(group="edit_type: colour", versus="edit_type: size, move")
    wider = Verdict("a", "b", "R@1", 3.0, 1.5, 4.5, "supported", **base, **contrast)
    assert describe_comparison("DQE-CIR", "Combiner", wider).startswith(
        "The gain of DQE-CIR over Combiner on R@1 is larger on edit_type: colour than on "
        "edit_type: size, move: +3.0 points"
    )
    narrower = Verdict("a", "b", "R@1", -3.0, -4.5, -1.5, "contradicted", **base, **contrast)
    assert "is smaller on edit_type: colour" in describe_comparison("A", "B", narrower)
    same = Verdict("a", "b", "R@1", 1.2, -0.3, 2.7, "no difference", **base, **contrast)
    text = describe_comparison("A", "B", same)
    assert "is the same on edit_type: colour as on edit_type: size, move" in text
    assert "larger" not in text and "smaller" not in text
    one = Verdict("a", "b", "R@1", 0.0, 0.0, 0.0, "no difference", (4,), 10)
    assert "1 seed (4)" in describe_comparison("A", "B", one)


def _record(results):
    from cirlib.harness import per_query_record

    seeds = sorted({s for runs in results.values() for s in runs})
    return {"methods": {}, "seeds": seeds, "per_query": per_query_record(results)}


def _world(shift, seeds=(0, 1, 2)):
    """Two methods on 300 queries (colour/shape): "a" finds ``shift`` more colour queries."""
    rng = np.random.default_rng(5)
    labels = ["colour", "shape"] * 150
    base = {s: rng.integers(0, 4, 300) for s in seeds}
    better = {
        s: np.where((np.arange(300) < shift) & (np.arange(300) % 2 == 0), 0, r)
        for s, r in base.items()
    }
    return _results({"a": better, "b": base}, {"edit_type": labels})


def test_rejudge_repeats_the_rule_on_other_runs():
    results = _world(200)
    claims = [
        judge(results, "a", "b", "R@1", min_effect=0.5),
        judge(results, "a", "b", "R@1", group="edit_type", values=["colour"]),
        judge(
            results, "a", "b", "R@1", group="edit_type", values=["colour"], versus=["shape"], level=0.9,
        ),
    ]  # fmt: skip
    assert [v.verdict for v in claims] == ["supported"] * 3
    for v in claims:
        assert rejudge(results, v) == v
        assert rejudge(_record(results), v) == v
    level = [rejudge(_world(0), v) for v in claims]
    assert [v.verdict for v in level] == ["no difference"] * 3
    assert [v.key for v in level] == [v.key for v in claims]
    assert level[0].min_effect == 0.5 and level[2].level == 0.9


def test_rejudge_record_judges_an_earlier_rules_verdicts_again_on_their_own_ranks():
    import dataclasses

    record = _record(_world(200))
    fresh = judge(record, "a", "b", "R@1")
    # as an earlier version of the rule wrote it: other interval, other verdict, its own fields
    old = dataclasses.replace(fresh, low=-1.0, verdict="no difference").to_dict()
    record["verdicts"] = [{k: v for k, v in old.items() if k not in ("se", "df")} | {"n_boot": 9}]
    assert rejudge_record(record) == [fresh]
    del record["per_query"]  # nothing to judge again on: the verdicts as written
    assert [v.verdict for v in rejudge_record(record)] == ["no difference"]


def test_simulation_script_counts_false_and_true_positives(capsys, load_script):
    script = load_script("simulate_verdict_rule")
    small = ["--trials", "6", "--queries", "300", "--seeds", "2", "3"]
    script.main(small + ["--seed-sd", "0", "--query-sd", "0"])
    out = capsys.readouterr().out
    # no run-level noise and identical methods: nothing to find at 1 point
    assert "2 seeds:" in out and "no difference 6 of 6 (0.0% flagged)" in out
    script.main(small + ["--shift", "2.0"])  # a gap of tens of points is always found
    assert capsys.readouterr().out.count("supported 6, contradicted 0") == 2


def test_compare_verdicts_script(tmp_path, capsys, load_script):
    import json

    script = load_script("compare_verdicts")
    ref = _record(_world(200))
    ref["verdicts"] = [judge(ref, "a", "b", "R@1").to_dict()]
    (tmp_path / "ref.json").write_text(json.dumps(ref))
    (tmp_path / "same.json").write_text(json.dumps(_record(_world(200))))
    (tmp_path / "flat.json").write_text(json.dumps(_record(_world(0, seeds=range(4)))))
    assert script.main([str(tmp_path / "same.json"), str(tmp_path / "ref.json")]) == 0
    assert "1 of 1 verdicts agree with the reference" in capsys.readouterr().out
    assert (
        script.main([str(tmp_path / "flat.json"), str(tmp_path / "ref.json"), "--error-rate"]) == 1
    )
    out = capsys.readouterr().out
    assert "0 of 1 verdicts agree" in out and "self-comparisons" in out
    with pytest.raises(SystemExit, match="lists no verdicts"):
        script.main([str(tmp_path / "ref.json"), str(tmp_path / "same.json")])


def test_compare_verdicts_checks_the_hard_gallery_claims_too(tmp_path, capsys, load_script):
    import json

    script = load_script("compare_verdicts")

    def with_hard(test_world, hard_world):
        record = _record(test_world)
        record["verdicts"] = [judge(record, "a", "b", "R@1").to_dict()]
        hard = _record(hard_world)
        record["hard_gallery"] = {
            "verdicts": [judge(hard, "a", "b", "R@1").to_dict()],
            "per_query": hard["per_query"],
        }
        return record

    # the same test-gallery runs; on the hard gallery "a" is ahead in one build, level in the other
    (tmp_path / "ref.json").write_text(json.dumps(with_hard(_world(200), _world(200))))
    (tmp_path / "same.json").write_text(json.dumps(with_hard(_world(200), _world(200))))
    (tmp_path / "flat.json").write_text(json.dumps(with_hard(_world(200), _world(0))))
    for extra in ([], ["--rejudge"]):
        assert script.main([str(tmp_path / "same.json"), str(tmp_path / "ref.json"), *extra]) == 0
        out = capsys.readouterr().out
        assert "== test gallery" in out and "== hard gallery" in out
        assert out.count("1 of 1 verdicts agree") == 2
        assert script.main([str(tmp_path / "flat.json"), str(tmp_path / "ref.json"), *extra]) == 1
        out = capsys.readouterr().out
        assert "1 of 1 verdicts agree" in out and "0 of 1 verdicts agree" in out
    # a build without the hard gallery's ranks cannot be judged again on it
    bare = with_hard(_world(200), _world(200))
    del bare["hard_gallery"]["per_query"]
    (tmp_path / "bare.json").write_text(json.dumps(bare))
    with pytest.raises(SystemExit, match="hard gallery claims"):
        script.main([str(tmp_path / "bare.json"), str(tmp_path / "ref.json"), "--rejudge"])


def test_gallery_agreements_judges_both_galleries_of_two_builds():
    import dataclasses

    from cirlib.verdict import gallery_agreements

    def build(test_shift, hard_shift, stored=None):
        record = _record(_world(test_shift))
        record["verdicts"] = [judge(record, "a", "b", "R@1").to_dict()]
        hard = _record(_world(hard_shift))
        verdict = judge(hard, "a", "b", "R@1")
        if stored is not None:  # as an earlier rule wrote it
            verdict = dataclasses.replace(verdict, verdict=stored)
        record["hard_gallery"] = {"verdicts": [verdict.to_dict()], "per_query": hard["per_query"]}
        return record

    reference = build(200, 200)
    assert reference["verdicts"][0]["verdict"] == "supported"
    found = gallery_agreements(build(200, 0), reference)
    assert list(found) == ["test gallery", "hard gallery"]
    assert (found["test gallery"].agree, found["hard gallery"].agree) == (1, 0)
    assert found["hard gallery"].table["build"].tolist() == ["no difference"]
    assert found["hard gallery"].expected_changes is not None  # judged by this rule: chances known
    # a build whose stored hard-gallery verdict is wrong: judged again by default, read as
    # stored on request
    stale = build(200, 200, stored="contradicted")
    assert gallery_agreements(stale, reference)["hard gallery"].agree == 1
    assert gallery_agreements(stale, reference, rejudge_claims=False)["hard gallery"].agree == 0
    # a build without the hard gallery: its verdicts are missing, not an error
    plain = {k: v for k, v in build(200, 200).items() if k != "hard_gallery"}
    missing = gallery_agreements(plain, reference)["hard gallery"]
    assert (missing.agree, missing.total) == (0, 1) and missing.table["build"].isna().all()
    # no per-query ranks on the hard gallery: nothing to judge again, and the error says where
    bare = build(200, 200)
    del bare["hard_gallery"]["per_query"]
    with pytest.raises(ValueError, match="hard gallery claims cannot be judged.*per-query"):
        gallery_agreements(bare, reference)
    assert gallery_agreements(bare, reference, rejudge_claims=False)["hard gallery"].agree == 1
    assert "hard gallery" not in gallery_agreements(plain, plain)


def test_gallery_agreements_on_a_build_that_trained_some_methods_again(
    tmp_path, capsys, load_script
):
    import json

    from cirlib.verdict import gallery_agreements

    def three(shift):  # "a" better than "b" by shift colour queries; "c" is "b" again
        world = _world(shift)
        world["c"] = world["b"]
        record = _record(world)
        record["verdicts"] = [judge(record, "a", x, "R@1").to_dict() for x in ("b", "c")]
        hard = {**record, "verdicts": [judge(record, "a", "c", "R@1").to_dict()]}
        record["hard_gallery"] = {k: hard[k] for k in ("verdicts", "per_query")}
        return record

    reference = three(200)
    partial = _record({k: v for k, v in _world(0).items() if k in ("a", "b")})  # no "c"
    # every claim: the one naming "c" cannot be judged on the partial build
    with pytest.raises(ValueError, match="test gallery claims cannot be judged"):
        gallery_agreements(partial, reference)
    found = gallery_agreements(partial, reference, methods=["a", "b"])
    test = found["test gallery"]
    assert (test.agree, test.total) == (0, 1)  # a > b: supported there, no difference here
    assert test.table["claim"].tolist() == ["a > b"] and test.table["build"].tolist() == [
        "no difference"
    ]
    assert "hard gallery" not in found  # its only claim names "c": left out, not missing
    same = gallery_agreements(three(200), reference, methods=["a", "b"])["test gallery"]
    assert (same.agree, same.total) == (1, 1)
    assert reference["verdicts"][1]["b"] == "c"  # the caller's record is left as it was
    with pytest.raises(ValueError, match="name none of them"):
        gallery_agreements(partial, reference, methods=["d"])
    # the script, on files: without --methods it stops on the claim naming "c"
    script = load_script("compare_verdicts")
    for name, record in (("partial", partial), ("ref", reference)):
        (tmp_path / f"{name}.json").write_text(json.dumps(record))
    files = [str(tmp_path / "partial.json"), str(tmp_path / "ref.json"), "--rejudge"]
    with pytest.raises(SystemExit, match="cannot be judged"):
        script.main(files)
    assert script.main([*files, "--methods", "a,b"]) == 1  # a settled verdict changed
    out = capsys.readouterr().out
    assert "0 of 1 verdicts agree" in out and "a > c" not in out


def test_compare_verdicts_lets_a_fragile_verdict_change_and_says_so(tmp_path, capsys, load_script):
    import json

    script = load_script("compare_verdicts")

    def world(shifts):  # "a" finds shifts[s] more queries on seed s: a gap that varies by seed
        rng = np.random.default_rng(5)
        base = {s: rng.integers(0, 4, 300) for s in range(len(shifts))}
        better = {s: np.where(np.arange(300) < shifts[s], 0, r) for s, r in base.items()}
        return _results({"a": better, "b": base}, {"edit_type": ["colour", "shape"] * 150})

    ref = _record(world([12, 30, 20, 40]))  # supported, but its low end is near zero
    ref["verdicts"] = [judge(ref, "a", "b", "R@1").to_dict()]
    (tmp_path / "ref.json").write_text(json.dumps(ref))
    (tmp_path / "level.json").write_text(json.dumps(_record(world([0, 0, 0, 0]))))
    assert script.main([str(tmp_path / "level.json"), str(tmp_path / "ref.json"), "--rejudge"]) == 0
    out = capsys.readouterr().out
    assert "0 of 1 verdicts agree" in out and "0 of the 0 settled ones" in out
    assert "changed, as its interval allowed: a > b on R@1 (all): supported -> no difference" in out
    # a stored verdict without its seed term (an older record, not judged again): any change
    # fails
    ref["verdicts"] = [{k: v for k, v in ref["verdicts"][0].items() if k != "v_seed"}]
    (tmp_path / "old.json").write_text(json.dumps(ref))
    (tmp_path / "level_v.json").write_text(
        json.dumps(_record(world([0, 0, 0, 0])) | {"verdicts": []})
    )
    assert script.main([str(tmp_path / "level_v.json"), str(tmp_path / "old.json")]) == 1
    assert "changed, as its interval allowed" not in capsys.readouterr().out


def test_verdict_frame_has_one_row_per_claim():
    verdicts = [
        _v("dqe", "combiner", "R@10", "supported", 2.46),
        Verdict(
            "dqe", "combiner", "R@1", -0.04, -1.04, 0.96, "no difference", (0, 1, 2), 900,
            group="edit_type: colour", versus="edit_type: size, move",
        ),
    ]  # fmt: skip
    frame = verdict_frame(verdicts, {"dqe": "DQE-CIR"})
    assert frame["claim"].tolist() == ["DQE-CIR > combiner"] * 2
    assert frame["queries"].tolist() == ["all", "edit_type: colour vs size, move"]
    assert frame["difference"].tolist() == ["+2.5", "0.0"]  # no signed zero
    assert frame["interval"].tolist() == ["+1.5 to +3.5 (95%)", "-1.0 to +1.0 (95%)"]
    assert frame["seeds"].tolist() == [2, 3]
    assert frame["verdict"].tolist() == ["supported", "no difference"]


def _pair(a, b, est, verdict, seeds=(0, 1, 2)):
    return Verdict(a, b, "R@1", est, est - 1.0, est + 1.0, verdict, seeds, 900)


def test_describe_best_names_a_winner_only_when_it_wins_every_pair():
    titles = {"hard": "the hardest band", "mid": "our mid-zone", "uni": "uniform sampling"}
    clear = [
        _pair("hard", "mid", 3.0, "supported"),
        _pair("uni", "hard", -4.0, "contradicted"),  # the other orientation: hard wins
        _pair("mid", "uni", 1.5, "supported"),
    ]
    text = describe_best(clear, titles)
    assert text.startswith("On R@1, the hardest band is above each of our mid-zone, uniform")
    assert "the hardest band − uniform sampling = +4.0 points (+3.0 to +5.0)" in text
    assert "95% intervals over 3 seeds (0, 1, 2) and 900 test queries" in text
    # the issue's case: one band's lead is within noise -> no best, and no "beats"
    level = [
        _pair("hard", "mid", 0.5, "no difference"),
        _pair("hard", "uni", 0.4, "no difference"),
        _pair("mid", "uni", -0.1, "no difference"),
    ]
    text = describe_best(level, titles)
    assert "none of the hardest band, our mid-zone, uniform sampling is ahead of another" in text
    # titles that hold a comma are listed with semicolons, so each name stays readable
    commas = {"hard": "MGUR, augmenter alone", "mid": "MGUR, blend off", "uni": "Combiner"}
    assert "none of MGUR, augmenter alone; MGUR, blend off; Combiner is ahead" in describe_best(
        level, commas
    )
    for word in ("above", "beats", "best", "better"):
        assert word not in text
    partial = [level[0], _pair("hard", "uni", 2.0, "supported"), level[2]]
    text = describe_best(partial, titles)
    assert (
        "is ahead of all the others beyond noise; the differences beyond noise are the hardest band − "
        in text
    )
    assert "uniform sampling = +2.0 points" in text and "our mid-zone − " not in text
    two = describe_best([_pair("x", "y", -3.0, "contradicted")])
    assert two.startswith("On R@1, y is above x, beyond noise (y − x = +3.0 points (+2.0 to +4.0)")


def test_describe_best_refuses_incomplete_or_mixed_pairs():
    with pytest.raises(ValueError, match="pairs not judged"):
        describe_best([_pair("a", "b", 0, "no difference"), _pair("a", "c", 0, "no difference")])
    with pytest.raises(ValueError, match="exactly once"):
        describe_best([_pair("a", "b", 0, "no difference"), _pair("b", "a", 0, "no difference")])
    with pytest.raises(ValueError, match="one metric"):
        describe_best(
            [_pair("a", "b", 0, "no difference"), _pair("a", "c", 0, "no difference", (0,))]
        )


def test_judge_pairs_covers_every_pair_once():
    results = _world(200)
    results["c"] = results["b"]
    verdicts = judge_pairs(results, ["a", "b", "c"], "R@1")
    assert [(v.a, v.b) for v in verdicts] == [("a", "b"), ("a", "c"), ("b", "c")]
    assert describe_best(verdicts).startswith("On R@1, a is above each of b, c, beyond noise")


def test_the_results_file_stores_ranks_but_not_average_precision():
    # evaluate keeps per-query AP [n, K] next to the ranks when the split lists valid targets;
    # the record must store the ranks and leave AP out (it refused the whole run before)
    labels = ["colour", "shape"] * 3
    runs = {
        s: RankedEvaluation(
            {"all": {}},
            {"R": np.arange(6), "mR": np.zeros(6, dtype=int), "AP": np.full((6, 2), 0.5)},
            {"edit_type": labels},
        )
        for s in (0, 1)
    }
    record = _record({"a": runs})
    assert set(record["per_query"]["ranks"]["a"]["0"]) == {"R", "mR"}
    from cirlib.verdict import per_query_hits

    seeds, hits = per_query_hits(record, "a", "R@3")
    assert seeds == (0, 1) and hits.tolist() == [[1, 1, 1, 0, 0, 0]] * 2


def test_agreement_separates_fragile_from_settled_verdicts():
    from cirlib.verdict_flips import rebuild_agreement

    rng = np.random.default_rng(5)
    far = paired_verdict(_hits(5, 2400, 0.5, 1), _hits(5, 2400, 0.3, 2), "R@1", a="x", b="y")
    # a gap near the threshold: a ~2.5-point shift of hit rate with a lucky seed or two
    a = (rng.random((5, 2400)) < np.array([[0.33], [0.30], [0.34], [0.31], [0.32]])).astype(int)
    near = paired_verdict(a, _hits(5, 2400, 0.30, 3), "R@1", a="x", b="z")
    holds = [rebuild_agreement(far), rebuild_agreement(near)]
    assert holds[0] > 0.99 and holds[1] < 0.8, holds
    flipped = dataclasses.replace(
        near, verdict="contradicted" if near.verdict != "contradicted" else "supported"
    )
    agreement = verdict_agreement([far, flipped], [far, near])
    assert (agreement.agree, agreement.total) == (1, 2)
    assert (agreement.settled_agree, agreement.settled_total) == (1, 1)
    assert agreement.table["fragile"].tolist() == [False, True]
    assert agreement.expected_changes == pytest.approx(2 - sum(holds))
    assert "1 of the 1 settled ones" in str(agreement)


def test_record_verdicts_trains_nothing_and_names_the_build_command(tmp_path, load_script):
    import json

    script = load_script("record_verdicts")
    ref = {
        "profile": "smoke",
        "verdicts": [_v("combiner", "mgur", "R@1", "supported", 2).to_dict()],
    }
    (tmp_path / "ref.json").write_text(json.dumps(ref))
    with pytest.raises(SystemExit, match=r"checkpoint\(s\) missing.*build_book\.sh"):
        script.main([str(tmp_path / "out.json"), "--note", "x", "--reference",
                     str(tmp_path / "ref.json")])  # fmt: skip
    assert not (tmp_path / "out.json").exists()
    # --methods: a name no claim names, or names that leave no claim, stop before any work
    args = [str(tmp_path / "out.json"), "--note", "x", "--reference", str(tmp_path / "ref.json")]
    with pytest.raises(SystemExit, match=r"names \['dqe'\], which no claim"):
        script.main([*args, "--methods", "combiner,dqe", "--train"])
    with pytest.raises(SystemExit, match="no claim .* names only.*add the other method"):
        script.main([*args, "--methods", "combiner", "--train"])
    assert not (tmp_path / "out.json").exists()


def test_describe_says_when_a_verdict_is_fragile():
    from cirlib.verdict_flips import rebuild_agreement

    base = dict(seeds=(0, 1, 2, 3, 4), n_queries=2400, se=0.85, df=9.0)
    # MAPNet > Combiner on R@1 in the reference build: supported, its interval's end near zero
    near = Verdict("m", "c", "R@1", 2.15, 0.22, 4.08, "supported", **base, v_seed=0.48)
    far = Verdict("m", "c", "R@1", 9.0, 7.1, 10.9, "supported", **base, v_seed=0.48)
    holds = rebuild_agreement(near)
    assert holds < 0.8 and rebuild_agreement(far) > 0.95
    text = describe_comparison("M", "C", near)
    assert text.startswith("M is above C on R@1")
    assert text.endswith(f"would give it again with a probability of only {holds:.2f}.")
    assert "fragile" not in describe_comparison("M", "C", far)
    # without its seed term (an older record) nothing is said of rebuilds
    old = dataclasses.replace(near, v_seed=None)
    assert "fragile" not in describe_comparison("M", "C", old)
