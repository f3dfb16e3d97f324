r"""Optimisation-based textual inversion (OTI): one pseudo-word per image, found by gradient descent.

SEARLE (Baldrati, Agnolucci, Bertini and Del Bimbo, 2023) inverts each image separately: a
vector :math:`v` of the word-embedding space is optimised so that the text feature of a template
holding it points where the image feature does,

.. math:: v^\star = \arg\min_v\ 1 - \cos\big(E_T(\text{template};\ {*} \mapsto v),\ x\big),

from :math:`v \sim \mathcal{N}(0, 0.02^2)`, with AdamW, and the result is an exponential moving
average of the iterates (their defaults: 350 steps, learning rate 0.02, weight decay 0.01, decay
0.99). The images of a batch are independent problems solved together (the loss is their mean,
so each :math:`v_i` gets only its own gradient).

Left out: SEARLE adds a regulariser that keeps :math:`v` near real words, by comparing phrases a
language model wrote around the image's concept words with the same phrases holding :math:`v`.
The toy world has no language model, and its text tower knows only the scene-caption grammar, so
the toy inversion uses the cosine term alone, with the single template of
:data:`cirlib.zeroshot.queries.IMAGE_TEMPLATE` (SEARLE samples among several).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cirlib.models.pseudo_tokens import (
    encode_text_with_pseudo_tokens,
    placeholder_id,
    token_embedding_layer,
)
from cirlib.zeroshot.frozen import frozen
from cirlib.zeroshot.queries import IMAGE_TEMPLATE, PLACEHOLDER

__all__ = ["invert_images", "inversion_loss"]


def inversion_loss(
    encoder, image_features: torch.Tensor, pseudo_words: torch.Tensor, template_tokens, placeholder
) -> torch.Tensor:
    r"""Mean over the batch of :math:`1 - \cos(E_T(\text{template}; {*} \mapsto v_i), x_i)`.

    Parameters
    ----------
    encoder : open_clip model
    image_features : Tensor[B, D]
    pseudo_words : Tensor[B, W]
    template_tokens : Long[L] or Long[B, L]
    placeholder : int
    """
    if template_tokens.ndim == 1:
        template_tokens = template_tokens.expand(len(pseudo_words), -1)
    texts = encode_text_with_pseudo_tokens(encoder, template_tokens, pseudo_words, placeholder)
    return (1 - F.cosine_similarity(texts.float(), image_features.float(), dim=-1)).mean()


def invert_images(
    encoder,
    tokenizer,
    image_features: torch.Tensor,
    *,
    template: str = IMAGE_TEMPLATE,
    placeholder: str = PLACEHOLDER,
    steps: int = 350,
    lr: float = 2e-2,
    weight_decay: float = 0.01,
    ema_decay: float = 0.99,
    init_std: float = 0.02,
    seed: int = 0,
) -> tuple[torch.Tensor, list[float]]:
    """OTI pseudo-words for ``image_features`` (``[n, D]``, optimised together).

    Returns
    -------
    pseudo_words : Tensor[n, W]
        The moving average of the iterates (detached, on the features' device).
    history : list of float
        The loss at every step (of the iterate, not of the average).
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    device = image_features.device
    width = token_embedding_layer(encoder).embedding_dim
    gen = torch.Generator(device="cpu").manual_seed(seed)
    v = (init_std * torch.randn(len(image_features), width, generator=gen)).to(device)
    v.requires_grad_(True)
    ema = v.detach().clone()
    star = placeholder_id(tokenizer, placeholder)
    tokens = tokenizer([template])[0].to(device)
    opt = torch.optim.AdamW([v], lr=lr, weight_decay=weight_decay)
    history = []
    with frozen(encoder):
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = inversion_loss(encoder, image_features, v, tokens, star)
            loss.backward()
            opt.step()
            history.append(float(loss.detach()))
            ema = ema_decay * ema + (1 - ema_decay) * v.detach()
    return ema, history
