r"""Softmax over short rows, written as four whole-tensor passes: the attention maps of the book's
heads are several times cheaper this way on a CPU.

The attention of MAPNet's schemas and CaLa's branches normalises rows of 8 to 10 entries (8
schemas, 9 image tokens, 10 compositor tokens). PyTorch's CPU softmax loops over rows and, for a
row shorter than one vector register (16 floats on AVX-512), runs a slow partial-vector path per
row: 8192 rows of 8 entries took 2.0 ms forward + backward, against 0.57 ms for the same
function as whole-tensor passes (one thread, CPU time, measured under load in one process with
``python data_scripts/bench_train_step.py --softmax``; rows of 4 to 15 entries: 3x to 4.6x
faster). From 16 entries on PyTorch's kernel is the faster one (0.4x to 0.6x), so
:func:`attention_softmax` picks by row length, with the threshold at the CPU's vector
width (:data:`SHORT_ROW`).

.. math::

    \mathrm{softmax}(x)_j = \frac{e^{x_j - m}}{\sum_k e^{x_k - m}},\quad m = \max_k x_k;
    \qquad \frac{\partial L}{\partial x} = y \odot \Big(g - \sum_k g_k y_k\Big)

with :math:`y` the output and :math:`g = \partial L / \partial y`. The result equals
``torch.softmax`` up to rounding (a few units in the last place: the sums run in another
order), so a run that switches between the two is not bit-for-bit the same run;
``tests/unit/models/test_short_softmax.py`` checks values, masked entries and gradients.

Introduced in chapter "CaLa: complementary association learning" (and used by MAPNet's schemas).
"""

from __future__ import annotations

import torch


def _vector_floats() -> int:
    """Floats in one vector register of the CPU kernels PyTorch dispatches to (16 with AVX-512,
    8 otherwise): PyTorch's softmax is slow on rows shorter than that."""
    return 16 if "AVX512" in torch.backends.cpu.get_cpu_capability() else 8


# Rows shorter than this use the whole-tensor passes; longer rows use torch.softmax.
SHORT_ROW = _vector_floats()


class _ShortSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = (x - x.amax(dim=-1, keepdim=True)).exp_()
        y = y.div_(y.sum(dim=-1, keepdim=True))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return y * (grad - (grad * y).sum(dim=-1, keepdim=True))


def short_softmax(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis as whole-tensor passes (any row length; see the module
    docstring). Entries of ``-inf`` get weight 0; a row that is all ``-inf`` gives NaN, as
    ``torch.softmax`` does.

    Shapes: ``[..., n]`` → ``[..., n]``.

    Examples
    --------
    >>> short_softmax(torch.tensor([[0.0, 0.0, float("-inf")], [0.0, 1.0, 2.0]]))
    tensor([[0.5000, 0.5000, 0.0000],
            [0.0900, 0.2447, 0.6652]])
    """
    return _ShortSoftmax.apply(x)


def attention_softmax(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis by the cheaper route on this device: :func:`short_softmax` for
    rows shorter than :data:`SHORT_ROW` of a float32 or float64 tensor on a CPU,
    ``torch.softmax`` otherwise (half-precision maps keep PyTorch's kernel, which accumulates in
    float32).

    Shapes: ``[..., n]`` → ``[..., n]``.
    """
    full_precision = x.dtype in (torch.float32, torch.float64)  # half types: torch's kernel
    if x.device.type == "cpu" and full_precision and x.shape[-1] < SHORT_ROW:
        return short_softmax(x)
    return x.softmax(dim=-1)
