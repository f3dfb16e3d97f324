"""Checksums of every stage of a run, to find where two builds of the book stop agreeing.

A build is a chain: toy world (scenes, rendered images, triplets) -> the frozen encoder's
features of each split -> the batches each training run draws -> its parameters after each
step -> the numbers a chapter glues. :func:`stage_checksums` walks that chain for one profile
and records, per stage, a SHA-256 digest of each tensor or file (with its shape and dtype), in
pipeline order. Two records from two runs, two thread counts or two machines are compared with
:func:`first_difference`: the first entry whose digest differs is where the builds diverge, and
everything after it differs as a consequence. :func:`difference_sizes` measures how far apart
two saved copies of the differing tensors are (largest absolute and relative difference), which
is the size of the rounding effect at that stage.

The first training steps are recorded without touching the training loop:
:func:`recording_first_steps` temporarily wraps :func:`cirlib.train.fit` in the method modules,
so each recipe trains through its own code and its own ``fit`` call, and the wrapper sees the
batch indices ``fit`` draws and the parameters before each step.

Used by ``data_scripts/checksums.py``; what it measured belongs in chapter "Comparing the
methods" and ``book/setup.md`` (what a rebuild of the book reproduces).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

import cirlib.train as _train

Record = dict[str, dict]  # "stage/name" -> {"sha256", "shape", "dtype"} or {"value": ...}


def tensor_digest(x: torch.Tensor | np.ndarray) -> dict:
    """``{"sha256", "shape", "dtype"}`` of a tensor's bytes (C order, on the CPU).

    Two tensors get the same digest exactly when they have the same shape, dtype and bits:
    ``0.0`` and ``-0.0`` differ, and so do two NaNs with different payloads.
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        dtype = str(x.dtype).removeprefix("torch.")
        if x.dtype == torch.bfloat16:  # NumPy has no bfloat16: hash the same bits as int16
            x = x.view(torch.int16)
        arr = x.contiguous().numpy()
    else:
        arr = np.ascontiguousarray(x)
        dtype = str(arr.dtype)
    h = hashlib.sha256()
    h.update(json.dumps([list(arr.shape), dtype]).encode())
    h.update(arr.tobytes())
    return {"sha256": h.hexdigest(), "shape": list(arr.shape), "dtype": dtype}


def bytes_digest(chunks: Iterable[bytes]) -> dict:
    """``{"sha256", "count"}`` over a sequence of byte strings, each length-prefixed (so the
    same bytes cut differently give another digest)."""
    h, n = hashlib.sha256(), 0
    for chunk in chunks:
        h.update(len(chunk).to_bytes(8, "little"))
        h.update(chunk)
        n += 1
    return {"sha256": h.hexdigest(), "count": n}


def state_digest(module: torch.nn.Module) -> dict:
    """Digest of every entry of ``module.state_dict()`` (parameters and buffers), by name, and
    one ``"all"`` digest over them in the state dict's order."""
    state = module.state_dict()
    per_name = {name: tensor_digest(t)["sha256"] for name, t in state.items()}
    joint = bytes_digest(f"{k}={v}".encode() for k, v in per_name.items())["sha256"]
    return {"all": joint, **per_name}


# --- comparing two records -------------------------------------------------------------------


def _same(a: Mapping, b: Mapping) -> bool:
    return {k: v for k, v in a.items() if k != "note"} == {
        k: v for k, v in b.items() if k != "note"
    }


def first_difference(a: Mapping[str, dict], b: Mapping[str, dict]) -> str | None:
    """The first key, in ``a``'s order, whose entry differs between records ``a`` and ``b``
    (or that only one of them has); None when they agree on every key.

    Records list the stages in pipeline order, so this is the stage where two runs diverge.
    """
    for key in a:
        if key not in b or not _same(a[key], b[key]):
            return key
    for key in b:
        if key not in a:
            return key
    return None


def differing_keys(a: Mapping[str, dict], b: Mapping[str, dict]) -> list[str]:
    """Every key whose entry differs (or is missing from one record), in ``a``'s order, then
    ``b``'s extra keys."""
    out = [k for k in a if k not in b or not _same(a[k], b[k])]
    return out + [k for k in b if k not in a]


def difference_sizes(a: torch.Tensor, b: torch.Tensor) -> dict:
    r"""How far apart two float tensors of one shape are:

    .. math::

        \text{max\_abs} = \max_i |a_i - b_i|, \qquad
        \text{max\_rel} = \frac{\max_i |a_i - b_i|}{\max_i |a_i|}, \qquad
        \text{changed} = \frac{\#\{i : a_i \ne b_i\}}{n}

    computed in float64. A shape mismatch raises ``ValueError`` (there is nothing to compare
    element by element).
    """
    if a.shape != b.shape:
        raise ValueError(f"cannot compare tensors of shapes {tuple(a.shape)} and {tuple(b.shape)}")
    a64, b64 = a.detach().double().cpu(), b.detach().double().cpu()
    diff = (a64 - b64).abs()
    scale = float(a64.abs().max()) if a64.numel() else 0.0
    max_abs = float(diff.max()) if diff.numel() else 0.0
    return {
        "max_abs": max_abs,
        "max_rel": max_abs / scale if scale > 0 else 0.0,
        "changed": float((a64 != b64).double().mean()) if a64.numel() else 0.0,
    }


# --- recording the first training steps ------------------------------------------------------


class _EnoughSteps(Exception):
    """Raised inside ``fit`` by the recorder once it has seen the steps it was asked for."""


@contextmanager
def recording_first_steps(steps: int) -> Iterator[list[dict]]:
    """While active, every ``fit`` called by a cirlib method recipe trains ``steps`` steps only,
    without checkpoint or per-epoch evaluation, and appends to the yielded list one dict per
    ``fit`` call::

        {"batches": [[idx...], ...],            # the indices fit drew, step by step
         "losses": [float, ...],                # each step's loss (before its update)
         "states": [state_digest, ...],         # parameters before step 1, 2, ..., steps + 1
         "tensors": {"step<k>": {name: tensor}}}  # copies of those parameters

    ``states[0]`` is the initialisation and ``states[k]`` the parameters after ``k`` steps. Every
    method trains through :func:`cirlib.train.train_method`, which calls ``fit`` from
    :mod:`cirlib.train`; a module that imported ``fit`` by name (e.g. CLIP fine-tuning) holds its
    own reference, so the wrapper is put in every loaded ``cirlib`` module that holds that name,
    and taken out on exit.
    """
    if steps < 1:
        raise ValueError(f"steps={steps}: record at least one training step")
    real_fit = _train.fit
    calls: list[dict] = []

    def fit(model, loss_fn, n_samples, **kwargs):
        call = {"batches": [], "losses": [], "states": [], "tensors": {}}
        calls.append(call)

        def snapshot(m):
            module = getattr(m, "module", m)
            call["states"].append(state_digest(module))
            call["tensors"][f"step{len(call['states']) - 1}"] = {
                k: v.detach().clone() for k, v in module.state_dict().items()
            }

        def loss(m, idx):
            snapshot(m)
            if len(call["batches"]) == steps:
                raise _EnoughSteps
            call["batches"].append(idx.tolist())
            value = loss_fn(m, idx)
            call["losses"].append(float(value.detach()))
            return value

        kwargs.update(checkpoint=None, eval_fn=None)
        try:
            result = real_fit(model, loss, n_samples, **kwargs)
        except _EnoughSteps:
            return _train.FitResult(model.eval())
        snapshot(model)  # fewer steps in the whole run than asked for: its final parameters
        return result

    patched = [
        m
        for name, m in list(sys.modules.items())
        if name.startswith("cirlib.") and getattr(m, "fit", None) is real_fit
    ]
    for m in patched:
        m.fit = fit
    try:
        yield calls
    finally:
        for m in patched:
            m.fit = real_fit


# --- the stages of one profile ---------------------------------------------------------------


def _world_entries(world: Path, splits: Mapping) -> Record:
    """Scenes, rendered images (file bytes and decoded pixels), annotation files, triplets."""
    from PIL import Image

    out: Record = {}
    scenes = json.loads((world / "scenes.json").read_text())
    for name, split in splits.items():
        out[f"world/scenes/{name}"] = bytes_digest(
            json.dumps([n, scenes[n]], sort_keys=True).encode() for n in split.gallery
        )
    for name, split in splits.items():
        paths = [split.image_paths[n] for n in split.gallery]
        out[f"world/png/{name}"] = bytes_digest(Path(p).read_bytes() for p in paths)

        def pixels(paths=paths):
            for p in paths:
                with Image.open(p) as im:
                    yield np.asarray(im.convert("RGB")).tobytes()

        out[f"world/pixels/{name}"] = bytes_digest(pixels())
    for path in sorted(p for p in world.rglob("*.json")):
        rel = path.relative_to(world).as_posix()
        out[f"world/file/{rel}"] = bytes_digest([path.read_bytes()])
    for name, split in splits.items():
        out[f"world/triplets/{name}"] = bytes_digest(
            json.dumps(
                [
                    t.pair_id,
                    t.reference,
                    list(t.captions),
                    t.caption,
                    t.target,
                    list(t.subset or ()),
                    list(t.valid_targets or ()),
                    dict(t.meta),
                ],
                sort_keys=True,
            ).encode()
            for t in split.triplets
        )
        out[f"world/gallery/{name}"] = bytes_digest(n.encode() for n in split.gallery)
    return out


def _features_entries(feats: Mapping, kind: str, tensors: dict) -> Record:
    out: Record = {}
    for split, f in feats.items():
        for field, value in f.as_dict().items():
            if value is None:
                continue
            key = f"features/{kind}/{split}/{field}"
            out[key] = tensor_digest(value)
            tensors[key] = value
    return out


def _steps_entries(method: str, seed: int, call: dict, tensors: dict) -> Record:
    """In the order things happen: parameters before step k, its batch, its loss, ..."""
    out: Record = {}
    prefix = f"train/{method}/s{seed}"
    for k, state in enumerate(call["states"]):
        for name, digest in state.items():
            if name == "all":
                continue
            key = f"{prefix}/step{k}/{name}"
            out[key] = {"sha256": digest}
            tensors[key] = call["tensors"][f"step{k}"][name]
        out[f"{prefix}/step{k}/all"] = {"sha256": state["all"]}
        if k < len(call["batches"]):
            out[f"{prefix}/batch{k + 1}"] = tensor_digest(torch.tensor(call["batches"][k]))
        if k < len(call["losses"]):
            value = call["losses"][k]
            out[f"{prefix}/loss{k + 1}"] = {"value": float(value).hex(), "note": value}
    return out


def stage_checksums(
    cfg,
    *,
    methods: Iterable[str] = ("combiner", "mapnet"),
    seeds: Iterable[int] = (0,),
    steps: int = 3,
    full_runs: bool = True,
) -> tuple[Record, dict[str, torch.Tensor]]:
    """Checksums of every stage of profile ``cfg`` under the current ``$CIRLIB_DATA_DIR``
    (everything missing there is built: world, features, checkpoints), and the tensors behind
    the feature and parameter entries (for :func:`difference_sizes`).

    Stages, in order: ``world/*`` (scenes, PNG bytes, decoded pixels, every JSON file of the
    export, triplets, gallery order); ``features/global/*`` and ``features/tokens/*`` (the
    shipped encoder's features of each split, as the chapters cache them); ``train/<method>/
    s<seed>/*`` (the first ``steps`` batches' indices, every parameter before each step, each
    step's loss) for each method of the registry; with ``full_runs``, ``run/combiner/s<seed>/*``:
    chapter 3's Combiner trained to the end of the profile's budget (checkpoint in the data
    folder, as the chapter names it) and its test metrics, the numbers the chapter glues.
    """
    from cirlib.data.features import cached_features, encoder_id
    from cirlib.data.registry import load_splits
    from cirlib.data.toy import prepare_toyworld
    from cirlib.eval.evaluate import evaluate
    from cirlib.methods.combiner import combiner_queries, train_combiner
    from cirlib.models.backbone import load_backbone
    from cirlib.paths import subdir
    from cirlib.registry import checkpoint_path, get_method

    if cfg.dataset != "toy":
        raise ValueError(
            f"stage checksums cover the toy world; profile {cfg.name!r} reads {cfg.dataset!r}"
        )
    specs = [get_method(m) for m in methods]
    seeds = list(seeds)
    record: Record = {}
    tensors: dict[str, torch.Tensor] = {}
    # a note only (notes are not compared): the thread count is what two records may differ by
    record["env/threads"] = {"note": torch.get_num_threads()}

    splits = load_splits(cfg)
    record.update(_world_entries(prepare_toyworld(cfg), splits))

    encoder, preprocess, tokenizer = load_backbone(
        cfg.encoder, cfg.encoder_pretrained, device=cfg.device
    )
    enc = encoder_id(cfg.encoder, cfg.encoder_pretrained)
    feats = {}
    for kind, tokens in (("global", False), ("tokens", True)):
        if kind == "tokens" and not any(s.needs_tokens for s in specs):
            continue
        feats[kind] = {
            s: cached_features(
                sp,
                encoder,
                preprocess,
                tokenizer,
                encoder=enc,
                cache_dir=subdir("features"),
                tokens=tokens,
                device=cfg.device,
            )
            for s, sp in splits.items()
        }
        record.update(_features_entries(feats[kind], kind, tensors))

    for spec in specs:
        train_f = feats["tokens" if spec.needs_tokens else "global"]["train"]
        for seed in seeds:
            with recording_first_steps(steps) as calls:
                spec.train(train_f, cfg, seed=seed, split=splits["train"], checkpoint=None)
            for i, call in enumerate(calls):
                name = spec.name if i == 0 else f"{spec.name}-fit{i + 1}"
                record.update(_steps_entries(name, seed, call, tensors))

    if full_runs:
        test, ftest = splits["test"], feats["global"]["test"]
        for seed in seeds:
            ckpt = checkpoint_path(cfg, "combiner", seed)
            model = train_combiner(feats["global"]["train"], cfg, seed=seed, checkpoint=ckpt).model
            prefix = f"run/combiner/s{seed}"
            for name, value in model.state_dict().items():
                record[f"{prefix}/final/{name}"] = tensor_digest(value)
                tensors[f"{prefix}/final/{name}"] = value.detach().clone()
            metrics = evaluate(combiner_queries(model, ftest), ftest, test)["all"]
            for metric, value in metrics.items():
                record[f"{prefix}/test/{metric}"] = {"value": float(value).hex(), "note": value}
    return record, tensors
