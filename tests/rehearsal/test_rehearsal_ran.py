"""Proof that the paper profile's code path ran in the rehearsal (tests/check.sh, stage
``rehearsal``, after ``data_scripts/rehearse_paper.py``): read its outputs in
``$REHEARSAL_STAGE`` (default ``_build/rehearsal``). Not part of the unit suite: it needs the
rehearsal's outputs, and fails when they are missing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STAGE = Path(os.environ.get("REHEARSAL_STAGE", REPO / "_build" / "rehearsal"))
DATASETS = ("cirr", "fashioniq")


@pytest.fixture(scope="module")
def report() -> dict:
    path = STAGE / "rehearsal_report.json"
    assert path.is_file(), f"{path} is missing: run `python data_scripts/rehearse_paper.py` first"
    return json.loads(path.read_text())


@pytest.mark.parametrize("dataset", DATASETS)
def test_results_file_names_the_open_clip_architecture_and_the_installed_manifest(dataset):
    record = json.loads((STAGE / f"results_paper_{dataset}.json").read_text())
    assert record["profile"] == "paper" and record["rehearsal"] is True
    assert record["dataset"] == dataset
    arch = record["encoder_architecture"]
    assert arch["name"] == "RN50x4-rehearsal"
    assert arch["open_clip_config"]["vision_cfg"]["patch_size"] is None  # a ModifiedResNet
    assert arch["open_clip_config"]["text_cfg"]["vocab_size"] == 49408  # CLIP's BPE tokenizer
    assert record["encoder"] == "RN50x4-rehearsal:RN50x4-rehearsal-seed0.pt"  # the weights file
    manifest = record["dataset_manifest"]
    assert manifest["dataset"] == dataset  # written by prepare_data.py when it installed it
    assert manifest["sources"], "the manifest names the toy export it installed"
    assert record["methods"], "chapter 9 evaluated the methods"


def test_the_zero_shot_chapter_ran_on_both_datasets(report):
    # chapter 8 trains Pic2Word-style and SEARLE-style mappings on the installed dataset's train
    # images with the rehearsal encoder, and compares them with the supervised heads
    for dataset in DATASETS:
        rows = {row["chapter"]: row for row in report["datasets"][dataset]["chapters"]}
        assert "08_zero_shot" in rows, f"chapter 8 was not run on {dataset}: {sorted(rows)}"
        assert rows["08_zero_shot"]["status"] == "ok", rows["08_zero_shot"]


def test_every_chapter_passed_and_the_cirr_files_passed_the_stand_in(report):
    for dataset in DATASETS:
        part = report["datasets"][dataset]
        assert part["problems"] == [], part["problems"]
        assert all(row["status"] == "ok" for row in part["chapters"])
    scores = report["datasets"]["cirr"]["submission_scores"]
    # chapter 3 writes the Combiner's files, chapter 9 every method's (the Combiner's again)
    methods = {name.split("-paper-")[0] for name in scores}
    assert methods == {"combiner", "mgur", "cala", "mapnet", "dqe"}, methods
    for name, s in scores.items():
        assert set(s) >= {"R@1", "R@50", "Rs@1", "Avg"}, name


def test_the_zero_shot_chapter_ran_on_circo_with_map_at_k_and_server_files(report):
    # chapter 8 alone on the toy world's CIRCO export: no supervised row, mAP@5/10/25/50 over
    # every listed target for the sum and both zero-shot methods, one test file each, which the
    # CIRCO stand-in server scored
    part = report["datasets"].get("circo")
    assert part is not None, "CIRCO was not rehearsed: python data_scripts/rehearse_paper.py"
    assert part["problems"] == [], part["problems"]
    assert [(r["chapter"], r["status"]) for r in part["chapters"]] == [("08_zero_shot", "ok")]
    table = part["map_at_k"]
    assert sorted(table) == ["pic2word", "searle", "sum"]
    for row, values in table.items():
        assert sorted(values) == ["mAP@10", "mAP@25", "mAP@5", "mAP@50"], row
        assert all(0.0 <= v <= 100.0 for v in values.values()), (row, values)
    scores = part["submission_scores"]
    assert {name.split("-paper-")[0] for name in scores} == {"sum", "pic2word", "searle"}
    for name, s in scores.items():
        assert set(s) == {"mAP@5", "mAP@10", "mAP@25", "mAP@50"}, (name, s)
