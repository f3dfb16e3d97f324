r"""A control for CaLa: CaLa's model, with its token branches built, trained with the plain loss.

CaLa reads token features only through its two training branches (text-bridged image
alignment and complementary text reasoning, Jiang et al., 2024); its retrieval path, the one
scored at test time, is the Combiner's and reads one global feature per image. So "the same
inputs without CaLa's objective" is CaLa's model with both branch terms weighted 0, i.e. the
query-target term alone:

.. math::

    \mathcal{L} = \mathcal{L}_{BBC}\big(100\,\hat q_{comb}\,\hat x_t^\top\big)

(the branches are built, with the sizes CaLa's chapter uses, so the run draws the same initial
weights as a CaLa run of the same seed; they get no gradient and are never computed). The
Combiner is built first inside :class:`~cirlib.models.cala.CaLa`, so this control trains to
exactly the plain Combiner's weights for the same seed and budget (a unit test checks it): for
CaLa the plain Combiner already isolates the objective, and a claim judged against this control
reads the same as against the Combiner. It is registered anyway, so that every token-reading
method has one named control and chapter "Comparing the methods" treats them alike.

Introduced in chapter "Comparing the methods".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from cirlib.methods import cala
from cirlib.methods.spec import MethodSpec
from cirlib.models.cala import CaLa
from cirlib.train import TrainingRun


@dataclass(frozen=True)
class Settings:
    """CaLa's model sizes (the model's defaults; CaLa's chapter options shrink the branches on
    the toy world, here too); no branch terms."""

    combiner_dropout: float = cala.MODEL_DEFAULTS["combiner_dropout"]
    hinge_dropout: float = cala.MODEL_DEFAULTS["hinge_dropout"]
    compositor_layers: int = cala.MODEL_DEFAULTS["compositor_layers"]
    branch_dim: int | None = cala.MODEL_DEFAULTS["branch_dim"]


def build(features, settings: Settings) -> CaLa:
    """CaLa's model (:func:`~cirlib.methods.cala.build_cala`) with the settings' sizes."""
    return cala.build_cala(features, **dataclasses.asdict(settings))


def loss(features, settings: Settings, run: TrainingRun):
    """CaLa's loss with no branch (:func:`~cirlib.methods.cala.cala_loss`, ``branches=()``):
    the query-target cross-entropy alone."""
    return cala.cala_loss(features, branches=(), device=run.device)


def idle_branches(model: CaLa, settings: Settings) -> list:
    """Every branch module: none gets a gradient (frozen under DDP)."""
    return [model.hinge, model.compositor, model.text_head]


SPEC = MethodSpec(
    name="cala_tokens",
    title="CaLa's model, plain loss (control)",
    chapter="notebooks/09_comparison",
    settings=Settings,
    build=build,
    loss=loss,
    queries=cala.cala_queries,
    needs_tokens=True,
    compared=False,
    chapter_options=cala.chapter_options,
    frozen_for_ddp=idle_branches,
)
