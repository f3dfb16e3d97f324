"""Datasets: the offline toy world and loaders for the real on-disk formats."""

from cirlib.data.records import CIRSplit, DatasetError, Triplet

__all__ = ["CIRSplit", "DatasetError", "Triplet"]
