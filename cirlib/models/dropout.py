r"""Dropout whose mask is drawn from random integers: the same layer, several times cheaper on a
CPU.

``torch.nn.Dropout`` draws its keep-mask with ``bernoulli_``, which on a CPU costs more than a
``256 x 1024 x 1024`` matrix product (measured on the book's 2-core machine: 2.7 ms for a
``256 x 1024`` mask against 1.7 ms for the product). The Combiner applies dropout to four such
activations per step, so the masks alone were about a quarter of a training step.

:class:`Dropout` keeps an entry when a uniform 16-bit integer :math:`r \in \{0, \dots,
2^{16}-1\}` satisfies :math:`r \ge t` with :math:`t = \mathrm{round}(2^{16} p)`, and scales
kept entries by :math:`2^{16} / (2^{16} - t)`: inverted dropout, as ``nn.Dropout``, with the
drop probability rounded to a multiple of :math:`2^{-16}` (:func:`effective_drop_probability`:
0.1 becomes 0.100006) and the expectation kept exact. The integers come four to a 64-bit word
of the CPU generator, so a mask costs a quarter of the generator calls of ``torch.rand``
(a ``256 x 1024`` mask: 0.47 ms against 0.80 ms for ``rand`` + compare, two threads; the whole
dropout forward and backward, ``data_scripts/bench_train_step.py --dropout``: 1.06 ms against 1.31 ms,
one thread). Probabilities within :math:`2^{-8}` of 0 or 1, where the rounding would be coarse
relative to :math:`p` or :math:`1-p`, use ``torch.rand(...) >= p`` instead; on CUDA, where the
built-in kernel is already fused, it calls ``torch.nn.functional.dropout``. The random stream differs from
``nn.Dropout``'s, so a model trained with one does not reproduce a run trained with the other bit
for bit; the checks are in ``tests/unit/models/test_dropout.py``.

Introduced in chapter "The Combiner baseline" (every head of the book uses it).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_LEVELS = 1 << 16  # values of one 16-bit lane
_COARSE = 2.0**-8  # below this distance from 0 or 1, 16-bit rounding is too coarse: use rand


def _lanes_used(p: float) -> bool:
    return _COARSE <= p <= 1.0 - _COARSE


def effective_drop_probability(p: float) -> float:
    """The drop probability :func:`dropout` realises on a CPU for a requested ``p``."""
    return round(p * _LEVELS) / _LEVELS if _lanes_used(p) else p


def _keep_scale(shape, p: float, dtype: torch.dtype) -> torch.Tensor:
    """0 (dropped) or the inverse keep probability (kept), one entry per element of ``shape``."""
    scale = 1.0 / (1.0 - effective_drop_probability(p))
    if not _lanes_used(p):
        return torch.rand(shape, dtype=dtype).ge_(p).mul_(scale)
    n = math.prod(shape)
    # full-range 64-bit words (random_() alone leaves the sign bit 0), read as four int16 lanes
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), 2**63 - 1)
    lanes = words.view(torch.int16)[:n].view(shape)  # uniform on -32768 .. 32767
    drop = round(p * _LEVELS)  # lanes below -32768 + drop are dropped
    return lanes.ge(drop - _LEVELS // 2).to(dtype).mul_(scale)


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Inverted dropout of ``x`` with drop probability ``p`` (identity when not training)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    # One float tensor holding 0 or 1/(1-p): autograd saves it for the backward product.
    return x * _keep_scale(x.shape, p, x.dtype)


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
