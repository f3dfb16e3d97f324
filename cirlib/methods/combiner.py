"""The CLIP4Cir Combiner as a recipe on cached features (CLIP4Cir's stage 2).

Introduced in chapter "The Combiner baseline"; the method chapters reuse its pieces.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cirlib.distributed import gather, gather_with_grad, is_wrapped
from cirlib.losses import batch_classification_loss
from cirlib.methods.spec import MethodSpec
from cirlib.models.combiner import Combiner
from cirlib.train import TrainingRun

LOGIT_SCALE = 100.0  # CLIP4Cir's fixed scale (Baldrati et al., 2023)


def combiner_queries(model: Combiner, features, batch_size: int = 4096) -> torch.Tensor:
    """Normalised query embeddings ``[Q, D]`` for every triplet of a split (eval mode)."""
    model.eval()
    device = next(model.parameters()).device
    ref = features.images[features.reference_index]
    out = []
    with torch.no_grad():
        for s in range(0, len(ref), batch_size):
            r = ref[s : s + batch_size].to(device)
            t = features.texts[s : s + batch_size].to(device)
            out.append(model(r, t).float().cpu())
    return torch.cat(out)


def combiner_loss(features, scale: float = LOGIT_SCALE, device="cpu"):
    """``loss_fn(model, idx)`` for :func:`cirlib.train.fit`: BBC between the composed queries
    and the L2-normalised target features of the batch (features moved to ``device`` once).

    Under ``fit(distributed=True)`` (``model`` wrapped in DDP) the queries and targets of all
    ranks are gathered, so every rank computes the loss over the whole global batch
    (:mod:`cirlib.distributed`)."""
    ref = features.images[features.reference_index].to(device)
    tgt = F.normalize(features.images[features.target_index], dim=-1).to(device)
    texts = features.texts.to(device)

    def loss_fn(model, idx):
        idx = idx.to(device)
        queries, targets = model(ref[idx], texts[idx]), tgt[idx]
        if is_wrapped(model):
            queries, targets = gather_with_grad(queries), gather(targets)
        return batch_classification_loss(queries, targets, scale)

    return loss_fn


@dataclass(frozen=True)
class Settings:
    """The Combiner's settings: dropout of its MLPs (CLIP4Cir: 0.5) and the fixed logit scale."""

    dropout: float = 0.5
    scale: float = LOGIT_SCALE


def build(features, settings: Settings) -> Combiner:
    """A :class:`~cirlib.models.combiner.Combiner` as wide as the split's global features."""
    return Combiner(features.images.shape[1], dropout=settings.dropout)


def loss(features, settings: Settings, run: TrainingRun):
    """The spec's loss: :func:`combiner_loss` at the settings' scale."""
    return combiner_loss(features, settings.scale, device=run.device)


SPEC = MethodSpec(
    name="combiner",
    title="CLIP4Cir Combiner",
    chapter="notebooks/03_combiner",
    settings=Settings,
    build=build,
    loss=loss,
    queries=combiner_queries,
)

# The chapters' name for the trainer: ``train_combiner(features, cfg, seed=..., checkpoint=...)``
# is :func:`cirlib.train.train_method` of this spec.
train_combiner = SPEC.fit
