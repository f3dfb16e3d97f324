r"""A control for DQE-CIR: its attribute branch reading image tokens, trained with the plain loss.

DQE-CIR (Park, Park and Lee, 2026) changes two things at once over the Combiner: its queries
and gallery gain an attribute branch that reads the image tokens (text-weighted attribute
sub-queries), and its objective adds four terms on negatives mined from the mid-zone of a
target-relative distribution. This control keeps the first and drops the second: the same
:class:`~cirlib.models.attributes.AttributeWeightedCombiner` (same sizes), scored with the same
joint embeddings, trained with the batch classification loss alone and no miner:

.. math::

    \mathcal{L} = \mathcal{L}_{BBC}\big(s\,\hat e_q\,\hat e_t^\top\big), \qquad
    e_q = [\,q_{comb};\ a_1;\dots;a_A\,],\quad e_t = [\,\hat x_t;\ b_1;\dots;b_A\,]

(:func:`~cirlib.methods.dqe.dqe_loss` with ``miner=None``). It is DQE-CIR with its pairwise,
KL, margin-ranking and attribute-margin weights 0; without negatives it needs neither the
training split nor the attribute gates.

Introduced in chapter "Comparing the methods".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from cirlib.methods import dqe
from cirlib.methods.spec import MethodSpec
from cirlib.models.attributes import ATTRIBUTES, AttributeWeightedCombiner
from cirlib.train import TrainingRun

_DEFAULTS = dqe.DQESettings()


@dataclass(frozen=True)
class Settings:
    """DQE-CIR's model sizes and logit scale (its defaults); no mined-negative terms."""

    attributes: tuple[str, ...] = ATTRIBUTES
    attribute_dim: int = _DEFAULTS.attribute_dim
    attribute_hidden_dim: int = _DEFAULTS.attribute_hidden_dim
    scale: float = _DEFAULTS.scale
    dropout: float = _DEFAULTS.dropout


def as_dqe_settings(settings: Settings) -> dqe.DQESettings:
    """DQE-CIR's settings with this control's sizes and the four mined-negative weights 0."""
    return dataclasses.replace(
        _DEFAULTS,
        **dataclasses.asdict(settings),
        pairwise_weight=0.0,
        kl_weight=0.0,
        ranking_weight=0.0,
        attribute_weight=0.0,
    )


def build(features, settings: Settings) -> AttributeWeightedCombiner:
    """DQE-CIR's head (:func:`~cirlib.methods.dqe.build`) with the settings' sizes."""
    return dqe.build(features, as_dqe_settings(settings))


def loss(features, settings: Settings, run: TrainingRun):
    """:math:`\\mathcal{L}_{BBC}` on the joint scores: :func:`~cirlib.methods.dqe.dqe_loss`
    without a miner."""
    return dqe.dqe_loss(
        features,
        None,
        as_dqe_settings(settings),
        batches_per_epoch=run.batches_per_epoch,
        start_epoch=run.start_epoch,
        device=run.device,
    )


SPEC = MethodSpec(
    name="dqe_tokens",
    title="DQE-CIR's attribute branch, plain loss (control)",
    chapter="notebooks/09_comparison",
    settings=Settings,
    build=build,
    loss=loss,
    queries=dqe.dqe_queries,
    gallery=dqe.SPEC.gallery,
    needs_tokens=True,
    compared=False,
    frozen_for_ddp=lambda model, settings: dqe.unused_attribute_head(
        model, as_dqe_settings(settings)
    ),
)
