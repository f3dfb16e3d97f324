"""One training loop for every method in the book.

:func:`fit` trains a model on index batches of cached features, and

* **checkpoint-or-train**: a finished checkpoint is loaded instead of training again;
* **resume**: an interrupted run continues from its last epoch (model, optimiser and random
  state restored), giving the same result as an uninterrupted one;
* writes the checkpoint atomically after every epoch, so a crash never leaves a torn file;
* **guards against NaN/inf**: a non-finite loss stops training with a message that says what
  is on disk and exactly what to run next, and the last good checkpoint (if an epoch finished)
  stays on disk untouched;
* a damaged checkpoint file raises :class:`DamagedCheckpointError` naming it and the command
  that removes it;
* uses mixed precision when asked (fp16 + gradient scaling on CUDA, bfloat16 on CPU), on any
  device;
* **runs on several processes** with ``distributed=True`` under ``torchrun``: each rank takes a
  contiguous slice of every global batch, DDP averages the gradients, only rank 0 writes the
  checkpoint (see :mod:`cirlib.distributed`).

Introduced in chapter "The Combiner baseline"; every method chapter reuses it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shlex
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cirlib.io import atomic_torch_save, exclusive
from cirlib.progress import progress
from cirlib.threads import recount_threads


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite."""


class DamagedCheckpointError(RuntimeError):
    """A checkpoint file exists but cannot be read (truncated, empty, overwritten)."""


def removal_advice(path: str | os.PathLike) -> str:
    """How to delete ``path``, as a shell command and as a Python call (chapters run in Jupyter)."""
    return f"`rm {shlex.quote(str(path))}` in a shell, or `Path({str(path)!r}).unlink()` in Python"


def load_checkpoint(
    path: str | os.PathLike, map_location="cpu", *, weights_only: bool = False
) -> dict:
    """Read a checkpoint (a dict saved with ``torch.save``): :func:`fit`'s, or the toy encoder's
    pretraining checkpoint (``weights_only=True``).

    Raises
    ------
    DamagedCheckpointError
        When the file cannot be read as a checkpoint; the message names the file and says how
        to remove it. A checkpoint is a training result, so it is never deleted behind the
        reader's back (a feature cache, being derived data, is rebuilt instead).
    """
    try:
        state = torch.load(path, map_location=map_location, weights_only=weights_only)
        if not isinstance(state, dict):
            raise ValueError(f"it holds a {type(state).__name__}, not a checkpoint's dict")
    except (PermissionError, FileNotFoundError, IsADirectoryError):
        raise  # not the file's bytes (the reader raises OSError(EINVAL) on a truncated one)
    except Exception as err:  # the zip reader and the unpickler raise many kinds on bad bytes
        raise DamagedCheckpointError(
            f"checkpoint {path} is damaged and cannot be read ({type(err).__name__}: {err}). "
            f"Delete it with {removal_advice(path)}, then run again: the run is retrained "
            "from its first epoch."
        ) from None
    return state


@dataclass
class FitResult:
    model: torch.nn.Module
    history: list[dict] = field(default_factory=list)
    checkpoint: Path | None = None
    trained_epochs: int = 0  # epochs run in this call (0 when a finished checkpoint was loaded)


def settings_fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def checkpoint_epoch(checkpoint: str | os.PathLike | None) -> int:
    """Epochs already trained in a checkpoint written by :func:`fit` (0 when there is none).

    Recipes whose loss follows an epoch schedule (MGUR's blend, DQE-CIR's miner refreshes) start
    their clock here, so a resumed run continues the schedule where it stopped.
    """
    if checkpoint is None or not Path(checkpoint).exists():
        return 0
    return int(load_checkpoint(checkpoint)["epoch"])


def _fused_adam_ok(model: torch.nn.Module) -> bool:
    """Whether ``torch.optim.Adam(fused=True)`` supports every parameter of ``model``: floating
    point tensors on a CPU or CUDA device (other devices use the per-tensor loop)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return bool(params) and all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params
    )


def _environment(device: torch.device) -> dict:
    """What the arithmetic of a run depends on besides its settings: the torch version, the
    device and, on a CPU, the thread count (matrix products split their sums by thread, so the
    same run rounds differently with 1 and 2 threads; measured: the Combiner's toy R@1 moved
    by 0.3 points)."""
    env = {"torch": torch.__version__, "device": device.type}
    if device.type == "cpu":
        env["threads"] = torch.get_num_threads()
    else:
        env["device_name"] = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return env


def trained_with(checkpoint: str | os.PathLike) -> list[dict]:
    """How a checkpoint was trained: one entry per :func:`fit` call that trained it (a resumed
    run has several), each ``{"from_epoch", "torch", "device", "threads" (CPU) or
    "device_name" (CUDA), ["processes"]}``. Empty for checkpoints written before this record
    existed.

    Introduced in chapter "Comparing the methods".
    """
    return list(load_checkpoint(checkpoint).get("trained_with", []))


def seconds_per_step(
    model: torch.nn.Module,
    loss_fn: Callable,
    batches: Sequence[torch.Tensor],
    *,
    lr: float = 1e-4,
    rounds: int = 2,
) -> float:
    """Seconds per training step of ``model`` under ``loss_fn(model, idx)``: forward, backward
    and the Adam step :func:`fit` takes (fused where :func:`fit` fuses it), the best of
    ``rounds`` passes over ``batches`` after one warm-up step (the minimum is the least noisy
    figure on a shared machine). ``model`` trains while it is timed: give it a fresh one.

    For the chapters' cost comparisons; the ratio between two methods timed alike is the number
    that carries over to other machines, not the milliseconds.

    Introduced in chapter "MGUR: multi-grained uncertainty regularisation"; chapters 5-7 reuse it.
    """
    if not batches or rounds < 1:
        raise ValueError("seconds_per_step needs at least one batch and one round")
    opt = torch.optim.Adam(model.parameters(), lr=lr, fused=_fused_adam_ok(model))
    model.train()

    def step(idx):
        loss = loss_fn(model, idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step(batches[0])  # one-off costs: allocations, a miner's first pools
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for idx in batches:
            step(idx)
        best = min(best, (time.perf_counter() - start) / len(batches))
    return best


def _non_finite_advice(
    value: float, epoch: int, batch: int, path: Path | None, saved_epochs: int, lr: float, amp: bool
) -> str:
    """What a non-finite loss leaves on disk and what to run next, as true as the run's state.

    The learning rate is part of a checkpoint's settings (:func:`fit` refuses to resume one at
    another rate), so a lower rate means deleting the checkpoint and training from epoch 1;
    mixed precision is not, so turning it off resumes from the last saved epoch.
    """
    lower = f"a lower learning rate (e.g. lr={lr / 10:g} instead of {lr:g})"
    text = f"loss is {value} at epoch {epoch + 1}, batch {batch + 1}. Nothing was saved for it. "
    if path is None:
        return text + f"This run keeps no checkpoint: run it again with {lower}."
    if saved_epochs == 0:
        text += f"No checkpoint was written ({path} does not exist): run again with {lower}"
        return text + (", or with mixed precision off (amp=False)." if amp else ".")
    text += (
        f"The last good checkpoint, {path}, holds epoch {saved_epochs} at lr={lr:g}. "
        "It cannot continue at another learning rate (the rate is part of its settings): to "
        f"retrain with {lower}, delete it first ({removal_advice(path)}) or give the new run "
        "its own checkpoint path"
    )
    if amp:
        text += (
            f"; or run again with mixed precision off (amp=False), which resumes from epoch "
            f"{saved_epochs}"
        )
    return text + "."


def _process_group() -> bool:
    """True under torchrun with several ranks (see :func:`cirlib.distributed.is_distributed`)."""
    from cirlib.distributed import is_distributed

    return is_distributed()


def fit(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor],
    n_samples: int,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int = 0,
    checkpoint: str | os.PathLike | None = None,
    settings: dict | None = None,
    device: str | torch.device = "cpu",
    amp: bool = False,
    amp_dtype: torch.dtype | None = None,
    weight_decay: float = 0.0,
    eval_fn: Callable[[torch.nn.Module], dict] | None = None,
    stop_after_epoch: int | None = None,
    desc: str = "train",
    distributed: bool = False,
    optimizer: Callable[[torch.nn.Module], torch.optim.Optimizer] | None = None,
) -> FitResult:
    """Train ``model`` with Adam for ``epochs`` over ``n_samples`` indices (the fused Adam kernel
    where the device has one).

    Parameters
    ----------
    loss_fn : ``loss_fn(model, batch_indices) -> scalar loss``; the caller's closure gathers the
        features of those indices (so one loop serves every method).
    checkpoint : where to save; ``None`` trains without saving.
    settings : what defines the run (method, hyper-parameters, data); stored in the checkpoint
        and compared on load, so a checkpoint from other settings is never silently reused.
    eval_fn : called after each epoch in eval mode; its dict joins that epoch's history.
    stop_after_epoch : stop early after this epoch (used to demonstrate and test resuming).
    distributed : when a process group with several ranks is initialised (torchrun), wrap the
        model in DDP and give ``loss_fn`` this rank's contiguous slice of each global batch
        (``batch_size`` is the global batch and must be a multiple of the number of ranks). The
        loss must gather across ranks (:func:`cirlib.distributed.global_batch`) to equal the
        single-process loss. Only rank 0 writes the checkpoint and runs ``eval_fn``; its record
        is shared with the other ranks. Without a process group this flag changes nothing.
    optimizer : ``optimizer(model) -> torch.optim.Optimizer`` replaces the default
        ``Adam(lr, weight_decay)`` (e.g. AdamW over the trainable parameters for CLIP4Cir's
        stage 1); name it in ``settings`` so checkpoints of different optimisers differ.
    """
    device = torch.device(device)
    if device.type == "cpu":
        recount_threads()  # a chapter's free cores, counted again for this run
    model.to(device)
    segment = _environment(device)
    fingerprint = settings_fingerprint(
        {"settings": settings or {}, "epochs": epochs, "bs": batch_size, "lr": lr, "seed": seed}
    )
    if optimizer is None:
        # The fused kernel updates every parameter in one pass: on the book's CPU it made the
        # Combiner's Adam step 7x cheaper (6.6 ms -> 0.9 ms) than the per-tensor loop.
        opt = torch.optim.Adam(
            model.parameters(), lr=lr, weight_decay=weight_decay, fused=_fused_adam_ok(model)
        )
    else:
        opt = optimizer(model)
    use_scaler = amp and device.type == "cuda" and (amp_dtype or torch.float16) == torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    dtype = amp_dtype or (torch.float16 if device.type == "cuda" else torch.bfloat16)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    history: list[dict] = []
    segments: list[dict] = []  # the checkpoint's "trained_with" record
    start = 0

    path = Path(checkpoint) if checkpoint is not None else None
    # Chapters executed side by side may ask for the same checkpoint (the short Combiner of
    # chapters 4-7): the second waits here, then loads the run the first saved, instead of both
    # training it and resuming from each other's epochs. Under DDP every rank calls fit with the
    # same path and only rank 0 writes, so ranks do not lock (one would wait for the others).
    lock = path is not None and not (distributed and _process_group())
    with exclusive(path) if lock else nullcontext():
        if path is not None and path.exists():
            state = load_checkpoint(path, map_location=device)
            if state.get("fingerprint") != fingerprint:
                raise ValueError(
                    f"checkpoint {path} was written with other settings; delete it to retrain "
                    f"({removal_advice(path)}), or give this run its own checkpoint path"
                )
            model.load_state_dict(state["model"])
            history = state["history"]
            segments = list(state.get("trained_with", []))
            start = state["epoch"]
            if start >= epochs:
                model.eval()
                return FitResult(model, history, path, 0)
            opt.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
            gen.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])

        ddp = None
        if distributed:
            from cirlib import distributed as ddp

            if not ddp.is_distributed():
                ddp = None
        if ddp is not None:
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
            if batch_size % world:
                raise ValueError(
                    f"batch_size {batch_size} is the global batch and must be a multiple of the "
                    f"{world} processes"
                )
            train_model = ddp.wrap_ddp(model, device)
            if rank > 0:
                # Same seed everywhere would give every rank the same dropout masks for its rows;
                # derive a stream per rank from rank 0's state (also after a resume).
                torch.manual_seed(int(torch.randint(2**62, (1,))) + rank)
        else:
            rank, train_model = 0, model

        if ddp is not None:
            segment["processes"] = world
        segments.append({"from_epoch": start + 1, **segment})
        trained = 0
        # Only rank 0 shows a bar (and none at all when TQDM_DISABLE is set: see cirlib.progress).
        bar = progress(
            range(start, epochs), desc=desc, initial=start, total=epochs, disable=rank != 0
        )
        for epoch in bar:
            model.train()
            order = torch.randperm(n_samples, generator=gen)
            n_batches = max(1, n_samples // batch_size)  # drop the ragged end: fewer negatives
            total = 0.0
            for b in range(n_batches):
                idx = order[b * batch_size : (b + 1) * batch_size]
                if ddp is not None:
                    idx = ddp.rank_slice(idx, rank, world)
                with torch.autocast(device.type, dtype=dtype, enabled=amp):
                    loss = loss_fn(train_model, idx)
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(
                        _non_finite_advice(loss.item(), epoch, b, path, start + trained, lr, amp)
                    )
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                total += loss.detach().item()
            record = {"epoch": epoch + 1, "loss": total / n_batches}
            if eval_fn is not None and rank == 0:
                model.eval()
                with torch.no_grad():
                    record.update(eval_fn(model))
            if eval_fn is not None and ddp is not None:
                shared = [record]
                torch.distributed.broadcast_object_list(shared, src=0)
                record = shared[0]
            history.append(record)
            trained += 1
            bar.set_postfix(loss=f"{record['loss']:.4f}")
            if path is not None and rank == 0:
                atomic_torch_save(
                    path,
                    {
                        "model": model.state_dict(),
                        "optimizer": opt.state_dict(),
                        "scaler": scaler.state_dict(),
                        "generator": gen.get_state(),
                        "torch_rng": torch.get_rng_state(),
                        "epoch": epoch + 1,
                        "history": history,
                        "fingerprint": fingerprint,
                        "settings": settings or {},
                        "trained_with": segments,
                    },
                )
            if path is not None and ddp is not None:
                ddp.barrier()  # no rank runs ahead of (or resumes from) a checkpoint still being written
            if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
                break
        model.eval()
        return FitResult(model, history, path, trained)


@dataclass(frozen=True)
class TrainingRun:
    """What a method's ``loss(features, settings, run)`` may need besides its settings.

    Attributes
    ----------
    epochs : the run's length (a schedule's horizon).
    batches_per_epoch : batches :func:`fit` makes per epoch, ``max(1, n // batch_size)``.
    start_epoch : epochs already in the checkpoint (a resumed run continues its schedules).
    seed : the run's seed.
    split : the training :class:`~cirlib.data.records.CIRSplit`, or None.
    device : where the features go.
    options : the run-only options the method's spec accepts (``MethodSpec.run_options``).
    """

    epochs: int
    batches_per_epoch: int
    start_epoch: int = 0
    seed: int = 0
    split: object | None = None
    device: str | torch.device = "cpu"
    options: dict = field(default_factory=dict)


def train_method(
    spec,
    train_features,
    cfg,
    *,
    seed: int,
    split=None,
    checkpoint: str | os.PathLike | None = None,
    settings=None,
    epochs: int | None = None,
    eval_fn: Callable[[torch.nn.Module], dict] | None = None,
    distributed: bool = False,
    stop_after_epoch: int | None = None,
    **options,
) -> FitResult:
    """Train any registered method (a :class:`cirlib.methods.spec.MethodSpec`) on cached
    features: the one training call every method shares.

    ``settings`` (default: the spec's ``Settings()``) with ``options`` replacing its fields; an
    option that is neither a setting nor one of the spec's ``run_options`` is refused. Then:
    seed, ``spec.build``, ``spec.loss`` with a :class:`TrainingRun`, and :func:`fit` on the
    profile's batch size, learning rate and epochs (``epochs`` overrides them), with
    ``spec.record(settings)`` as the checkpoint's settings. ``distributed=True`` under
    torchrun trains on all ranks over the global batch; it is not a setting of the run, so the
    checkpoint is the one a one-process run would load.

    Introduced in chapter "Comparing the methods".
    """
    if spec.needs_split and split is None:
        raise ValueError(
            f"{spec.title} trains with split=<the training CIRSplit> (its loss reads the split)"
        )
    fields = {f.name for f in dataclasses.fields(spec.settings)}
    run_options = {k: options.pop(k) for k in list(options) if k in spec.run_options}
    unknown = sorted(set(options) - fields)
    if unknown:
        known = sorted(fields | set(spec.run_options))
        raise ValueError(f"unknown {spec.title} option(s) {unknown}; known: {known}")
    chosen = dataclasses.replace(settings if settings is not None else spec.settings(), **options)
    if spec.complete is not None:
        chosen = spec.complete(train_features, chosen)
    torch.manual_seed(seed)
    model = spec.build(train_features, chosen)
    if distributed and spec.frozen_for_ddp is not None:
        for module in spec.frozen_for_ddp(model, chosen):
            module.requires_grad_(False)
    record = spec.record(chosen)
    if getattr(cfg, "dataset", "toy") != "toy":
        # Checkpoint names carry the profile and the encoder, not the dataset: recording it makes
        # a head trained on one dataset refuse to load for another in the same data folder
        # (instead of being reused silently). Toy-world records stay as they were.
        record = {**record, "dataset": cfg.dataset}
    n = spec.samples(train_features, chosen)  # triplets, or images for a zero-shot method
    run = TrainingRun(
        epochs=epochs or cfg.epochs,
        batches_per_epoch=max(1, n // cfg.batch_size),
        start_epoch=checkpoint_epoch(checkpoint),
        seed=seed,
        split=split,
        device=cfg.device,
        options=run_options,
    )
    return fit(
        model,
        spec.loss(train_features, chosen, run),
        n,
        epochs=run.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        seed=seed,
        checkpoint=checkpoint,
        settings=record,
        device=cfg.device,
        amp=cfg.amp,
        eval_fn=eval_fn,
        stop_after_epoch=stop_after_epoch,
        desc=f"{spec.title} seed {seed}",
        distributed=distributed,
        optimizer=spec.optimizer(chosen, cfg) if spec.optimizer is not None else None,
    )
