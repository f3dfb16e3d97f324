"""setup_notebook's thread count: the cores that are free right now."""

import os
import sys

import pytest

from cirlib import notebook


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")
def test_busy_cores_is_a_share_of_the_machine():
    busy = notebook._busy_cores(interval=0.05)
    assert busy is not None and 0.0 <= busy <= (os.cpu_count() or 1)


@pytest.mark.parametrize(("busy", "expected"), [(0.2, 0), (0.9, 1), (64.0, None)])
def test_free_cores_subtracts_the_busy_ones(monkeypatch, busy, expected):
    monkeypatch.setattr(notebook, "_busy_cores", lambda interval=0.3: busy)
    cores = os.cpu_count() or 1
    want = 1 if expected is None else max(1, min(4, cores - expected))
    assert notebook._free_cores() == want


def test_falls_back_to_the_load_average(monkeypatch):
    monkeypatch.setattr(notebook, "_busy_cores", lambda interval=0.3: None)
    monkeypatch.setattr(os, "getloadavg", lambda: (1000.0, 0.0, 0.0))
    assert notebook._free_cores() == 1


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.4, "0 s"), (48.6, "49 s"), (60, "1 min 0 s"), (372, "6 min 12 s"), (3780, "1 h 3 min")],
)
def test_format_duration(seconds, text):
    assert notebook.format_duration(seconds) == text


def test_glue_run_time_measures_from_setup(monkeypatch):
    from cirlib.config import resolve

    clock = iter([100.0, 472.0])
    monkeypatch.setattr(notebook.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(notebook, "_started", {})
    monkeypatch.setattr(notebook, "_auto_threads", [False])
    with pytest.raises(RuntimeError, match="setup_notebook"):
        notebook.glue_run_time()
    # keep this test process's thread count and kernel flags as they are
    monkeypatch.setattr(notebook, "deterministic", lambda enabled=True: None)
    import torch

    notebook.setup_notebook(resolve("smoke"), threads=torch.get_num_threads())
    assert notebook.glue_run_time() == "6 min 12 s in the `smoke` profile"


def test_adapt_threads_counts_again_only_in_automatic_mode(monkeypatch):
    import torch

    before = torch.get_num_threads()
    calls = []
    monkeypatch.setattr(notebook, "_free_cores", lambda: calls.append(1) or 1)
    try:
        monkeypatch.setattr(notebook, "_auto_threads", [False])
        assert notebook.adapt_threads() == before and not calls  # threads chosen by hand: kept
        monkeypatch.setattr(notebook, "_auto_threads", [True])
        assert notebook.adapt_threads() == 1 and calls == [1]
    finally:
        torch.set_num_threads(before)


def test_a_book_build_caps_the_free_cores_by_its_grant(monkeypatch, tmp_path):
    grant = tmp_path / "threads"
    monkeypatch.setattr(notebook, "_busy_cores", lambda interval=0.3: 0.0)  # an idle machine
    free = notebook._free_cores()
    monkeypatch.setenv(notebook.THREADS_FILE, str(grant))
    assert notebook._granted_threads() is None and notebook._free_cores() == free  # no file yet
    grant.write_text("1\n")
    assert notebook._granted_threads() == 1 and notebook._free_cores() == 1
    grant.write_text("64")  # a grant never adds cores that are not free
    assert notebook._free_cores() == free
    grant.write_text("0")
    assert notebook._granted_threads() == 1
    grant.write_text("half")  # unreadable: the free cores decide
    assert notebook._granted_threads() is None and notebook._free_cores() == free
    monkeypatch.delenv(notebook.THREADS_FILE)
    grant.write_text("1")
    assert notebook._granted_threads() is None


def test_adapt_threads_follows_the_grant_between_runs(monkeypatch, tmp_path):
    import torch

    before = torch.get_num_threads()
    grant = tmp_path / "threads"
    monkeypatch.setattr(notebook, "_busy_cores", lambda interval=0.3: 0.0)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setenv(notebook.THREADS_FILE, str(grant))
    monkeypatch.setattr(notebook, "_auto_threads", [True])
    try:
        grant.write_text("2")  # two chapters running on four cores
        assert notebook.adapt_threads() == 2
        grant.write_text("4")  # the other chapter ended
        assert notebook.adapt_threads() == 4
    finally:
        torch.set_num_threads(before)
