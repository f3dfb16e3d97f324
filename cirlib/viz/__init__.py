"""Figures for the book: image grids, retrieval galleries, training curves, verdict intervals."""

from cirlib.viz.curves import plot_history
from cirlib.viz.gallery import retrieval_figure, show_images
from cirlib.viz.intervals import plot_intervals

__all__ = ["plot_history", "plot_intervals", "retrieval_figure", "show_images"]
