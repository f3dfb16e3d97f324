"""Run profiles: one name in a notebook's parameters cell turns into every size and setting.

=========  ==================================  ==========================  ====================
profile    data                                encoder                     where
=========  ==================================  ==========================  ====================
smoke      a small slice of the toy world      shipped toy encoder         CI and tests
toy        the full toy world (default)        shipped toy encoder         any laptop, the book
paper      CIRR / FashionIQ on disk            pretrained open_clip model  a CUDA GPU (Colab)
=========  ==================================  ==========================  ====================

Profiles change sizes and sources, never the algorithm. Introduced in chapter "The task, the
data and the metrics".
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field

import torch

from cirlib.rehearsal import rehearsal_requested, rehearsal_settings


@dataclass(frozen=True)
class Profile:
    name: str
    seed: int = 0
    # data
    dataset: str = "toy"
    world_groups: dict = field(default_factory=lambda: {"train": 3000, "val": 300, "test": 600})
    world_seed: int = 0
    image_size: int = 48
    # encoder
    encoder: str = "toy-vit-tiny"
    encoder_pretrained: str = "shipped"
    pretrain_steps: int = 1200
    pretrain_batch: int = 256
    pretrain_scenes: int = 30000
    # composition heads (the CLIP4Cir stage-2 set-up: heads train on cached, frozen features)
    epochs: int = 40
    batch_size: int = 256
    lr: float = 1e-3
    # five: two disjoint pairs of seeds measure the verdict rule's false positives
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    # hardware
    device: str = "cpu"
    amp: bool = False
    feature_batch: int = 512
    # a CPU rehearsal of the paper profile (cirlib.rehearsal): its numbers are never results
    rehearsal: bool = False

    def describe(self) -> str:
        text = (
            f"profile={self.name} seed={self.seed} data={self.dataset} encoder={self.encoder} "
            f"device={self.device} amp={self.amp} epochs={self.epochs}"
        )
        if self.rehearsal:
            text += " REHEARSAL (tiny random encoder, toy data: the numbers are not results)"
        return text


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


PROFILES = {
    "smoke": dict(
        world_groups={"train": 150, "val": 30, "test": 50},
        pretrain_steps=4,
        pretrain_batch=32,
        pretrain_scenes=256,
        epochs=4,
        seeds=(0, 1),
    ),
    "toy": dict(),
    "paper": dict(
        dataset="cirr",
        encoder="RN50x4",
        encoder_pretrained="openai",
        image_size=288,
        epochs=300,
        batch_size=4096,
        lr=2e-5,
        seeds=(0,),
        amp=True,
    ),
}


# numpy's legacy seeding (cirlib.seed.seed_everything) takes 0 <= seed < 2**32
SEED_LIMIT = 2**32


def checked_seed(seed) -> int:
    """``seed`` as an ``int`` if it is a whole number in ``[0, 2**32)``; else a ``ValueError``
    that names the chapters' ``SEED`` parameter and says what to write.

    ``True`` is refused although Python counts it as ``1``: it would end up in checkpoint names
    as ``sTrue``. A numpy integer is accepted (and returned as ``int``); a float, even ``2.0``,
    or a string is refused rather than guessed at.
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(
            f"SEED must be a whole number such as 0, 1 or 2, got {seed!r} "
            f"({type(seed).__name__}); write e.g. `SEED: int = 0` in the chapter's parameter "
            "cell (or pass `-p SEED 1` to papermill)"
        )
    if not 0 <= int(seed) < SEED_LIMIT:
        raise ValueError(
            f"SEED must be between 0 and {SEED_LIMIT - 1} (numpy's seeding range), got {seed}; "
            "write e.g. `SEED: int = 0` in the chapter's parameter cell"
        )
    return int(seed)


DATASETS = {
    "smoke": ("toy",),
    "toy": ("toy",),
    # circo: zero-shot only (no training triplets), see cirlib.data.registry.load_splits
    "paper": ("cirr", "fashioniq", "fashion200k", "shoes", "circo"),
}


def resolve(profile: str, seed: int = 0, **overrides) -> Profile:
    """The :class:`Profile` for ``profile`` (``"smoke"``, ``"toy"`` or ``"paper"``) and ``seed``
    (checked by :func:`checked_seed`).

    ``overrides`` replace single fields (e.g. ``epochs=5``); unknown names are refused, so a typo
    cannot silently fall back to a default. ``dataset=""`` means the profile's default (the
    chapters' ``DATASET`` parameter). In the paper profile, ``$CIRLIB_REHEARSAL=1`` (or
    ``rehearsal=True``) replaces only sizes with :func:`cirlib.rehearsal.rehearsal_settings`.
    """
    if not isinstance(profile, str) or profile not in PROFILES:
        raise ValueError(
            f"unknown profile {profile!r}: use one of {sorted(PROFILES)} "
            "(smoke = CI check, toy = the book's default, paper = real data on a GPU)"
        )
    fields = {f.name for f in dataclasses.fields(Profile)}
    bad = sorted(set(overrides) - fields)
    if bad:
        raise ValueError(f"unknown profile setting(s) {bad}; known: {sorted(fields)}")
    seed = checked_seed(seed)
    if overrides.get("dataset") == "":
        del overrides["dataset"]
    if "dataset" in overrides and overrides["dataset"] not in DATASETS[profile]:
        raise ValueError(
            f"dataset {overrides['dataset']!r} is not one of the {profile!r} profile's "
            f"{DATASETS[profile]}; leave DATASET empty for the profile's default"
        )
    rehearsal = {}
    if profile == "paper" and (overrides.get("rehearsal") or rehearsal_requested()):
        rehearsal = rehearsal_settings()
    settings = {"device": _default_device(), **PROFILES[profile], **rehearsal, **overrides}
    if settings["device"] == "cpu":
        settings["amp"] = False  # mixed precision is a GPU speed-up; CPU runs stay in fp32
    return Profile(name=profile, seed=seed, **settings)
