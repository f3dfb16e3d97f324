"""The toy world as a dataset: generate it for a profile, then load it with the real loaders.

``prepare_toyworld(cfg)`` builds (or reuses) the world of a run profile under the data folder;
``load_toy(world, split)`` reads its CIRR export with :func:`cirlib.data.cirr.load_cirr`, the
same code that reads the real CIRR, and then adds what the real release keeps to itself: the
test targets and the toy's labels (valid targets, edit type, granularity), read from the world's
``private/`` folder. Introduced in chapter "The task, the data and the metrics".
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

from cirlib.data.cirr import load_cirr
from cirlib.data.fashioniq import load_fashioniq
from cirlib.data.records import CIRSplit, DatasetError, Triplet, read_json
from cirlib.paths import subdir
from cirlib.toyworld.world import (
    CIRR_SPLIT_OF,
    FASHIONIQ_CATEGORY_OF_FAMILY,
    generate_split,
    make_toyworld,
    scene_from_json,
)


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


_REBUILD_HINT = (
    "the toy world's files do not match each other; delete the world folder and build it again "
    "with `python data_scripts/make_toyworld.py --profile toy`"
)


def _with_labels(
    triplet: Triplet, labels: Any, target: str | None, known: set[str], where: str
) -> Triplet:
    """``triplet`` with the toy's private labels (and the private target, for a test split)."""
    if not isinstance(labels, dict) or not isinstance(labels.get("valid_targets"), list):
        raise DatasetError(
            f"{where}: expected the toy's labels with 'valid_targets'; {_REBUILD_HINT}"
        )
    valid = tuple(labels["valid_targets"])
    target = triplet.target if target is None else target
    if target not in valid or not set(valid) <= known:
        raise DatasetError(
            f"{where}: the valid targets miss the target {target!r} or name images outside the "
            f"split; {_REBUILD_HINT}"
        )
    meta = {**triplet.meta, **{k: v for k, v in labels.items() if k != "valid_targets"}}
    return dataclasses.replace(triplet, target=target, valid_targets=valid, meta=meta)


def load_toy(world: str | Path, split: str) -> CIRSplit:
    """A toy split (``train``, ``val`` or ``test``) in the CIRR format, every valid target listed.

    The toy's ``test`` is the export's CIRR ``test1``, whose public captions carry no target
    (as in the real release): the targets come from the world's private file. The split is named
    ``"cirr/<split>"`` with the toy's split name.
    """
    world = _check(world)
    if split not in CIRR_SPLIT_OF:
        raise DatasetError(f"unknown toy split {split!r}; choose one of {list(CIRR_SPLIT_OF)}")
    cirr_split = CIRR_SPLIT_OF[split]
    root = world / "cirr_dataset"
    public = load_cirr(root / "cirr", cirr_split, image_root=root)
    labels_file = world / "private" / "cirr" / f"toy.rc2.{cirr_split}.json"
    labels = read_json(labels_file, _REBUILD_HINT)
    targets: dict[int, str] = {}
    if cirr_split == "test1":
        targets_file = world / "private" / "cirr" / f"cap.rc2.{cirr_split}.targets.json"
        targets = {e["pairid"]: e["target_hard"] for e in read_json(targets_file, _REBUILD_HINT)}
    ids = {str(t.pair_id) for t in public.triplets}
    if set(labels) != ids or (targets and set(targets) != {t.pair_id for t in public.triplets}):
        raise DatasetError(
            f"{labels_file}: its queries are not those of the CIRR {cirr_split} captions; "
            f"{_REBUILD_HINT}"
        )
    known = set(public.gallery)
    triplets = [
        _with_labels(t, labels[str(t.pair_id)], targets.get(t.pair_id), known, str(labels_file))
        for t in public.triplets
    ]
    return CIRSplit(f"cirr/{split}", triplets, public.gallery, public.image_paths)


def load_toy_fashioniq(world: str | Path, category: str, split: str, **kwargs) -> CIRSplit:
    """A toy split in the FashionIQ format, with the toy's labels and (test) private targets.

    Categories ``dress``, ``shirt``, ``toptee`` hold the colour, form and layout edits
    (:data:`~cirlib.toyworld.world.FASHIONIQ_CATEGORY_OF_FAMILY`). ``kwargs`` go to
    :func:`~cirlib.data.fashioniq.load_fashioniq` (e.g. ``protocol``).
    """
    world = _check(world)
    if category not in FASHIONIQ_CATEGORY_OF_FAMILY.values():
        raise DatasetError(
            f"unknown toy FashionIQ category {category!r}; choose one of "
            f"{sorted(FASHIONIQ_CATEGORY_OF_FAMILY.values())}"
        )
    public = load_fashioniq(world / "fashionIQ_dataset", category, split, **kwargs)
    private = world / "private" / "fashioniq"
    labels_file = private / f"toy.{category}.{split}.json"
    labels = read_json(labels_file, _REBUILD_HINT)
    targets: list[str | None] = [None] * len(labels)
    if split == "test":
        rows = read_json(private / f"cap.{category}.{split}.targets.json", _REBUILD_HINT)
        targets = [e["target"] for e in rows]
    if len(labels) != len(public.triplets) or len(targets) != len(labels):
        raise DatasetError(
            f"{labels_file}: {len(labels)} entries, the captions file {len(public.triplets)}; "
            f"{_REBUILD_HINT}"
        )
    # every image of the split file may be a valid target, whichever gallery the protocol ranks
    split_file = world / "fashionIQ_dataset" / "image_splits" / f"split.{category}.{split}.json"
    known = set(read_json(split_file, _REBUILD_HINT))
    triplets = [
        _with_labels(t, lab, tgt, known, f"{labels_file}: entry {i}")
        for i, (t, lab, tgt) in enumerate(zip(public.triplets, labels, targets))
    ]
    return CIRSplit(public.name, triplets, public.gallery, public.image_paths)


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
