"""A convex blend of a coarse-grained and a fine-grained loss (MGUR's curriculum)."""

from __future__ import annotations

import torch


def blend_losses(
    coarse_loss: torch.Tensor | None, fine_loss: torch.Tensor, weight: float
) -> torch.Tensor:
    r"""Mix two losses with a weight on the coarse one.

    .. math:: \mathcal{L} = \omega\, \mathcal{L}_{coarse} + (1 - \omega)\, \mathcal{L}_{fine},
              \qquad \omega \in [0, 1]

    MGUR (Chen et al., 2024) uses :math:`\mathcal{L}_{coarse} = \mathcal{L}_u` (uncertainty regularisation) and
    :math:`\mathcal{L}_{fine} = \mathcal{L}_{BBC}` against the clean targets, with
    :math:`\omega = \omega_e` from :func:`cirlib.schedules.coarse_to_fine_weight`. At
    :math:`\omega = 0` the result *is* ``fine_loss`` (the coarse one is not even looked at, so it
    may be ``None`` and a non-finite value there cannot leak in as ``0 * inf``); at
    :math:`\omega = 1` it is ``coarse_loss``.

    Examples
    --------
    >>> import torch
    >>> float(blend_losses(torch.tensor(4.0), torch.tensor(2.0), 0.25))
    2.5
    >>> float(blend_losses(None, torch.tensor(2.0), 0.0))  # the coarse loss is not read at 0
    2.0

    Introduced in chapter "MGUR: multi-grained uncertainty regularisation".
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"blend weight must lie in [0, 1], got {weight}")
    if weight == 0.0:
        return fine_loss
    if coarse_loss is None:
        raise ValueError("a coarse loss is needed when the blend weight is above 0")
    if weight == 1.0:
        return coarse_loss
    return weight * coarse_loss + (1.0 - weight) * fine_loss
