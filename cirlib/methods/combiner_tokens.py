r"""A control: the Combiner with a token branch, trained with the plain batch classification loss.

MAPNet, CaLa and DQE-CIR all read token features *and* add their own losses, so a gain over
the Combiner could come from either. This control has the token access without any of the
losses: MAPNet's retrieval embedding (the Combiner's query joined with a Q-Former's pooled
schemas over the reference and text tokens, the gallery likewise over the target tokens,
:class:`~cirlib.methods.mapnet.MAPNet`), trained with :math:`\mathcal{L}_{BBC}` alone:

.. math::

    e_q = \tfrac{1}{\sqrt2}\,[\,q_{comb};\ \bar f^q\,], \qquad
    e_t = \tfrac{1}{\sqrt2}\,[\,\hat x_t;\ \bar f^t\,], \qquad
    \mathcal{L} = \mathcal{L}_{BBC}(e_q, e_t)

It is MAPNet with both of its own terms weighted 0, on MAPNet's toy-world sizes.

Introduced in chapter "Comparing the methods".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from cirlib.methods import mapnet
from cirlib.methods.spec import MethodSpec
from cirlib.train import TrainingRun


@dataclass(frozen=True)
class Settings:
    """The token branch's sizes (MAPNet's toy values) and the Combiner's dropout."""

    n_schemas: int = mapnet.TOY_SETTINGS["n_schemas"]
    schema_width: int = mapnet.TOY_SETTINGS["schema_width"]
    schema_dim: int = mapnet.TOY_SETTINGS["schema_dim"]
    schema_layers: int = mapnet.TOY_SETTINGS["schema_layers"]
    schema_heads: int = mapnet.TOY_SETTINGS["schema_heads"]
    dropout: float = 0.5


def build(features, settings: Settings) -> mapnet.MAPNet:
    """The Combiner and the token branch (:func:`~cirlib.methods.mapnet.build_mapnet`)."""
    return mapnet.build_mapnet(features, **dataclasses.asdict(settings))


def loss(features, settings: Settings, run: TrainingRun):
    """:math:`\\mathcal{L}_{BBC}` on the joint embeddings: MAPNet's loss with its MSI and RP
    terms switched off (they are then never computed)."""
    return mapnet.mapnet_loss(features, msi_weight=0.0, rp_weight=0.0, device=run.device)


SPEC = MethodSpec(
    name="combiner_tokens",
    title="Combiner + token branch, plain loss (control)",
    chapter="notebooks/09_comparison",
    settings=Settings,
    build=build,
    loss=loss,
    queries=mapnet.mapnet_queries,
    gallery=mapnet.mapnet_gallery,
    needs_tokens=True,
    compared=False,
)
