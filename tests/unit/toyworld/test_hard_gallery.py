"""The hard gallery: one-attribute near misses of each query's target, never a valid answer."""

import numpy as np
import pytest

from cirlib.config import resolve
from cirlib.data.hard_gallery import (
    attribute_changes,
    hard_distractors,
    hard_test_split,
    one_attribute_neighbours,
    with_distractors,
)
from cirlib.data.records import CIRSplit, DatasetError, Triplet
from cirlib.toyworld.edits import is_valid_target
from cirlib.toyworld.render import render_array
from cirlib.toyworld.scene import Obj, make_scene
from cirlib.toyworld.world import generate_world

GROUPS = {"train": 4, "val": 3, "test": 12}


@pytest.fixture(scope="module")
def toy():
    return generate_world(GROUPS, seed=5)["test"]


def _as_split(toy):
    triplets = [
        Triplet(q.pair_id, q.reference, (q.texts[0],), q.texts[0], q.target, q.members,
                q.valid_targets, {"edit_type": q.edit.type})
        for q in toy.queries
    ]  # fmt: skip
    return CIRSplit(toy.name, triplets, list(toy.scenes), {})


def test_neighbours_by_count_and_by_hand():
    scene = make_scene([Obj(0, "circle", "red", "small"), Obj(4, "triangle", "blue", "large")])
    nbrs = one_attribute_neighbours(scene)
    # per object: 7 other colours + 2 other shapes + 1 other size + 7 empty cells
    assert len(nbrs) == len({s for s, _, _ in nbrs}) == 2 * (7 + 2 + 1 + 7)
    assert (
        make_scene([Obj(0, "circle", "gray", "small"), Obj(4, "triangle", "blue", "large")]),
        0,
        "colour",
    ) in nbrs
    assert (
        make_scene([Obj(8, "circle", "red", "small"), Obj(4, "triangle", "blue", "large")]),
        0,
        "cell",
    ) in nbrs
    assert scene not in {s for s, _, _ in nbrs}


@pytest.mark.parametrize("per_query", [6, None])
def test_each_distractor_is_one_attribute_from_its_target(toy, per_query):
    ds = hard_distractors(toy, per_query=per_query, world_seed=5)
    assert ds
    for d in ds:
        target = toy.scenes[d.source]
        (pair,) = attribute_changes(target, d.scene)  # exactly one object changed...
        old, new = pair
        changed = [
            a for a in ("cell", "shape", "colour", "size") if getattr(old, a) != getattr(new, a)
        ]
        assert changed == [d.attribute]  # ...in exactly one attribute, the one recorded
        assert old.cell == d.cell


@pytest.mark.parametrize("per_query", [6, None])
def test_no_distractor_answers_any_query_or_repeats_an_image(toy, per_query):
    ds = hard_distractors(toy, per_query=per_query, world_seed=5)
    scenes = [d.scene for d in ds]
    assert len(set(scenes)) == len(scenes)
    assert not set(scenes) & set(toy.scenes.values())
    for q in toy.queries:  # the validity test written independently of edit_results
        ref = toy.scenes[q.reference]
        assert not any(is_valid_target(ref, q.edit, s) for s in scenes), q.pair_id


def test_per_query_count_and_determinism(toy):
    ds = hard_distractors(toy, per_query=5, world_seed=5)
    per = {}
    for d in ds:
        per[d.pair_id] = per.get(d.pair_id, 0) + 1
    assert per == {q.pair_id: 5 for q in toy.queries}
    assert ds == hard_distractors(toy, per_query=5, world_seed=5)
    assert ds != hard_distractors(toy, per_query=5, world_seed=6)
    assert hard_distractors(toy, per_query=0) == []
    every = hard_distractors(toy, per_query=None, world_seed=5)
    assert len(every) > len(ds) and {d.scene for d in ds} <= {d.scene for d in every}
    most = hard_distractors(toy, per_query=10_000, world_seed=9)  # sampled, yet every one
    assert sorted(d.scene for d in most) == sorted(d.scene for d in every)
    with pytest.raises(ValueError, match="per_query"):
        hard_distractors(toy, per_query=-1)


def test_split_keeps_queries_and_complete_valid_targets(toy):
    split = _as_split(toy)
    ds = hard_distractors(toy, per_query=4, world_seed=5)
    hard = with_distractors(split, toy, ds, image_dir=None)
    assert hard.gallery == split.gallery + [d.name for d in ds]
    assert hard.triplets == split.triplets
    for name in split.gallery:
        assert hard.index_of(name) == split.index_of(name)
    # brute force: every gallery image that answers a query is listed as a valid target
    scene_of = {**toy.scenes, **{d.name: d.scene for d in ds}}
    for q, t in zip(toy.queries, hard.triplets):
        ref = toy.scenes[q.reference]
        valid = sorted(n for n in hard.gallery if is_valid_target(ref, q.edit, scene_of[n]))
        assert valid == sorted(t.valid_targets)


def test_mismatched_split_is_refused(toy):
    other = generate_world(GROUPS, seed=6)["test"]
    with pytest.raises(DatasetError, match="same profile"):
        with_distractors(_as_split(other), toy, [], image_dir=None)


def test_hard_test_split_renders_like_the_world_and_is_reused():
    cfg = resolve("smoke", world_groups={"train": 3, "val": 2, "test": 4})
    hard = hard_test_split(cfg, per_query=3)
    toy = generate_world(cfg.world_groups, cfg.world_seed)["test"]
    ds = hard_distractors(toy, per_query=3, world_seed=cfg.world_seed)
    assert hard.gallery[-len(ds) :] == [d.name for d in ds]
    d = ds[len(ds) // 2]
    pixels = np.asarray(hard.load_image(d.name))
    assert np.array_equal(pixels, render_array(d.scene, cfg.image_size))
    path = hard.image_paths[d.name]
    stamp = path.stat().st_mtime_ns
    again = hard_test_split(cfg, per_query=3)
    assert again.gallery == hard.gallery and path.stat().st_mtime_ns == stamp  # not redrawn
    assert not list(path.parent.parent.parent.glob(".hard-*"))  # no temporary folder left
