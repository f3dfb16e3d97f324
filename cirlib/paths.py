"""Where data, feature caches and checkpoints live.

``CIRLIB_DATA_DIR`` overrides everything; on Colab the default is ``/content/cirlib``, elsewhere
``~/.cache/cirlib``. Notebooks never use paths relative to the working directory.

The folder is checked once per process: it must be a folder (or creatable) and writable, else
:class:`DataDirError` says which folder, why, and how to choose another.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

_USABLE: set[Path] = set()  # folders that passed the check in this process


class DataDirError(OSError):
    """The data folder cannot be created or written; the message names ``CIRLIB_DATA_DIR``."""


def _default_root() -> Path:
    if Path("/content").is_dir() and "COLAB_RELEASE_TAG" in os.environ:
        return Path("/content/cirlib")
    return Path.home() / ".cache" / "cirlib"


def _reason(folder: Path, err: OSError) -> str:
    if isinstance(err, (FileExistsError, NotADirectoryError)) or (
        folder.exists() and not folder.is_dir()
    ):
        blocker = next(
            (p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), folder
        )
        return f"{blocker} is a file, not a folder"
    if err.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if err.errno == errno.EROFS:
        return "it is on a read-only file system"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full"
    return err.strerror or str(err)


def _refuse(folder: Path, err: OSError) -> DataDirError:
    env = os.environ.get("CIRLIB_DATA_DIR")
    where = (
        f"CIRLIB_DATA_DIR={env}"
        if env
        else f"the default data folder {folder} (CIRLIB_DATA_DIR is not set)"
    )
    return DataDirError(
        err.errno,
        f"{where} cannot hold cirlib's data: {folder} is not a writable folder "
        f"({_reason(folder, err)}). Set CIRLIB_DATA_DIR to a folder you can write, e.g. "
        "`export CIRLIB_DATA_DIR=$HOME/cirlib-data` in the shell, or "
        "`os.environ['CIRLIB_DATA_DIR'] = '/path/to/folder'` at the top of a notebook",
    )


def _usable(folder: Path) -> Path:
    """``folder``, created if needed (at every call: a test or a user may have removed it),
    after checking once per process that a file can be written in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if folder not in _USABLE:
            with tempfile.TemporaryFile(dir=folder):
                pass
    except OSError as err:
        raise _refuse(folder, err) from None
    _USABLE.add(folder)
    return folder


def data_root() -> Path:
    """The data folder: ``CIRLIB_DATA_DIR`` (``~`` expanded) or the default.

    A relative ``CIRLIB_DATA_DIR`` is refused: chapters run from ``notebooks/`` and scripts from
    the repository root would each make their own copy of the data, caches and checkpoints.
    """
    env = os.environ.get("CIRLIB_DATA_DIR")
    if not env:
        return _usable(_default_root())
    # `os.environ[...] = "~/cirlib"` in Python (unlike the shell) does not expand the tilde,
    # and would make a folder literally named "~" in the working directory
    root = Path(env).expanduser()
    if not root.is_absolute():
        raise DataDirError(
            errno.EINVAL,
            f"CIRLIB_DATA_DIR={env} is a relative path, so every working directory would get "
            f"its own data folder (chapters run from notebooks/, scripts from the repository "
            f"root); give an absolute path, e.g. CIRLIB_DATA_DIR={Path(env).absolute()}",
        )
    return _usable(root)


def subdir(name: str) -> Path:
    return _usable(data_root() / name)
