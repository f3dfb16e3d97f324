"""KL divergence from a target distribution over {target, negatives} to the model's (DQE-CIR)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Half-precision inputs (mixed precision) are computed in float32; float64 stays float64."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def target_relative_distribution(relevance: torch.Tensor, temperature: float) -> torch.Tensor:
    r"""Soft labels over {target, negatives} from how similar each negative is to the target (the
    book's choice for the KL term of DQE-CIR, Park, Park and Lee, 2026).

    .. math::

        p_{i,0} \propto \exp(1/\tau_r), \qquad
        p_{i,k} \propto \exp\big(\cos(t_i, n_{ik})/\tau_r\big),\; k = 1..K

    (the target's similarity to itself is 1). A negative that looks almost like the target
    keeps some probability, which is how the KL term avoids *relevance suppression*; as
    :math:`\tau_r \to 0` the labels become one-hot on the target.

    Parameters
    ----------
    relevance : ``[B, K]`` image–image cosines between each target and its negatives.
    temperature : :math:`\tau_r > 0`.

    Returns
    -------
    ``[B, K + 1]`` probabilities, column 0 the target. Introduced in chapter "DQE-CIR: attribute-weighted queries and target-relative negatives".

    Examples
    --------
    A negative identical to the target shares its probability; an orthogonal one gets
    :math:`e^{-1/\tau_r}` of it.

    >>> import torch
    >>> target_relative_distribution(torch.tensor([[1.0, 0.0]]), temperature=1.0).round(decimals=4)
    tensor([[0.4223, 0.4223, 0.1554]])
    """
    ones = torch.ones_like(relevance[:, :1])
    return torch.softmax(
        _at_least_float32(torch.cat([ones, relevance], dim=1)) / temperature, dim=1
    )


def target_distribution_kl_loss(
    positive: torch.Tensor,
    negatives: torch.Tensor,
    target_probs: torch.Tensor,
    temperature: float = 0.05,
) -> torch.Tensor:
    r"""KL from a target distribution to the model's softmax over {target, negatives}.

    .. math::

        \pi_i = \operatorname{softmax}\big([\mathrm{sim}(q_i,t_i),\, \mathrm{sim}(q_i,n_{i1}),\dots,
            \mathrm{sim}(q_i,n_{iK})]/\tau\big),
        \qquad
        \mathcal{L}_{KL} = \frac1B\sum_{i=1}^{B}\sum_{k=0}^{K} p_{ik}\log\frac{p_{ik}}{\pi_{ik}}

    With a one-hot :math:`p` this is the cross-entropy of the target among its mined negatives;
    with one negative it then equals the pairwise logistic loss. DQE-CIR pairs its pairwise
    objective with a KL term (Park, Park and Lee, 2026); the choice of :math:`p` is ours:
    see :func:`target_relative_distribution`.

    Parameters
    ----------
    positive : ``[B]``; negatives : ``[B, K]``; target_probs : ``[B, K + 1]``, rows summing to
    1, column 0 the target (zeros allowed: they contribute nothing).

    Returns
    -------
    Scalar batch mean. Introduced in chapter "DQE-CIR: attribute-weighted queries and target-relative negatives".

    Examples
    --------
    With a one-hot target distribution and one negative it is the pairwise logistic loss:

    >>> import torch
    >>> pos, neg = torch.tensor([0.6]), torch.tensor([[0.5]])
    >>> one_hot = torch.tensor([[1.0, 0.0]])
    >>> round(float(target_distribution_kl_loss(pos, neg, one_hot, 0.05)), 4)
    0.1269
    """
    logits = (
        torch.cat([_at_least_float32(positive)[:, None], _at_least_float32(negatives)], dim=1)
        / temperature
    )
    log_model = F.log_softmax(logits, dim=1)
    p = _at_least_float32(target_probs)
    # xlogy gives 0·log 0 = 0, so one-hot targets are fine
    return (torch.xlogy(p, p) - p * log_model).sum(dim=1).mean()
