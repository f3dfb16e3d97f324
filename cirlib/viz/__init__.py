"""Figures for the book: image grids, retrieval galleries, training curves, results over seeds,
verdict intervals."""

from cirlib.viz.curves import plot_history
from cirlib.viz.gallery import retrieval_figure, show_images
from cirlib.viz.intervals import plot_intervals
from cirlib.viz.seeds import seed_dot_plot, seed_points

__all__ = [
    "plot_history",
    "plot_intervals",
    "retrieval_figure",
    "seed_dot_plot",
    "seed_points",
    "show_images",
]
