"""The CLIP4Cir Combiner as a recipe on cached features (CLIP4Cir's stage 2).

Introduced in chapter "The Combiner baseline"; the method chapters reuse its pieces.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from cirlib.distributed import gather, gather_with_grad, is_wrapped
from cirlib.losses import batch_classification_loss
from cirlib.models.combiner import Combiner
from cirlib.train import FitResult, fit

LOGIT_SCALE = 100.0  # CLIP4Cir's fixed scale (methods.md §2.4)


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


def train_combiner(
    train_features,
    cfg,
    *,
    seed: int,
    checkpoint: str | Path | None = None,
    eval_fn=None,
    dropout: float = 0.5,
    distributed: bool = False,
) -> FitResult:
    """Train a Combiner with the profile's epochs, batch size and learning rate.

    ``distributed=True`` under torchrun trains on all ranks over the global batch
    (``fit(distributed=True)``); it is not a setting of the run, so the checkpoint is the one a
    one-process run would load."""
    torch.manual_seed(seed)
    model = Combiner(train_features.images.shape[1], dropout=dropout)
    settings = {"method": "combiner", "dropout": dropout, "scale": LOGIT_SCALE}
    return fit(
        model,
        combiner_loss(train_features, device=cfg.device),
        len(train_features.texts),
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        seed=seed,
        checkpoint=checkpoint,
        settings=settings,
        device=cfg.device,
        amp=cfg.amp,
        eval_fn=eval_fn,
        desc=f"Combiner seed {seed}",
        distributed=distributed,
    )
