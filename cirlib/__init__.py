"""cirlib: the small tested library behind the Composed Image Retrieval book.

Chapters import from here; nothing a chapter needs twice lives in a notebook. The curated public
API is small and flat (like ``ot.sinkhorn`` or ``open_clip.create_model``)::

    import cirlib
    from cirlib import evaluate, resolve, setup_notebook

    cfg = resolve("toy")
    spec = cirlib.methods.get("mgur")          # every registered method: cirlib.methods.registered()
    loss = cirlib.losses.batch_classification_loss(queries, targets)

* set-up: :func:`resolve`, :func:`setup_notebook`, :func:`glue`, :func:`glue_run_time`,
  :func:`subdir`;
* data and features: :func:`load_splits`, :func:`load_backbone`, :func:`cached_features`,
  :func:`encoder_id`;
* training: :func:`fit`, :func:`train_method`, :func:`seconds_per_step`,
  :func:`checkpoint_path`;
* evaluation and reporting: :func:`evaluate`, :func:`format_mean_std`;
* the pieces, one subpackage each: :mod:`cirlib.methods` (``get``, ``registered``),
  :mod:`cirlib.losses`, :mod:`cirlib.miners`, :mod:`cirlib.ot`, :mod:`cirlib.eval`,
  :mod:`cirlib.models`, :mod:`cirlib.data`, :mod:`cirlib.viz`.

Everything is imported on first use, so ``import cirlib`` itself is cheap (no torch).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "resolve": "cirlib.config",
    "setup_notebook": "cirlib.notebook",
    "glue": "cirlib.notebook",
    "glue_run_time": "cirlib.notebook",
    "subdir": "cirlib.paths",
    "load_splits": "cirlib.data.registry",
    "load_backbone": "cirlib.models.backbone",
    "cached_features": "cirlib.data.features",
    "encoder_id": "cirlib.data.features",
    "fit": "cirlib.train",
    "train_method": "cirlib.train",
    "seconds_per_step": "cirlib.train",
    "checkpoint_path": "cirlib.registry",
    "evaluate": "cirlib.eval",
    "format_mean_std": "cirlib.report",
}
_SUBPACKAGES = ("data", "eval", "losses", "methods", "miners", "models", "ot", "viz")

__all__ = sorted([*_EXPORTS, *_SUBPACKAGES])


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(
            f"module 'cirlib' has no attribute {name!r}; the public names are {__all__} "
            "(everything else is importable from its own module, e.g. cirlib.methods.mgur)"
        )
    globals()[name] = value  # looked up once
    return value


def __dir__():
    return sorted({*globals(), *__all__})
