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
