"""FashionIQ loader and caption handling: real annotation files (when present) and fixtures."""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from cirlib.data.fashioniq import (
    clean_fashioniq_caption,
    fashioniq_training_caption,
    fashioniq_validation_caption,
    load_fashioniq,
)
from cirlib.data.records import DatasetError


def _realdata() -> Path:
    default = Path(__file__).resolve().parents[3].parent / "shared" / "realdata"
    return Path(os.environ.get("CIR_REALDATA", default))


@pytest.fixture(scope="module")
def real_fiq() -> Path:
    root = _realdata() / "fashioniq"
    if not (root / "captions" / "cap.dress.val.json").is_file():
        pytest.skip(f"real FashionIQ annotations not found under {root} (set CIR_REALDATA)")
    return root


# ---------------------------------------------------------------- real annotation files

# methods.md section 9.2: (queries, images) per category and split.
REAL_COUNTS = {
    ("dress", "train"): (5985, 11452),
    ("dress", "val"): (2017, 3817),
    ("dress", "test"): (2024, 3818),
    ("shirt", "train"): (5988, 19036),
    ("shirt", "val"): (2038, 6346),
    ("shirt", "test"): (2038, 6346),
    ("toptee", "train"): (6027, 16121),
    ("toptee", "val"): (1961, 5373),
    ("toptee", "test"): (2056, 5374),
}
# methods.md section 8.2: CoSMo/MGUR val gallery = candidates and targets of the val captions.
REAL_COSMO_VAL_GALLERY = {"dress": 2628, "shirt": 3089, "toptee": 2902}


@pytest.mark.parametrize("category, split", REAL_COUNTS)
def test_real_counts_clip4cir(real_fiq, category, split):
    loaded = load_fashioniq(real_fiq, category, split)  # no images/ folder: annotations only
    queries, images = REAL_COUNTS[category, split]
    assert loaded.name == f"fashioniq/{category}/{split}/clip4cir"
    assert (len(loaded), len(loaded.gallery)) == (queries, images)
    assert [t.pair_id for t in loaded.triplets] == list(range(queries))
    assert all(len(t.captions) == 2 for t in loaded.triplets)
    if split == "test":
        assert all(t.target is None for t in loaded.triplets)
    else:
        assert all(t.target is not None for t in loaded.triplets)
        in_gallery = set(loaded.gallery)
        assert all({t.reference, t.target} <= in_gallery for t in loaded.triplets)


@pytest.mark.parametrize("category", REAL_COSMO_VAL_GALLERY)
def test_real_cosmo_val_gallery(real_fiq, category):
    cosmo = load_fashioniq(real_fiq, category, "val", protocol="cosmo")
    clip4cir = load_fashioniq(real_fiq, category, "val")
    assert cosmo.name == f"fashioniq/{category}/val/cosmo"
    assert len(cosmo.gallery) == REAL_COSMO_VAL_GALLERY[category]
    assert set(cosmo.gallery) < set(clip4cir.gallery)
    assert cosmo.triplets == clip4cir.triplets  # same queries, different gallery


def test_real_captions_and_paths(real_fiq):
    shirt = load_fashioniq(real_fiq, "shirt", "val")
    # Every query text is a clean sentence, including the val entries with an empty caption.
    for t in shirt.triplets:
        assert t.caption and t.caption[0] == t.caption[0].upper()
        assert not t.caption.endswith((" and", ".", " ")) and not t.caption.startswith(" ")
    empty = shirt.triplets[1928]  # captions ['', 'is grey with a design on the back']
    assert empty.captions[0] == ""
    assert empty.caption == "Is grey with a design on the back"
    name = shirt.gallery[0]
    assert shirt.image_paths[name] == real_fiq / "images" / f"{name}.jpg"
    with pytest.raises(DatasetError, match=f"{name}.jpg is missing"):
        shirt.load_image(name)


# ---------------------------------------------------------------- caption handling


def test_caption_cleaning():
    assert clean_fashioniq_caption(" is red.") == "is red"
    assert clean_fashioniq_caption("has sleeves?, ") == "has sleeves"
    assert clean_fashioniq_caption("...") == ""
    assert fashioniq_validation_caption("is red.", "has DKNY logo ") == "Is red and has DKNY logo"
    assert fashioniq_validation_caption(".", "is grey") == "Is grey"
    assert fashioniq_validation_caption("is grey", "") == "Is grey"


def test_training_caption_is_uniform_over_four_forms():
    c1, c2 = "is red", "has short sleeves"
    expected = {"Is red and has short sleeves", "Has short sleeves and is red", "Is red"}
    expected.add("Has short sleeves")
    rng = random.Random(0)
    counts = Counter(fashioniq_training_caption(c1, c2, rng) for _ in range(4000))
    assert set(counts) == expected
    assert all(850 < n < 1150 for n in counts.values()), counts
    draws = [fashioniq_training_caption(c1, c2, random.Random(7)) for _ in range(3)]
    assert len(set(draws)) == 1  # reproducible from the rng state
    assert {fashioniq_training_caption("", c2, rng) for _ in range(50)} == {"Has short sleeves"}


# ---------------------------------------------------------------- fixtures

NAMES = [f"B00TEST{i:03d}" for i in range(6)]


def _default_entries():
    return [
        {"target": NAMES[3], "candidate": NAMES[1], "captions": ["is red.", "has long sleeves"]},
        {"target": NAMES[0], "candidate": NAMES[3], "captions": ["  is shorter", "is blue?"]},
        {"target": NAMES[1], "candidate": NAMES[4], "captions": ["is green", "is plain"]},
    ]


def _write_fiq(root, category="dress", split="val", entries=None, names=None, images=True):
    names = NAMES if names is None else names
    entries = _default_entries() if entries is None else entries
    (root / "captions").mkdir(parents=True, exist_ok=True)
    (root / "image_splits").mkdir(parents=True, exist_ok=True)
    (root / "captions" / f"cap.{category}.{split}.json").write_text(json.dumps(entries))
    (root / "image_splits" / f"split.{category}.{split}.json").write_text(json.dumps(names))
    if images:
        (root / "images").mkdir(exist_ok=True)
        for i, name in enumerate(names):
            # Real FashionIQ images are JPEG; the toy export writes PNG. Mix both.
            ext = "png" if i % 2 else "jpg"
            Image.new("RGB", (4, 3 + i), (0, 20 * i, 0)).save(root / "images" / f"{name}.{ext}")
    return root


def test_round_trip(tmp_path):
    root = _write_fiq(tmp_path)
    loaded = load_fashioniq(root, "dress", "val")
    assert loaded.name == "fashioniq/dress/val/clip4cir"
    assert loaded.gallery == NAMES
    first, second, _ = loaded.triplets
    assert [t.pair_id for t in loaded.triplets] == [0, 1, 2]
    assert (first.reference, first.target) == (NAMES[1], NAMES[3])
    assert first.captions == ("is red.", "has long sleeves")  # raw, as annotated
    assert first.caption == "Is red and has long sleeves"
    assert second.caption == "Is shorter and is blue"
    assert first.subset is None and first.valid_targets is None
    assert loaded.image_paths[NAMES[0]] == root / "images" / f"{NAMES[0]}.jpg"
    assert loaded.image_paths[NAMES[1]] == root / "images" / f"{NAMES[1]}.png"
    assert loaded.load_image(NAMES[5]).size == (4, 8)


def test_cosmo_gallery_is_union_in_first_appearance_order(tmp_path):
    root = _write_fiq(tmp_path)
    loaded = load_fashioniq(root, "dress", "val", protocol="cosmo")
    assert loaded.name == "fashioniq/dress/val/cosmo"
    # candidate, target of entry 0; entry 1 adds NAMES[0]; entry 2 adds NAMES[4].
    assert loaded.gallery == [NAMES[1], NAMES[3], NAMES[0], NAMES[4]]
    assert set(loaded.image_paths) == set(loaded.gallery)


def test_png_wins_over_jpg_and_image_dir_option(tmp_path):
    root = _write_fiq(tmp_path / "fiq")
    Image.new("RGB", (2, 2)).save(root / "images" / f"{NAMES[0]}.png")
    assert load_fashioniq(root, "dress", "val").image_paths[NAMES[0]].suffix == ".png"
    moved = tmp_path / "elsewhere"
    (root / "images").rename(moved)
    loaded = load_fashioniq(root, "dress", "val", image_dir=moved)
    assert loaded.image_paths[NAMES[1]] == moved / f"{NAMES[1]}.png"


def test_toy_extension_key(tmp_path):
    entries = _default_entries()
    entries[2]["toy"] = {"valid_targets": [NAMES[1], NAMES[5]], "edit_type": "colour"}
    loaded = load_fashioniq(_write_fiq(tmp_path, entries=entries), "dress", "val")
    assert loaded.triplets[2].valid_targets == (NAMES[1], NAMES[5])
    assert dict(loaded.triplets[2].meta) == {"edit_type": "colour"}
    assert loaded.triplets[0].valid_targets is None and dict(loaded.triplets[0].meta) == {}


def test_test_split_without_target(tmp_path):
    entries = [{k: v for k, v in e.items() if k != "target"} for e in _default_entries()]
    root = _write_fiq(tmp_path, split="test", entries=entries)
    loaded = load_fashioniq(root, "dress", "test", protocol="cosmo")
    assert [t.target for t in loaded.triplets] == [None, None, None]
    assert loaded.gallery == [NAMES[1], NAMES[3], NAMES[4]]  # candidates only
    _write_fiq(tmp_path, split="val", entries=entries)
    with pytest.raises(DatasetError, match="'target': missing"):
        load_fashioniq(root, "dress", "val")


MALFORMED_ENTRIES = {
    "no candidate": (lambda e: e.pop("candidate"), "'candidate'"),
    "no target": (lambda e: e.pop("target"), "'target'"),
    "no captions": (lambda e: e.pop("captions"), "'captions'"),
    "one caption": (lambda e: e.update(captions=["is red"]), "'captions'"),
    "caption not str": (lambda e: e.update(captions=["is red", 3]), "'captions'"),
    "candidate not str": (lambda e: e.update(candidate=7), "'candidate'"),
    "unknown candidate": (lambda e: e.update(candidate="B00NOPE"), "'candidate'"),
    "unknown target": (lambda e: e.update(target="B00NOPE"), "'target'"),
    "unknown valid target": (
        lambda e: e.update(toy={"valid_targets": ["B00NOPE"]}),
        "'toy.valid_targets'",
    ),
}


@pytest.mark.parametrize("case", MALFORMED_ENTRIES)
def test_malformed_entry_names_file_entry_and_field(tmp_path, case):
    mutate, field = MALFORMED_ENTRIES[case]
    entries = _default_entries()
    mutate(entries[1])
    root = _write_fiq(tmp_path, entries=entries, images=False)
    with pytest.raises(DatasetError) as err:
        load_fashioniq(root, "dress", "val")
    message = str(err.value)
    assert "cap.dress.val.json" in message and "entry 1" in message and field in message
    assert "make_toyworld.py" in message


def test_malformed_files(tmp_path):
    cases = [
        ("captions/cap.dress.val.json", {"candidate": "x"}, "cap.dress.val.json", "list"),
        ("captions/cap.dress.val.json", [], "cap.dress.val.json", "no query entries"),
        ("captions/cap.dress.val.json", None, "cap.dress.val.json", "not valid JSON"),
        ("image_splits/split.dress.val.json", {"a": "b"}, "split.dress.val.json", "list"),
        ("image_splits/split.dress.val.json", [], "split.dress.val.json", "no images"),
        ("image_splits/split.dress.val.json", NAMES + NAMES[:1], "split.dress.val.json", "twice"),
        ("image_splits/split.dress.val.json", [NAMES[0], 5], "split.dress.val.json", "entry 1"),
    ]
    for i, (relative, content, file_name, problem) in enumerate(cases):
        root = _write_fiq(tmp_path / str(i), images=False)
        (root / relative).write_text("[{oops" if content is None else json.dumps(content))
        with pytest.raises(DatasetError) as err:
            load_fashioniq(root, "dress", "val")
        assert file_name in str(err.value) and problem in str(err.value), relative


def test_missing_folder_and_unknown_names(tmp_path):
    with pytest.raises(DatasetError) as err:
        load_fashioniq(tmp_path / "nowhere", "dress", "val")
    message = str(err.value)
    assert "nowhere" in message
    assert "python data_scripts/make_toyworld.py --profile toy" in message
    assert "data_scripts/prepare_fashioniq.py" in message and "book/setup.md" in message

    root = _write_fiq(tmp_path / "fiq", images=False)
    _write_fiq(root, category="shirt", split="train", images=False)
    with pytest.raises(DatasetError, match=r"category 'pants'.*\['dress', 'shirt'\]"):
        load_fashioniq(root, "pants", "val")
    with pytest.raises(DatasetError, match=r"split 'val' for category 'shirt'.*\['train'\]"):
        load_fashioniq(root, "shirt", "val")
    with pytest.raises(DatasetError, match="protocol"):
        load_fashioniq(root, "dress", "val", protocol="mgur")
    with pytest.raises(DatasetError, match="missing_images"):
        load_fashioniq(root, "dress", "val", missing_images="drop")
    (root / "image_splits" / "split.dress.val.json").unlink()
    with pytest.raises(DatasetError, match="split.dress.val.json does not exist"):
        load_fashioniq(root, "dress", "val")


def test_annotation_only_when_image_folder_is_absent(tmp_path):
    root = _write_fiq(tmp_path, images=False)
    loaded = load_fashioniq(root, "dress", "val")  # "auto" -> no file checks
    assert len(loaded) == 3 and len(loaded.gallery) == 6
    assert loaded.image_paths[NAMES[2]] == root / "images" / f"{NAMES[2]}.jpg"
    for mode in ("error", "skip"):
        with pytest.raises(DatasetError, match="images.*does not exist.*'ignore'"):
            load_fashioniq(root, "dress", "val", missing_images=mode)


def test_missing_images_error_skip_ignore(tmp_path):
    root = _write_fiq(tmp_path)
    # NAMES[0] is the target of query 1; NAMES[5] is only in the gallery; NAMES[2] is unused.
    for name, ext in ((NAMES[0], "jpg"), (NAMES[5], "png"), (NAMES[2], "jpg")):
        (root / "images" / f"{name}.{ext}").unlink()

    with pytest.raises(DatasetError) as err:
        load_fashioniq(root, "dress", "val")  # folder exists: "auto" means "error"
    assert "3 of 6 images" in str(err.value) and NAMES[5] in str(err.value)
    assert "missing_images='skip'" in str(err.value)

    with pytest.warns(UserWarning) as record:
        skipped = load_fashioniq(root, "dress", "val", missing_images="skip")
    assert len(record) == 1
    message = str(record[0].message)
    assert "3 of 6 gallery images" in message and "1 of 3 queries" in message
    assert [t.pair_id for t in skipped.triplets] == [0, 2]
    assert skipped.gallery == [NAMES[1], NAMES[3], NAMES[4]]
    assert all(skipped.load_image(n).mode == "RGB" for n in skipped.gallery)

    with pytest.warns(UserWarning, match="1 of 4 gallery images.*1 of 3 queries"):
        cosmo = load_fashioniq(root, "dress", "val", protocol="cosmo", missing_images="skip")
    assert cosmo.gallery == [NAMES[1], NAMES[3], NAMES[4]]

    ignored = load_fashioniq(root, "dress", "val", missing_images="ignore")
    assert len(ignored) == 3 and len(ignored.gallery) == 6
    with pytest.raises(DatasetError, match=f"{NAMES[5]}.jpg is missing"):
        ignored.load_image(NAMES[5])


def test_nothing_missing_means_no_warning(tmp_path, recwarn):
    loaded = load_fashioniq(_write_fiq(tmp_path), "dress", "val", missing_images="skip")
    assert len(loaded) == 3 and len(recwarn) == 0


def test_undecodable_image_names_the_file(tmp_path):
    root = _write_fiq(tmp_path)
    broken = root / "images" / f"{NAMES[3]}.png"
    broken.write_bytes(b"\x89PNG but not really")
    loaded = load_fashioniq(root, "dress", "val")
    with pytest.raises(DatasetError, match="does not decode") as err:
        loaded.load_image(NAMES[3])
    assert str(broken) in str(err.value)


# ---------------------------------------------------------------- nothing left, error hints


def test_skip_with_every_image_missing_raises(tmp_path):
    root = _write_fiq(tmp_path)
    for path in (root / "images").iterdir():
        path.unlink()
    with pytest.raises(DatasetError) as err:
        load_fashioniq(root, "dress", "val", missing_images="skip")
    message = str(err.value)
    assert "fashioniq/dress/val/clip4cir" in message and "every one of its 3 queries" in message
    assert str(root / "images") in message  # the folder that was checked
    assert "python data_scripts/prepare_fashioniq.py" in message


def test_skip_with_every_query_needing_a_missing_image_raises(tmp_path):
    root = _write_fiq(tmp_path)
    # References 1, 3, 4 and targets 3, 0, 1: removing 1 and 3 leaves no query, two images.
    for name, ext in ((NAMES[1], "png"), (NAMES[3], "png")):
        (root / "images" / f"{name}.{ext}").unlink()
    with pytest.raises(DatasetError, match=r"every one of its 3 queries.*prepare_fashioniq\.py"):
        load_fashioniq(root, "dress", "val", missing_images="skip")
    # One query left: a warning, not an error.
    Image.new("RGB", (2, 2)).save(root / "images" / f"{NAMES[1]}.png")
    with pytest.warns(UserWarning, match="1 of 6 gallery images.*2 of 3 queries"):
        assert len(load_fashioniq(root, "dress", "val", missing_images="skip")) == 1


def test_skip_trims_the_toy_valid_targets(tmp_path):
    entries = _default_entries()
    entries[0]["toy"] = {"valid_targets": [NAMES[3], NAMES[5]], "edit_type": "colour"}
    root = _write_fiq(tmp_path, entries=entries)
    (root / "images" / f"{NAMES[5]}.png").unlink()
    with pytest.warns(UserWarning, match="1 of 6 gallery images.*0 of 3 queries"):
        split = load_fashioniq(root, "dress", "val", missing_images="skip")
    assert split.triplets[0].valid_targets == (NAMES[3],)
    assert split.triplets[0].meta == {"edit_type": "colour"}


def _damaged(root):
    (root / "captions" / "cap.dress.val.json").write_text("[{")


def _no_split_file(root):
    (root / "image_splits" / "split.dress.val.json").unlink()


@pytest.mark.parametrize(
    ("case", "call"),
    [
        ("no dataset folder", lambda root: load_fashioniq(root / "nowhere", "dress", "val")),
        ("no captions folder", lambda root: load_fashioniq(root / "images", "dress", "val")),
        ("unknown split", lambda root: load_fashioniq(root, "dress", "test")),
        ("unknown category", lambda root: load_fashioniq(root, "pants", "val")),
        (
            "no split file",
            lambda root: (_no_split_file(root), load_fashioniq(root, "dress", "val")),
        ),
        ("damaged file", lambda root: (_damaged(root), load_fashioniq(root, "dress", "val"))),
        (
            "no image folder",
            lambda root: load_fashioniq(
                root, "dress", "val", image_dir=root / "x", missing_images="skip"
            ),
        ),
        (
            "missing images",
            lambda root: (
                (root / "images" / f"{NAMES[0]}.jpg").unlink(),
                load_fashioniq(root, "dress", "val"),
            ),
        ),
    ],
)
def test_errors_name_the_preparation_command(tmp_path, case, call):
    root = _write_fiq(tmp_path)
    with pytest.raises(DatasetError) as err:
        call(root)
    assert "python data_scripts/prepare_fashioniq.py" in str(err.value), case
