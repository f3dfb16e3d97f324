"""Generate the toy world's splits and export them in the real CIRR and FashionIQ layouts.

A split is made of *groups*, like CIRR's NLVR2 image sets: one reference scene and five edited
versions of it. Each edited version is the target of one query (reference + text); the six
images of a group are the query's ``img_set`` for Recall_subset. Because every image's scene is
known, each query also lists **every** gallery image that its text admits (``valid_targets``),
which real datasets cannot do.

Layout written by :func:`make_toyworld` (the loaders read the same files as for real data)::

    <world>/images/<name>.png
    <world>/scenes.json                               name -> list of objects
    <world>/cirr/captions/cap.rc2.<split>.json        + a "toy" key per entry
    <world>/cirr/image_splits/split.rc2.<split>.json  name -> "./images/<name>.png" (from <world>)
    <world>/fashioniq/captions/cap.<cat>.<split>.json
    <world>/fashioniq/image_splits/split.<cat>.<split>.json
    <world>/manifest.json                             sizes, seed, counts (written last)

Introduced in chapter "The task, the data and the metrics".
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from cirlib.io import atomic_write_json
from cirlib.toyworld.edits import Edit, edit_results, edit_texts, edit_to_dict, sample_edit
from cirlib.toyworld.render import render_scene
from cirlib.toyworld.scene import Obj, Scene, make_scene, random_scene

SPLITS = ("train", "val", "test")
GROUP_SIZE = 6  # reference + 5 edited versions, like CIRR's 6-image sets
# FashionIQ has three garment categories with separate galleries; the toy world's three
# "categories" are edit families, so each gets its own gallery in the same way.
FASHIONIQ_CATEGORIES = {
    "colour": ("colour",),
    "form": ("shape", "size"),
    "layout": ("add", "remove", "move"),
}
FORMAT_VERSION = 2
# Extra edited versions of each reference in the val/test galleries (no query of their own):
# without them the five group members are always the reference's nearest neighbours and an
# image-only ranking already finds most targets in its top 5. CIRR's galleries are crowded with
# similar images too. Training galleries need none: training only sees in-batch targets.
EVAL_DISTRACTORS = {"train": 0, "val": 24, "test": 24}


@dataclass(frozen=True)
class ToyQuery:
    pair_id: int
    reference: str
    target: str
    edit: Edit
    texts: tuple[str, str]
    members: tuple[str, ...]
    valid_targets: tuple[str, ...]
    n_results: int  # scenes the text admits on the reference (gallery or not)

    @property
    def granularity(self) -> str:
        """ "fine" when the text admits exactly one result on the reference, else "coarse"."""
        return "fine" if self.n_results == 1 else "coarse"


@dataclass
class ToySplit:
    name: str
    scenes: dict[str, Scene]  # gallery order = insertion order
    queries: list[ToyQuery]


def _sample_group(ref: Scene, rng: random.Random, p_fine: float, p_alternative: float):
    """Five edited versions of ``ref`` and the edits behind them (None for an image that is only
    another valid result of the previous, ambiguous edit: a planted false negative)."""
    edits, targets = [], []
    for _ in range(200):
        if len(targets) == GROUP_SIZE - 1:
            break
        edit, target = sample_edit(ref, rng, p_fine)
        if target == ref or target in targets:
            continue
        edits.append(edit)
        targets.append(target)
        others = sorted(edit_results(ref, edit) - {target, *targets})
        if others and len(targets) < GROUP_SIZE - 1 and rng.random() < p_alternative:
            edits.append(None)
            targets.append(rng.choice(others))
    return edits, targets


def generate_split(
    name: str,
    n_groups: int,
    rng: random.Random,
    used_references: set,
    first_pair_id: int = 0,
    p_fine: float = 0.6,
    p_alternative: float = 0.5,
    distractors: int = 0,
) -> ToySplit:
    """Sample ``n_groups`` groups. ``used_references`` holds reference scenes of earlier splits:
    a reference is never reused, so no query (reference + text) appears in two splits."""
    scenes: dict[str, Scene] = {}
    pending = []
    g = 0
    while g < n_groups:
        ref = random_scene(rng)
        if ref in used_references:
            continue
        edits, targets = _sample_group(ref, rng, p_fine, p_alternative)
        if len(targets) < GROUP_SIZE - 1:
            continue
        used_references.add(ref)
        names = [f"toy-{name}-{g:05d}-{k}" for k in range(GROUP_SIZE)]
        for n, s in zip(names, [ref, *targets]):
            scenes[n] = s
        taken = {ref, *targets}
        for k in range(distractors):
            for _ in range(50):
                _, extra = sample_edit(ref, rng, p_fine)
                if extra not in taken:
                    taken.add(extra)
                    scenes[f"toy-{name}-{g:05d}-d{k}"] = extra
                    break
        members = names[:]
        rng.shuffle(members)
        pending += [
            (names[0], names[k + 1], e, tuple(members))
            for k, e in enumerate(edits)
            if e is not None
        ]
        g += 1

    by_scene = defaultdict(list)
    for n, s in scenes.items():
        by_scene[s].append(n)
    queries = []
    for i, (ref_name, target_name, edit, members) in enumerate(pending):
        ref = scenes[ref_name]
        results = edit_results(ref, edit)
        valid = sorted(n for s in results for n in by_scene.get(s, ()))
        queries.append(
            ToyQuery(
                first_pair_id + i,
                ref_name,
                target_name,
                edit,
                edit_texts(ref, edit),
                members,
                tuple(valid),
                len(results),
            )
        )
    return ToySplit(name, scenes, queries)


def generate_world(groups: dict[str, int], seed: int) -> dict[str, ToySplit]:
    """All splits, deterministic from ``seed``."""
    rng = random.Random(seed)
    used: set = set()
    world, next_id = {}, 0
    for split in SPLITS:
        world[split] = generate_split(
            split,
            groups[split],
            rng,
            used,
            first_pair_id=next_id,
            distractors=EVAL_DISTRACTORS[split],
        )
        next_id += len(world[split].queries)
    return world


# --- export ----------------------------------------------------------------------------------


def _scene_to_json(scene: Scene) -> list[dict]:
    return [vars(o) | {} for o in scene]


def scene_from_json(objs: list[dict]) -> Scene:
    return make_scene(Obj(**o) for o in objs)


def _cirr_entry(q: ToyQuery, rng: random.Random) -> dict:
    return {
        "pairid": q.pair_id,
        "reference": q.reference,
        "target_hard": q.target,
        "caption": rng.choice(q.texts),
        "img_set": {"id": int(q.reference.split("-")[2]), "members": list(q.members)},
        "toy": {
            "valid_targets": list(q.valid_targets),
            "edit_type": q.edit.type,
            "granularity": q.granularity,
            "n_results": q.n_results,
            "edit": edit_to_dict(q.edit),
        },
    }


def export(world: dict[str, ToySplit], out: Path, seed: int, image_size: int) -> None:
    rng = random.Random(seed + 1)
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    all_scenes = {}
    for split in world.values():
        for name, scene in split.scenes.items():
            render_scene(scene, image_size).save(images / f"{name}.png")
            all_scenes[name] = _scene_to_json(scene)
    atomic_write_json(out / "scenes.json", all_scenes)

    for split in world.values():
        cirr_name = split.name
        atomic_write_json(
            out / "cirr" / "captions" / f"cap.rc2.{cirr_name}.json",
            [_cirr_entry(q, rng) for q in split.queries],
            indent=1,
        )
        atomic_write_json(
            out / "cirr" / "image_splits" / f"split.rc2.{cirr_name}.json",
            {n: f"./images/{n}.png" for n in split.scenes},
            indent=1,
        )
        for cat, types in FASHIONIQ_CATEGORIES.items():
            qs = [q for q in split.queries if q.edit.type in types]
            entries = [
                {
                    "candidate": q.reference,
                    "target": q.target,
                    "captions": list(q.texts),
                    "toy": _cirr_entry(q, rng)["toy"],
                }
                for q in qs
            ]
            groups = {q.reference.rsplit("-", 1)[0] + "-" for q in qs}
            # every valid target too: a coincidental match can live in another group
            wanted = {n for q in qs for n in q.valid_targets}
            names = [n for n in split.scenes if n[: n.rfind("-") + 1] in groups or n in wanted]
            atomic_write_json(
                out / "fashioniq" / "captions" / f"cap.{cat}.{split.name}.json", entries, indent=1
            )
            atomic_write_json(
                out / "fashioniq" / "image_splits" / f"split.{cat}.{split.name}.json", names
            )


def world_fingerprint(groups: dict[str, int], seed: int, image_size: int) -> str:
    key = json.dumps([FORMAT_VERSION, groups, seed, image_size, EVAL_DISTRACTORS], sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def make_toyworld(
    root: str | Path, groups: dict[str, int], seed: int = 0, image_size: int = 48
) -> Path:
    """Generate and export a toy world under ``root``; reuse it when it already exists.

    The folder name carries a fingerprint of the arguments, and ``manifest.json`` is written
    last, so a folder without a manifest is an interrupted export: it is deleted and redone.
    Returns the world folder.
    """
    fp = world_fingerprint(groups, seed, image_size)
    out = Path(root) / f"toyworld-{fp}"
    if (out / "manifest.json").exists():
        return out
    if out.exists():
        shutil.rmtree(out, ignore_errors=True)
    Path(root).mkdir(parents=True, exist_ok=True)
    # a private folder per process: two runs building the same world never share files
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".toyworld-{fp}-"))
    world = generate_world(groups, seed)
    export(world, tmp, seed, image_size)
    manifest = {
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "groups": groups,
        "image_size": image_size,
        "fingerprint": fp,
        "images": {s: len(w.scenes) for s, w in world.items()},
        "queries": {s: len(w.queries) for s, w in world.items()},
    }
    atomic_write_json(tmp / "manifest.json", manifest, indent=1)
    try:
        tmp.rename(out)
    except OSError:  # another process finished the same world first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out / "manifest.json").exists():
            raise
    return out
