"""The toy world's former address: it moved to :mod:`cirlib.toyworld` (the encoder's vocabulary
and pretraining read it, and :mod:`cirlib.data` reads the encoder, so living inside ``data`` made
``data`` and ``models`` import each other). ``cirlib.data.toyworld`` and its submodules stay
importable as the same module objects."""

import sys

from cirlib import toyworld
from cirlib.toyworld import *  # noqa: F403
from cirlib.toyworld import edits, render, scene, world

__all__ = toyworld.__all__

for _module in (edits, render, scene, world):
    sys.modules[f"{__name__}.{_module.__name__.rsplit('.', 1)[1]}"] = _module
