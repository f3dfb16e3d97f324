"""Batch-based classification loss (CLIP4Cir), the core every method in the book builds on."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def batch_classification_loss(
    queries: torch.Tensor | None = None,
    targets: torch.Tensor | None = None,
    scale: float = 100.0,
    *,
    scores: torch.Tensor | None = None,
    similarity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Cross-entropy of each query against the batch's targets, its own target being the class.

    .. math::

        \mathcal{L}_{BBC} = \frac{1}{B}\sum_{i=1}^{B}
            -\log \frac{\exp(s\, q_i^\top t_i)}{\sum_{j=1}^{B} \exp(s\, q_i^\top t_j)}

    Only the query→target direction, as in CLIP4Cir (Baldrati et al., 2023), CaLa (Jiang et al.,
    2024), SPRC (Bai et al., 2024) and MGUR (Chen et al., 2024).

    Parameters
    ----------
    queries, targets : ``[B, D]``, L2-normalised by the caller (so ``q·t`` is a cosine).
    scale : the logit scale ``s`` (CLIP4Cir fixes it to 100).
    scores : ``[B, B]`` similarity matrix :math:`S_{ij}` (diagonal = matching pairs), instead of
        ``queries`` and ``targets``; the logits are then :math:`s\,S_{ij}`.
    similarity : ``similarity(queries, targets) -> [B, B]`` replacing the dot product (e.g.
        :func:`~cirlib.losses.similarity.negative_squared_euclidean`); None is
        :math:`q_i^\top t_j`.
    reduction : ``"mean"`` (the formula), ``"sum"`` or ``"none"`` (``[B]``, one term per query).

    Examples
    --------
    Two queries that each point at their own target: the loss is small, and it is
    :math:`\log B` when every score is equal.

    >>> import torch
    >>> q = t = torch.eye(2)
    >>> round(float(batch_classification_loss(q, t, scale=10.0)), 6)
    4.5e-05
    >>> round(float(batch_classification_loss(scores=torch.zeros(2, 2))), 6)  # log 2
    0.693147

    Introduced in chapter "The Combiner baseline".
    """
    if scores is None:
        if queries is None or targets is None:
            raise ValueError("give queries and targets, or scores=<[B, B] similarity matrix>")
        # the default keeps the original expression (s*q) @ t.T, so old numbers are bit-equal
        logits = (
            scale * queries @ targets.T
            if similarity is None
            else scale * similarity(queries, targets)
        )
    elif queries is not None or targets is not None:
        raise ValueError("give either queries and targets, or scores, not both")
    else:
        logits = scale * scores
    labels = torch.arange(len(logits), device=logits.device)
    return F.cross_entropy(logits.float(), labels, reduction=reduction)
