r"""Pic2Word-style zero-shot CIR: a mapping network trained on images alone (Saito et al., 2023).

A frozen CLIP encoder has image features :math:`x_i` and a text tower :math:`T`. The mapping
network :math:`\phi` (:class:`~cirlib.zeroshot.mapping_network.PseudoWordMapper`) turns
:math:`x_i` into a pseudo-word, and the text feature of a template holding it,

.. math:: y_i = E_T(\text{template};\ {*} \mapsto \phi(x_i)),

should retrieve its own image among the batch and vice versa. With normalised features and the
encoder's logit scale :math:`s`, :math:`S_{ij} = s\, \hat x_i^\top \hat y_j` and

.. math:: \mathcal{L}(\phi) = \frac12\Big(
          \frac1B \sum_i -\log \frac{e^{S_{ii}}}{\sum_j e^{S_{ij}}}
          + \frac1B \sum_i -\log \frac{e^{S_{ii}}}{\sum_j e^{S_{ji}}}\Big),

CLIP's own symmetric loss (:func:`cirlib.losses.clip_contrastive.clip_contrastive_loss`) with the
text side produced through :math:`\phi`. Only :math:`\phi` is trained; the encoder is frozen, and
no triplet, caption or modification text is seen in training. At query time the template is
followed by the modification text (:mod:`cirlib.zeroshot.queries`). Two images of the same scene
in a batch are treated as negatives of each other, as in CLIP. The training run is the
registered method :mod:`cirlib.methods.pic2word` (``get("pic2word")``), whose loss is this one.
"""

from __future__ import annotations

import torch

from cirlib.losses.clip_contrastive import clip_contrastive_loss
from cirlib.models.pseudo_tokens import encode_text_with_pseudo_tokens

__all__ = ["pseudo_word_contrastive_loss"]


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
