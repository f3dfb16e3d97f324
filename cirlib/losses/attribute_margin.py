"""Attribute margin loss: each attribute sub-query must prefer the target's attribute embedding."""

from __future__ import annotations

import torch


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Half-precision inputs (mixed precision) are computed in float32; float64 stays float64."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def attribute_margin_loss(
    query_attributes: torch.Tensor,
    target_attributes: torch.Tensor,
    negative_attributes: torch.Tensor,
    margin: float = 0.1,
    gates: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Hinge per attribute between the target's and the negatives' attribute embeddings.

    For attribute :math:`a` (colour, shape) with sub-query :math:`q_i^a`, target embedding
    :math:`t_i^a` and negative embeddings :math:`n_{ik}^a` (all L2-normalised):

    .. math::

        \mathcal{L}_{attr} = \frac{1}{K \sum_{i,a} g_{ia}}
            \sum_{i=1}^{B}\sum_{a=1}^{A} g_{ia} \sum_{k=1}^{K}
            \max\big(0,\; m - q_i^{a\top} t_i^a + q_i^{a\top} n_{ik}^a\big)

    The gates :math:`g_{ia} \ge 0` say which attributes a query's text asks to change (all
    ones when unknown); it is 0 when no gate is open. DQE-CIR adds an attribute-aware margin
    loss on its colour and shape sub-queries (Park, Park and Lee, 2026); the gating is ours.

    Parameters
    ----------
    query_attributes : ``[B, A, E]``; target_attributes : ``[B, A, E]``;
    negative_attributes : ``[B, K, A, E]``; margin : :math:`m`; gates : ``[B, A]`` or None.

    Returns
    -------
    Scalar. Introduced in chapter "DQE-CIR: attribute-weighted queries and target-relative negatives".

    Examples
    --------
    One query, one attribute, one negative: the target's attribute scores 1, the negative's 0,
    so the hinge is already satisfied; swap them and it costs :math:`m + 1`.

    >>> import torch
    >>> q, t, n = torch.tensor([[[1.0, 0.0]]]), torch.tensor([[[1.0, 0.0]]]), torch.tensor([[[[0.0, 1.0]]]])
    >>> float(attribute_margin_loss(q, t, n, margin=0.1))
    0.0
    >>> round(float(attribute_margin_loss(q, n[:, 0], t[:, None], margin=0.1)), 4)
    1.1
    """
    q = _at_least_float32(query_attributes)
    pos = (q * _at_least_float32(target_attributes)).sum(-1)  # [B, A]
    neg = torch.einsum("bae,bkae->bka", q, _at_least_float32(negative_attributes))  # [B, K, A]
    hinge = (margin - pos[:, None, :] + neg).clamp_min(0)  # [B, K, A]
    g = torch.ones_like(pos) if gates is None else _at_least_float32(gates)
    weight = g.sum() * hinge.shape[1]
    if weight == 0:
        return hinge.sum() * 0.0  # keeps the graph (and the device) for a batch without gates
    return (hinge * g[:, None, :]).sum() / weight
