"""The seed dot plot draws every run and the mean of each row, per metric."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from cirlib.viz import seed_dot_plot, seed_points

TABLE = {
    "sum (floor)": [{"R@1": 10.0, "R@10": 40.0}],
    "Combiner": [{"R@1": 30.0, "R@10": 70.0}, {"R@1": 34.0, "R@10": 74.0}],
    "MGUR": [{"R@1": 31.0, "R@10": 69.0}, {"R@1": 29.0, "R@10": 73.0}, {"R@1": 33.0, "R@10": 71.0}],
}


def test_points_are_the_runs():
    assert seed_points(TABLE, "R@10") == {
        "sum (floor)": [40.0],
        "Combiner": [70.0, 74.0],
        "MGUR": [69.0, 73.0, 71.0],
    }
    with pytest.raises(KeyError, match="'MGUR' has no 'mR@1'"):
        seed_points({"MGUR": TABLE["MGUR"]}, "mR@1")


def test_one_panel_per_metric_with_every_seed_and_the_mean():
    fig = seed_dot_plot(TABLE, ["R@1", "R@10"])
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["R@1", "R@10"]
    for ax, metric in zip(axes, ["R@1", "R@10"]):
        xs = sorted(x for coll in ax.collections for x, _ in coll.get_offsets())
        assert xs == sorted(v for runs in TABLE.values() for v in (r[metric] for r in runs))
        means = sorted(line.get_xdata()[0] for line in ax.lines)
        assert means == pytest.approx(
            sorted(np.mean([r[metric] for r in runs]) for runs in TABLE.values())
        )
    labels = [t.get_text() for t in axes[0].get_yticklabels()]
    assert labels == list(TABLE)[::-1] or labels == list(TABLE)  # top row first on screen


def test_extra_panels_are_hidden_and_empty_metrics_refused():
    fig = seed_dot_plot(TABLE, ["R@1", "R@10", "R@1"], ncols=2)
    assert sum(ax.axison for ax in fig.axes) == 3
    with pytest.raises(ValueError):
        seed_dot_plot(TABLE, [])
