r"""SEARLE-style distillation: a network learns the pseudo-words that OTI found per image.

Optimisation-based inversion (:mod:`cirlib.zeroshot.oti`) costs hundreds of text-tower passes per
image, too slow at query time. SEARLE (Baldrati et al., 2023) therefore trains a mapping network
:math:`\phi` (:class:`~cirlib.zeroshot.mapping_network.PseudoWordMapper`, GELU, dropout 0.5 in
their release) to reproduce them: for a batch of images with OTI pseudo-words :math:`v_i`,

.. math:: \mathcal{L}(\phi) = \mathrm{NTXent}_\tau\big(\{v_i\},\ \{\phi(x_i)\}\big),

the contrastive loss of :func:`cirlib.losses.nt_xent.nt_xent_loss` (:math:`\tau = 0.25`), so
:math:`\phi(x_i)` must point like :math:`v_i` and unlike the other images' pseudo-words. Their
release trains with AdamW (learning rate 1e-4, weight decay 0.01, batch 256).

Left out, as in the inversion: the language-model regulariser (weight 0.25 in their release);
see :mod:`cirlib.zeroshot.oti` for why.
"""

from __future__ import annotations

from pathlib import Path

import torch

from cirlib.losses.nt_xent import nt_xent_loss
from cirlib.train import FitResult, fit
from cirlib.zeroshot.mapping_network import PseudoWordMapper
from cirlib.zeroshot.tensor_digest import tensor_digest

__all__ = ["SEARLE_TEMPERATURE", "distillation_loss", "train_searle_phi"]

SEARLE_TEMPERATURE = 0.25


def distillation_loss(
    image_features: torch.Tensor,
    pseudo_words: torch.Tensor,
    temperature: float = SEARLE_TEMPERATURE,
    device="cpu",
):
    """``loss_fn(phi, idx)`` for :func:`cirlib.train.fit`: NT-Xent between the OTI pseudo-words
    of the batch (``pseudo_words``, ``[n, W]``, rows aligned with ``image_features`` ``[n, D]``)
    and the network's predictions for those images."""
    if len(image_features) != len(pseudo_words):
        raise ValueError(
            f"{len(image_features)} images for {len(pseudo_words)} pseudo-words; rows must align"
        )
    images = image_features.float().to(device)
    targets = pseudo_words.detach().float().to(device)

    def loss_fn(phi, idx):
        idx = idx.to(device)
        return nt_xent_loss(targets[idx], phi(images[idx]), temperature)

    return loss_fn


def train_searle_phi(
    image_features: torch.Tensor,
    pseudo_words: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float = 1e-4,
    weight_decay: float = 0.01,
    temperature: float = SEARLE_TEMPERATURE,
    dropout: float = 0.5,
    hidden_layers: int = 2,
    seed: int = 0,
    encoder_name: str = "unnamed",
    checkpoint: str | Path | None = None,
    device="cpu",
    eval_fn=None,
) -> FitResult:
    """Distil OTI pseudo-words into a :class:`PseudoWordMapper` (GELU) with AdamW through
    :func:`cirlib.train.fit`; the encoder is not needed (only its inverted pseudo-words)."""
    torch.manual_seed(seed)
    phi = PseudoWordMapper(
        image_features.shape[1],
        pseudo_words.shape[1],
        hidden_layers=hidden_layers,
        dropout=dropout,
        activation="gelu",
    )
    settings = {
        "method": "searle-phi",
        "encoder": encoder_name,
        "temperature": temperature,
        "dropout": dropout,
        "hidden_layers": hidden_layers,
        "weight_decay": weight_decay,
        "optimizer": "adamw",
        "n_images": len(image_features),
        "images": tensor_digest(image_features),
        "pseudo_words": tensor_digest(pseudo_words),
    }
    return fit(
        phi,
        distillation_loss(image_features, pseudo_words, temperature, device=device),
        len(image_features),
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        checkpoint=checkpoint,
        settings=settings,
        device=device,
        eval_fn=eval_fn,
        desc="searle-phi",
        optimizer=lambda m: torch.optim.AdamW(m.parameters(), lr=lr, weight_decay=weight_decay),
    )
