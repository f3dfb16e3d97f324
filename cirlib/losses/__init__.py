"""Losses, one per file, each with its formula in the docstring."""

from cirlib.losses.batch_classification import batch_classification_loss
from cirlib.losses.blend import blend_losses
from cirlib.losses.clip_contrastive import clip_contrastive_loss
from cirlib.losses.uncertainty import (
    aleatoric_loss,
    feature_spread,
    uncertainty_regularisation_loss,
)

__all__ = [
    "aleatoric_loss",
    "batch_classification_loss",
    "blend_losses",
    "clip_contrastive_loss",
    "feature_spread",
    "uncertainty_regularisation_loss",
]
