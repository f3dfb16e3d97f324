"""Results over seeds as a dot plot: every seed's value, and their mean, per row and metric.

A table of "mean ± std" strings hides how the seeds spread and wraps when it has many metrics;
this plot shows each seed as a point and the mean as a bar, one panel per metric, so a
difference between two rows can be read against the seed-to-seed spread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np


def seed_points(
    table: Mapping[str, Sequence[Mapping[str, float]]], metric: str
) -> dict[str, list[float]]:
    """``{row label: [the metric of each run]}``: the values :func:`seed_dot_plot` draws.

    Raises ``KeyError`` naming the row and the metrics it has when a run lacks ``metric``.
    """
    out = {}
    for label, runs in table.items():
        values = []
        for run in runs:
            if metric not in run:
                raise KeyError(f"{label!r} has no {metric!r}; it has {sorted(run)}")
            values.append(float(run[metric]))
        out[label] = values
    return out


def seed_dot_plot(
    table: Mapping[str, Sequence[Mapping[str, float]]],
    metrics: Sequence[str],
    *,
    ncols: int = 4,
    panel_width: float = 2.4,
    row_height: float = 0.32,
):
    """One panel per metric; in each, one line per row of ``table`` with a point per run (seed)
    and a vertical bar at their mean. Returns the figure.

    ``table`` is the same ``{row label: [per-run metric dicts]}`` that
    :func:`cirlib.report.format_mean_std` takes; a row with one run (a zero-shot floor) is a
    single point.
    """
    if not metrics:
        raise ValueError("seed_dot_plot needs at least one metric")
    labels = list(table)
    ncols = min(ncols, len(metrics))
    nrows = -(-len(metrics) // ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(panel_width * ncols + 1.5, (row_height * len(labels) + 0.9) * nrows),
        squeeze=False,
        sharey=True,
    )
    y = np.arange(len(labels))[::-1]
    for ax, metric in zip(axes.flat, metrics):
        points = seed_points(table, metric)
        for yi, label in zip(y, labels):
            values = points[label]
            ax.scatter(values, [yi] * len(values), s=14, color="#4c72b0", alpha=0.7, zorder=3)
            ax.plot([np.mean(values)] * 2, [yi - 0.3, yi + 0.3], color="black", lw=1.5)
        ax.set_title(metric, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_yticks(y, labels)
    fig.tight_layout()
    return fig
