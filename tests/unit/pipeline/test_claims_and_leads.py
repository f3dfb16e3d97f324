"""A claim is supported only when its method also beats its control; ablations on fewer seeds
or a shorter budget are recorded and described as leads."""

import json

import pytest

from cirlib.config import resolve
from cirlib.leads import ablation_frame, is_lead, load_ablations, record_ablation
from cirlib.verdict import (
    NOT_ISOLATED,
    Verdict,
    claim_verdict,
    describe_best,
    describe_comparison,
)


def _v(a, b, verdict, estimate, seeds=(0, 1, 2, 3, 4), metric="R@1"):
    return Verdict(a, b, metric, estimate, estimate - 1, estimate + 1, verdict, seeds, 100)


@pytest.mark.parametrize(
    ("ordering", "control", "expected"),
    [
        ("supported", "supported", "supported"),
        ("supported", "no difference", NOT_ISOLATED),
        ("supported", "contradicted", NOT_ISOLATED),
        ("no difference", "supported", "no difference"),
        ("contradicted", "no difference", "contradicted"),
        ("contradicted", "supported", "contradicted"),
    ],
)
def test_claim_verdict_needs_the_control_for_support(ordering, control, expected):
    o = _v("mapnet", "combiner", ordering, 3.0 if ordering == "supported" else -3.0)
    c = _v("mapnet", "combiner_tokens", control, 0.0)
    assert claim_verdict(o, c) == expected
    # without a control (a method that reads what its baseline reads) the ordering decides
    assert claim_verdict(o) == ordering


def test_claim_verdict_refuses_a_control_about_another_method_or_metric():
    o = _v("mapnet", "combiner", "supported", 3.0)
    with pytest.raises(ValueError, match="not about mapnet"):
        claim_verdict(o, _v("dqe", "dqe_tokens", "supported", 3.0))
    with pytest.raises(ValueError, match="same method, metric"):
        claim_verdict(o, _v("mapnet", "combiner_tokens", "supported", 3.0, metric="R@10"))


def test_a_lead_is_said_to_be_one_whatever_its_verdict():
    up = _v("a", "b", "supported", 3.0)
    plain = describe_comparison("A", "B", up)
    lead = describe_comparison("A", "B", up, lead=True)
    assert plain.startswith("A is above B") and "lead" not in plain
    assert lead.startswith("A lead, not a finding") and lead.endswith(plain)
    pair = [up]
    assert describe_best(pair, lead=True) == (
        "A lead, not a finding (fewer seeds or a shorter budget than the main table): "
        + describe_best(pair)
    )


def test_standing_depends_on_seeds_and_epochs():
    cfg = resolve("toy", device="cpu")
    assert len(cfg.seeds) == 5
    full = _v("a", "b", "no difference", 0.0, seeds=cfg.seeds)
    assert not is_lead(full, cfg.epochs, cfg)
    assert is_lead(full, cfg.epochs // 4, cfg)
    assert is_lead(_v("a", "b", "no difference", 0.0, seeds=(0,)), cfg.epochs, cfg)


def test_record_and_load_round_trip_and_report_missing_chapters():
    cfg = resolve("smoke", device="cpu")
    short = _v("MAPNet, no MSI", "MAPNet", "no difference", 0.4, seeds=(0,))
    main = _v("DQE-CIR, no miner", "DQE-CIR", "supported", 2.0, seeds=cfg.seeds)
    record_ablation("06_mapnet", [("MAPNet, no MSI", "MAPNet", short)], cfg, epochs=1)
    path = record_ablation("07_dqe", [("DQE, no miner", "DQE-CIR", main)], cfg, cfg.epochs)
    assert path["rows"][0]["lead"] is False
    rows, missing = load_ablations(cfg, ["06_mapnet", "07_dqe", "05_cala"])
    assert missing == ["05_cala"]
    assert [r["verdict"] for r in rows] == [short, main]
    assert [r["lead"] for r in rows] == [True, False]
    frame = ablation_frame(rows)
    assert list(frame["standing"]) == ["lead", "finding"]
    assert list(frame["claim"]) == ["MAPNet, no MSI > MAPNet", "DQE, no miner > DQE-CIR"]
    # the file is plain JSON
    from cirlib.paths import subdir

    assert json.loads((subdir("verdicts") / "07_dqe-smoke.json").read_text())["epochs"] == 4


def test_record_refuses_nothing_and_a_zero_budget():
    cfg = resolve("smoke", device="cpu")
    with pytest.raises(ValueError, match="no ablation verdicts"):
        record_ablation("04_mgur", [], cfg, 1)
    with pytest.raises(ValueError, match="positive number"):
        record_ablation("04_mgur", [("a", "b", _v("a", "b", "supported", 2.0))], cfg, 0)


def test_best_of_one_seed_says_why_nothing_is_ranked():
    pairs = [
        Verdict(a, b, "R@1", 0.0, -1.0, 1.0, "no difference", (0,), 100)
        for a, b in (("x", "y"), ("x", "z"), ("y", "z"))
    ]
    text = describe_best(pairs)
    assert "can be ranked: they were measured on fewer seeds than the 2 the rule needs" in text
    assert "within" not in text
