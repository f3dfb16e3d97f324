"""Weights that change over training, and a clock that tells a loss which epoch it is in.

:func:`cirlib.train.fit` calls ``loss_fn(model, idx)`` exactly ``max(1, n_samples // batch_size)``
times per epoch and nothing else, so a loss closure can know its epoch by counting its own calls
(:class:`EpochClock`). Introduced in chapter "MGUR: multi-grained uncertainty regularisation".
"""

from __future__ import annotations

import math


def coarse_to_fine_weight(epoch: int, total_epochs: int, gamma_scale: float = 1.0) -> float:
    r"""MGUR's weight of the coarse-grained (uncertainty) loss at a 0-based epoch.

    .. math:: \omega_e = \exp\!\Big(-g\,\frac{e}{E}\Big), \qquad e = 0, \dots, E - 1

    with :math:`g` = ``gamma_scale``: :math:`\omega_0 = 1` (only the coarse term), decaying to
    :math:`e^{-g (E-1)/E}` at the last epoch (MGUR: :math:`g = 1`, :math:`E = 60`, so
    :math:`\approx 0.37`); the fine-grained loss gets :math:`1 - \omega_e`. ``gamma_scale = 0``
    keeps the weight at 1.

    Introduced in chapter "MGUR: multi-grained uncertainty regularisation".
    """
    if total_epochs < 1:
        raise ValueError(f"total_epochs must be positive, got {total_epochs}")
    if epoch < 0:
        raise ValueError(f"epoch must be non-negative (0-based), got {epoch}")
    return math.exp(-gamma_scale * epoch / total_epochs)


def mean_coarse_to_fine_weight(total_epochs: int, gamma_scale: float = 1.0) -> float:
    r"""The average of :func:`coarse_to_fine_weight` over the epochs of a run.

    .. math:: \bar\omega = \frac1E \sum_{e=0}^{E-1} e^{-g e / E}

    A constant blend with this weight gives each loss the same total weight over training as the
    schedule does, without the coarse-first order: the "blend off" control.

    Introduced in chapter "MGUR: multi-grained uncertainty regularisation".
    """
    return sum(coarse_to_fine_weight(e, total_epochs, gamma_scale) for e in range(total_epochs)) / (
        total_epochs
    )


class EpochClock:
    """Counts training batches and says which (0-based) epoch the current batch belongs to.

    ``tick()`` is called once per batch, *before* the batch's loss is computed, and returns that
    batch's epoch. ``start_epoch`` lets a resumed run (``fit`` continuing from a checkpoint) pick
    up the count where the checkpoint stopped.

    Introduced in chapter "MGUR: multi-grained uncertainty regularisation".
    """

    def __init__(self, batches_per_epoch: int, start_epoch: int = 0):
        if batches_per_epoch < 1:
            raise ValueError(f"batches_per_epoch must be positive, got {batches_per_epoch}")
        self.batches_per_epoch = batches_per_epoch
        self.batches = start_epoch * batches_per_epoch

    @property
    def epoch(self) -> int:
        """Epoch of the next batch."""
        return self.batches // self.batches_per_epoch

    def tick(self) -> int:
        epoch = self.epoch
        self.batches += 1
        return epoch
