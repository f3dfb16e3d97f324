"""What every chapter calls first: seeding, threads, warnings, and a one-line profile summary."""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path

import torch

from cirlib.notebook_magics import register_toy_only
from cirlib.seed import deterministic, seed_everything
from cirlib.threads import on_training_run

_started: dict[str, float | str] = {}  # when setup_notebook ran, and under which profile
_auto_threads = [False]  # setup_notebook chose the thread count from the free cores


def setup_notebook(cfg, threads: int | None = None) -> None:
    """Seed everything, make kernels deterministic, fix the thread count, quiet known noise.

    Threads: ``threads`` if given, else ``$CIRLIB_THREADS`` (:func:`pinned_threads`), else the
    free cores, counted again before every training run (:func:`adapt_threads`). Also starts the
    chapter's clock, which :func:`glue_run_time` reads in the last cell."""
    _started.update(seconds=time.monotonic(), profile=cfg.name)
    seed_everything(cfg.seed)
    deterministic(True)
    threads = threads or pinned_threads()
    if threads or cfg.device == "cpu":
        torch.set_num_threads(threads or _free_cores())
    # Chosen from the free cores: adapt_threads() (called by every training run) looks again.
    _auto_threads[0] = threads is None and cfg.device == "cpu"
    on_training_run(adapt_threads)
    # open_clip logs a warning every time a toy model is built before its weights are loaded
    logging.getLogger().setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*deterministic.*")
    warnings.filterwarnings("ignore", category=FutureWarning)
    _inline_figures()
    register_toy_only(cfg.dataset)  # %%toy_only cells skip themselves on real datasets
    print(cfg.describe())


def _busy_cores(interval: float = 0.3) -> float | None:
    """Cores in use right now, from two samples of ``/proc/stat`` (Linux); None elsewhere.

    The load average would be the obvious source, but it is a one-minute average: in a book
    build the previous chapter's kernel, just finished, still counts as one busy core for the
    next chapter, which then runs single-threaded on an idle machine (measured: a Combiner step
    takes 70 ms with 1 thread and 48 ms with 2 on an idle 2-core machine).
    """
    import time

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(interval)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (os.cpu_count() or 1) * (1 - (idle1 - idle0) / (total1 - total0))


THREADS = "CIRLIB_THREADS"  # a fixed thread count for every chapter (the book build sets it)


def pinned_threads() -> int | None:
    """The thread count ``$CIRLIB_THREADS`` fixes, or None when it is unset.

    ``tests/notebooks/run_notebooks.py`` executes independent chapters side by side and sets it
    to the cores per chapter (1 on a 2-core machine), so that each run's thread count is fixed
    by the machine and not by which chapters happened to be running at the time: the same seed
    trained on 1 and on 2 threads ends with different weights (the sums are split differently),
    and the book's numbers should not depend on the build's timing. Set it yourself to reproduce
    a build's numbers (the checkpoints record the count: ``cirlib.train.trained_with``).
    """
    value = os.environ.get(THREADS, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(
            f"{THREADS}={value!r}: give a whole number of CPU threads (1 or more), or unset it "
            "to let each chapter use the cores that are free"
        )
    return int(value)


def _free_cores() -> int:
    """Cores not already busy (at most 4). On a loaded machine extra torch threads only fight
    for cores: a small training step was measured 5x slower with 2 threads than with 1."""
    cores = os.cpu_count() or 1
    busy = _busy_cores()
    if busy is None:
        try:
            busy = os.getloadavg()[0]
        except OSError:
            busy = 0.0
    return max(1, min(4, cores - round(busy)))


def adapt_threads() -> int:
    """Count the free cores again and use them, when :func:`setup_notebook` chose the thread
    count that way; otherwise leave it. Returns the thread count in use.

    :func:`cirlib.train.fit` calls it before every training run. A chapter's thread count was
    fixed once, in its first cell, so a short burst of other work at that moment (measured: a
    few seconds of another process when a chapter started) left a whole chapter of training on
    one thread, about 1.5x slower on the 2-core machine; looking again per run bounds the damage
    to one run. Under ``$CIRLIB_THREADS`` (:func:`pinned_threads`) the count stays fixed.
    """
    if _auto_threads[0]:
        torch.set_num_threads(_free_cores())
    return torch.get_num_threads()


def _inline_figures() -> None:
    """Show figures inline in a notebook even when MPLBACKEND=Agg is set (as CI sets it)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and getattr(shell, "kernel", None) is not None:
        shell.run_line_magic("matplotlib", "inline")


def realdata_dir() -> Path | None:
    """The real annotation files (CIRR, FashionIQ, Shoes; no images) when they are available:
    ``$CIR_REALDATA``, or ``shared/realdata`` beside the repository. None otherwise (Colab)."""
    env = os.environ.get("CIR_REALDATA")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve().parents[1]
    candidates += [here.parent / "shared" / "realdata", here / "shared" / "realdata"]
    return next((p for p in candidates if (p / "cirr").is_dir()), None)


def glue(name: str, value, display: bool = False):
    """Store a number for the book's text (``{glue:text}`name:.1f```) and return it.

    Values are converted to plain Python floats/ints first (myst-nb cannot format NumPy-2
    scalar reprs); strings are stored as Markdown, for ``{glue:md}`name```. Outside a book build
    (e.g. on Colab without myst-nb) it only returns the value.
    """
    if hasattr(value, "item"):
        value = value.item()
    try:
        from IPython.display import Markdown
        from myst_nb import glue as _glue
    except ImportError:
        return value
    _glue(name, Markdown(value) if isinstance(value, str) else value, display=display)
    return value


def format_duration(seconds: float) -> str:
    """``"48 s"``, ``"6 min 12 s"`` or ``"1 h 3 min"``: a run time as a reader wants to see it."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {s} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def glue_run_time(name: str = "run_time") -> str:
    """Glue, as Markdown under ``name``, how long this chapter ran (from :func:`setup_notebook`
    to this call) and in which profile, e.g. ``"6 min 12 s in the `toy` profile"``.

    Every chapter calls it in its last cell, so the run time in its header is the executed run's
    own, not a number typed in from an earlier build.
    """
    if "seconds" not in _started:
        raise RuntimeError("glue_run_time() measures from setup_notebook(cfg): call that first")
    elapsed = time.monotonic() - _started["seconds"]
    return glue(name, f"{format_duration(elapsed)} in the `{_started['profile']}` profile")
