r"""Dropout whose mask is drawn from uniform numbers: the same layer, about three times cheaper on
a CPU.

``torch.nn.Dropout`` draws its keep-mask with ``bernoulli_``, which on a CPU costs more than a
``256 x 1024 x 1024`` matrix product (measured on the book's 2-core machine: 2.7 ms for a
``256 x 1024`` mask against 1.7 ms for the product). The Combiner applies dropout to four such
activations per step, so the masks alone were about a quarter of a training step.

:class:`Dropout` keeps an entry when a uniform draw :math:`u \sim U[0, 1)` satisfies
:math:`u \ge p`, which happens with probability :math:`1 - p`, and scales kept entries by
:math:`1 / (1 - p)`: the distribution of ``nn.Dropout`` (inverted dropout), computed as one
``rand``, one in-place comparison and one multiplication (0.9 ms forward and backward for the
same mask). On CUDA, where the built-in kernel is already fused, it calls
``torch.nn.functional.dropout``. The random stream differs from ``nn.Dropout``'s, so a model
trained with one does not reproduce a run trained with the other bit for bit; the checks are in
``tests/unit/models/test_dropout.py``.

Introduced in chapter "The Combiner baseline" (every head of the book uses it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Inverted dropout of ``x`` with drop probability ``p`` (identity when not training)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    # One float tensor holding 0 or 1/(1-p): autograd saves it for the backward product.
    scale = torch.rand(x.shape, dtype=x.dtype, device=x.device).ge_(p).mul_(1.0 / (1.0 - p))
    return x * scale


class Dropout(nn.Dropout):
    """Drop-in replacement for ``nn.Dropout(p)`` (see the module docstring); a subclass, so code
    that finds dropout layers with ``isinstance(m, nn.Dropout)`` (e.g. to switch them off) finds
    these too."""

    def __init__(self, p: float = 0.5):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        super().__init__(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)
