"""The book's methods by name: how to train each one, embed queries and gallery, and where its
main checkpoint lives.

Every method trains through :func:`cirlib.train.fit` on the same frozen features with the
profile's epochs, batch size and learning rate; the registry only says which recipe to call and
with which options, so the comparison chapter and the explorer can treat all five alike::

    spec = get_method("mapnet")
    model = spec.train(feats["train"], cfg, seed=0, split=splits["train"],
                       checkpoint=checkpoint_path(cfg, "mapnet", 0))
    queries = spec.queries(model, feats["test"])                 # [Q, D'] unit rows
    gallery = spec.gallery(model, feats["test"]) if spec.gallery else None
    evaluate(queries, feats["test"], splits["test"], gallery=gallery)

:func:`checkpoint_path` gives the file names the method chapters use for their main runs, and
:func:`profile_options` the options they train with, so a method's checkpoint from its chapter is
loaded here instead of trained again (``fit`` compares the settings fingerprint on load).

Introduced in chapter "Comparing the methods".
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from cirlib.data.features import encoder_id
from cirlib.methods import mapnet
from cirlib.methods.cala import cala_queries, train_cala
from cirlib.methods.combiner import combiner_queries, train_combiner
from cirlib.methods.dqe import DQESettings, dqe_gallery, dqe_queries, train_dqe
from cirlib.methods.mapnet import mapnet_gallery, mapnet_queries, train_mapnet
from cirlib.methods.mgur import mgur_queries, train_mgur
from cirlib.paths import subdir


@dataclass(frozen=True)
class MethodSpec:
    """One method of the book.

    Attributes
    ----------
    name : registry key (``"combiner"``, ``"mgur"``, ``"cala"``, ``"mapnet"``, ``"dqe"``), also the
        first word of its checkpoint names.
    title : the name printed in tables.
    chapter : the chapter that introduces it (``notebooks/<stem>``).
    needs_tokens : True if it reads token features (``cached_features(..., tokens=True)``).
    train : ``train(train_features, cfg, *, seed, split, checkpoint=None, **options) -> nn.Module``;
        checkpoint-or-train, on the profile's budget; ``options`` override :attr:`defaults`
        (``eval_fn`` and ``distributed`` are passed through to ``fit``; with
        ``distributed=True`` under torchrun every method trains over the global batch of all
        ranks, see :mod:`cirlib.distributed`).
    queries : ``queries(model, features) -> [Q, D']`` L2-normalised, eval mode.
    gallery : ``gallery(model, features) -> [N, D']`` L2-normalised, or None when the gallery is
        the frozen image features.
    defaults : the options the method's chapter trains its main toy run with (the paper profile
        changes a few: :func:`profile_options`).
    """

    name: str
    title: str
    chapter: str
    needs_tokens: bool
    train: Callable
    queries: Callable
    gallery: Callable | None
    defaults: dict


def _keyword_defaults(fn: Callable, skip: tuple[str, ...] = ()) -> dict:
    """The keyword arguments of a recipe that have a default, read from its signature (so the
    registry's defaults cannot drift from the recipe's). ``distributed`` says how to run, not
    what to train, so it is not one of them."""
    skip = {"seed", "checkpoint", "eval_fn", "split", "distributed", *skip}
    return {
        p.name: p.default
        for p in inspect.signature(fn).parameters.values()
        if p.default is not inspect.Parameter.empty and p.name not in skip
    }


# CaLa's chapter shrinks the branches on the toy world (width 64, 2 compositor layers) and uses
# the model's own sizes in the paper profile.
CALA_TOY_BRANCHES = {"branch_dim": 64, "compositor_layers": 2}


def profile_options(name: str, cfg) -> dict:
    """The options ``name``'s chapter trains its main run with under profile ``cfg``.

    The toy and smoke profiles use :attr:`MethodSpec.defaults`; the paper profile drops CaLa's
    toy branch sizes and gives MAPNet the README's 32 schemas and Q-Former sizes (its learning
    rate, batch size and epochs are set by the MAPNet wrapper, as in the chapter).

    Introduced in chapter "Comparing the methods".
    """
    options = dict(get_method(name).defaults)
    if name == "cala" and cfg.name == "paper":
        for key in CALA_TOY_BRANCHES:
            options.pop(key)
    if name == "mapnet" and cfg.dataset != "toy" and not getattr(cfg, "rehearsal", False):
        # (a CPU rehearsal of the paper profile keeps the toy sizes, as chapter 6 does)
        options.update({k: mapnet.PAPER_SETTINGS[k] for k in mapnet.MODEL_OPTIONS})
    return options


def _merged(name: str, cfg, options: dict) -> dict:
    return {**profile_options(name, cfg), **options}


def _dqe_unit_gallery(model, features) -> torch.Tensor:
    """DQE-CIR's joint gallery rows, L2-normalised (``dqe_gallery`` returns the concatenation of
    unit parts; ``evaluate`` normalises either way, so rankings are the same)."""
    return F.normalize(dqe_gallery(model, features), dim=-1)


def _train_combiner(train_features, cfg, *, seed, split=None, checkpoint=None, **options):
    return train_combiner(
        train_features, cfg, seed=seed, checkpoint=checkpoint, **_merged("combiner", cfg, options)
    ).model


def _train_mgur(train_features, cfg, *, seed, split=None, checkpoint=None, **options):
    # MGUR's coarse/fine split is a property of the loss schedule, not of the data: it needs no
    # granularity labels, so ``split`` is unused.
    return train_mgur(
        train_features, cfg, seed=seed, checkpoint=checkpoint, **_merged("mgur", cfg, options)
    ).model


def _train_cala(train_features, cfg, *, seed, split=None, checkpoint=None, **options):
    return train_cala(
        train_features, cfg, seed=seed, checkpoint=checkpoint, **_merged("cala", cfg, options)
    ).model


def training_profile(name: str, cfg):
    """The profile ``name`` trains with under ``cfg``: ``cfg`` itself, except for MAPNet off the
    toy world, whose chapter takes the learning rate, batch size and epochs from MAPNet's README
    (:data:`cirlib.methods.mapnet.PAPER_SETTINGS`); a rehearsal (:mod:`cirlib.rehearsal`) takes
    only the learning rate, since batch and epochs are sizes.

    Introduced in chapter "Comparing the methods".
    """
    get_method(name)
    if name == "mapnet" and cfg.dataset != "toy":
        if getattr(cfg, "rehearsal", False):  # a CPU rehearsal keeps its own batch and epochs
            return dataclasses.replace(cfg, lr=mapnet.PAPER_SETTINGS["lr"][cfg.dataset])
        return dataclasses.replace(
            cfg,
            lr=mapnet.PAPER_SETTINGS["lr"][cfg.dataset],
            batch_size=mapnet.PAPER_SETTINGS["batch_size"][cfg.dataset],
            epochs=mapnet.PAPER_SETTINGS["epochs"],
        )
    return cfg


def _train_mapnet(train_features, cfg, *, seed, split=None, checkpoint=None, **options):
    cfg = training_profile("mapnet", cfg)  # the chapter's paper runs use the README's budget
    return train_mapnet(
        train_features, cfg, seed=seed, checkpoint=checkpoint, **_merged("mapnet", cfg, options)
    ).model


def _train_dqe(train_features, cfg, *, seed, split, checkpoint=None, **options):
    # DQE-CIR needs the training split: its miner never offers a listed valid target as a
    # negative, and its attribute gates read each query's edit type.
    if split is None:
        raise ValueError("DQE-CIR trains with split=<the training CIRSplit> (miner and gates)")
    return train_dqe(
        train_features,
        cfg,
        seed=seed,
        split=split,
        checkpoint=checkpoint,
        **_merged("dqe", cfg, options),
    ).model


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec(
            "combiner",
            "CLIP4Cir Combiner",
            "notebooks/03_combiner",
            False,
            _train_combiner,
            combiner_queries,
            None,
            _keyword_defaults(train_combiner),
        ),
        MethodSpec(
            "mgur",
            "MGUR",
            "notebooks/04_mgur",
            False,
            _train_mgur,
            mgur_queries,
            None,
            _keyword_defaults(train_mgur),
        ),
        MethodSpec(
            "cala",
            "CaLa",
            "notebooks/05_cala",
            True,
            _train_cala,
            cala_queries,
            None,
            {**_keyword_defaults(train_cala), **CALA_TOY_BRANCHES},
        ),
        MethodSpec(
            "mapnet",
            "MAPNet",
            "notebooks/06_mapnet",
            True,
            _train_mapnet,
            mapnet_queries,
            mapnet_gallery,
            dict(mapnet.TOY_SETTINGS),
        ),
        MethodSpec(
            "dqe",
            "DQE-CIR",
            "notebooks/07_dqe",
            True,
            _train_dqe,
            dqe_queries,
            _dqe_unit_gallery,
            dataclasses.asdict(DQESettings()),
        ),
    )
}


def get_method(name: str) -> MethodSpec:
    """The :class:`MethodSpec` registered as ``name``; an unknown name raises ``ValueError``
    listing the known ones.

    Introduced in chapter "Comparing the methods".
    """
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; known methods: {sorted(METHODS)}") from None


# DQE-CIR's chapter tags every run, its main run included ("dqe-main-..."); the other chapters
# name their main run without a tag ("mgur-toy-...") and their variants "<method>-<tag>-...".
_TAGGED_MAIN_RUN = {"dqe"}


def checkpoint_path(cfg, method: str, seed: int, tag: str = "main") -> Path:
    """Checkpoint file of ``method``'s run ``tag`` under profile ``cfg`` and ``seed``:
    ``<checkpoints>/<method>[-<tag>]-<profile>-<encoder id>-s<seed>.pt``, the names the
    method chapters give their runs (the encoder id carries a hash of the frozen encoder's
    weights, so features from another encoder never meet this head).

    Introduced in chapter "Comparing the methods".
    """
    enc = encoder_id(cfg.encoder, cfg.encoder_pretrained).replace(":", "-")
    prefix = method if tag == "main" and method not in _TAGGED_MAIN_RUN else f"{method}-{tag}"
    return subdir("checkpoints") / f"{prefix}-{cfg.name}-{enc}-s{seed}.pt"


def ablation_cfg(cfg):
    """``cfg`` with a quarter of its epochs (at least one): the budget of every ablation in the
    book. The short rows of a chapter's ablation table compare with each other (each retrained
    at this budget, the full method and the Combiner included), never with the main table.

    Introduced in chapter "MGUR: multi-grained uncertainty regularisation"; chapters 5-7 reuse it.
    """
    return dataclasses.replace(cfg, epochs=max(1, cfg.epochs // 4))


def ablation_tag(cfg) -> str:
    """Checkpoint tag of a run at :func:`ablation_cfg`'s budget: ``"short-e<epochs>"``."""
    return f"short-e{ablation_cfg(cfg).epochs}"


def short_combiner(train_features, cfg, seed: int):
    """The Combiner at the ablation budget (:func:`ablation_cfg`): one checkpoint, trained by
    whichever of chapters 4-7 runs first and loaded by the others. Returns the
    :class:`~cirlib.train.FitResult`.

    Introduced in chapter "MGUR: multi-grained uncertainty regularisation"; chapters 5-7 reuse it.
    """
    short = ablation_cfg(cfg)
    return train_combiner(
        train_features,
        short,
        seed=seed,
        checkpoint=checkpoint_path(short, "combiner", seed, tag=ablation_tag(cfg)),
    )
