"""data_scripts/prepare_data.py (and its prepare_<dataset>.py wrappers): layout checks, reports of
what is missing, atomic installs, and the registry's use of the installed datasets."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from _repo_modules import import_script
from PIL import Image

from cirlib.config import resolve
from cirlib.data.cirr import load_cirr
from cirlib.data.fashion200k import load_fashion200k
from cirlib.data.fashioniq import load_fashioniq
from cirlib.data.records import DatasetError
from cirlib.data.registry import load_splits
from cirlib.data.shoes import load_shoes
from cirlib.notebook import realdata_dir

REPO = Path(__file__).resolve().parents[3]
SCRIPTS = REPO / "data_scripts"


prepare = import_script("prepare_data")


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "cirlib-data"
    monkeypatch.setenv("CIRLIB_DATA_DIR", str(path))
    return path


def run(capsys, *argv) -> tuple[int, str, str]:
    code = prepare.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _image(path: Path, shade: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (3, 2), (shade, 0, 0)).save(path)


def _tiny_jpeg() -> bytes:
    """A valid 1x1 JPEG: preparation decodes every image, so an empty file will not do."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="JPEG")
    return buffer.getvalue()


TINY_JPEG = _tiny_jpeg()


def _leftovers(folder: Path) -> list[str]:
    """Temporary or replaced folders the installer should never leave behind."""
    return [p.name for p in folder.glob(".*")] if folder.is_dir() else []


# ----------------------------------------------------------------------------- fixtures


def _write_cirr(src: Path) -> Path:
    """The CLIP4Cir layout: cirr/{captions,image_splits} beside the NLVR2 folders."""
    prefixes = {"train": "train", "val": "dev", "test1": "test1"}
    for split, prefix in prefixes.items():
        names = [f"{prefix}-{i}-0-img{i % 2}" for i in range(6)]
        folder = "train/0" if split == "train" else prefix
        files = {n: f"./{folder}/{n}.png" for n in names}
        entry = {
            "pairid": 100 + len(split),
            "reference": names[0],
            "caption": "make it red",
            "img_set": {"id": 1, "members": names, "reference_rank": 0},
        }
        if split != "test1":
            entry["target_hard"] = names[1]
        for kind, name, data in (
            ("captions", f"cap.rc2.{split}.json", [entry]),
            ("image_splits", f"split.rc2.{split}.json", files),
        ):
            (src / "cirr" / kind).mkdir(parents=True, exist_ok=True)
            (src / "cirr" / kind / name).write_text(json.dumps(data))
        for i, rel in enumerate(files.values()):
            _image(src / rel, i)
    return src


FIQ_CATS = ("dress", "shirt", "toptee")


def _write_fashioniq(src: Path) -> list[str]:
    """Annotations in captions/ and image_splits/; images in MGUR's image_data/<cat>/ tree."""
    names = []
    for c, category in enumerate(FIQ_CATS):
        for s, split in enumerate(("train", "val", "test")):
            asins = [f"B0{c}{s}TEST{i}" for i in range(3)]
            names += asins
            entry = {"candidate": asins[0], "target": asins[1], "captions": ["is red", "is long"]}
            if split == "test":
                del entry["target"]
            for kind, name, data in (
                ("captions", f"cap.{category}.{split}.json", [entry]),
                ("image_splits", f"split.{category}.{split}.json", asins),
            ):
                (src / kind).mkdir(parents=True, exist_ok=True)
                (src / kind / name).write_text(json.dumps(data))
            for asin in asins:
                _image(src / "image_data" / category / f"{asin}.jpg")
    return names


F200K_CATS = ("dress", "jacket", "pants", "skirt", "top")


def _write_fashion200k(src: Path) -> list[str]:
    """labels/<cat>_<split>_detect_all.txt, test_queries.txt and women/... images."""
    test_paths = []
    for category in F200K_CATS:
        for split in ("train", "test"):
            lines = []
            for k, colour in enumerate(("black", "red")):
                caption = f"{colour} cotton {category}"
                path = f"women/{category}s/{colour}_cotton/{split}{k}/{split}{k}_0.jpeg"
                lines.append(f"{path}\t0.{k + 5}\t{caption}")
                _image(src / path, k)
                if split == "test":
                    test_paths.append(path)
            (src / "labels").mkdir(exist_ok=True)
            (src / "labels" / f"{category}_{split}_detect_all.txt").write_text(
                "\n".join(lines) + "\n"
            )
    queries = [f"{test_paths[i]} {test_paths[i + 1]}" for i in range(0, len(test_paths), 2)]
    (src / "test_queries.txt").write_text("\n".join(queries) + "\n")
    return test_paths


SHOES_TRAIN = [f"img_womens_clogs_{i}.jpg" for i in range(4)]
SHOES_TEST = [f"img_womens_pumps_{i}.jpg" for i in range(3)]


def _write_shoes(src: Path) -> None:
    """The fashion-retrieval dataset/ folder and the Attribute Discovery image tree."""
    entries = [
        {"ImageName": SHOES_TRAIN[1], "ReferenceImageName": SHOES_TRAIN[0], "RelativeCaption": "a"},
        {"ImageName": SHOES_TEST[1], "ReferenceImageName": SHOES_TEST[0], "RelativeCaption": "b"},
        {"ImageName": SHOES_TEST[2], "ReferenceImageName": SHOES_TEST[1], "RelativeCaption": "c"},
    ]
    (src / "dataset").mkdir(parents=True)
    (src / "dataset" / "relative_captions_shoes.json").write_text(json.dumps(entries))
    (src / "dataset" / "train_im_names.txt").write_text("\n".join(SHOES_TRAIN) + "\n")
    (src / "dataset" / "eval_im_names.txt").write_text("\n".join(SHOES_TEST) + "\n")
    for name in SHOES_TRAIN + SHOES_TEST:
        category = name.rsplit("_", 1)[0].removeprefix("img_")
        _image(src / "attributedata" / category / "0" / name)


# ----------------------------------------------------------------------------- CIRR


def test_cirr_installs_and_loads(tmp_path, data_dir, capsys):
    src = _write_cirr(tmp_path / "download")
    code, out, err = run(capsys, "cirr", src)
    assert code == 0, err
    dest = data_dir / "cirr"
    assert "val: 1 queries, gallery 6 images" in out and f"installed in {dest}" in out
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["dataset"] == "cirr" and manifest["images"] == "linked"
    # Annotations are copies, image folders are links to the user's files.
    assert (dest / "captions" / "cap.rc2.val.json").is_file()
    assert not (dest / "captions" / "cap.rc2.val.json").is_symlink()
    assert {p.name for p in dest.iterdir() if p.is_symlink()} == {"train", "dev", "test1"}
    assert (dest / "dev").resolve() == (src / "dev").resolve()
    val = load_cirr(dest, "val", check_images=True)
    assert val.load_image(val.gallery[2]).size == (3, 2)
    assert _leftovers(data_dir) == []


def test_cirr_reports_every_missing_part(tmp_path, data_dir, capsys):
    src = _write_cirr(tmp_path / "download")
    (src / "cirr" / "captions" / "cap.rc2.train.json").unlink()
    (src / "dev" / "dev-3-0-img1.png").unlink()
    code, out, err = run(capsys, "cirr", src)
    assert code == 1
    assert "MISSING CIRR captions/cap.rc2.train.json" in out
    assert f"expected: {src / 'cirr' / 'captions' / 'cap.rc2.train.json'}" in out
    assert "github.com/Cuberick-Orion/CIRR" in out
    assert "MISSING CIRR val images (1 of 6)" in out and "NLVR2" in out
    assert "MISSING CIRR train images" not in out
    assert "2 missing part(s)" in err and "nothing was installed" in err
    assert not (data_dir / "cirr").exists() and _leftovers(data_dir) == []
    # The annotations alone are enough for --annotations-only, except the absent train captions.
    code, out, _ = run(capsys, "cirr", src, "--annotations-only")
    assert code == 1 and out.count("MISSING") == 1


# ----------------------------------------------------------------------------- FashionIQ


def test_fashioniq_missing_images_are_a_count_not_an_error(tmp_path, data_dir, capsys):
    src = tmp_path / "fiq"
    names = _write_fashioniq(src)
    gone = [names[5], names[10]]  # dress/val: only in the gallery; shirt/train: a target
    for asin in gone:
        next(src.glob(f"image_data/*/{asin}.jpg")).unlink()
    code, out, err = run(capsys, "fashioniq", src)  # found in image_data/<category>/
    assert code == 0, err
    assert f"2 of {len(names)} images have no file" in out and "not an error" in out
    assert "shirt/train: 0 queries (1 of 1 dropped: image missing)" in out
    assert "dress/val: 1 queries, gallery 2 images" in out
    dest = data_dir / "fashioniq"
    linked = sorted(p.name for p in (dest / "images").iterdir())
    assert linked == sorted(f"{n}.jpg" for n in names if n not in gone)
    assert all((dest / "images" / n).is_symlink() for n in linked)
    with pytest.warns(UserWarning, match="1 of 3 gallery images"):
        val = load_fashioniq(dest, "dress", "val", missing_images="skip")
    assert len(val) == 1 and names[5] not in val.gallery
    assert len(load_fashioniq(dest, "dress", "train")) == 1  # complete: "auto" -> "error" passes


def test_fashioniq_without_any_image_fails_unless_annotations_only(tmp_path, data_dir, capsys):
    src = tmp_path / "fiq"
    _write_fashioniq(src)
    shutil.rmtree(src / "image_data")
    code, out, _ = run(capsys, "fashioniq", src)
    assert code == 1 and "MISSING FashionIQ images (none found)" in out
    assert "fashion-iq/issues/18" in out
    code, out, _ = run(capsys, "fashioniq", src, "--annotations-only")
    assert code == 0
    assert len(load_fashioniq(data_dir / "fashioniq", "shirt", "val")) == 1
    assert not (data_dir / "fashioniq" / "images").exists()


# ----------------------------------------------------------------------------- Fashion200k


def test_fashion200k_installs_and_reports_missing(tmp_path, data_dir, capsys):
    src = tmp_path / "f200k"
    test_paths = _write_fashion200k(src)
    (src / "test_queries.txt").rename(tmp_path / "queries.txt")
    (src / test_paths[3]).unlink()
    code, out, _ = run(capsys, "fashion200k", src)
    assert code == 1
    assert "MISSING Fashion200k test_queries.txt" in out and "github.com/google/tirg" in out
    assert "MISSING Fashion200k images (1 of 20)" in out and "women.tar.gz" in out
    (tmp_path / "queries.txt").rename(src / "test_queries.txt")
    code, out, err = run(capsys, "fashion200k", src, "--allow-missing-images")
    assert code == 0, err
    assert "1 of 20 images have no file" in out
    assert "test: 4 queries, gallery 9 images" in out  # the query needing the file is dropped
    dest = data_dir / "fashion200k"
    assert (dest / "women").is_symlink()
    with pytest.warns(UserWarning, match="1 of 10 gallery images"):
        split = load_fashion200k(dest, "test", missing_images="skip")
    assert split.triplets[0].caption == "replace black with red"


# ----------------------------------------------------------------------------- Shoes


def test_shoes_flattens_the_image_tree(tmp_path, data_dir, capsys):
    src = tmp_path / "shoes"
    _write_shoes(src)
    code, out, err = run(capsys, "shoes", src)
    assert code == 0, err
    dest = data_dir / "shoes"
    assert sorted(p.name for p in (dest / "images").iterdir()) == sorted(SHOES_TRAIN + SHOES_TEST)
    test = load_shoes(dest, "test")  # "auto" -> "error": every file is there
    assert len(test) == 2 and test.load_image(SHOES_TEST[2]).size == (3, 2)
    assert (dest / "images" / SHOES_TEST[0]).resolve() == (
        src / "attributedata" / "womens_pumps" / "0" / SHOES_TEST[0]
    ).resolve()


def test_shoes_missing_image_fails_unless_allowed(tmp_path, data_dir, capsys):
    src = tmp_path / "shoes"
    _write_shoes(src)
    (src / "attributedata" / "womens_pumps" / "0" / SHOES_TEST[2]).unlink()
    code, out, _ = run(capsys, "shoes", src)
    assert code == 1 and "MISSING Shoes images (1 of 7)" in out and "MGUR" in out
    assert not (data_dir / "shoes").exists()
    code, out, _ = run(capsys, "shoes", src, "--allow-missing-images")
    assert code == 0 and "test: 1 queries, gallery 2 images" in out


# ----------------------------------------------------------------------------- install rules


def test_malformed_annotation_names_the_source_file_and_installs_nothing(
    tmp_path, data_dir, capsys
):
    src = tmp_path / "shoes"
    _write_shoes(src)
    captions = src / "dataset" / "relative_captions_shoes.json"
    entries = json.loads(captions.read_text())
    entries[2]["RelativeCaption"] = 3
    captions.write_text(json.dumps(entries))
    code, _, err = run(capsys, "shoes", src)
    assert code == 1
    assert f"{captions}: entry 2, field 'RelativeCaption': expected str, got int" in err
    assert not (data_dir / "shoes").exists() and _leftovers(data_dir) == []
    (src / "dataset" / "eval_im_names.txt").write_text("\n")
    code, _, err = run(capsys, "shoes", src)
    assert code == 1 and "eval_im_names.txt: the file lists no image names" in err


def test_destination_rules(tmp_path, data_dir, capsys):
    src = tmp_path / "shoes"
    _write_shoes(src)
    dest = data_dir / "shoes"
    dest.mkdir(parents=True)  # what cirlib.paths.subdir leaves behind: empty, replaced silently
    assert run(capsys, "shoes", src, "--check")[0] == 0
    assert list(dest.iterdir()) == []  # --check installs nothing
    assert run(capsys, "shoes", src)[0] == 0
    code, _, err = run(capsys, "shoes", src)
    assert code == 1 and "already prepared" in err and "--force" in err
    code, _, _ = run(capsys, "shoes", src, "--force", "--copy")
    assert code == 0 and not (dest / "images" / SHOES_TEST[0]).is_symlink()
    assert json.loads((dest / "manifest.json").read_text())["images"] == "copied"
    # Replacing the linked install removed the links, not the user's images they pointed to.
    assert all((src / "attributedata" / "womens_pumps" / "0" / n).is_file() for n in SHOES_TEST)
    assert _leftovers(data_dir) == []
    code, _, err = run(capsys, "shoes", dest, "--images", src, "--force")
    assert code == 1 and "is inside the destination" in err
    other = tmp_path / "other"
    (other / "notes.txt").parent.mkdir()
    (other / "notes.txt").write_text("mine")
    code, _, err = run(capsys, "shoes", src, "--dest", other)
    assert code == 1 and "was not made by this script" in err
    assert (other / "notes.txt").read_text() == "mine"


def test_wrappers_run_as_scripts(tmp_path, data_dir):
    env = {**os.environ, "CIRLIB_DATA_DIR": str(data_dir)}
    missing = subprocess.run(
        [sys.executable, SCRIPTS / "prepare_shoes.py", tmp_path / "nowhere"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    src = tmp_path / "f200k"
    _write_fashion200k(src)
    done = subprocess.run(
        [sys.executable, SCRIPTS / "prepare_fashion200k.py", src],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert (data_dir / "fashion200k" / "manifest.json").is_file()
    usage = subprocess.run(
        [sys.executable, SCRIPTS / "prepare_data.py", "flowers", src], capture_output=True, env=env
    )
    assert usage.returncode == 2  # argparse: not a known dataset


# ----------------------------------------------------------------------------- registry


def test_registry_names_the_prepare_script_and_loads_prepared_data(tmp_path, capsys):
    for dataset, script in (("cirr", "prepare_cirr.py"), ("shoes", "prepare_shoes.py")):
        with pytest.raises(DatasetError, match=f"is not prepared.*{script}.*setup.md"):
            load_splits(resolve("paper", dataset=dataset, device="cpu"))
    _write_shoes(tmp_path / "shoes")
    assert run(capsys, "shoes", tmp_path / "shoes")[0] == 0
    splits = load_splits(resolve("paper", dataset="shoes", device="cpu"))
    assert splits["val"] is splits["test"] and len(splits["test"]) == 2
    assert len(splits["train"]) == 1
    _write_fashion200k(tmp_path / "f200k")
    assert run(capsys, "fashion200k", tmp_path / "f200k")[0] == 0
    splits = load_splits(resolve("paper", dataset="fashion200k", device="cpu"))
    assert len(splits["test"]) == 5 and all(t.valid_targets for t in splits["train"].triplets)


# ----------------------------------------------------------------------------- real annotations


@pytest.fixture(scope="module")
def realdata() -> Path:
    base = realdata_dir()
    if base is None:
        pytest.skip("real annotation files not found (shared/realdata; set CIR_REALDATA)")
    return base


def test_real_cirr_reports_the_absent_train_captions_and_images(realdata, capsys):
    code, out, _ = run(capsys, "cirr", realdata / "cirr")
    assert code == 1
    assert "MISSING CIRR captions/cap.rc2.train.json" in out
    assert "MISSING CIRR captions/cap.rc2.val.json" not in out
    assert "MISSING CIRR val images (2,297 of 2,297)" in out and "nlvr2" in out


def test_real_fashioniq_with_one_category_of_images(realdata, tmp_path, data_dir, capsys):
    root = realdata / "fashioniq"
    if not (root / "captions").is_dir():
        pytest.skip(f"real FashionIQ annotations not found under {root}")
    listed = json.loads((root / "image_splits" / "split.dress.val.json").read_text())
    names = listed[::16]  # a 16th of one split: enough to count, quick to create
    images = tmp_path / "images"
    images.mkdir()
    for name in names:
        (images / f"{name}.jpg").write_bytes(TINY_JPEG)
    code, out, err = run(capsys, "fashioniq", root, "--images", images)
    assert code == 0, err
    # 74,381 distinct images in the nine split lists (77,683 entries; shirt and toptee share 3,302).
    assert f"{74381 - len(names):,} of 74,381 images have no file" in out
    assert "dress/val: " in out and "of 2,017 dropped: image missing), gallery" in out
    dest = data_dir / "fashioniq"
    assert len(list((dest / "images").iterdir())) == len(names)
    with pytest.warns(UserWarning, match=f"{len(listed) - len(names)} of 3817 gallery images"):
        val = load_fashioniq(dest, "dress", "val", missing_images="skip")
    assert val.gallery == names
    with pytest.raises(DatasetError, match="6346 of 6346 images of FashionIQ shirt/val"):
        load_fashioniq(dest, "shirt", "val")  # images/ exists: "auto" -> "error"


def test_real_shoes_with_the_attribute_discovery_tree(realdata, tmp_path, data_dir, capsys):
    root = realdata / "shoes"
    if not (root / "relative_captions_shoes.json").is_file():
        pytest.skip(f"real Shoes annotations not found under {root}")
    train = (root / "train_im_names.txt").read_text().split()
    test = (root / "eval_im_names.txt").read_text().split()
    # Files for the first 400 train and 1,000 test images, but every 100th (file creation is
    # slow on shared disks); 12 train and 211 test queries have both their images.
    absent = set(train[400:]) | set(test[1000:]) | set(test[:1000:100])
    tree = tmp_path / "attributedata"
    for name in train[:400] + test[:1000]:
        if name not in absent:
            folder = tree / name.rsplit("_", 1)[0].removeprefix("img_") / "0"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(TINY_JPEG)
    code, out, _ = run(capsys, "shoes", root, "--images", tree)
    assert code == 1 and f"MISSING Shoes images ({len(absent):,} of 14,658)" in out
    code, out, err = run(capsys, "shoes", root, "--images", tree, "--allow-missing-images")
    assert code == 0, err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = load_shoes(data_dir / "shoes", "test", missing_images="skip")
    assert loaded.gallery == [n for n in test if n not in absent]
    assert all(t.reference not in absent and t.target not in absent for t in loaded.triplets)
    assert len(loaded) == 211


# ----------------------------------------------------------------------------- --check = install's checks
# Issue 16, items 2-3: --check used to call "complete" annotation files the loader then rejected,
# and installed truncated or undecodable images with exit status 0.


def _json_edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    path.write_text(json.dumps(change(data)))


def _drop_caption(entries):
    del entries[0]["caption"]
    return entries


def _unknown_reference(entries):
    entries[0]["reference"] = "dev-999-0-img0"
    return entries


CIRR_BROKEN = {
    "invalid JSON": ("captions/cap.rc2.val.json", None, "not valid JSON"),
    "entry without caption": (
        "captions/cap.rc2.val.json",
        _drop_caption,
        "field 'caption': missing",
    ),
    "reference missing from the split": (
        "captions/cap.rc2.val.json",
        _unknown_reference,
        "'dev-999-0-img0' is not in the split's image list",
    ),
    "empty split": ("image_splits/split.rc2.val.json", lambda d: {}, "lists no images"),
    "empty captions": ("captions/cap.rc2.val.json", lambda d: [], "holds no query entries"),
}


@pytest.mark.parametrize("case", sorted(CIRR_BROKEN))
@pytest.mark.parametrize("check", [True, False], ids=["check", "install"])
def test_cirr_check_runs_the_loader_checks(tmp_path, data_dir, capsys, case, check):
    src = _write_cirr(tmp_path / "download")
    rel, change, message = CIRR_BROKEN[case]
    path = src / "cirr" / rel
    if change is None:
        path.write_text(path.read_text()[:-3])
    else:
        _json_edit(path, change)
    code, out, err = run(capsys, "cirr", src, *(["--check"] if check else []))
    assert code == 1, out
    assert message in err and str(path) in err, err
    assert "complete" not in out
    assert not (data_dir / "cirr").exists() and _leftovers(data_dir) == []


def _fiq_drop_captions(entries):
    del entries[0]["captions"]
    return entries


def _fiq_unknown_candidate(entries):
    entries[0]["candidate"] = "B0NOTLISTED"
    return entries


FIQ_BROKEN = {
    "invalid JSON": ("captions/cap.shirt.val.json", None, "not valid JSON"),
    "entry without captions": (
        "captions/cap.shirt.val.json",
        _fiq_drop_captions,
        "'captions': missing",
    ),
    "reference missing from the split": (
        "captions/cap.shirt.val.json",
        _fiq_unknown_candidate,
        "'B0NOTLISTED' is not in the split's image list",
    ),
    "empty split": ("image_splits/split.shirt.val.json", lambda d: [], "lists no images"),
}


@pytest.mark.parametrize("case", sorted(FIQ_BROKEN))
def test_fashioniq_check_runs_the_loader_checks(tmp_path, data_dir, capsys, case):
    src = tmp_path / "download"
    _write_fashioniq(src)
    rel, change, message = FIQ_BROKEN[case]
    path = src / rel
    if change is None:
        path.write_text(path.read_text()[:-3])
    else:
        _json_edit(path, change)
    code, out, err = run(capsys, "fashioniq", src, "--check")
    assert code == 1, out
    assert message in err and str(path) in err, err
    assert not (data_dir / "fashioniq").exists() and _leftovers(data_dir) == []


def test_shoes_check_runs_the_loader_checks(tmp_path, data_dir, capsys):
    src = tmp_path / "shoes"
    _write_shoes(src)
    captions = src / "dataset" / "relative_captions_shoes.json"
    _json_edit(captions, lambda e: [{k: v for k, v in e[0].items() if k != "RelativeCaption"}])
    code, out, err = run(capsys, "shoes", src, "--check")
    assert code == 1 and f"{captions}: entry 0, field 'RelativeCaption': missing" in err, out


def test_check_passes_what_install_accepts(tmp_path, data_dir, capsys):
    src = _write_cirr(tmp_path / "download")
    code, out, _ = run(capsys, "cirr", src, "--check")
    assert code == 0 and "the loader accepts it" in out
    assert "val: 1 queries, gallery 6 images" in out and "18 images decoded" in out
    assert not (data_dir / "cirr").exists() and _leftovers(data_dir) == []


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage", ["truncated", "not an image"])
@pytest.mark.parametrize("check", [True, False], ids=["check", "install"])
def test_cirr_undecodable_image_is_named(tmp_path, data_dir, capsys, damage, check):
    src = _write_cirr(tmp_path / "download")
    bad = src / "dev" / "dev-3-0-img1.png"
    Image.new("RGB", (64, 64), (9, 9, 9)).save(bad)  # big enough to truncate mid-data
    if damage == "truncated":
        _truncate(bad)
    else:
        bad.write_text("<html>quota exceeded</html>")
    code, out, err = run(capsys, "cirr", src, *(["--check"] if check else []))
    assert code == 1, out
    assert "1 of 18 cirr images do not decode" in err and str(bad) in err, err
    assert not (data_dir / "cirr").exists() and _leftovers(data_dir) == []


def test_fashioniq_undecodable_image_is_named(tmp_path, data_dir, capsys):
    src = tmp_path / "download"
    _write_fashioniq(src)
    bad = src / "image_data" / "toptee" / "B022TEST1.jpg"
    Image.new("RGB", (64, 64), (9, 9, 9)).save(bad)
    _truncate(bad)
    code, _, err = run(capsys, "fashioniq", src)
    assert code == 1 and str(bad) in err and "do not decode" in err, err
    assert "delete them" in err
    bad.unlink()  # the advice: a deleted image is a missing one, which FashionIQ accepts
    code, out, err = run(capsys, "fashioniq", src)
    assert code == 0, err


def test_images_are_decoded_with_a_progress_bar(tmp_path, monkeypatch):
    from cirlib.data import image_check

    seen = {}

    def fake_progress(iterable, **kwargs):
        seen.update(kwargs, n=len(iterable))
        return iterable

    monkeypatch.setattr(image_check, "progress", fake_progress)
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    _image(good)
    bad.write_bytes(b"\x89PNG\r\n")
    result = image_check.undecodable_images([good, bad, tmp_path / "gone.png"], desc="x")
    assert [p for p, _ in result] == [bad, tmp_path / "gone.png"]
    assert result[1][1] == "missing" and seen == {"desc": "x", "unit": "img", "n": 3}


def test_loader_error_on_a_damaged_toy_world_advises_what_repairs_it(tmp_path):
    from cirlib.data.toy import load_toy
    from cirlib.toyworld import make_toyworld

    groups = {"train": 2, "val": 2, "test": 2}
    world = make_toyworld(tmp_path, groups, seed=1, image_size=16)
    captions = world / "cirr_dataset" / "cirr" / "captions" / "cap.rc2.val.json"
    captions.write_text(captions.read_text()[:-5])
    with pytest.raises(DatasetError) as err:
        load_toy(world, "val")
    message = str(err.value)
    assert str(captions) in message and "delete that folder" in message
    # Re-running the generator alone keeps the damaged file (the world is reused) ...
    assert make_toyworld(tmp_path, groups, seed=1, image_size=16) == world
    with pytest.raises(DatasetError):
        load_toy(world, "val")
    # ... deleting the folder first, as advised, repairs it.
    shutil.rmtree(world)
    assert len(load_toy(make_toyworld(tmp_path, groups, seed=1, image_size=16), "val")) > 0


def test_an_archive_given_as_source_is_named_with_how_to_extract_it(tmp_path, capsys, data_dir):
    """A half-understood download step: the archive itself passed instead of its folder."""
    archive = tmp_path / "cirr_dataset.zip"
    archive.write_bytes(b"PK\x03\x04 not really a zip")
    code, _, err = run(capsys, "cirr", archive)
    assert code == 1
    assert "is a file, not a folder" in err and "extract it first" in err and str(archive) in err
