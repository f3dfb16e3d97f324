"""rehearse_paper.py's CIRCO part: chapter 8 alone on the toy CIRCO export, its glued mAP@K read
back from the executed chapter, its test files scored by the CIRCO stand-in server."""

from __future__ import annotations

import json
from pathlib import Path

from _repo_modules import import_script

rehearse = import_script("rehearse_paper")
PREFIX = "application/papermill.record/"


def _glue_output(name: str, text: str) -> dict:
    return {
        "output_type": "display_data",
        "data": {f"{PREFIX}text/plain": text},
        "metadata": {"scrapbook": {"name": name, "mime_prefix": PREFIX}},
    }


def _executed(path: Path, glued: dict[str, str]) -> Path:
    outputs = [_glue_output(k, v) for k, v in glued.items()]
    cells = [{"cell_type": "code", "source": "", "metadata": {}, "outputs": outputs}]
    path.write_text(json.dumps({"cells": cells}))
    return path


def test_circo_runs_chapter_8_alone_and_is_a_default():
    assert rehearse.CHAPTERS["circo"] == ["08_zero_shot"]
    assert rehearse.EXPORTS["circo"] == "circo_dataset"
    assert rehearse.DEFAULT_DATASETS == ["cirr", "fashioniq", "circo"]  # CI rehearses all three


def test_chapter_8s_map_at_k_is_read_from_its_glued_values(tmp_path):
    glued = {
        f"{row}_map{k}": str(float(10 * i + k))
        for i, row in enumerate(rehearse.CIRCO_ROWS)
        for k in rehearse.CIRCO_MAP_KS
    }
    table, problems = rehearse.circo_map(_executed(tmp_path / "08.ipynb", glued))
    assert problems == []
    assert table["searle"] == {"mAP@5": 25.0, "mAP@10": 30.0, "mAP@25": 45.0, "mAP@50": 70.0}
    del glued["pic2word_map25"]
    glued["sum_map50"] = "'n/a'"
    table, problems = rehearse.circo_map(_executed(tmp_path / "08.ipynb", glued))
    assert problems == [
        "chapter 8 glued no number 'sum_map50' on CIRCO",
        "chapter 8 glued no number 'pic2word_map25' on CIRCO",
    ]
    assert "mAP@25" not in table["pic2word"]
    table, problems = rehearse.circo_map(tmp_path / "missing.ipynb")
    assert table == {} and "chapter 8 did not run" in problems[0]


def test_the_test_files_are_scored_or_their_rejection_recorded(tmp_path):
    private = tmp_path / "world" / "private" / "circo"
    private.mkdir(parents=True)
    (private / "test.gt.json").write_text(
        json.dumps([{"id": 0, "target_img_id": 3, "gt_img_ids": [3, 7]}])
    )
    folder = tmp_path / "data" / "submissions"
    folder.mkdir(parents=True)
    ranked = [7, *range(8, 57)]  # 7 first, 3 never: AP@K = 1 / min(K, 2) = 1/2
    (folder / "sum-paper-x-s0_circo_test.json").write_text(json.dumps({"0": ranked}))
    (folder / "searle-paper-x-s0_circo_test.json").write_text(json.dumps({"0": ranked[:10]}))
    (folder / "other_recall.json").write_text("{}")  # a CIRR file: not CIRCO's
    scores = rehearse.score_circo_files(tmp_path / "world", tmp_path / "data")
    assert sorted(scores) == ["searle-paper-x-s0_circo_test.json", "sum-paper-x-s0_circo_test.json"]
    assert scores["sum-paper-x-s0_circo_test.json"] == {
        "mAP@5": 50.0,
        "mAP@10": 50.0,
        "mAP@25": 50.0,
        "mAP@50": 50.0,
    }
    assert "exactly 50" in scores["searle-paper-x-s0_circo_test.json"]["rejected"]
    assert rehearse.score_circo_files(tmp_path / "world", tmp_path / "nothing") == {}
