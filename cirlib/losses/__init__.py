"""Losses, one per file, each with its formula in the docstring.

The batch losses compare queries and targets through a similarity (:mod:`cirlib.losses.similarity`):
give ``similarity=`` to swap it, or ``scores=`` to pass the finished matrix. The losses on
mined negatives (pairwise preference, KL, margin ranking) take scores already.
"""

from cirlib.losses.attribute_margin import attribute_margin_loss
from cirlib.losses.batch_classification import batch_classification_loss
from cirlib.losses.blend import blend_losses
from cirlib.losses.cala_losses import additive_cala_loss, convex_cala_loss
from cirlib.losses.clip_contrastive import clip_contrastive_loss
from cirlib.losses.margin_ranking import margin_ranking_loss
from cirlib.losses.multi_schema_interaction import multi_schema_interaction_loss
from cirlib.losses.pairwise_preference import pairwise_preference_loss
from cirlib.losses.relaxed_proximity import negative_confidence, relaxed_proximity_loss
from cirlib.losses.similarity import (
    cosine_similarity,
    dot_similarity,
    negative_squared_euclidean,
)
from cirlib.losses.target_distribution_kl import (
    target_distribution_kl_loss,
    target_relative_distribution,
)
from cirlib.losses.uncertainty import (
    aleatoric_loss,
    feature_spread,
    uncertainty_regularisation_loss,
)

__all__ = [
    "additive_cala_loss",
    "aleatoric_loss",
    "attribute_margin_loss",
    "batch_classification_loss",
    "blend_losses",
    "clip_contrastive_loss",
    "convex_cala_loss",
    "cosine_similarity",
    "dot_similarity",
    "feature_spread",
    "margin_ranking_loss",
    "multi_schema_interaction_loss",
    "negative_confidence",
    "negative_squared_euclidean",
    "pairwise_preference_loss",
    "relaxed_proximity_loss",
    "target_distribution_kl_loss",
    "target_relative_distribution",
    "uncertainty_regularisation_loss",
]
