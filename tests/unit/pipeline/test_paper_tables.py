"""The papers' tables with the book's rows, from a results record (hand-built per-seed dicts)."""

import pytest

from cirlib.paper_tables import book_label, paper_tables
from cirlib.published import DQE_FASHIONIQ, MAPNET_CIRR


def _cirr_seed(r1):
    return {"all": {"R@1": r1, "R@5": 2.0, "R@10": 3.0, "R@50": 4.0, "Rs@1": 5.0, "Rs@2": 6.0,
                    "Rs@3": 7.0, "Avg": 3.5, "n": 10}}  # fmt: skip


def _fiq_seed(d10):
    gal = {c: {"R@1": 0.0, "R@5": 0.0, "R@10": d10 + i, "R@50": 50.0 + i, "n": 4}
           for i, c in enumerate(("dress", "shirt", "toptee"))}  # fmt: skip
    return {
        "all": {"R@1": 0.0, "R@5": 0.0, "R@10": d10 + 1, "R@50": 51.0, "n": 12},
        "gallery": gal,
        "protocol": "x",
    }


def _record(dataset, per_seed, rehearsal):
    return {
        "profile": "paper",
        "dataset": dataset,
        "encoder": "RN50x4:openai",
        "seeds": sorted(int(s) for s in per_seed),
        "rehearsal": rehearsal,
        "methods": {"combiner": {"title": "CLIP4Cir Combiner", "per_seed": per_seed}},
    }


def test_cirr_row_is_the_mean_over_seeds_beside_mapnets_table():
    record = _record("cirr", {"0": _cirr_seed(10.0), "1": _cirr_seed(20.0)}, False)
    tables = paper_tables(record)
    assert list(tables) == ["MAPNet · CIRR"]
    t = tables["MAPNet · CIRR"]
    assert len(t) == len(MAPNET_CIRR["rows"]) + 1
    label = "this book, paper profile, RN50x4:openai, 2 seeds: CLIP4Cir Combiner"
    assert t.loc[label, "R@1"] == pytest.approx(15.0) and t.loc[label, "Rs@3"] == 7.0
    assert t.loc["MAPNet", "R@1"] == 54.65  # the published rows are untouched


def test_fashioniq_row_uses_per_category_numbers_and_rehearsal_label():
    record = _record("fashioniq", {"0": _fiq_seed(30.0)}, True)
    t = paper_tables(record)["DQE-CIR · FashionIQ"]
    label = book_label(record) + ": CLIP4Cir Combiner"
    assert label.startswith("REHEARSAL, not a result: this book, paper profile")
    assert label.endswith("1 seed: CLIP4Cir Combiner")
    assert t.loc[label, "shirt R@10"] == 31.0 and t.loc[label, "toptee R@50"] == 52.0
    assert t.loc[label, "avg R@10"] == 31.0
    assert len(t) == len(DQE_FASHIONIQ["rows"]) + 1
    assert paper_tables(_record("shoes", {"0": _fiq_seed(1.0)}, False)) == {}
