"""Pairwise preference loss: the target must beat each mined negative (DQE-CIR's pairwise term)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Half-precision inputs (mixed precision) are computed in float32; float64 stays float64."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def pairwise_preference_loss(
    positive: torch.Tensor, negatives: torch.Tensor, temperature: float = 0.05
) -> torch.Tensor:
    r"""Logistic loss on the score gap between the target and each negative.

    .. math::

        \mathcal{L}_{pair} = \frac{1}{BK}\sum_{i=1}^{B}\sum_{k=1}^{K}
            -\log \sigma\!\Big(\frac{\mathrm{sim}(q_i, t_i) - \mathrm{sim}(q_i, n_{ik})}{\tau}\Big)

    A Bradley–Terry preference "the target is preferred over :math:`n_{ik}`": the gradient
    fades once the gap exceeds a few :math:`\tau`, so an already-separated negative stops
    pulling (unlike a softmax over the whole batch, which keeps pushing every negative).
    DQE-CIR (Park, Park and Lee, 2026) trains a pairwise objective against mid-zone negatives;
    the logistic form and :math:`\tau` are our reconstruction.

    Parameters
    ----------
    positive : ``[B]`` score of each query with its own target.
    negatives : ``[B, K]`` scores of each query with its K negatives.
    temperature : :math:`\tau > 0`; scores are cosines, so 0.05 means a logit scale of 20.

    Returns
    -------
    Scalar mean over the ``B·K`` pairs. Introduced in chapter "DQE-CIR: attribute-weighted queries and target-relative negatives".

    Examples
    --------
    A tie costs :math:`\log 2`; a gap of 10 temperatures almost nothing.

    >>> import torch
    >>> round(float(pairwise_preference_loss(torch.tensor([0.5]), torch.tensor([[0.5]]))), 4)
    0.6931
    >>> round(float(pairwise_preference_loss(torch.tensor([1.0]), torch.tensor([[0.5]]), 0.05)), 5)
    5e-05
    """
    gap = (_at_least_float32(positive)[:, None] - _at_least_float32(negatives)) / temperature
    return F.softplus(-gap).mean()  # softplus(-x) = -log sigmoid(x), without overflow
