"""Figures for the book: image grids, retrieval galleries, training curves."""

from cirlib.viz.curves import plot_history
from cirlib.viz.gallery import retrieval_figure, show_images

__all__ = ["plot_history", "retrieval_figure", "show_images"]
