"""A short content hash of a tensor, for a checkpoint's settings.

The zero-shot recipes train on a tensor of features the caller chose (a subset of the training
images, or the pseudo-words an inversion found). Their number alone does not identify them, so
the settings stored in a checkpoint carry this digest: a run on other features then refuses the
checkpoint (:func:`cirlib.train.fit`) instead of silently loading it.
"""

from __future__ import annotations

import hashlib

import torch

__all__ = ["tensor_digest"]


def tensor_digest(x: torch.Tensor) -> str:
    """SHA-256 (16 hex digits) of ``x``'s shape, dtype and values (moved to the CPU, contiguous)."""
    x = x.detach().cpu().contiguous()
    h = hashlib.sha256(f"{tuple(x.shape)}|{x.dtype}".encode())
    h.update(x.view(torch.uint8).numpy().tobytes() if x.numel() else b"")
    return h.hexdigest()[:16]
