"""Generate the toy world's splits and export them in the real CIRR and FashionIQ formats.

A split is made of *groups*, like CIRR's NLVR2 image sets: one reference scene and five edited
versions of it. Each edited version is the target of one query (reference + text); the six
images of a group are the query's ``img_set`` for Recall_subset. Because every image's scene is
known, each query also lists **every** gallery image that its text admits (``valid_targets``),
which real datasets cannot do.

Layout written by :func:`make_toyworld`. The two public folders are the real datasets' layouts
as CLIP4Cir's loaders read them (``cirr_dataset/`` and ``fashionIQ_dataset/``); everything the
real releases do not publish (test targets, the toy's labels) lives under ``private/``::

    <world>/cirr_dataset/cirr/captions/cap.rc2.{train,val,test1}.json
    <world>/cirr_dataset/cirr/image_splits/split.rc2.{train,val,test1}.json
                                                name -> "./train/<k>/<name>.png", "./dev/<name>.png",
                                                "./test1/<name>.png" (relative to cirr_dataset/)
    <world>/cirr_dataset/{train/<k>,dev,test1}/<name>.png
    <world>/fashionIQ_dataset/captions/cap.{dress,shirt,toptee}.{train,val,test}.json
    <world>/fashionIQ_dataset/image_splits/split.{dress,shirt,toptee}.{train,val,test}.json
    <world>/fashionIQ_dataset/images/<ASIN>.jpg
    <world>/private/cirr/cap.rc2.test1.targets.json      [{"pairid", "target_hard"}]
    <world>/private/cirr/toy.rc2.<split>.json            pairid -> the toy's labels
    <world>/private/fashioniq/cap.<cat>.test.targets.json [{"candidate", "target"}], file order
    <world>/private/fashioniq/toy.<cat>.<split>.json     the toy's labels, file order
    <world>/scenes.json                                  toy image name -> list of objects
    <world>/manifest.json                                sizes, seed, counts (written last)

The toy's split ``test`` is CIRR's ``test1`` (its captions carry no target, as in the real
release) and FashionIQ's ``test`` (no ``target`` either). The toy's labels are ``valid_targets``,
``edit_type``, ``granularity``, ``n_results`` and ``edit``; :func:`cirlib.data.toy.load_toy` adds
them (and the test targets) to what the real loaders read.

FashionIQ's three garment categories become the toy's three edit families, each with its own
gallery: ``dress`` = colour edits, ``shirt`` = form edits (shape, size), ``toptee`` = layout
edits (add, remove, move); see :data:`FASHIONIQ_CATEGORY_OF_FAMILY`. FashionIQ image names are
ASIN-like codes (:func:`asin_of`), its images JPEGs.

Introduced in chapter "The task, the data and the metrics".
"""

from __future__ import annotations

import base64
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
# The toy world's three edit families. FashionIQ has three garment categories with separate
# galleries; the export gives each family one category and its own gallery in the same way.
EDIT_FAMILIES = {
    "colour": ("colour",),
    "form": ("shape", "size"),
    "layout": ("add", "remove", "move"),
}
FASHIONIQ_CATEGORY_OF_FAMILY = {"colour": "dress", "form": "shirt", "layout": "toptee"}
# The name chapter 4 imports: the families, whose galleries follow FashionIQ's protocol.
FASHIONIQ_CATEGORIES = EDIT_FAMILIES
# Split names of the real releases for the toy's train/val/test, and CIRR's image folders
# (NLVR2's: the val images live in dev/; train images in numbered sub-folders).
CIRR_SPLIT_OF = {"train": "train", "val": "val", "test": "test1"}
CIRR_IMAGE_FOLDER = {"train": "train", "val": "dev", "test": "test1"}
CIRR_TRAIN_FOLDER_GROUPS = 100  # groups per numbered train sub-folder
FASHIONIQ_JPEG_QUALITY = 95
# 3: the real formats (test1 without targets, dress/shirt/toptee, ASIN-named JPEGs, private/).
FORMAT_VERSION = 3
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


def asin_of(name: str) -> str:
    """A FashionIQ-style image name (10 characters, ``B0`` + 8 of ``[A-Z2-7]``) for a toy image.

    Deterministic: the base32 of the name's SHA-256. :func:`export` checks that no two images of
    a world share one.
    """
    digest = base64.b32encode(hashlib.sha256(name.encode()).digest()).decode()
    return "B0" + digest[:8]


def cirr_relative_path(name: str, split: str) -> str:
    """Where CIRR keeps image ``name`` of toy split ``split``, relative to ``cirr_dataset/``."""
    folder = CIRR_IMAGE_FOLDER[split]
    if split == "train":
        group = int(name.split("-")[2])
        folder = f"{folder}/{group // CIRR_TRAIN_FOLDER_GROUPS}"
    return f"./{folder}/{name}.png"


def _toy_labels(q: ToyQuery) -> dict:
    return {
        "valid_targets": list(q.valid_targets),
        "edit_type": q.edit.type,
        "granularity": q.granularity,
        "n_results": q.n_results,
        "edit": edit_to_dict(q.edit),
    }


def _draw_captions(world: dict[str, ToySplit], seed: int) -> dict[str, list[str]]:
    """Each query's CIRR caption: one of its two texts, drawn as format 2 drew them.

    Format 2 drew once per query for CIRR and once more per query for each FashionIQ family
    (unused draws); the same sequence keeps every caption of an existing world unchanged.
    """
    rng = random.Random(seed + 1)
    captions = {}
    for split in world.values():
        captions[split.name] = [rng.choice(q.texts) for q in split.queries]
        for types in EDIT_FAMILIES.values():
            for q in split.queries:
                if q.edit.type in types:
                    rng.choice(q.texts)
    return captions


def _cirr_entry(q: ToyQuery, caption: str, with_target: bool) -> dict:
    """One caption entry with the real file's fields, in its order (test1: no target)."""
    members = list(q.members)
    img_set: dict = {
        "id": int(q.reference.split("-")[2]),
        "members": members,
        "reference_rank": members.index(q.reference),
    }
    if not with_target:
        return {
            "pairid": q.pair_id,
            "reference": q.reference,
            "caption": caption,
            "img_set": img_set,
        }
    img_set["target_rank"] = members.index(q.target)
    return {
        "pairid": q.pair_id,
        "reference": q.reference,
        "target_hard": q.target,
        "target_soft": {q.target: 1.0},
        "caption": caption,
        "img_set": img_set,
    }


def _fashioniq_category(split: ToySplit, types: tuple[str, ...]):
    """The queries of one family and the category's gallery (toy names, split order)."""
    qs = [q for q in split.queries if q.edit.type in types]
    groups = {q.reference.rsplit("-", 1)[0] + "-" for q in qs}
    # every valid target too: a coincidental match can live in another group
    wanted = {n for q in qs for n in q.valid_targets}
    names = [n for n in split.scenes if n[: n.rfind("-") + 1] in groups or n in wanted]
    return qs, names


def export(world: dict[str, ToySplit], out: Path, seed: int, image_size: int) -> None:
    """Write ``world`` under ``out`` in the layout of the module docstring."""
    cirr_root = out / "cirr_dataset"
    fiq_root = out / "fashionIQ_dataset"
    private = out / "private"
    asins: dict[str, str] = {}
    for split in world.values():
        for name in split.scenes:
            asins[name] = asin_of(name)
    if len(set(asins.values())) != len(asins):
        raise RuntimeError("two toy images share an ASIN-like name; change asin_of")

    all_scenes = {}
    folders: set[Path] = set()
    for split in world.values():
        for name, scene in split.scenes.items():
            image = render_scene(scene, image_size)
            path = cirr_root / cirr_relative_path(name, split.name)
            if path.parent not in folders:
                path.parent.mkdir(parents=True, exist_ok=True)
                folders.add(path.parent)
            image.save(path)
            jpeg = fiq_root / "images" / f"{asins[name]}.jpg"
            if jpeg.parent not in folders:
                jpeg.parent.mkdir(parents=True, exist_ok=True)
                folders.add(jpeg.parent)
            image.convert("RGB").save(jpeg, quality=FASHIONIQ_JPEG_QUALITY)
            all_scenes[name] = _scene_to_json(scene)
    atomic_write_json(out / "scenes.json", all_scenes)

    captions = _draw_captions(world, seed)
    for split in world.values():
        cirr_name = CIRR_SPLIT_OF[split.name]
        public = split.name != "test"
        atomic_write_json(
            cirr_root / "cirr" / "captions" / f"cap.rc2.{cirr_name}.json",
            [_cirr_entry(q, c, public) for q, c in zip(split.queries, captions[split.name])],
            indent=1,
        )
        atomic_write_json(
            cirr_root / "cirr" / "image_splits" / f"split.rc2.{cirr_name}.json",
            {n: cirr_relative_path(n, split.name) for n in split.scenes},
            indent=1,
        )
        atomic_write_json(
            private / "cirr" / f"toy.rc2.{cirr_name}.json",
            {str(q.pair_id): _toy_labels(q) for q in split.queries},
            indent=1,
        )
        if not public:
            atomic_write_json(
                private / "cirr" / f"cap.rc2.{cirr_name}.targets.json",
                [{"pairid": q.pair_id, "target_hard": q.target} for q in split.queries],
                indent=1,
            )
        for family, types in EDIT_FAMILIES.items():
            cat = FASHIONIQ_CATEGORY_OF_FAMILY[family]
            qs, names = _fashioniq_category(split, types)
            entries = []
            for q in qs:
                entry = {"target": asins[q.target]} if public else {}
                entry |= {"candidate": asins[q.reference], "captions": list(q.texts)}
                entries.append(entry)
            atomic_write_json(
                fiq_root / "captions" / f"cap.{cat}.{split.name}.json", entries, indent=1
            )
            atomic_write_json(
                fiq_root / "image_splits" / f"split.{cat}.{split.name}.json",
                [asins[n] for n in names],
            )
            labels = [
                _toy_labels(q)
                | {
                    "valid_targets": [asins[n] for n in q.valid_targets],
                    "toy_names": {"candidate": q.reference, "target": q.target},
                }
                for q in qs
            ]
            atomic_write_json(
                private / "fashioniq" / f"toy.{cat}.{split.name}.json", labels, indent=1
            )
            if not public:
                atomic_write_json(
                    private / "fashioniq" / f"cap.{cat}.{split.name}.targets.json",
                    [{"candidate": asins[q.reference], "target": asins[q.target]} for q in qs],
                    indent=1,
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
