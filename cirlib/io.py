"""Atomic writes: a file is either the old version or the complete new one, never half of it.

Every cache, checkpoint and export in cirlib goes through these helpers, so an interrupted run
leaves no truncated file that a later run would trust.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success rename it onto ``path`` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``path`` atomically."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any, **dump_kwargs) -> Path:
    """Write ``obj`` as JSON atomically (UTF-8)."""

    def _write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, **dump_kwargs)

    return atomic_write(path, _write)


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save`` atomically."""
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


@contextmanager
def exclusive(path: str | os.PathLike):
    """Hold an exclusive lock on ``path`` for the ``with`` block: another process entering
    ``exclusive`` on the same path waits until this one leaves.

    The lock is an advisory ``flock`` on an empty file ``.<name>.lock`` beside ``path`` (kept
    afterwards: removing it would let two later processes lock two different files). Used by
    :func:`cirlib.train.fit`, so that two chapters executed side by side never train the same
    checkpoint twice: the second waits, then loads what the first saved. Where ``fcntl`` does
    not exist (Windows), or the file system refuses locks (some network and FUSE mounts, such
    as a mounted Google Drive), the block runs unlocked: one process per checkpoint is then the
    caller's business, as it was before the lock.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on the book's platforms
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:  # no locks on this file system
            yield
            return
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
