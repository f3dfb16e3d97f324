"""Where data, feature caches and checkpoints live.

``CIRLIB_DATA_DIR`` overrides everything; on Colab the default is ``/content/cirlib``, elsewhere
``~/.cache/cirlib``. Notebooks never use paths relative to the working directory.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_root() -> Path:
    env = os.environ.get("CIRLIB_DATA_DIR")
    if env:
        root = Path(env)
    elif Path("/content").is_dir() and "COLAB_RELEASE_TAG" in os.environ:
        root = Path("/content/cirlib")
    else:
        root = Path.home() / ".cache" / "cirlib"
    root.mkdir(parents=True, exist_ok=True)
    return root


def subdir(name: str) -> Path:
    path = data_root() / name
    path.mkdir(parents=True, exist_ok=True)
    return path
