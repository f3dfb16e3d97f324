"""Image grids: a toy group with its texts, and retrieval results with the answers marked."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
from matplotlib.patches import Rectangle

TARGET = "#1a9850"  # the annotated target
VALID = "#fdae61"  # another image the text also admits (toy world only)


PLAIN = "#bdbdbd"  # any other image: a thin frame so white images keep their edges


def _frame(ax, colour: str | None, width: float = 4) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(True)
        side.set_color(colour or PLAIN)
        side.set_linewidth(width if colour else 1)


def show_images(
    images, titles=None, frames=None, ncols: int = 6, size: float = 1.6, wrap: int = 22
):
    """A grid of PIL images with optional titles and coloured frames; returns the figure."""
    n = len(images)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size * ncols, size * nrows * 1.5), squeeze=False
    )
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        ax.imshow(images[i], interpolation="nearest")
        _frame(ax, frames[i] if frames else None)
        if titles:
            ax.set_title("\n".join(textwrap.wrap(titles[i], wrap)), fontsize=7)
    fig.tight_layout()
    return fig


def retrieval_figure(split, query_ids, topk_indices, k: int = 5, size: float = 1.5):
    """One row per query: reference, its text, then the top-``k`` retrieved images.

    The annotated target is framed green; any other valid target (the toy world lists them) is
    framed orange. ``topk_indices`` is ``[Q, >=k]`` gallery rows (reference already removed).
    """
    fig, axes = plt.subplots(
        len(query_ids), k + 1, figsize=(size * (k + 1), size * 1.3 * len(query_ids)), squeeze=False
    )
    for row, qi in enumerate(query_ids):
        t = split.triplets[qi]
        ax = axes[row, 0]
        ax.imshow(split.load_image(t.reference), interpolation="nearest")
        _frame(ax, "black", 2)
        ax.set_title("reference", fontsize=7)
        ax.set_ylabel(
            "\n".join(textwrap.wrap(t.caption, 20)), fontsize=7, rotation=0, ha="right", va="center"
        )
        valid = set(t.valid_targets or ())
        for j in range(k):
            name = split.gallery[int(topk_indices[qi][j])]
            ax = axes[row, j + 1]
            ax.imshow(split.load_image(name), interpolation="nearest")
            colour = TARGET if name == t.target else VALID if name in valid else None
            _frame(ax, colour)
            ax.set_title(f"#{j + 1}", fontsize=7)
    handles = [Rectangle((0, 0), 1, 1, fc="none", ec=c, lw=3) for c in (TARGET, VALID)]
    fig.legend(
        handles,
        ["annotated target", "other valid target"],
        loc="lower center",
        ncol=2,
        fontsize=8,
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig
