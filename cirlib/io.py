"""Atomic writes: a file is either the old version or the complete new one, never half of it.

Every cache, checkpoint and export in cirlib goes through these helpers, so an interrupted run
leaves no truncated file that a later run would trust. The new file gets the mode a plain
``open(path, "w")`` would give it (the old file's mode when it replaces one, else ``0o666``
minus the umask), a full disk ends in one sentence naming the file, and temporary files left by
a killed writer are removed by the next write of the same file.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import secrets
import shutil
import stat
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# A temporary file younger than this is never removed by another writer, even unlocked: it may
# have been created a moment ago by a process that has not taken its lock yet.
STALE_PART_SECONDS = 60.0


class DiskFullError(OSError):
    """The disk filled up while a file was written; nothing half-written was left behind."""


def _part_name(path: Path) -> Path:
    return path.parent / f".{path.name}.{secrets.token_hex(4)}.part"


def _try_lock(fd: int) -> bool | None:
    """Take a non-blocking exclusive ``flock`` on ``fd``: True if taken, False if another
    process holds it, None where locks do not exist (no ``fcntl``, or a file system without
    them)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on the book's platforms
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError:
        return None


def remove_stale_parts(
    path: str | os.PathLike, *, min_age: float = STALE_PART_SECONDS
) -> list[Path]:
    """Delete the temporary files ``.<name>.*.part`` of ``path`` that no live writer holds.

    A writer in :func:`atomic_path` keeps an exclusive lock on its temporary file until it
    renames it, and the kernel drops the lock when the process dies; so a temporary file that
    can be locked, and was not modified for ``min_age`` seconds, belongs to a writer that was
    killed. Where locks do not exist, only files untouched for an hour are removed. Returns
    the removed files.
    """
    path = Path(path)
    removed = []
    now = time.time()
    for part in path.parent.glob(f".{glob.escape(path.name)}.*.part"):
        try:
            age = now - part.stat().st_mtime
            if age < min_age:
                continue
            fd = os.open(part, os.O_RDONLY)
        except OSError:  # gone already, or not ours to read
            continue
        try:
            locked = _try_lock(fd)
            if locked or (locked is None and age > 3600):
                part.unlink(missing_ok=True)
                removed.append(part)
        finally:
            os.close(fd)
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success rename it onto ``path`` in one step.

    The temporary file is created with ``0o666`` minus the umask (or the mode of the file it
    replaces), like a plain ``open(path, "w")``; it is locked while it exists (see
    :func:`remove_stale_parts`, which runs first). A full disk (``ENOSPC``, ``EDQUOT``) raises
    :class:`DiskFullError` naming ``path``; on any error the temporary file is removed and
    ``path`` keeps its old content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(path)
    while True:
        tmp = _part_name(path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
            break
        except FileExistsError:  # pragma: no cover - 32 random bits collided
            continue
    try:
        _try_lock(fd)
        try:
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))  # an overwrite keeps the mode
        except FileNotFoundError:
            pass
        try:
            yield tmp
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                free = shutil.disk_usage(path.parent).free
                raise DiskFullError(
                    err.errno,
                    f"the disk is full: {path} could not be written ({free / 1e6:.0f} MB free "
                    f"in {path.parent}). Nothing half-written was left and the old file, if "
                    "any, is unchanged; free some space (old feature caches and checkpoints "
                    "under the data folder can be deleted: they are rebuilt) and run again",
                ) from None
            raise
        os.replace(tmp, path)
    finally:
        os.close(fd)  # drops the lock
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

    def _write(tmp: Path) -> None:
        # Through a Python file object: a full disk then raises OSError(ENOSPC) rather than
        # torch's writer's "unexpected pos" RuntimeError, which names no cause.
        with open(tmp, "wb") as f:
            torch.save(obj, f)

    return atomic_write(path, _write)


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
