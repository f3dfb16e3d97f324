"""The verdicts as a dot-and-whisker figure: one row per claim, its difference and interval."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import matplotlib.pyplot as plt

from cirlib.verdict import FRAGILE_BELOW, VERDICTS, Verdict

# Colour-blind-safe (Okabe-Ito): supported, contradicted, no difference.
VERDICT_COLOURS = dict(zip(VERDICTS, ("#009E73", "#D55E00", "#7f7f7f")))


def plot_intervals(
    verdicts: Sequence[Verdict],
    labels: Sequence[str] | None = None,
    *,
    row_height: float = 0.38,
    width: float = 8.0,
    label_width: int = 36,
    holds: Sequence[float] | None = None,
    fragile_below: float = FRAGILE_BELOW,
):
    """Each claim's difference ``a − b`` (dot) and its interval (whisker), in points.

    Rows follow ``verdicts`` top to bottom; ``labels`` name them (default "a > b · metric").
    A vertical line marks zero and a grey band ``±min_effect`` (the largest minimum effect
    among the claims): a claim is supported only when its whisker clears zero and its dot lies
    right of the band, contradicted in mirror image. Dots are coloured by verdict. Returns the
    figure (one axis, one y tick per claim; labels wrap at ``label_width`` characters).

    ``holds``: each verdict's chance to be given again by a rebuild
    (:func:`cirlib.verdict_flips.rebuild_agreement`), written right of its whisker; a verdict
    below ``fragile_below`` is drawn with an open dot and a dashed whisker (fragile).
    """
    verdicts = list(verdicts)
    if not verdicts:
        raise ValueError("no verdicts to plot")
    if labels is None:
        labels = [
            f"{v.a} > {v.b} · {v.metric}"
            + (f" ({v.group})" if v.group else "")
            + (f" vs ({v.versus})" if v.versus else "")
            for v in verdicts
        ]
    labels = list(labels)
    if len(labels) != len(verdicts):
        raise ValueError(f"{len(labels)} labels for {len(verdicts)} verdicts")
    if holds is not None and len(holds) != len(verdicts):
        raise ValueError(f"{len(holds)} values of holds for {len(verdicts)} verdicts")
    n = len(verdicts)
    # Long claim names wrap instead of squeezing the axis.
    labels = [textwrap.fill(label, label_width) for label in labels]
    lines = sum(label.count("\n") + 1 for label in labels)
    fig, ax = plt.subplots(figsize=(width, 1.2 + row_height * max(n, 0.7 * lines)))
    band = max(v.min_effect for v in verdicts)
    ax.axvspan(-band, band, color="0.92", zorder=0, label=f"within ±{band:g} points")
    ax.axvline(0.0, color="0.4", lw=0.8, zorder=1)
    y = list(range(n))[::-1]  # first claim on top
    fragile = [h is not None and h < fragile_below for h in (holds or [None] * n)]
    for row, v, weak in zip(y, verdicts, fragile):
        colour = VERDICT_COLOURS[v.verdict]
        ax.plot([v.low, v.high], [row, row], color=colour, lw=2, zorder=2, ls="--" if weak else "-")
        face = "white" if weak else colour
        ax.plot([v.estimate], [row], "o", color=colour, mfc=face, ms=6, zorder=3)
    if holds is not None:
        for row, v, h in zip(y, verdicts, holds):
            ax.annotate(
                f"{100 * h:.0f}%",
                (v.high, row),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize="x-small",
                color="0.3",
            )
    for verdict, colour in VERDICT_COLOURS.items():
        if any(v.verdict == verdict for v in verdicts):
            ax.plot([], [], "o-", color=colour, label=verdict)
    if any(fragile):
        ax.plot(
            [],
            [],
            "o--",
            color="0.3",
            mfc="white",
            label=f"fragile: a rebuild keeps it\nwith probability < {100 * fragile_below:.0f}%",
        )
    ax.set_yticks(y)
    ax.set_yticklabels(labels)
    ax.set_ylim(-0.7, n - 0.3)
    levels = {f"{100 * v.level:g}%" for v in verdicts}
    xlabel = f"a − b (points); whiskers: {' / '.join(sorted(levels))} intervals"
    if holds is not None:
        xlabel += "; right of each: the chance a rebuild gives the same verdict"
    ax.set_xlabel(xlabel)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    fig.tight_layout()
    return fig
