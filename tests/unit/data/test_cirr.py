"""CIRR loader: real rc2 annotation files (when present) and small format-faithful fixtures."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from cirlib.data.cirr import load_cirr
from cirlib.data.records import DatasetError


def _realdata() -> Path:
    default = Path(__file__).resolve().parents[3].parent / "shared" / "realdata"
    return Path(os.environ.get("CIR_REALDATA", default))


@pytest.fixture(scope="module")
def real_cirr() -> Path:
    root = _realdata() / "cirr"
    if not (root / "captions" / "cap.rc2.val.json").is_file():
        pytest.skip(f"real CIRR annotations not found under {root} (set CIR_REALDATA)")
    return root


# ---------------------------------------------------------------- real annotation files


def test_real_val_counts_and_fields(real_cirr):
    split = load_cirr(real_cirr, "val")
    assert split.name == "cirr/val"
    assert len(split) == 4181
    assert len(split.gallery) == 2297
    pair_ids = [t.pair_id for t in split.triplets]
    assert len(set(pair_ids)) == len(pair_ids)
    assert (min(pair_ids), max(pair_ids)) == (12060, 38762)
    assert len({t.meta["img_set_id"] for t in split.triplets}) == 503
    first = split.triplets[0]
    assert (first.pair_id, first.reference, first.target) == (
        12060,
        "dev-244-0-img0",
        "dev-1028-1-img1",
    )
    assert first.captions == (first.caption,) == ("show three bottles of soft drink",)
    assert split.image_paths["dev-244-0-img0"] == real_cirr / "dev" / "dev-244-0-img0.png"
    for t in split.triplets:
        assert t.target is not None and t.target in t.subset
        assert len(t.subset) == 6 and t.reference in t.subset
        assert t.valid_targets is None


def test_real_test1_has_no_targets(real_cirr):
    split = load_cirr(real_cirr, "test1")
    assert len(split) == 4148
    assert len(split.gallery) == 2315
    assert all(t.target is None for t in split.triplets)
    assert all(len(t.subset) == 6 and t.reference in t.subset for t in split.triplets)
    assert split.gallery[:2] == ["test1-147-1-img1", "test1-83-0-img1"]  # file order


def test_real_missing_split_lists_present_ones(real_cirr):
    # The real copy has the train image split but not the (large) train captions.
    with pytest.raises(DatasetError, match="test1") as err:
        load_cirr(real_cirr, "train")
    assert "cap.rc2.train.json" in str(err.value) and "'val'" in str(err.value)


# ---------------------------------------------------------------- fixtures

IMAGES = [f"dev-{i}-0-img{i % 2}" for i in range(8)]


def _entry(pairid, reference, target, members, caption="make it red", set_id=1):
    return {
        "pairid": pairid,
        "reference": reference,
        "target_hard": target,
        "target_soft": {target: 1.0},
        "caption": caption,
        "img_set": {"id": set_id, "members": members, "reference_rank": 0, "target_rank": 1},
    }


def _default_entries():
    return [
        _entry(100, IMAGES[0], IMAGES[1], IMAGES[:6], "show two dogs", 7),
        _entry(205, IMAGES[2], IMAGES[7], IMAGES[2:8], "remove the cat", 9),
    ]


def _write_cirr(root: Path, split="val", entries=None, images=None, image_files=True):
    images = IMAGES if images is None else images
    entries = _default_entries() if entries is None else entries
    (root / "captions").mkdir(parents=True, exist_ok=True)
    (root / "image_splits").mkdir(parents=True, exist_ok=True)
    (root / "captions" / f"cap.rc2.{split}.json").write_text(json.dumps(entries))
    split_map = {name: f"./dev/{name}.png" for name in images}
    (root / "image_splits" / f"split.rc2.{split}.json").write_text(json.dumps(split_map))
    if image_files:
        (root / "dev").mkdir(exist_ok=True)
        for i, name in enumerate(images):
            Image.new("RGB", (6 + i, 5), (10 * i, 0, 0)).save(root / "dev" / f"{name}.png")
    return root


def test_round_trip(tmp_path):
    root = _write_cirr(tmp_path / "cirr")
    split = load_cirr(root, "val", check_images=True)
    assert split.name == "cirr/val"
    assert split.gallery == IMAGES
    first, second = split.triplets
    assert first.pair_id == 100 and second.pair_id == 205
    assert first.reference == IMAGES[0] and first.target == IMAGES[1]
    assert first.captions == ("show two dogs",) and first.caption == "show two dogs"
    assert first.subset == tuple(IMAGES[:6])
    assert dict(first.meta) == {"img_set_id": 7}
    assert second.meta["img_set_id"] == 9
    assert first.valid_targets is None
    assert split.index_of(IMAGES[7]) == 7
    image = split.load_image(IMAGES[3])
    assert image.mode == "RGB" and image.size == (9, 5)


def test_image_root_overrides_root(tmp_path):
    ann = _write_cirr(tmp_path / "ann", image_files=False)
    pics = _write_cirr(tmp_path / "pics")  # only its image folders are used
    split = load_cirr(ann, "val", image_root=pics, check_images=True)
    assert split.image_paths[IMAGES[0]] == pics / "dev" / f"{IMAGES[0]}.png"
    with pytest.raises(DatasetError, match="8 of 8 image files"):
        load_cirr(ann, "val", check_images=True)
    # Without the check, annotation-only loading works and paths point at the expected files.
    assert load_cirr(ann, "val").image_paths[IMAGES[0]] == ann / "dev" / f"{IMAGES[0]}.png"


def test_toy_extension_key(tmp_path):
    entries = _default_entries()
    entries[0]["toy"] = {
        "valid_targets": [IMAGES[1], IMAGES[4]],
        "edit_type": "change_colour",
        "granularity": "coarse",
    }
    split = load_cirr(_write_cirr(tmp_path, entries=entries), "val")
    toy, real = split.triplets
    assert toy.valid_targets == (IMAGES[1], IMAGES[4])
    assert dict(toy.meta) == {
        "img_set_id": 7,
        "edit_type": "change_colour",
        "granularity": "coarse",
    }
    assert real.valid_targets is None and dict(real.meta) == {"img_set_id": 9}


def test_test_split_without_target(tmp_path):
    entries = _default_entries()
    for e in entries:
        del e["target_hard"], e["target_soft"], e["img_set"]["target_rank"]
    split = load_cirr(_write_cirr(tmp_path, split="test1", entries=entries), "test1")
    assert [t.target for t in split.triplets] == [None, None]
    # The same entries in a non-test split are an error: val queries need a target.
    _write_cirr(tmp_path, split="val", entries=entries)
    with pytest.raises(DatasetError, match="'target_hard': missing"):
        load_cirr(tmp_path, "val")


def _set(path, value):
    def mutate(entries):
        obj = entries[1]
        *parents, last = path
        for key in parents:
            obj = obj[key]
        obj[last] = value

    return mutate


def _delete(*path):
    def mutate(entries):
        obj = entries[1]
        for key in path[:-1]:
            obj = obj[key]
        del obj[path[-1]]

    return mutate


MALFORMED_ENTRIES = {
    "no pairid": (_delete("pairid"), "'pairid'"),
    "pairid not int": (_set(["pairid"], "205"), "'pairid'"),
    "no reference": (_delete("reference"), "'reference'"),
    "no caption": (_delete("caption"), "'caption'"),
    "no target": (_delete("target_hard"), "'target_hard'"),
    "no img_set": (_delete("img_set"), "'img_set'"),
    "no img_set id": (_delete("img_set", "id"), "'img_set.id'"),
    "no members": (_delete("img_set", "members"), "'img_set.members'"),
    "5 members": (_set(["img_set", "members"], IMAGES[2:7]), "'img_set.members'"),
    "reference not a member": (
        _set(["img_set", "members"], IMAGES[3:8] + IMAGES[:1]),
        "'img_set.members'",
    ),
    "unknown reference": (_set(["reference"], "dev-99-0-img0"), "'reference'"),
    "unknown target": (_set(["target_hard"], "dev-99-0-img0"), "'target_hard'"),
    "unknown member": (
        _set(["img_set", "members"], IMAGES[2:7] + ["dev-99-0-img0"]),
        "'img_set.members'",
    ),
    "duplicate pairid": (_set(["pairid"], 100), "'pairid'"),
    "toy not a dict": (_set(["toy"], ["x"]), "'toy'"),
    "unknown valid target": (_set(["toy"], {"valid_targets": ["nope"]}), "'toy.valid_targets'"),
    "target not valid": (_set(["toy"], {"valid_targets": [IMAGES[3]]}), "'toy.valid_targets'"),
}


@pytest.mark.parametrize("case", MALFORMED_ENTRIES)
def test_malformed_entry_names_file_entry_and_field(tmp_path, case):
    mutate, field = MALFORMED_ENTRIES[case]
    entries = _default_entries()
    mutate(entries)
    root = _write_cirr(tmp_path, entries=entries, image_files=False)
    with pytest.raises(DatasetError) as err:
        load_cirr(root, "val")
    message = str(err.value)
    assert "cap.rc2.val.json" in message
    assert "entry 1" in message
    assert field in message
    assert "make_toyworld.py" in message  # says what to do


def test_malformed_files(tmp_path):
    cases = [
        ("captions/cap.rc2.val.json", {"pairid": 1}, "cap.rc2.val.json", "list"),
        ("captions/cap.rc2.val.json", [], "cap.rc2.val.json", "no query entries"),
        ("captions/cap.rc2.val.json", None, "cap.rc2.val.json", "not valid JSON"),
        ("captions/cap.rc2.val.json", [["a"]], "cap.rc2.val.json", "'<entry>'"),
        ("image_splits/split.rc2.val.json", IMAGES, "split.rc2.val.json", "dict"),
        ("image_splits/split.rc2.val.json", {}, "split.rc2.val.json", "no images"),
        ("image_splits/split.rc2.val.json", {"a": 3}, "split.rc2.val.json", "relative path"),
    ]
    for i, (relative, content, file_name, problem) in enumerate(cases):
        root = _write_cirr(tmp_path / str(i), image_files=False)
        text = "{not json" if content is None else json.dumps(content)
        (root / relative).write_text(text)
        with pytest.raises(DatasetError) as err:
            load_cirr(root, "val")
        assert file_name in str(err.value) and problem in str(err.value), relative


def test_missing_folders_and_files(tmp_path):
    with pytest.raises(DatasetError) as err:
        load_cirr(tmp_path / "nowhere", "val")
    message = str(err.value)
    assert "nowhere" in message
    assert "python data_scripts/make_toyworld.py --profile toy" in message
    assert "data_scripts/prepare_cirr.py" in message and "book/setup.md" in message

    (tmp_path / "bare" / "captions").mkdir(parents=True)
    with pytest.raises(DatasetError, match="image_splits.*make_toyworld"):
        load_cirr(tmp_path / "bare", "val")

    root = _write_cirr(tmp_path / "cirr", image_files=False)
    with pytest.raises(DatasetError) as err:
        load_cirr(root, "test1")
    assert "'test1'" in str(err.value) and "['val']" in str(err.value)

    (root / "image_splits" / "split.rc2.val.json").unlink()
    with pytest.raises(DatasetError, match="split.rc2.val.json does not exist"):
        load_cirr(root, "val")


def test_check_images_counts_missing_files(tmp_path):
    root = _write_cirr(tmp_path)
    (root / "dev" / f"{IMAGES[5]}.png").unlink()
    (root / "dev" / f"{IMAGES[6]}.png").unlink()
    split = load_cirr(root, "val")  # no check: loads, and the missing file is named on open
    with pytest.raises(DatasetError, match=f"{IMAGES[5]}.png is missing"):
        split.load_image(IMAGES[5])
    with pytest.raises(DatasetError) as err:
        load_cirr(root, "val", check_images=True)
    assert "2 of 8 image files" in str(err.value)
    assert IMAGES[5] in str(err.value) and IMAGES[6] in str(err.value)


def test_undecodable_image_names_the_file(tmp_path):
    root = _write_cirr(tmp_path)
    broken = root / "dev" / f"{IMAGES[2]}.png"
    broken.write_bytes(b"this is not a png")
    split = load_cirr(root, "val", check_images=True)  # it exists, so the check passes
    with pytest.raises(DatasetError, match="does not decode") as err:
        split.load_image(IMAGES[2])
    assert str(broken) in str(err.value)


def _cirr_damaged(root):
    (root / "captions" / "cap.rc2.val.json").write_text("[{")


def _cirr_no_split_file(root):
    (root / "image_splits" / "split.rc2.val.json").unlink()


def _cirr_missing_image(root):
    (root / "dev" / f"{IMAGES[2]}.png").unlink()


@pytest.mark.parametrize(
    ("case", "call"),
    [
        ("no dataset folder", lambda root: load_cirr(root / "nowhere", "val")),
        ("no captions folder", lambda root: load_cirr(root / "dev", "val")),
        ("unknown split", lambda root: load_cirr(root, "test1")),
        ("no split file", lambda root: (_cirr_no_split_file(root), load_cirr(root, "val"))),
        ("damaged file", lambda root: (_cirr_damaged(root), load_cirr(root, "val"))),
        (
            "missing images",
            lambda root: (_cirr_missing_image(root), load_cirr(root, "val", check_images=True)),
        ),
    ],
)
def test_errors_name_the_preparation_command(tmp_path, case, call):
    root = _write_cirr(tmp_path / "cirr")
    with pytest.raises(DatasetError) as err:
        call(root)
    assert "python data_scripts/prepare_cirr.py" in str(err.value), case
