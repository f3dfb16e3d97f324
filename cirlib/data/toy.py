"""The toy world as a dataset: generate it for a profile, then load it with the real loaders.

``prepare_toyworld(cfg)`` builds (or reuses) the world of a run profile under the data folder;
``load_toy(world, split)`` reads its CIRR-layout export with :func:`cirlib.data.cirr.load_cirr`,
the same code that reads the real CIRR. Introduced in chapter "The task, the data and the
metrics".
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from cirlib.data.cirr import load_cirr
from cirlib.data.fashioniq import load_fashioniq
from cirlib.data.records import CIRSplit, DatasetError, Triplet
from cirlib.paths import subdir
from cirlib.toyworld.world import generate_split, make_toyworld, scene_from_json


def prepare_toyworld(cfg) -> Path:
    """The world folder of profile ``cfg`` (sizes ``cfg.world_groups``, seed ``cfg.world_seed``)."""
    return make_toyworld(subdir("toyworld"), cfg.world_groups, cfg.world_seed, cfg.image_size)


def _check(world: Path) -> Path:
    world = Path(world)
    if not (world / "manifest.json").exists():
        raise DatasetError(
            f"{world} is not a finished toy world (no manifest.json); build it with "
            "`python data_scripts/make_toyworld.py --profile toy` or `prepare_toyworld(cfg)`"
        )
    return world


def load_toy(world: str | Path, split: str) -> CIRSplit:
    """A toy split (``train``, ``val`` or ``test``) in the CIRR layout, every valid target listed."""
    world = _check(world)
    return load_cirr(world / "cirr", split, image_root=world)


def load_toy_fashioniq(world: str | Path, category: str, split: str) -> CIRSplit:
    """A toy split in the FashionIQ layout (categories: colour, form, layout)."""
    world = _check(world)
    return load_fashioniq(world / "fashioniq", category, split, image_dir=world / "images")


def load_scenes(world: str | Path) -> dict:
    """Image name → scene, for pictures and for checking answers."""
    objs = json.loads((_check(world) / "scenes.json").read_text())
    return {name: scene_from_json(o) for name, o in objs.items()}


def generated_split(name: str, n_groups: int, seed: int = 0, distractors: int = 2) -> CIRSplit:
    """A toy split generated in memory, without rendering or export: real edits, image sets,
    valid targets, edit types and granularity, one caption per query (the first template).

    For tests and quick experiments on features that do not come from images: its gallery names
    have no image files, so ``load_image`` does not work on it.
    """
    toy = generate_split(name, n_groups, random.Random(seed), set(), distractors=distractors)
    triplets = [
        Triplet(
            q.pair_id,
            q.reference,
            (q.texts[0],),
            q.texts[0],
            q.target,
            q.members,
            q.valid_targets,
            {"edit_type": q.edit.type, "granularity": q.granularity},
        )  # fmt: skip
        for q in toy.queries
    ]
    return CIRSplit(name, triplets, list(toy.scenes), {})
