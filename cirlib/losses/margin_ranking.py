"""Margin ranking (hinge) loss between a query's target and its negatives (DQE-CIR)."""

from __future__ import annotations

import torch


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Half-precision inputs (mixed precision) are computed in float32; float64 stays float64."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def margin_ranking_loss(
    positive: torch.Tensor, negatives: torch.Tensor, margin: float = 0.1
) -> torch.Tensor:
    r"""Hinge on the score gap: zero once the target leads each negative by the margin.

    .. math::

        \mathcal{L}_{rank} = \frac{1}{BK}\sum_{i=1}^{B}\sum_{k=1}^{K}
            \max\big(0,\; m - \mathrm{sim}(q_i, t_i) + \mathrm{sim}(q_i, n_{ik})\big)

    Unlike the logistic pairwise term it has a hard stop: pairs already separated by
    :math:`m` give exactly zero gradient. DQE-CIR lists a margin ranking term in its objective
    (Park, Park and Lee, 2026); its margin is unpublished, ours is a choice.

    Parameters
    ----------
    positive : ``[B]``; negatives : ``[B, K]``; margin : :math:`m` in cosine units.

    Returns
    -------
    Scalar mean over the ``B·K`` pairs. Introduced in chapter "DQE-CIR: attribute-weighted queries and target-relative negatives".

    Examples
    --------
    The first negative trails the target by more than the margin (no cost), the second by 0.05:

    >>> import torch
    >>> round(float(margin_ranking_loss(torch.tensor([0.9]), torch.tensor([[0.5, 0.85]]), 0.1)), 4)
    0.025
    """
    return (
        (margin - _at_least_float32(positive)[:, None] + _at_least_float32(negatives))
        .clamp_min(0)
        .mean()
    )
