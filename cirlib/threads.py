"""The thread count of a training run, without the trainer knowing who chose it.

A chapter's first cell (:func:`cirlib.notebook.setup_notebook`) may choose the thread count from
the cores that are free at that moment; :func:`cirlib.train.fit` asks again before every run.
The trainer only calls :func:`recount_threads`; whoever chose the count registers how to choose
it again with :func:`on_training_run`. So the training loop does not import the notebook
helpers (a library layer would otherwise depend on the layer that sits above it).
"""

from __future__ import annotations

from collections.abc import Callable

_recount: list[Callable[[], object] | None] = [None]


def on_training_run(recount: Callable[[], object] | None) -> None:
    """Call ``recount()`` before every CPU training run from now on (None: stop calling it)."""
    _recount[0] = recount


def recount_threads() -> None:
    """Run the registered recount, if any (:func:`cirlib.train.fit` calls it on a CPU)."""
    if _recount[0] is not None:
        _recount[0]()
