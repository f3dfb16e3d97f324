"""The symmetric contrastive loss CLIP is pretrained with."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def clip_contrastive_loss(
    image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor | float
) -> torch.Tensor:
    r"""Mean of the image→text and text→image cross-entropies over the batch similarity matrix
    (CLIP's pretraining loss, Radford et al., 2021).

    .. math::

        S_{ij} = s\, \hat x_i^\top \hat y_j,\qquad
        \mathcal{L} = \tfrac12\Big(\frac1B\sum_i -\log\operatorname{softmax}_j(S_{ij})\big|_{j=i}
        + \frac1B\sum_j -\log\operatorname{softmax}_i(S_{ij})\big|_{i=j}\Big)

    with :math:`\hat x, \hat y` the L2-normalised image and text features and :math:`s` the
    (learned) logit scale. Features ``[B, D]`` need not be normalised: this function does it.

    Examples
    --------
    Matching pairs on orthogonal directions: both directions are confident at a scale of 10.

    >>> import torch
    >>> round(float(clip_contrastive_loss(torch.eye(3), torch.eye(3), 10.0)), 5)
    9e-05
    >>> round(float(clip_contrastive_loss(torch.ones(3, 2), torch.ones(3, 2), 10.0)), 4)  # log 3
    1.0986

    Introduced in chapter "A tiny CLIP for a tiny world".
    """
    x = F.normalize(image_features.float(), dim=-1)
    y = F.normalize(text_features.float(), dim=-1)
    logits = logit_scale * x @ y.T
    labels = torch.arange(len(x), device=x.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
