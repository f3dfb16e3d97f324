"""MGUR's uncertainty regularisation: an aleatoric-style weighting of the matching loss against
augmented targets."""

from __future__ import annotations

from collections.abc import Callable

import torch

from cirlib.losses.batch_classification import batch_classification_loss


def aleatoric_loss(matching_loss: torch.Tensor, uncertainty: torch.Tensor | float) -> torch.Tensor:
    r"""Scale a loss down by an uncertainty and charge for the uncertainty itself.

    .. math:: \mathcal{L}_u = \tfrac12\big(e^{-u}\,\mathcal{L} + u\big)

    The form of Kendall and Gal's (2017) aleatoric regression loss, with the uncertainty :math:`u`
    in the place of the log-variance: a large :math:`u` forgives a large :math:`\mathcal{L}` but
    costs :math:`u/2`. Minimising over :math:`u` alone gives :math:`u^\ast = \log \mathcal{L}`.

    Parameters
    ----------
    matching_loss : scalar (or any shape, broadcast with ``uncertainty``).
    uncertainty : :math:`u`, scalar or broadcastable tensor.

    Examples
    --------
    At :math:`u = 0` it is half the loss; the best :math:`u` for a loss of :math:`e` is 1.

    >>> import torch
    >>> float(aleatoric_loss(torch.tensor(2.0), 0.0))
    1.0
    >>> float(aleatoric_loss(torch.tensor(2.718281828), 1.0))
    1.0

    Introduced in chapter "MGUR: multi-grained uncertainty regularisation".
    """
    s = torch.as_tensor(uncertainty, dtype=matching_loss.dtype, device=matching_loss.device)
    return 0.5 * (torch.exp(-s) * matching_loss + s)


def feature_spread(features: torch.Tensor) -> torch.Tensor:
    r"""The standard deviation of *all* entries of a ``[B, D]`` tensor (unbiased), a scalar.

    .. math:: \mathrm{std}(F) = \sqrt{\tfrac{1}{BD-1}\sum_{i,d} (F_{id} - \bar F)^2},
              \qquad \bar F = \tfrac{1}{BD}\sum_{i,d} F_{id}

    MGUR's (Chen et al., 2024) uncertainty is this spread of the augmented targets,
    :math:`u = \mathrm{std}(\tilde F)` with rows :math:`\tilde f_i` (one number per batch, not one
    per sample). Introduced in chapter "MGUR: multi-grained uncertainty regularisation".

    Examples
    --------
    >>> import torch
    >>> round(float(feature_spread(torch.tensor([[1.0, -1.0], [1.0, -1.0]]))), 4)  # sqrt(4/3)
    1.1547
    """
    return features.float().std()


def uncertainty_regularisation_loss(
    queries: torch.Tensor,
    augmented_targets: torch.Tensor,
    scale: float,
    *,
    similarity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    r"""MGUR's (Chen et al., 2024) coarse-grained term: the batch classification loss against jittered targets,
    weighted by their spread.

    .. math::

        \mathcal{L}_{aug} = \frac1B\sum_i -\log\frac{\exp(s\, q_i^\top \tilde f_i)}
                                                     {\sum_j \exp(s\, q_i^\top \tilde f_j)},
        \qquad
        \mathcal{L}_u = \tfrac12\big(e^{-u}\,\mathcal{L}_{aug} + u\big),
        \qquad u = \mathrm{std}(\tilde F)

    with :math:`\tilde F` the ``[B, D]`` augmented targets, rows :math:`\tilde f_i`
    (:func:`feature_spread`). The targets are **not** re-normalised: their norm enters the
    logits, as in MGUR's code.

    Parameters
    ----------
    queries : ``[B, D]`` composed queries.
    augmented_targets : ``[B, D]`` output of :func:`cirlib.models.augmenter.gaussian_feature_augment`.
    scale : logit scale :math:`s` applied to ``queries @ augmented_targets.T``.
    similarity : replaces the dot product (see :func:`batch_classification_loss`).

    Examples
    --------
    Targets with no spread (:math:`u = 0`): half the batch classification loss.

    >>> import torch
    >>> q, t = torch.eye(2), torch.ones(2, 2)
    >>> round(float(uncertainty_regularisation_loss(q, t, scale=1.0)), 4)  # log(2) / 2
    0.3466

    Introduced in chapter "MGUR: multi-grained uncertainty regularisation".
    """
    matching = batch_classification_loss(queries, augmented_targets, scale, similarity=similarity)
    return aleatoric_loss(matching, feature_spread(augmented_targets))
