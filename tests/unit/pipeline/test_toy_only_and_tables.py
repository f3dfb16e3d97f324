"""%%toy_only runs a cell only on the toy world; format_mean_std drops metrics a split lacks."""

import pandas as pd
import pytest

from cirlib import notebook_magics
from cirlib.notebook_magics import run_cell_body, toy_only
from cirlib.report import format_mean_std


def test_cell_body_runs_and_returns_its_last_expression():
    ns = {}
    assert run_cell_body("x = 2\ny = x * 3\ny + 1", ns) == 7 and ns["y"] == 6
    assert run_cell_body("z = 1\nz + 1;", ns) is None and ns["z"] == 1  # ';' hides it
    assert run_cell_body("def f():\n    return 5", ns) is None and ns["f"]() == 5


def test_toy_only_skips_on_real_datasets(monkeypatch, capsys):
    ns = {}

    class Shell:
        user_ns = ns

    monkeypatch.setattr("IPython.get_ipython", lambda: Shell())
    monkeypatch.setitem(notebook_magics._state, "dataset", "cirr")
    assert toy_only("", "ran = True\n1") is None
    assert "ran" not in ns
    assert "Skipped on cirr" in capsys.readouterr().out
    monkeypatch.setitem(notebook_magics._state, "dataset", "toy")
    assert toy_only("", "ran = True\n1") == 1 and ns["ran"] is True


def test_format_mean_std_leaves_out_metrics_the_split_lacks():
    cirr_like = {"A": [{"R@1": 10.0, "Rs@1": 30.0, "n": 5}, {"R@1": 20.0, "Rs@1": 40.0, "n": 5}]}
    table = format_mean_std(cirr_like, ["R@1", "Rs@1", "mR@1", "mR@10"])
    assert list(table.columns) == ["R@1", "Rs@1"]
    assert table.loc["A", "R@1"] == "15.0 ± 7.1"
    with pytest.raises(KeyError):
        format_mean_std(cirr_like, ["R@1", "recall1"])  # not a metric name: a typo is an error
    mixed = {"A": [{"R@1": 1.0, "mR@1": 2.0}], "B": [{"R@1": 1.0}]}
    with pytest.raises(KeyError):
        format_mean_std(mixed, ["R@1", "mR@1"])  # some rows have it: not silently dropped
    assert isinstance(format_mean_std(mixed, ["R@1"]), pd.DataFrame)
