import json
import random

import numpy as np
import pytest

from cirlib.toyworld import (
    EDIT_TYPES,
    Edit,
    Obj,
    Selector,
    edit_results,
    edit_texts,
    generate_world,
    is_valid_target,
    make_scene,
    make_toyworld,
    random_scene,
    render_scene,
    sample_edit,
    scene_from_json,
)
from cirlib.toyworld.edits import edit_from_dict
from cirlib.toyworld.scene import CELLS, COLOURS, SHAPES, SIZES

SMALL = {"train": 30, "val": 8, "test": 12}


@pytest.fixture(scope="module")
def world():
    return generate_world(SMALL, seed=3)


def test_generation_is_deterministic():
    a, b = generate_world(SMALL, seed=5), generate_world(SMALL, seed=5)
    c = generate_world(SMALL, seed=6)
    assert [q.texts for q in a["test"].queries] == [q.texts for q in b["test"].queries]
    assert a["train"].scenes == b["train"].scenes
    assert a["train"].scenes != c["train"].scenes


def test_every_target_is_its_reference_with_the_edit_applied(world):
    for split in world.values():
        for q in split.queries:
            ref, tgt = split.scenes[q.reference], split.scenes[q.target]
            assert tgt in edit_results(ref, q.edit)
            assert is_valid_target(ref, q.edit, tgt)
            assert tgt != ref


def test_valid_target_lists_are_exact(world):
    """Listed = brute force over the whole gallery with the independent predicate."""
    for split in world.values():
        for q in split.queries:
            ref = split.scenes[q.reference]
            brute = sorted(
                name
                for name, scene in split.scenes.items()
                if scene != ref and is_valid_target(ref, q.edit, scene)
            )
            assert list(q.valid_targets) == brute
            assert q.target in q.valid_targets


def test_enumeration_agrees_with_predicate_on_all_candidates():
    """For random scenes and edits, edit_results == {candidates the predicate accepts}, where the
    candidates are every one-object change of the scene (a superset of any possible result)."""
    rng = random.Random(0)
    for _ in range(60):
        scene = random_scene(rng)
        edit, _ = sample_edit(scene, rng, p_fine=0.3)
        candidates = set()
        cells = {o.cell for o in scene}
        for o in scene:
            rest = [p for p in scene if p != o]
            if rest:
                candidates.add(make_scene(rest))
            for c in range(9):
                for sh in SHAPES:
                    for co in COLOURS:
                        for si in SIZES:
                            new = Obj(c, sh, co, si)
                            if c == o.cell or c not in cells:
                                candidates.add(make_scene((*rest, new)))
        for c in set(range(9)) - cells:
            for sh in SHAPES:
                for co in COLOURS:
                    for si in SIZES:
                        candidates.add(make_scene((*scene, Obj(c, sh, co, si))))
        accepted = {s for s in candidates if s != scene and is_valid_target(scene, edit, s)}
        assert edit_results(scene, edit) == accepted


def test_hand_worked_edits():
    scene = make_scene([Obj(0, "circle", "red", "small"), Obj(4, "triangle", "blue", "large")])
    some_blue = Edit("colour", Selector(), "blue")  # "make an object blue"
    assert edit_results(scene, some_blue) == {
        make_scene([Obj(0, "circle", "blue", "small"), Obj(4, "triangle", "blue", "large")])
    }  # the triangle is blue already, so only the circle can change
    red = Edit("colour", Selector(), "red")
    assert len(edit_results(scene, red)) == 1
    move = Edit("move", Selector(shape="circle"), 4)  # destination occupied: impossible
    assert edit_results(scene, move) == frozenset()
    add_any = Edit("add", Selector())
    assert len(edit_results(scene, add_any)) == 7 * 3 * 8 * 2
    remove_last = Edit("remove", Selector())
    single = make_scene([Obj(0, "circle", "red", "small")])
    assert edit_results(single, remove_last) == frozenset()  # never an empty scene
    texts = edit_texts(scene, Edit("size", Selector(cell=0), "large"))
    assert texts == ("make the object at top-left large", "enlarge the object at top-left")


def test_no_query_shared_across_splits(world):
    seen = {}
    for name, split in world.items():
        for q in split.queries:
            key = (split.scenes[q.reference], q.texts)
            assert key not in seen, f"query in {name} and {seen.get(key)}"
            seen[key] = name
    refs = [{split.scenes[q.reference] for q in split.queries} for split in world.values()]
    assert not (refs[0] & refs[1] or refs[0] & refs[2] or refs[1] & refs[2])


def test_groups_and_subsets(world):
    for split in world.values():
        for q in split.queries:
            assert len(q.members) == 6 and len(set(q.members)) == 6
            assert q.reference in q.members and q.target in q.members
            assert all(m in split.scenes for m in q.members)


def test_every_edit_type_occurs(world):
    types = {q.edit.type for q in world["train"].queries}
    assert types == set(EDIT_TYPES)
    grains = {q.granularity for q in world["train"].queries}
    assert grains == {"fine", "coarse"}


def test_render_is_deterministic_and_shows_colour():
    scene = make_scene([Obj(4, "rectangle", "red", "large")])
    a, b = np.asarray(render_scene(scene)), np.asarray(render_scene(scene))
    assert a.shape == (48, 48, 3) and (a == b).all()
    centre = a[24, 24]
    assert centre[0] > 200 and centre[1] < 80  # red
    assert (a[2, 2] == 255).all()  # background white


def test_export_layout_round_trip(tmp_path):
    out = make_toyworld(tmp_path, SMALL, seed=3)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["queries"]["test"] > 0
    ann = out / "cirr_dataset" / "cirr"
    caps = json.loads((ann / "captions" / "cap.rc2.val.json").read_text())
    split = json.loads((ann / "image_splits" / "split.rc2.val.json").read_text())
    labels = json.loads((out / "private" / "cirr" / "toy.rc2.val.json").read_text())
    scenes = json.loads((out / "scenes.json").read_text())
    for e in caps:
        assert {"pairid", "reference", "target_hard", "caption", "img_set"} <= set(e)
        toy = labels[str(e["pairid"])]
        assert e["reference"] in split and e["target_hard"] in toy["valid_targets"]
        ref = scene_from_json(scenes[e["reference"]])
        edit = edit_from_dict(toy["edit"])
        assert is_valid_target(ref, edit, scene_from_json(scenes[e["target_hard"]]))
    for rel in list(split.values())[:5]:
        assert (out / "cirr_dataset" / rel).is_file()
    fiq = json.loads((out / "fashionIQ_dataset" / "captions" / "cap.dress.test.json").read_text())
    assert all(len(e["captions"]) == 2 and e["captions"][0] != e["captions"][1] for e in fiq)
    # a second call reuses the finished world instead of regenerating it
    mtime = (out / "manifest.json").stat().st_mtime_ns
    assert make_toyworld(tmp_path, SMALL, seed=3) == out
    assert (out / "manifest.json").stat().st_mtime_ns == mtime


def test_interrupted_export_is_redone(tmp_path):
    out = make_toyworld(tmp_path, SMALL, seed=4)
    (out / "manifest.json").unlink()  # as if the run died before finishing
    junk = out / "fashionIQ_dataset" / "images" / "junk.jpg"
    junk.write_bytes(b"half")
    again = make_toyworld(tmp_path, SMALL, seed=4)
    assert (again / "manifest.json").exists()
    assert not junk.exists()


def test_cells_are_named_like_css():
    assert CELLS[0] == "top-left" and CELLS[4] == "middle-center" and len(CELLS) == 9
