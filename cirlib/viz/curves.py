"""Training curves from :func:`cirlib.train.fit` histories."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns


def history_frame(histories: dict[str, list[dict]]) -> pd.DataFrame:
    """Long table (run, epoch, metric, value) from ``{run label: fit history}``."""
    rows = [
        {"run": label, "epoch": h["epoch"], "metric": m, "value": v}
        for label, hist in histories.items()
        for h in hist
        for m, v in h.items()
        if m != "epoch"
    ]
    return pd.DataFrame(rows)


def plot_history(histories: dict[str, list[dict]], metrics: list[str], height: float = 2.6):
    """One panel per metric, one line per run; returns the figure."""
    df = history_frame(histories)
    df = df[df.metric.isin(metrics)]
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(height * 1.5 * len(metrics), height), squeeze=False
    )
    for ax, m in zip(axes.flat, metrics):
        sns.lineplot(
            data=df[df.metric == m],
            x="epoch",
            y="value",
            hue="run",
            ax=ax,
            legend=ax is axes.flat[0],
        )
        ax.set_title(m)
        ax.set_ylabel("")
    fig.tight_layout()
    return fig
