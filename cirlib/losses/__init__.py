"""Losses, one per file, each with its formula in the docstring."""

from cirlib.losses.batch_classification import batch_classification_loss
from cirlib.losses.clip_contrastive import clip_contrastive_loss

__all__ = ["batch_classification_loss", "clip_contrastive_loss"]
