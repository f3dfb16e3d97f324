"""The toy world's CIRR and FashionIQ exports are the real formats: field names, types, split
names, file names and path resolution as the real annotation files have them and as the public
reference loaders (CLIP4Cir's ``CIRRDataset`` / ``FashionIQDataset``) read them; the private
files hold what the real releases keep back; ``prepare_data.py`` installs the exports as it
installs the real datasets, and the book's loaders read them back unchanged."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cirlib.data.cirr import load_cirr
from cirlib.data.fashioniq import load_fashioniq
from cirlib.data.toy import load_toy, load_toy_fashioniq
from cirlib.notebook import realdata_dir
from cirlib.toyworld import make_toyworld
from cirlib.toyworld.world import EDIT_FAMILIES, FASHIONIQ_CATEGORY_OF_FAMILY

REPO = Path(__file__).resolve().parents[3]
GROUPS = {"train": 12, "val": 4, "test": 6}

# The public loaders' conventions (CLIP4Cir src/data_utils.py), written out.
CIRR_SPLITS = ("train", "val", "test1")
FIQ_CATEGORIES = ("dress", "shirt", "toptee")
FIQ_SPLITS = ("train", "val", "test")
CIRR_KEYS = {"pairid", "reference", "target_hard", "target_soft", "caption", "img_set"}
CIRR_TEST_KEYS = {"pairid", "reference", "caption", "img_set"}
IMG_SET_KEYS = {"id", "members", "reference_rank", "target_rank"}
IMG_SET_TEST_KEYS = {"id", "members", "reference_rank"}
FIQ_KEYS = {"target", "candidate", "captions"}
FIQ_TEST_KEYS = {"candidate", "captions"}
ASIN = re.compile(r"^B[0-9A-Z]{9}$")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return make_toyworld(tmp_path_factory.mktemp("exports"), GROUPS, seed=11, image_size=24)


def _json(path: Path):
    return json.loads(path.read_text())


def _types(entry: dict) -> dict:
    """Field -> JSON type name, nested one level (img_set)."""
    out = {}
    for k, v in entry.items():
        out[k] = type(v).__name__
        if isinstance(v, dict) and k == "img_set":
            out |= {f"img_set.{kk}": type(vv).__name__ for kk, vv in v.items()}
    return out


# ----------------------------------------------------------------------------- CIRR


def clip4cir_cirr(base: Path, split: str):
    """Read a CIRR split the way CLIP4Cir's CIRRDataset does: annotations under
    ``<base>/cirr_dataset/cirr/``, every image at ``<base>/cirr_dataset/<relative path>``, and the
    fields its 'relative' mode reads for that split."""
    ann = base / "cirr_dataset" / "cirr"
    triplets = _json(ann / "captions" / f"cap.rc2.{split}.json")
    name_to_relpath = _json(ann / "image_splits" / f"split.rc2.{split}.json")
    rows = []
    for t in triplets:
        row = [t["reference"], t["caption"], t["img_set"]["members"]]
        row.append(t["pairid"] if split == "test1" else t["target_hard"])
        rows.append(row)
    paths = {n: base / "cirr_dataset" / rel for n, rel in name_to_relpath.items()}
    return rows, paths


def test_cirr_export_has_the_real_files_fields_and_types(world):
    ann = world / "cirr_dataset" / "cirr"
    assert sorted(p.name for p in (ann / "captions").iterdir()) == sorted(
        f"cap.rc2.{s}.json" for s in CIRR_SPLITS
    )
    assert sorted(p.name for p in (ann / "image_splits").iterdir()) == sorted(
        f"split.rc2.{s}.json" for s in CIRR_SPLITS
    )
    for split in CIRR_SPLITS:
        entries = _json(ann / "captions" / f"cap.rc2.{split}.json")
        keys, img_keys = (
            (CIRR_TEST_KEYS, IMG_SET_TEST_KEYS) if split == "test1" else (CIRR_KEYS, IMG_SET_KEYS)
        )
        for e in entries:
            assert set(e) == keys and set(e["img_set"]) == img_keys
            assert _types(e) == _types(entries[0])  # one type per field
            assert type(e["pairid"]) is int and isinstance(e["caption"], str)
            assert len(e["img_set"]["members"]) == 6 and e["reference"] in e["img_set"]["members"]
            if split != "test1":
                assert e["target_hard"] in e["img_set"]["members"]
                assert e["target_soft"] == {e["target_hard"]: 1.0}
        assert {
            type(v).__name__
            for v in _json(ann / "image_splits" / f"split.rc2.{split}.json").values()
        } == {"str"}


def test_cirr_export_types_equal_the_real_files(world):
    real = realdata_dir()
    if real is None:
        pytest.skip("real annotation files not found (shared/realdata; set CIR_REALDATA)")
    ann = world / "cirr_dataset" / "cirr" / "captions"
    for ours, theirs in (("val", "val"), ("train", "val"), ("test1", "test1")):
        mine = _json(ann / f"cap.rc2.{ours}.json")[0]
        ref = _json(real / "cirr" / "captions" / f"cap.rc2.{theirs}.json")[0]
        assert list(mine) == list(ref) and _types(mine) == _types(ref)
        assert list(mine["img_set"]) == list(ref["img_set"])
    real_split = _json(real / "cirr" / "image_splits" / "split.rc2.val.json")
    assert all(rel.startswith("./dev/") for rel in real_split.values())


def test_cirr_paths_resolve_like_the_reference_loader(world):
    prefixes = {"train": r"^\./train/\d+/", "val": r"^\./dev/", "test1": r"^\./test1/"}
    for split in CIRR_SPLITS:
        rows, paths = clip4cir_cirr(world, split)
        assert rows and all(p.is_file() for p in paths.values())
        rel = _json(world / "cirr_dataset" / "cirr" / "image_splits" / f"split.rc2.{split}.json")
        assert all(re.match(prefixes[split] + re.escape(n) + r"\.png$", r) for n, r in rel.items())
        for reference, _, members, last in rows:
            assert {reference, *members} <= set(paths)
            if split != "test1":
                assert last in paths
        with Image.open(next(iter(paths.values()))) as im:
            assert im.format == "PNG"


def test_cirr_test1_targets_are_private_and_the_book_reads_them(world):
    public = _json(world / "cirr_dataset" / "cirr" / "captions" / "cap.rc2.test1.json")
    text = json.dumps(public)
    private = _json(world / "private" / "cirr" / "cap.rc2.test1.targets.json")
    assert [e["pairid"] for e in private] == [e["pairid"] for e in public]
    # No test1 target appears in the public captions (members aside: the target is one of them).
    assert "target" not in text and "valid_targets" not in text
    test = load_toy(world, "test")
    assert test.name == "cirr/test"
    assert [t.target for t in test.triplets] == [e["target_hard"] for e in private]
    assert all(t.target in t.valid_targets and "edit_type" in t.meta for t in test.triplets)
    # what the real loader sees: no target at all
    assert all(
        t.target is None for t in load_cirr(world / "cirr_dataset" / "cirr", "test1").triplets
    )


# ----------------------------------------------------------------------------- FashionIQ


def clip4cir_fashioniq(base: Path, category: str, split: str):
    """Read a FashionIQ split the way CLIP4Cir's FashionIQDataset does: files under
    ``<base>/fashionIQ_dataset/``, every image at ``images/<name>.jpg``."""
    root = base / "fashionIQ_dataset"
    triplets = _json(root / "captions" / f"cap.{category}.{split}.json")
    names = _json(root / "image_splits" / f"split.{category}.{split}.json")
    rows = [(t["candidate"], t.get("target"), t["captions"]) for t in triplets]
    paths = {n: root / "images" / f"{n}.jpg" for n in names}
    return rows, names, paths


def test_fashioniq_export_has_the_real_files_fields_and_types(world):
    root = world / "fashionIQ_dataset"
    expected = sorted(f"cap.{c}.{s}.json" for c in FIQ_CATEGORIES for s in FIQ_SPLITS)
    assert sorted(p.name for p in (root / "captions").iterdir()) == expected
    assert sorted(p.name for p in (root / "image_splits").iterdir()) == [
        n.replace("cap.", "split.") for n in expected
    ]
    for category in FIQ_CATEGORIES:
        by_split = {}
        for split in FIQ_SPLITS:
            rows, names, paths = clip4cir_fashioniq(world, category, split)
            entries = _json(root / "captions" / f"cap.{category}.{split}.json")
            keys = FIQ_TEST_KEYS if split == "test" else FIQ_KEYS
            assert entries and all(set(e) == keys for e in entries)
            assert all(len(c) == 2 and all(isinstance(x, str) for x in c) for _, _, c in rows)
            assert all(isinstance(n, str) and ASIN.match(n) for n in names)
            assert all(p.is_file() for p in paths.values())
            for candidate, target, _ in rows:
                assert candidate in paths and (target is None) == (split == "test")
                assert target is None or target in paths
            by_split[split] = set(names)
        # no image is shared between the splits of a category (as in the release)
        assert not (by_split["train"] & by_split["val"]) and not (
            by_split["val"] & by_split["test"]
        )
    with Image.open(next(iter((root / "images").iterdir()))) as im:
        assert im.format == "JPEG"


def test_fashioniq_export_types_equal_the_real_files(world):
    real = realdata_dir()
    if real is None:
        pytest.skip("real annotation files not found (shared/realdata; set CIR_REALDATA)")
    for split in FIQ_SPLITS:
        mine = _json(world / "fashionIQ_dataset" / "captions" / f"cap.dress.{split}.json")[0]
        ref = _json(real / "fashioniq" / "captions" / f"cap.dress.{split}.json")[0]
        assert list(mine) == list(ref) and _types(mine) == _types(ref)
        names = _json(real / "fashioniq" / "image_splits" / f"split.dress.{split}.json")
        assert all(ASIN.match(n) for n in names[:200])


def test_fashioniq_categories_are_the_edit_families(world):
    family_of = {t: f for f, types in EDIT_FAMILIES.items() for t in types}
    for family, category in FASHIONIQ_CATEGORY_OF_FAMILY.items():
        for split in FIQ_SPLITS:
            loaded = load_toy_fashioniq(world, category, split)
            assert loaded.name == f"fashioniq/{category}/{split}/clip4cir"
            assert {family_of[t.meta["edit_type"]] for t in loaded.triplets} == {family}
            assert all(
                t.target is not None and t.target in t.valid_targets for t in loaded.triplets
            )
    public = load_fashioniq(world / "fashionIQ_dataset", "dress", "test")
    assert all(t.target is None for t in public.triplets)


# ----------------------------------------------------------------------------- installing


def test_prepare_data_installs_the_exports_like_the_real_datasets(
    world, tmp_path, capsys, load_script
):
    prepare = load_script("prepare_data")
    for dataset, source in (("cirr", "cirr_dataset"), ("fashioniq", "fashionIQ_dataset")):
        code = prepare.main([dataset, str(world / source), "--dest", str(tmp_path / dataset)])
        assert code == 0, capsys.readouterr()
    for toy_split, split in (("train", "train"), ("val", "val"), ("test", "test1")):
        installed = load_cirr(tmp_path / "cirr", split, check_images=True)
        book = load_toy(world, toy_split)
        assert installed.gallery == book.gallery
        for a, b in zip(installed.triplets, book.triplets, strict=True):
            assert (a.pair_id, a.reference, a.caption, a.subset) == (
                b.pair_id,
                b.reference,
                b.caption,
                b.subset,
            )
            assert a.target == (None if split == "test1" else b.target)
        name = book.gallery[0]
        assert np.array_equal(
            np.asarray(installed.load_image(name)), np.asarray(book.load_image(name))
        )
    for category in FIQ_CATEGORIES:
        for split in FIQ_SPLITS:
            installed = load_fashioniq(tmp_path / "fashioniq", category, split)
            exported = load_fashioniq(world / "fashionIQ_dataset", category, split)
            assert installed.gallery == exported.gallery
            assert installed.triplets == exported.triplets
            assert installed.image_paths[installed.gallery[0]].suffix == ".jpg"
