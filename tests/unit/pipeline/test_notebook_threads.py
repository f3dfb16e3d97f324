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


@pytest.mark.parametrize(("value", "pinned"), [(None, None), ("", None), ("1", 1), (" 3 ", 3)])
def test_cirlib_threads_pins_the_count(monkeypatch, value, pinned):
    if value is None:
        monkeypatch.delenv(notebook.THREADS, raising=False)
    else:
        monkeypatch.setenv(notebook.THREADS, value)
    assert notebook.pinned_threads() == pinned


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_a_bad_cirlib_threads_says_what_to_give(monkeypatch, value):
    monkeypatch.setenv(notebook.THREADS, value)
    with pytest.raises(ValueError, match="whole number of CPU threads"):
        notebook.pinned_threads()


def test_setup_notebook_keeps_the_pinned_count_for_every_run(monkeypatch):
    import torch

    from cirlib.config import resolve

    before = torch.get_num_threads()
    monkeypatch.setattr(notebook, "deterministic", lambda enabled=True: None)
    monkeypatch.setattr(notebook, "_auto_threads", [True])
    monkeypatch.setattr(notebook, "_busy_cores", lambda interval=0.3: 0.0)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)  # four free cores: not what is pinned
    monkeypatch.setenv(notebook.THREADS, "1")
    try:
        notebook.setup_notebook(resolve("smoke"))
        assert torch.get_num_threads() == 1
        assert notebook.adapt_threads() == 1  # a training run does not count the cores again
        monkeypatch.delenv(notebook.THREADS)
        notebook.setup_notebook(resolve("smoke"))
        assert torch.get_num_threads() == 4  # unpinned: the free cores
    finally:
        torch.set_num_threads(before)
