"""Freeze a module's parameters for the duration of a block (the frozen encoder of zero-shot CIR).

Gradients still flow *through* a frozen text tower to the pseudo-word at its input; they are
simply not accumulated into its weights, which saves the weight-gradient work and leaves the
encoder exactly as it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["frozen"]


@contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """``requires_grad=False`` on every parameter of ``module`` inside the block, restored after;
    the module is in eval mode inside the block and its mode is restored after."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    was_training = module.training
    for p, _ in flags:
        p.requires_grad_(False)
    module.eval()
    try:
        yield module
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        module.train(was_training)
