"""The book runner's schedule: who waits for whom, who starts first, how many threads each gets.

Chapters are fake here (a function that sleeps and records what it saw), run on a thread pool;
the real runner hands the same calls to worker processes that start papermill.
"""

from __future__ import annotations

import concurrent.futures as futures
import json
import threading
import time
from pathlib import Path

import pytest
from _repo_modules import import_repo_module

REPO = Path(__file__).resolve().parents[1].parent
runner = import_repo_module("tests/notebooks/run_notebooks.py")

TOC = [Path(f"notebooks/{s}.ipynb") for s in ("01_a", "02_b", "03_c", "04_d", "05_e", "06_f")]


def _row(rel: Path, status: str = "ok") -> dict:
    return {
        "chapter": rel.stem,
        "notebook": rel.as_posix(),
        "profile": "toy",
        "seconds": 0.0,
        "budget": None,
        "status": status,
        "message": "",
    }


def test_unlisted_chapters_wait_for_everything_before_them():
    needs = runner.chapter_needs(TOC, {"03_c": [], "04_d": ["03_c"]})
    assert needs["01_a"] == [] and needs["02_b"] == ["01_a"]
    assert needs["03_c"] == [] and needs["04_d"] == ["03_c"]
    assert needs["06_f"] == ["01_a", "02_b", "03_c", "04_d", "05_e"]


def test_only_drops_needs_that_do_not_run():
    needs = runner.chapter_needs(TOC[3:4], {"04_d": ["03_c"]}, TOC)
    assert needs == {"04_d": []}


@pytest.mark.parametrize(
    ("declared", "complaint"),
    [
        ({"07_x": []}, "not a chapter"),
        ({"04_d": ["09_z"]}, "not a chapter"),
        ({"02_b": ["03_c"]}, "comes after it"),
        ({"02_b": ["02_b"]}, "comes after it"),
    ],
)
def test_needs_that_cannot_be_met_are_refused(declared, complaint):
    with pytest.raises(ValueError, match=complaint):
        runner.chapter_needs(TOC, declared)


def test_the_shipped_needs_name_chapters_of_the_toc():
    declared = json.loads((REPO / "tests" / "notebooks" / "needs.json").read_text())
    toc = runner.toc_notebooks(REPO)
    needs = runner.chapter_needs(toc, declared)  # raises on a typo or a backward need
    assert set(needs) == {c.stem for c in toc}


def test_chain_seconds_is_the_longest_path_to_the_end():
    needs = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": []}
    cost = {"a": 1, "b": 5, "c": 2, "d": 1, "e": 3}
    assert runner.chain_seconds(needs, cost.get) == {"a": 7, "b": 6, "c": 3, "d": 1, "e": 3}


def test_every_chapter_gets_the_cores_divided_by_the_jobs():
    assert runner.chapter_threads(2, cores=2) == 1
    assert runner.chapter_threads(4, cores=8) == 2
    assert runner.chapter_threads(4, cores=2) == 1  # more jobs than cores: still one each
    assert runner.chapter_threads(1, cores=2) == 2


def _simulate(jobs, needs, chain, seconds, status=None):
    """Run fake chapters that sleep ``seconds[stem]``; return the rows, the start order and the
    most chapters running at once."""
    lock, order, live, peak = threading.Lock(), [], [0], [0]
    status = status or {}

    def run(rel):
        with lock:
            order.append(rel.stem)
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        time.sleep(seconds[rel.stem])
        with lock:
            live[0] -= 1
        return _row(rel, status.get(rel.stem, "ok"))

    chapters = [Path(f"notebooks/{s}.ipynb") for s in needs]
    with futures.ThreadPoolExecutor(jobs) as pool:
        rows = runner.run_all(chapters, needs, chain, jobs, run, pool, log=lambda m: None)
    return rows, order, peak[0]


def test_run_all_respects_needs_and_starts_the_longest_chain_first():
    needs = {"a": [], "b": [], "c": [], "d": ["c"], "e": ["c"], "f": ["d", "e"]}
    chain = runner.chain_seconds(needs, {"a": 1, "b": 1, "c": 3, "d": 5, "e": 1, "f": 1}.get)
    seconds = {"a": 0.05, "b": 0.05, "c": 0.2, "d": 0.3, "e": 0.05, "f": 0.05}
    rows, order, peak = _simulate(2, needs, chain, seconds)

    assert [r["chapter"] for r in rows] == list(needs)  # toc order, whatever ran first
    assert all(r["status"] == "ok" for r in rows)
    assert order[0] == "c"  # it heads the longest chain (c -> d -> f)
    assert order.index("d") < order.index("e")  # the longer of the two that c unlocks
    starts = {r["chapter"]: r["started"] for r in rows}
    ends = {r["chapter"]: r["started"] + seconds[r["chapter"]] for r in rows}
    for stem, wanted in needs.items():
        for need in wanted:
            assert starts[stem] >= ends[need] - 0.02, f"{stem} started before {need} ended"
    assert peak == 2
    assert rows[2]["beside"] == 1 and rows[0]["beside"] == 2  # c alone at its start, a beside it


def test_run_all_one_job_is_sequential():
    needs = {"a": [], "b": [], "c": ["a"]}
    chain = runner.chain_seconds(needs, lambda s: 1.0)
    rows, order, peak = _simulate(1, needs, chain, dict.fromkeys(needs, 0.01))
    assert peak == 1
    assert order == ["a", "b", "c"]  # a heads the longer chain (a -> c); then toc order
    assert [r["beside"] for r in rows] == [1, 1, 1]


def test_a_failed_chapter_does_not_stop_the_others():
    needs = {"a": [], "b": ["a"], "c": []}
    chain = runner.chain_seconds(needs, lambda s: 1.0)
    seconds = dict.fromkeys(needs, 0.01)
    rows, order, _ = _simulate(2, needs, chain, seconds, {"a": "error"})
    assert [r["status"] for r in rows] == ["error", "ok", "ok"]
    assert set(order) == {"a", "b", "c"}


def test_a_dead_worker_becomes_an_error_row():
    def run(rel):
        if rel.stem == "b":
            raise RuntimeError("worker process died")
        return _row(rel)

    chapters = [Path("notebooks/a.ipynb"), Path("notebooks/b.ipynb")]
    needs = {"a": [], "b": []}
    with futures.ThreadPoolExecutor(2) as pool:
        rows = runner.run_all(chapters, needs, {"a": 1, "b": 1}, 2, run, pool, log=lambda m: None)
    assert rows[0]["status"] == "ok"
    assert rows[1]["status"] == "error" and "worker process died" in rows[1]["message"]


def test_inline_executor_runs_at_submit_and_keeps_errors():
    pool = runner.InlineExecutor()
    assert pool.submit(lambda x: x + 1, 1).result() == 2
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda: 1 / 0).result()


def test_default_jobs():
    assert runner.default_jobs("toy", cores=2) == 2
    assert runner.default_jobs("smoke", cores=16) == 4
    assert runner.default_jobs("toy", cores=1) == 1
    assert runner.default_jobs("paper", cores=8) == 1


def test_report_says_how_the_chapters_ran(tmp_path):
    rows = [
        {**_row(Path("notebooks/01_a.ipynb")), "seconds": 10.0, "started": 0.0, "beside": 2},
        {**_row(Path("notebooks/02_b.ipynb")), "seconds": 5.5, "started": 0.0, "beside": 1},
    ]
    page = runner.report_markdown(rows, "toy", 0, 10.2, tmp_path, jobs=2, threads=1)
    assert "up to 2 at a time" in page and "each on 1 CPU thread(s) (`CIRLIB_THREADS=1`)" in page
    assert "| 01_a | toy | 0.0 | 10.0 | 2 | ok |" in page
    assert "Total execution time: 10.2 s (the chapters' own times add up to 15.5 s)." in page
    alone = runner.report_markdown(rows, "toy", 0, 15.6, tmp_path)
    assert "one at a time" in alone and "CIRLIB_THREADS" not in alone


def test_a_bad_cirlib_threads_is_refused_before_the_stage_is_touched(monkeypatch, tmp_path, capsys):
    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "keep.txt").write_text("an earlier build")
    monkeypatch.setenv("CIRLIB_THREADS", "two")
    with pytest.raises(SystemExit) as exit_:
        runner.main(["--profile", "smoke", "--stage", str(stage)])
    assert exit_.value.code == 2
    assert "whole number of CPU threads" in capsys.readouterr().err
    assert (stage / "keep.txt").read_text() == "an earlier build"
