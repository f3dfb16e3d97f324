"""Where the book's runs live: checkpoint names, the ablation budget, and the comparison
chapter's methods by name.

The methods themselves register in :mod:`cirlib.methods` (each module's ``SPEC``); every one
trains through :func:`cirlib.train.train_method` on the same frozen features with the
profile's epochs, batch size and learning rate, so the comparison chapter and the explorer can
treat them all alike::

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
from pathlib import Path

from cirlib.data.features import encoder_id
from cirlib.methods import compared, get, registered
from cirlib.methods.spec import MethodSpec
from cirlib.paths import subdir

__all__ = [
    "METHODS",
    "MethodSpec",
    "ablation_cfg",
    "ablation_tag",
    "checkpoint_path",
    "get_method",
    "profile_options",
    "short_combiner",
    "training_profile",
]

# The comparison chapter's five methods, in chapter order (every registered method:
# :func:`cirlib.methods.registered`).
METHODS: dict[str, MethodSpec] = compared()


def get_method(name: str) -> MethodSpec:
    """The :class:`MethodSpec` registered as ``name`` (:func:`cirlib.methods.get`); an unknown
    name raises ``ValueError`` listing the known ones.

    Introduced in chapter "Comparing the methods".
    """
    return get(name)


def profile_options(name: str, cfg) -> dict:
    """The settings ``name``'s chapter trains its main run with under profile ``cfg``
    (:meth:`MethodSpec.settings_for`), as a dict.

    Introduced in chapter "Comparing the methods".
    """
    return dataclasses.asdict(get(name).settings_for(cfg))


def training_profile(name: str, cfg):
    """The profile ``name`` trains with under ``cfg`` (:attr:`MethodSpec.budget`): ``cfg``
    itself, except for MAPNet off the toy world, whose chapter takes the learning rate, batch
    size and epochs from MAPNet's README.

    Introduced in chapter "Comparing the methods".
    """
    return get(name).budget(cfg)


def checkpoint_path(cfg, method: str, seed: int, tag: str = "main") -> Path:
    """Checkpoint file of ``method``'s run ``tag`` under profile ``cfg`` and ``seed``:
    ``<checkpoints>/<method>[-<tag>]-<profile>-<encoder id>-s<seed>.pt``, the names the
    method chapters give their runs (the encoder id carries a hash of the frozen encoder's
    weights, so features from another encoder never meet this head).

    Introduced in chapter "Comparing the methods".
    """
    enc = encoder_id(cfg.encoder, cfg.encoder_pretrained).replace(":", "-")
    # A chapter that tags every run (DQE-CIR: "dqe-main-...") says so in its spec; the others
    # name their main run without a tag ("mgur-toy-...") and their variants "<method>-<tag>-...".
    spec = registered().get(method)
    tagged = spec is not None and spec.tagged_main_run
    prefix = method if tag == "main" and not tagged else f"{method}-{tag}"
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
    return get("combiner").fit(
        train_features,
        short,
        seed=seed,
        checkpoint=checkpoint_path(short, "combiner", seed, tag=ablation_tag(cfg)),
    )
