"""The course page's toy lab times come from a committed run report of a toy build
(data_scripts/lab_times.py): the table is that report's, chapter by chapter, and the committed
table cannot drift from the committed report."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def _report(**changes):
    rows = [  # out of the book's order on purpose: the table follows the book
        {"notebook": "notebooks/03_combiner.ipynb", "seconds": 905.0, "status": "ok", "beside": 2},
        {"notebook": "notebooks/01_task_data_metrics.ipynb", "seconds": 162.3, "status": "ok",
         "beside": 2},
        {"notebook": "notebooks/02_tiny_clip.ipynb", "seconds": 130.2, "status": "ok",
         "beside": 1},
    ]  # fmt: skip
    report = {
        "profile": "toy",
        "cpu_count": 2,
        "jobs": 2,
        "threads_per_chapter": 1,
        "total_seconds": 1200.0,
        "date": "2026-12-05",
        "code_version": "abc1234",
        "notebooks": rows,
    }
    return report | changes


def test_the_table_has_each_chapter_in_minutes_in_the_books_order(load_script):
    table = load_script("lab_times").lab_times_markdown(_report())
    lines = table.splitlines()
    assert "2026-12-05" in lines[0] and "`abc1234`" in lines[0] and "took 20 minutes" in lines[0]
    # 1,197.5 s of chapters, two at a time: no schedule ends before half of it
    assert "add up to 20 minutes" in lines[0] and "in less than 10 minutes" in lines[0]
    rows = [line for line in lines if line.startswith("| ") and line[2].isdigit()]
    assert rows == [  # titles read from the notebooks; beside: the other chapters running
        "| 1 The task, the data and the metrics | 2.7 | 1 |",
        "| 2 A tiny CLIP for a tiny world | 2.2 | 0 |",
        "| 3 The Combiner baseline | 15.1 | 1 |",
    ]


def test_the_builds_conditions_are_said_with_its_times(load_script):
    script = load_script("lab_times")
    assert "Conditions" not in script.lab_times_markdown(_report())
    loaded = script.lab_times_markdown(_report(conditions="AVX2 kernels; tests ran beside 1-3."))
    assert (
        "Conditions of this build: AVX2 kernels; tests ran beside 1-3. The chapters'"
        in (loaded.splitlines()[0])
    )


def test_a_failed_undated_or_non_toy_build_is_refused(load_script):
    script = load_script("lab_times")
    with pytest.raises(ValueError, match="'smoke' profile"):
        script.lab_times_markdown(_report(profile="smoke"))
    broken = _report()
    broken["notebooks"][0] |= {"status": "error", "seconds": None}
    with pytest.raises(ValueError, match="did not finish"):
        script.lab_times_markdown(broken)
    undated = _report()
    del undated["code_version"]
    with pytest.raises(ValueError, match="no code_version"):
        script.lab_times_markdown(undated)


def test_the_committed_table_is_its_committed_reports(load_script):
    script = load_script("lab_times")
    assert script.REPORT.is_file(), f"{script.REPORT} is missing: commit a toy build's report"
    assert script.main(["--check"]) == 0
    text = (REPO / "book" / "course.md").read_text(encoding="utf-8")
    assert "data/toy_lab_times.md" in text, "the course page includes the table"


def test_the_readme_times_the_build_the_committed_report_holds():
    """README's measured build time and the course page's table are of one build."""
    import json

    report = json.loads((REPO / "book" / "data" / "toy_run_report.json").read_text())
    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    assert f"Measured at commit {report['code_version']}" in readme
    assert f"the chapters {report['total_seconds']:,.0f} s" in readme
