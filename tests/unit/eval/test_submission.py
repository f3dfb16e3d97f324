"""CIRR test-server files: round trip, validation errors, and the official demo files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cirlib.data.cirr import load_cirr
from cirlib.data.records import CIRSplit, Triplet
from cirlib.eval.submission import read_cirr_submission, write_cirr_submission


def realdata_dir() -> Path:
    """``$CIR_REALDATA``, else ``shared/realdata`` beside the repository checkout."""
    if os.environ.get("CIR_REALDATA"):
        return Path(os.environ["CIR_REALDATA"])
    repo = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
    return repo.parent / "shared" / "realdata"


CIRR_DIR = realdata_dir() / "cirr"

PAIR_IDS = [12063, 7, 300]
REFS = ["ref-a", "ref-b", "ref-c"]
MEMBERS = [[REFS[i], f"m{i}-0", f"m{i}-1", f"m{i}-2", f"m{i}-3", f"m{i}-4"] for i in range(3)]


def top50(i: int) -> list[str]:
    return [f"img-{i}-{r}" for r in range(50)]


def top3(i: int) -> list[str]:
    return MEMBERS[i][1:4]


def fake_split(name="cirr/test1", ids=PAIR_IDS) -> CIRSplit:
    """A test1-like split: the three queries above, a gallery holding every name they use."""
    triplets = [
        Triplet(pid, REFS[i], ("c",), "c", None, tuple(MEMBERS[i])) for i, pid in enumerate(ids)
    ]
    gallery = sorted({n for i in range(3) for n in (*MEMBERS[i], *top50(i))})
    return CIRSplit(name, triplets, gallery, {})


SPLIT = fake_split()


def write(tmp_path, top50s=None, top3s=None, ids=PAIR_IDS, split=SPLIT, **kw):
    top50s = top50s if top50s is not None else [top50(i) for i in range(3)]
    top3s = top3s if top3s is not None else [top3(i) for i in range(3)]
    return write_cirr_submission(ids, top50s, top3s, tmp_path / "out", split=split, **kw)


def test_round_trip(tmp_path):
    recall_path, subset_path = write(tmp_path, stem="val")
    assert recall_path == tmp_path / "out" / "val_recall.json"
    assert subset_path == tmp_path / "out" / "val_recall_subset.json"

    raw = json.loads(recall_path.read_text())
    assert list(raw)[:2] == ["version", "metric"]
    assert raw["version"] == "rc2" and raw["metric"] == "recall"
    assert set(raw) == {"version", "metric", "12063", "7", "300"}  # string keys

    rec = read_cirr_submission(recall_path)
    assert rec.metric == "recall" and rec.version == "rc2"
    assert rec.predictions == {pid: tuple(top50(i)) for i, pid in enumerate(PAIR_IDS)}

    sub = read_cirr_submission(subset_path, references=dict(zip(PAIR_IDS, REFS)))
    assert sub.metric == "recall_subset"
    assert sub.predictions[7] == tuple(top3(1))
    # No temporary files are left beside the results.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "val_recall.json",
        "val_recall_subset.json",
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(top50s=[top50(0)[:49], top50(1), top50(2)]), "exactly 50 names, got 49"),
        (dict(top50s=[top50(0) + ["x"], top50(1), top50(2)]), "exactly 50 names, got 51"),
        (dict(top50s=[top50(0)[:49] + ["img-0-3"], top50(1), top50(2)]), "more than once"),
        (dict(top50s=[top50(0)[:49] + ["ref-a"], top50(1), top50(2)]), "reference image"),
        (dict(top3s=[top3(0), top3(1), MEMBERS[2][2:6]]), "exactly 3 names, got 4"),
        (dict(top3s=[top3(0), [REFS[1], *top3(1)[:2]], top3(2)]), "reference image"),
        (dict(top3s=[top3(0), top3(1), ["m2-0", "m2-0", "m2-1"]]), "more than once"),
        (dict(top50s=[top50(0), top50(1)]), "3 pair ids but 2 recall lists"),
        (dict(ids=[12063, 7, 12063]), "appears more than once"),
        (dict(ids=[12063, 7, "x"]), "not an integer"),
        (dict(top3s=[top3(0), top3(1), ["m2-0", "m2-1", "m1-0"]]), "subset"),
        # issue 16, item 4: an incomplete query set, an unknown pair id, a name outside test1
        (
            dict(ids=PAIR_IDS[:2], top50s=[top50(0), top50(1)], top3s=[top3(0), top3(1)]),
            "1 of its queries are missing \\(first: 300\\)",
        ),
        (dict(ids=[12063, 7, 301]), "1 pair ids are not in it \\(first: 301\\)"),
        (
            dict(top50s=[top50(0), top50(1), top50(2)[:49] + ["img-9-9"]]),
            "not in the test1 gallery",
        ),
        (dict(top3s=[top3(0), top3(1), ["m2-0", "m2-1", "zz"]]), "not in the test1 gallery"),
        (dict(split=fake_split("cirr/val")), "test1 split only"),
    ],
)
def test_invalid_submissions_raise_and_write_nothing(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        write(tmp_path, **change)
    assert not (tmp_path / "out").exists()


def test_read_rejects_bad_files(tmp_path):
    good = {"version": "rc2", "metric": "recall_subset", "1": ["a", "b", "c"]}
    cases = [
        ({**good, "version": "rc1"}, "'version' must be 'rc2'"),
        ({**good, "metric": "recall@k"}, "'metric' must be one of"),
        ({**good, "pair1": ["a", "b", "c"]}, "not a pair id"),
        ({**good, "1": ["a", "b"]}, "exactly 3 names"),
        ({"version": "rc2", "metric": "recall", "1": ["a", "b", "c"]}, "exactly 50 names"),
        ({"version": "rc2", "metric": "recall"}, "no predictions"),
    ]
    for i, (doc, message) in enumerate(cases):
        path = tmp_path / f"bad{i}.json"
        path.write_text(json.dumps(doc))
        with pytest.raises(ValueError, match=message):
            read_cirr_submission(path)
    path = tmp_path / "good.json"
    path.write_text(json.dumps(good))
    assert read_cirr_submission(path).predictions == {1: ("a", "b", "c")}
    with pytest.raises(ValueError, match="reference image 'b'"):
        read_cirr_submission(path, references={1: "b"})
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_cirr_submission(tmp_path / "broken.json")


@pytest.mark.skipif(not (CIRR_DIR / "demo_files").is_dir(), reason="CIRR realdata not present")
def test_official_demo_files_are_accepted():
    caps = json.loads((CIRR_DIR / "captions" / "cap.rc2.test1.json").read_text())
    refs = {c["pairid"]: c["reference"] for c in caps}
    demo = CIRR_DIR / "demo_files"
    rec = read_cirr_submission(demo / "test1_pred_ranks_recall.json", references=refs)
    sub = read_cirr_submission(demo / "test1_pred_ranks_recall_subset.json", references=refs)
    assert rec.metric == "recall" and sub.metric == "recall_subset"
    assert set(rec.predictions) == set(refs) == set(sub.predictions)  # all 4,148 test1 queries
    assert len(refs) == 4148
    assert {len(v) for v in rec.predictions.values()} == {50}
    members = {c["pairid"]: set(c["img_set"]["members"]) for c in caps}
    assert all(set(v) <= members[pid] for pid, v in sub.predictions.items())


@pytest.mark.skipif(not (CIRR_DIR / "demo_files").is_dir(), reason="CIRR realdata not present")
def test_writer_reproduces_the_demo_files(tmp_path):
    demo = CIRR_DIR / "demo_files"
    rec = json.loads((demo / "test1_pred_ranks_recall.json").read_text())
    sub = json.loads((demo / "test1_pred_ranks_recall_subset.json").read_text())
    ids = [k for k in rec if k not in ("version", "metric")]
    paths = write_cirr_submission(
        [int(k) for k in ids],
        [rec[k] for k in ids],
        [sub[k] for k in ids],
        tmp_path,
        "test1_pred_ranks",
        split=load_cirr(CIRR_DIR, "test1"),
    )
    assert json.loads(paths[0].read_text()) == rec
    assert json.loads(paths[1].read_text()) == sub
    # Same key order and separators as the official files, so even the bytes agree.
    assert paths[0].read_bytes() == (demo / "test1_pred_ranks_recall.json").read_bytes()
    assert paths[1].read_bytes() == (demo / "test1_pred_ranks_recall_subset.json").read_bytes()
