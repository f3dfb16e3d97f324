"""The toy world's CIRCO export: the release's fields and layout, every valid target listed
(target first, never the reference), test targets only in the private folder, installed by
``prepare_data.py circo`` and read back by ``load_splits(..., zero_shot=True)``; the stand-in
server scores a submission file as the book's own mAP@K does."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from cirlib.circo_test_server import CircoSubmissionRejected, score_circo_submission
from cirlib.config import resolve
from cirlib.data.circo import load_circo
from cirlib.data.records import DatasetError
from cirlib.data.registry import load_splits
from cirlib.data.toy import load_toy
from cirlib.data.toy_circo import export_toy_circo
from cirlib.eval.circo_submission import circo_submission_from_scores
from cirlib.eval.evaluate import evaluate
from cirlib.toyworld import make_toyworld
from cirlib.toyworld.world import asin_of

GROUPS = {"train": 2, "val": 2, "test": 6}
# CIRCO's released annotation fields (github.com/miccunifi/CIRCO, annotations/)
VAL_KEYS = {
    "reference_img_id",
    "target_img_id",
    "relative_caption",
    "shared_concept",
    "gt_img_ids",
    "id",
    "semantic_aspects",
}
TEST_KEYS = {"reference_img_id", "relative_caption", "shared_concept", "id"}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return make_toyworld(tmp_path_factory.mktemp("circo"), GROUPS, seed=5, image_size=24)


@pytest.fixture(scope="module")
def export(world) -> Path:
    return export_toy_circo(world)


def _json(path: Path):
    return json.loads(path.read_text())


def _names(world: Path) -> dict[int, str]:
    return {int(k): v for k, v in _json(world / "private" / "circo" / "toy_names.json").items()}


def test_annotations_have_the_release_fields_and_consecutive_ids(export):
    val, test = (_json(export / "annotations" / f"{s}.json") for s in ("val", "test"))
    assert val and test
    assert all(set(e) == VAL_KEYS for e in val) and all(set(e) == TEST_KEYS for e in test)
    for entries in (val, test):
        assert [e["id"] for e in entries] == list(range(len(entries)))
        assert all(isinstance(e["reference_img_id"], int) for e in entries)
    info = _json(export / "COCO2017_unlabeled" / "annotations" / "image_info_unlabeled2017.json")
    assert [i["file_name"] for i in info["images"]] == [
        f"{i['id']:012d}.jpg" for i in info["images"]
    ]


def test_every_valid_target_is_listed_target_first_reference_never(world, export):
    toy = load_toy(world, "test")
    names = _names(world)
    assert list(names.values()) == toy.gallery  # the toy test gallery, in its order
    val = _json(export / "annotations" / "val.json")
    private = _json(world / "private" / "circo" / "test.gt.json")
    by_caption = {}
    for t in toy.triplets:
        by_caption.setdefault((t.reference, t.caption), []).append(t)
    several = 0
    for entry, gts in [(e, e["gt_img_ids"]) for e in val] + [
        (e, p["gt_img_ids"]) for e, p in zip(_json(export / "annotations" / "test.json"), private)
    ]:
        (t,) = [
            q
            for q in by_caption[(names[entry["reference_img_id"]], entry["relative_caption"])]
            if q.target == names[gts[0]]
        ]
        assert [names[g] for g in gts][0] == t.target
        assert {names[g] for g in gts} == set(t.valid_targets) - {t.reference}
        assert len(set(gts)) == len(gts)
        several += len(gts) > 1
    assert several > 0, "the fixture should hold queries with several valid targets"
    # the test targets live only in the private file
    assert [p["id"] for p in private] == list(range(len(private)))
    assert all(p["target_img_id"] == p["gt_img_ids"][0] for p in private)


def test_images_are_the_fashioniq_exports_bytes_and_the_world_is_untouched(world, export):
    names = _names(world)
    manifest = (world / "manifest.json").read_bytes()
    for image_id in (1, len(names)):
        got = (
            export / "COCO2017_unlabeled" / "unlabeled2017" / f"{image_id:012d}.jpg"
        ).read_bytes()
        want = world / "fashionIQ_dataset" / "images" / f"{asin_of(names[image_id])}.jpg"
        assert got == want.read_bytes()
    stamp = (export / "annotations" / "val.json").stat().st_mtime_ns
    assert export_toy_circo(world) == export  # a finished export is reused, not rewritten
    assert (export / "annotations" / "val.json").stat().st_mtime_ns == stamp
    assert (world / "manifest.json").read_bytes() == manifest
    assert not list(world.glob(".circo_dataset-*"))  # no temporary folder left behind


def test_a_world_with_one_test_group_is_refused(tmp_path):
    small = make_toyworld(tmp_path, {"train": 1, "val": 1, "test": 1}, seed=2, image_size=16)
    with pytest.raises(DatasetError, match="at least two groups"):
        export_toy_circo(small)
    assert not (small / "circo_dataset").exists()


def test_prepare_data_installs_it_and_the_zero_shot_splits_read_it(
    world, export, tmp_path, monkeypatch, capsys, load_script
):
    monkeypatch.setenv("CIRLIB_DATA_DIR", str(tmp_path / "data"))
    assert load_script("prepare_data").main(["circo", str(export)]) == 0
    capsys.readouterr()
    splits = load_splits(resolve("paper", dataset="circo", device="cpu"), zero_shot=True)
    val, train = splits["val"], splits["train"]
    assert len(val) == len(_json(export / "annotations" / "val.json"))
    named = {t.reference for t in val.triplets} | {n for t in val.triplets for n in t.valid_targets}
    named |= {t.reference for t in load_circo(tmp_path / "data" / "circo", "test").triplets}
    assert train.gallery and not set(train.gallery) & named
    assert len(train.gallery) == len(val.gallery) - len(named)
    # queries that score exactly their valid targets highest: mAP@K = 100 at every K
    n = len(val.gallery)
    scores = torch.zeros(len(val), n)
    for i, t in enumerate(val.triplets):
        for rank, name in enumerate(t.valid_targets):
            scores[i, val.index_of(name)] = 10.0 - rank / 100
    feats = type("F", (), {})()
    feats.images = torch.eye(n)
    feats.reference_index = torch.tensor([val.index_of(t.reference) for t in val.triplets])
    feats.target_index = torch.tensor([val.index_of(t.target) for t in val.triplets])
    got = evaluate(scores, feats, val)["all"]
    assert {k: got[k] for k in ("mAP@5", "mAP@10", "mAP@25", "mAP@50", "R@1")} == {
        "mAP@5": 100.0,
        "mAP@10": 100.0,
        "mAP@25": 100.0,
        "mAP@50": 100.0,
        "R@1": 100.0,
    }


def test_the_stand_in_server_agrees_with_the_books_map(world, export, tmp_path):
    test = load_circo(export, "test")
    private = _json(world / "private" / "circo" / "test.gt.json")
    g = torch.Generator().manual_seed(3)
    gallery = torch.randn(len(test.gallery), 6, generator=g)
    queries = torch.nn.functional.normalize(torch.randn(len(test), 6, generator=g), dim=-1)
    # pull every query towards its first target, so the numbers are not all zero
    for i, p in enumerate(private):
        queries[i] += 0.5 * torch.nn.functional.normalize(
            gallery[test.index_of(str(p["target_img_id"]))], dim=0
        )
    queries = torch.nn.functional.normalize(queries, dim=-1)
    path = circo_submission_from_scores(queries, gallery, test, tmp_path / "circo_test.json")
    server = score_circo_submission(world / "private" / "circo" / "test.gt.json", path)
    labelled = dataclasses.replace(
        test,
        triplets=[
            dataclasses.replace(
                t, target=str(p["target_img_id"]), valid_targets=tuple(map(str, p["gt_img_ids"]))
            )
            for t, p in zip(test.triplets, private)
        ],
    )
    feats = type("F", (), {})()
    feats.images = gallery
    feats.reference_index = torch.tensor([test.index_of(t.reference) for t in test.triplets])
    feats.target_index = torch.tensor([test.index_of(t.target) for t in labelled.triplets])
    book = evaluate(queries, feats, labelled)["all"]
    assert 0 < server["mAP@50"] < 100
    for k in (5, 10, 25, 50):
        assert server[f"mAP@{k}"] == pytest.approx(book[f"mAP@{k}"], abs=1e-9), k


def test_the_stand_in_server_refuses_what_the_server_refuses(world, tmp_path):
    targets = world / "private" / "circo" / "test.gt.json"
    n = len(_json(targets))
    good = {str(q): list(range(1, 51)) for q in range(n)}
    assert set(score_circo_submission(targets, good)) == {"mAP@5", "mAP@10", "mAP@25", "mAP@50"}
    with pytest.raises(CircoSubmissionRejected, match="1 test queries have no list"):
        score_circo_submission(targets, {k: v for k, v in good.items() if k != "0"})
    with pytest.raises(CircoSubmissionRejected, match="exactly 50 distinct integer"):
        score_circo_submission(targets, good | {"0": list(range(1, 50)) + [1]})
    with pytest.raises(CircoSubmissionRejected, match="exactly 50 distinct integer"):
        score_circo_submission(targets, good | {"0": [str(i) for i in range(1, 51)]})
    with pytest.raises(CircoSubmissionRejected, match="not test query ids"):
        score_circo_submission(targets, good | {"x": list(range(1, 51))})


def test_make_toyworld_script_writes_the_export_on_request(
    world, export, monkeypatch, capsys, load_script
):
    script = load_script("make_toyworld")
    monkeypatch.setattr(script, "prepare_toyworld", lambda cfg: world)
    assert script.main(["--profile", "smoke"]) == 0
    assert "prepare_data.py circo" not in capsys.readouterr().out
    assert script.main(["--profile", "smoke", "--circo"]) == 0
    assert f"prepare_data.py circo {export}" in capsys.readouterr().out
