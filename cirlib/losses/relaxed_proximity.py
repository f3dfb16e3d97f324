r"""MAPNet's Relaxed Proximity loss: push confident negatives, and let likely false negatives
stay close (Shi et al., 2025; the book's reading of the formula, see the loss)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from cirlib.losses.similarity import cosine_similarity, reduce


def negative_confidence(target_features: torch.Tensor, sigma: float = 0.6) -> torch.Tensor:
    r"""How sure we are that target :math:`j` is a negative for the query of triplet :math:`i`.

    One minus a Gaussian kernel between the two targets (L2-normalised):

    .. math::

        W_{ij} = 1 - \exp\Big(-\frac{\lVert \hat t_i - \hat t_j\rVert^2}{2\sigma^2}\Big),
        \qquad W_{ii} = 0 .

    A target that looks like the query's own target (small distance) gets a low confidence: it
    may satisfy the query too (a "noisy" negative). With :math:`\sigma = 0.6` (MAPNet README)
    :math:`W_{ij} < 0.5` exactly when :math:`\cos(\hat t_i, \hat t_j) > 1 - \sigma^2\ln 2
    \approx 0.75`. Computed without gradient (the kernel is a label, not a prediction).

    Shapes: ``[B, D]`` → ``[B, B]``.
    Examples
    --------
    A target is never a negative of itself; an orthogonal one is, with confidence
    :math:`1 - e^{-2/(2\sigma^2)}`.

    >>> import torch
    >>> negative_confidence(torch.eye(2), sigma=0.6).round(decimals=4)
    tensor([[0.0000, 0.9378],
            [0.9378, 0.0000]])

    Introduced in chapter "MAPNet: multi-schema interaction and relaxed proximity".
    """
    with torch.no_grad():
        t = F.normalize(target_features.float(), dim=-1)
        squared = (2.0 - 2.0 * t @ t.T).clamp_(min=0.0)
        weights = 1.0 - torch.exp(-squared / (2.0 * sigma**2))
        weights.fill_diagonal_(0.0)
    return weights


def relaxed_proximity_loss(
    queries: torch.Tensor | None = None,
    targets: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    gamma: float = 0.5,
    *,
    scores: torch.Tensor | None = None,
    similarity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = cosine_similarity,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Relaxed Proximity loss of MAPNet (Shi et al., 2025), in the book's reading of its formula:
    :math:`C` a similarity and :math:`W` the confidence that a pair is negative (the other
    reading, :math:`C` a distance and :math:`W` a positive affinity, fits the formula too).

    With :math:`C_{ij} = \tfrac12\big(1 + \cos(q_i, t_j)\big) \in [0, 1]` the query–target
    similarity of the batch and :math:`W_{ij}` the confidence that :math:`t_j` is a negative
    for :math:`q_i` (:func:`negative_confidence`),

    .. math::

        \mathcal{L}_{RP} = \frac{1}{N^2}\sum_{i,j} W_{ij}\, C_{ij}^2
            + \frac{1}{N^2}\sum_{i,j} \max(\gamma - W_{ij}, 0)\,(1 - C_{ij})^2 .

    The first term pushes confident negatives apart; the second pulls every pair that is not a
    confident negative: the true pair (:math:`W_{ii} = 0`) with weight :math:`\gamma`, a
    suspected false negative with weight :math:`\gamma - W_{ij}`. For one pair the minimiser is
    :math:`C^\star = \max(1 - W/\gamma, 0)`: a near-duplicate target may stay as close as the
    true one, a confident negative is pushed to :math:`C = 0`.

    Parameters
    ----------
    queries, targets : ``[N, D]`` (normalised here).
    weights : ``[N, N]`` negative confidences :math:`W` (treated as constants).
    gamma : confidence threshold :math:`\gamma` (MAPNet README: 0.5).
    scores : ``[N, N]`` query–target similarities in :math:`[-1, 1]`, in place of ``queries``
        and ``targets`` (then :math:`C = \tfrac12(1 + S)`).
    similarity : how ``queries`` and ``targets`` are compared (default: cosine).
    reduction : ``"mean"`` (the formula, over the :math:`N^2` pairs), ``"sum"`` or ``"none"``
        (the ``[N, N]`` terms).

    Examples
    --------
    A true pair at cosine 1 (:math:`W_{ii} = 0`) and a confident negative at cosine -1
    (:math:`W = 1`) cost nothing; the same negative at cosine 1 costs :math:`1^2` on its pair.

    >>> import torch
    >>> w = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    >>> float(relaxed_proximity_loss(scores=torch.tensor([[1.0, -1.0], [-1.0, 1.0]]), weights=w))
    0.0
    >>> float(relaxed_proximity_loss(scores=torch.ones(2, 2), weights=w, reduction="sum"))
    2.0

    Introduced in chapter "MAPNet: multi-schema interaction and relaxed proximity".
    """
    if weights is None:
        raise ValueError("relaxed_proximity_loss needs weights=<[N, N] negative confidences>")
    if scores is None:
        if queries is None or targets is None:
            raise ValueError("give queries and targets, or scores=<[N, N] similarity matrix>")
        scores = similarity(queries, targets)
    elif queries is not None or targets is not None:
        raise ValueError("give either queries and targets, or scores, not both")
    closeness = 0.5 * (1.0 + scores.float())
    w = weights.detach().float()
    push = w * closeness**2
    pull = (gamma - w).clamp(min=0.0) * (1.0 - closeness) ** 2
    return reduce(push + pull, reduction)
