"""Progress bars that honour ``TQDM_DISABLE`` everywhere.

``tqdm.auto`` picks the notebook (ipywidgets) bar inside Jupyter, and that bar does not read
``TQDM_DISABLE``: executed chapters would carry widget outputs even when the pipeline asked for
no bars. :func:`progress` reads the variable itself and otherwise defers to ``tqdm.auto``.
"""

from __future__ import annotations

import os

from tqdm.auto import tqdm


def bars_disabled() -> bool:
    """True when the environment variable ``TQDM_DISABLE`` is set to anything but ``""``/``0``."""
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false")


def progress(iterable=None, *, disable: bool = False, **kwargs):
    """``tqdm.auto.tqdm(iterable, **kwargs)``, silent when ``disable`` or :func:`bars_disabled`."""
    return tqdm(iterable, disable=disable or bars_disabled(), **kwargs)
