r"""Pic2Word-style zero-shot CIR: a mapping network trained on images alone (Saito et al., 2023).

A frozen CLIP encoder has image features :math:`x_i` and a text tower :math:`T`. The mapping
network :math:`\phi` (:class:`~cirlib.zeroshot.mapping_network.PseudoWordMapper`) turns
:math:`x_i` into a pseudo-word, and the text feature of a template holding it,

.. math:: y_i = T(\text{template};\ {*} \mapsto \phi(x_i)),

should retrieve its own image among the batch and vice versa. With normalised features and the
encoder's logit scale :math:`s`, :math:`S_{ij} = s\, \hat x_i^\top \hat y_j` and

.. math:: \mathcal{L}(\phi) = \frac12\Big(
          \frac1B \sum_i -\log \frac{e^{S_{ii}}}{\sum_j e^{S_{ij}}}
          + \frac1B \sum_i -\log \frac{e^{S_{ii}}}{\sum_j e^{S_{ji}}}\Big),

CLIP's own symmetric loss (:func:`cirlib.losses.clip_contrastive.clip_contrastive_loss`) with the
text side produced through :math:`\phi`. Only :math:`\phi` is trained; the encoder is frozen, and
no triplet, caption or modification text is seen in training. At query time the template is
followed by the modification text (:mod:`cirlib.zeroshot.queries`). Two images of the same scene
in a batch are treated as negatives of each other, as in CLIP.
"""

from __future__ import annotations

from pathlib import Path

import torch

from cirlib.losses.clip_contrastive import clip_contrastive_loss
from cirlib.models.pseudo_tokens import (
    encode_text_with_pseudo_tokens,
    placeholder_id,
    token_embedding_layer,
)
from cirlib.train import FitResult, fit
from cirlib.zeroshot.frozen import frozen
from cirlib.zeroshot.mapping_network import PseudoWordMapper
from cirlib.zeroshot.queries import IMAGE_TEMPLATE, PLACEHOLDER
from cirlib.zeroshot.tensor_digest import tensor_digest

__all__ = ["pic2word_loss", "pseudo_word_contrastive_loss", "train_pic2word"]


def pseudo_word_contrastive_loss(
    encoder,
    image_features: torch.Tensor,
    pseudo_words: torch.Tensor,
    template_tokens: torch.Tensor,
    placeholder: int,
    logit_scale: float | torch.Tensor,
) -> torch.Tensor:
    r""":math:`\mathcal{L}` of the module docstring for one batch.

    Parameters
    ----------
    encoder : open_clip model whose text tower reads the template
    image_features : Tensor[B, D]
        Frozen image features :math:`x_i` (normalised here).
    pseudo_words : Tensor[B, W]
        :math:`\phi(x_i)`.
    template_tokens : Long[L] or Long[B, L]
        The tokenised template (one for all, or one per image), holding the placeholder once.
    placeholder : int
        Its token id.
    logit_scale : float or scalar Tensor
        :math:`s` (the encoder's ``logit_scale.exp()``).

    Returns
    -------
    scalar Tensor
    """
    if template_tokens.ndim == 1:
        template_tokens = template_tokens.expand(len(pseudo_words), -1)
    texts = encode_text_with_pseudo_tokens(encoder, template_tokens, pseudo_words, placeholder)
    return clip_contrastive_loss(image_features, texts, logit_scale)


def pic2word_loss(
    image_features: torch.Tensor,
    encoder,
    tokenizer,
    template: str = IMAGE_TEMPLATE,
    *,
    placeholder: str = PLACEHOLDER,
    logit_scale: float | None = None,
    device="cpu",
):
    """``loss_fn(mapper, idx)`` for :func:`cirlib.train.fit` over the rows of ``image_features``
    (``[N, D]``, the training images' frozen features); the logit scale defaults to the
    encoder's own ``logit_scale.exp()``."""
    images = image_features.float().to(device)
    star = placeholder_id(tokenizer, placeholder)
    tokens = tokenizer([template])[0].to(device)
    if logit_scale is None:
        logit_scale = float(encoder.logit_scale.detach().exp())

    def loss_fn(mapper, idx):
        x = images[idx.to(device)]
        return pseudo_word_contrastive_loss(encoder, x, mapper(x), tokens, star, logit_scale)

    return loss_fn


def train_pic2word(
    image_features: torch.Tensor,
    encoder,
    tokenizer,
    *,
    epochs: int,
    batch_size: int,
    lr: float = 1e-3,
    seed: int = 0,
    encoder_name: str = "unnamed",
    template: str = IMAGE_TEMPLATE,
    hidden_layers: int = 2,
    dropout: float = 0.1,
    weight_decay: float = 0.0,
    checkpoint: str | Path | None = None,
    device="cpu",
    eval_fn=None,
) -> FitResult:
    """Train a :class:`PseudoWordMapper` on images alone with :func:`cirlib.train.fit`.

    ``image_features`` are the frozen features of the training images (for the toy world, the
    train split's gallery, ``features.images``); the encoder is frozen for the run and restored
    after. ``encoder_name`` (e.g. :func:`cirlib.data.features.encoder_id`) joins the checkpoint's
    settings, so a mapper trained for another encoder is never loaded.
    """
    torch.manual_seed(seed)
    word_dim = token_embedding_layer(encoder).embedding_dim
    mapper = PseudoWordMapper(
        image_features.shape[1], word_dim, hidden_layers=hidden_layers, dropout=dropout
    )
    settings = {
        "method": "pic2word",
        "encoder": encoder_name,
        "template": template,
        "hidden_layers": hidden_layers,
        "dropout": dropout,
        "weight_decay": weight_decay,
        "n_images": len(image_features),
        "images": tensor_digest(image_features),
    }
    with frozen(encoder):
        return fit(
            mapper,
            pic2word_loss(image_features, encoder, tokenizer, template, device=device),
            len(image_features),
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            checkpoint=checkpoint,
            settings=settings,
            device=device,
            weight_decay=weight_decay,
            eval_fn=eval_fn,
            desc="pic2word",
        )
