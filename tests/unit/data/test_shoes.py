"""Shoes loader: real annotation files (when present) and format-faithful fixtures."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from cirlib.data.records import DatasetError
from cirlib.data.shoes import load_shoes
from cirlib.eval.evaluate import evaluate
from cirlib.notebook import realdata_dir


@pytest.fixture(scope="module")
def real_shoes() -> Path:
    base = realdata_dir()
    if base is None:
        pytest.skip("no shared/realdata beside the repository (set CIR_REALDATA to its path)")
    root = base / "shoes"
    if not (root / "relative_captions_shoes.json").is_file():
        pytest.skip(f"real Shoes annotations not found under {root}")
    return root


# ---------------------------------------------------------------- real annotation files


def test_real_counts_and_self_pairs(real_shoes):
    # methods.md 8.4: 8,990 train / 1,761 test pairs; 26 + 1 of them are self-pairs (dropped).
    with pytest.warns(UserWarning, match="dropped 26 of 8990 queries"):
        train = load_shoes(real_shoes, "train")  # no images/ folder: annotations only
    with pytest.warns(UserWarning, match="dropped 1 of 1761 queries"):
        test = load_shoes(real_shoes, "test")
    assert (len(train), len(train.gallery)) == (8964, 10000)
    assert (len(test), len(test.gallery)) == (1760, 4658)
    assert not set(train.gallery) & set(test.gallery)
    for split in (train, test):
        gallery = set(split.gallery)
        assert all({t.reference, t.target} <= gallery for t in split.triplets)
        assert all(t.reference != t.target for t in split.triplets)
        assert all(t.caption == t.captions[0].strip() and t.caption for t in split.triplets)
    # pair ids are positions in the shared file: the two splits never share one.
    assert not {t.pair_id for t in train.triplets} & {t.pair_id for t in test.triplets}
    entries = json.loads((real_shoes / "relative_captions_shoes.json").read_text())
    first = train.triplets[0]
    assert entries[first.pair_id]["ReferenceImageName"] == first.reference
    assert entries[first.pair_id]["ImageName"] == first.target


def test_real_test_split_with_partial_image_folder(real_shoes, tmp_path):
    # The image folder is built from the annotation's names; every 50th test image is absent.
    names = (real_shoes / "eval_im_names.txt").read_text().split()
    absent = set(names[::50])
    images = tmp_path / "images"
    images.mkdir()
    for name in names:
        if name not in absent:
            (images / name).touch()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        split = load_shoes(real_shoes, "test", image_dir=images, missing_images="skip")
    full = _quiet(load_shoes, real_shoes, "test")
    kept = [t for t in full.triplets if t.reference not in absent and t.target not in absent]
    assert split.triplets == kept and len(kept) < len(full)
    assert split.gallery == [n for n in names if n not in absent]
    missing_warnings = [w for w in caught if "gallery images have no file" in str(w.message)]
    assert len(missing_warnings) == 1
    assert f"{len(absent)} of {len(names)} gallery images" in str(missing_warnings[0].message)
    assert f"{len(full) - len(kept)} of {len(full)} queries" in str(missing_warnings[0].message)
    with pytest.raises(DatasetError, match=f"{len(absent)} of {len(names)} images of shoes/test"):
        _quiet(load_shoes, real_shoes, "test", image_dir=images)  # "auto" = "error" here


# ---------------------------------------------------------------- fixtures

TRAIN = [f"img_womens_clogs_{i}.jpg" for i in range(5)]
TEST = [f"img_womens_pumps_{i}.jpg" for i in range(4)]


def _default_entries():
    return [
        {"ImageName": TRAIN[1], "ReferenceImageName": TRAIN[0], "RelativeCaption": "is red"},
        {"ImageName": TEST[2], "ReferenceImageName": TEST[0], "RelativeCaption": " has a bow "},
        {"ImageName": TRAIN[3], "ReferenceImageName": TEST[1], "RelativeCaption": "straddles"},
        {"ImageName": TEST[3], "ReferenceImageName": TEST[1], "RelativeCaption": "is taller"},
        {"ImageName": TRAIN[2], "ReferenceImageName": TRAIN[4], "RelativeCaption": "is flat"},
    ]


def _write_shoes(root, entries=None, train=TRAIN, test=TEST, images=True):
    root.mkdir(parents=True, exist_ok=True)
    entries = _default_entries() if entries is None else entries
    (root / "relative_captions_shoes.json").write_text(json.dumps(entries))
    # The release ends each list with a newline.
    (root / "train_im_names.txt").write_text("\n".join(train) + "\n")
    (root / "eval_im_names.txt").write_text("\n".join(test) + "\n")
    if images:
        (root / "images").mkdir(exist_ok=True)
        for i, name in enumerate(train + test):
            Image.new("RGB", (3, 2 + i), (10 * i, 0, 0)).save(root / "images" / name)
    return root


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def test_round_trip(tmp_path, recwarn):
    root = _write_shoes(tmp_path)
    train, test = load_shoes(root, "train"), load_shoes(root, "test")
    assert len(recwarn) == 0  # nothing missing, no self-pair: no warning
    assert (train.name, test.name) == ("shoes/train", "shoes/test")
    assert train.gallery == TRAIN and test.gallery == TEST
    assert [t.pair_id for t in train.triplets] == [0, 4]
    assert [t.pair_id for t in test.triplets] == [1, 3]  # entry 2 straddles the splits
    first = test.triplets[0]
    assert (first.reference, first.target) == (TEST[0], TEST[2])
    assert first.captions == (" has a bow ",) and first.caption == "has a bow"
    assert first.subset is None and first.valid_targets is None
    assert test.image_paths[TEST[1]] == root / "images" / TEST[1]
    assert test.load_image(TEST[3]).size == (3, 2 + len(TRAIN) + 3)


def test_split_is_scored_with_reference_removed(tmp_path):
    split = load_shoes(_write_shoes(tmp_path), "test")
    images = torch.eye(len(split.gallery))
    ref = torch.tensor([split.index_of(t.reference) for t in split.triplets])
    tgt = torch.tensor([split.index_of(t.target) for t in split.triplets])
    features = SimpleNamespace(images=images, reference_index=ref, target_index=tgt)
    # Query 0 = its reference (removed) + a little of its target: the target is ranked first.
    # Query 1 = another gallery image: its target ties the rest, behind TEST[0] and TEST[2].
    queries = torch.stack([images[ref[0]] + 0.1 * images[tgt[0]], images[0] + 0.1 * images[2]])
    result = evaluate(torch.nn.functional.normalize(queries, dim=-1), features, split)
    assert result["all"]["n"] == 2
    assert result["all"]["R@1"] == 50.0 and result["all"]["R@5"] == 100.0
    assert "mR@1" not in result["all"] and "Rs@1" not in result["all"]


def test_self_pair_dropped_with_count(tmp_path):
    entries = _default_entries() + [
        {"ImageName": TEST[2], "ReferenceImageName": TEST[2], "RelativeCaption": "is the same"}
    ]
    root = _write_shoes(tmp_path, entries=entries)
    with pytest.warns(UserWarning, match="shoes/test: dropped 1 of 3 queries whose reference"):
        split = load_shoes(root, "test")
    assert [t.pair_id for t in split.triplets] == [1, 3]


def test_missing_images_error_skip_ignore(tmp_path):
    root = _write_shoes(tmp_path)
    (root / "images" / TEST[2]).unlink()  # the target of query 1
    with pytest.raises(DatasetError, match=rf"1 of 4 images of shoes/test.*{TEST[2]}"):
        load_shoes(root, "test")
    with pytest.warns(UserWarning, match="1 of 4 gallery images.*1 of 2 queries") as record:
        split = load_shoes(root, "test", missing_images="skip")
    assert len(record) == 1
    assert [t.pair_id for t in split.triplets] == [3]
    assert split.gallery == [TEST[0], TEST[1], TEST[3]]
    assert len(load_shoes(root, "test", missing_images="ignore")) == 2
    (root / "images" / TEST[3]).unlink()  # now every test query needs a missing file
    with pytest.raises(DatasetError, match="every one of its 2 queries"):
        load_shoes(root, "test", missing_images="skip")


def test_annotation_only_when_image_folder_is_absent(tmp_path):
    root = _write_shoes(tmp_path, images=False)
    split = load_shoes(root, "test")
    assert len(split) == 2
    with pytest.raises(DatasetError, match="is missing"):
        split.load_image(TEST[0])
    with pytest.raises(DatasetError, match="image folder .* does not exist"):
        load_shoes(root, "test", missing_images="skip")
    with pytest.raises(DatasetError, match="unknown missing_images='sometimes'"):
        load_shoes(root, "test", missing_images="sometimes")


@pytest.mark.parametrize(
    "entry, field, problem",
    [
        ({"ImageName": TEST[2], "RelativeCaption": "x"}, "ReferenceImageName", "missing"),
        ({"ImageName": 7, "ReferenceImageName": TEST[0], "RelativeCaption": "x"}, "ImageName",
         "expected str, got int"),
        ({"ImageName": TEST[2], "ReferenceImageName": TEST[0], "RelativeCaption": ["x"]},
         "RelativeCaption", "expected str, got list"),
        ({"ImageName": TEST[2], "ReferenceImageName": TEST[0], "RelativeCaption": "  "},
         "RelativeCaption", "empty"),
        (["not", "a", "dict"], "<entry>", "expected a JSON object, got list"),
    ],
)  # fmt: skip
def test_malformed_entry_names_file_entry_and_field(tmp_path, entry, field, problem):
    entries = _default_entries()
    entries.insert(3, entry)
    root = _write_shoes(tmp_path, entries=entries, images=False)
    # Entry 3 is a test pair, but the train split fails on it too: every entry is checked.
    for split in ("train", "test"):
        with pytest.raises(DatasetError) as info:
            load_shoes(root, split)
        message = str(info.value)
        assert "relative_captions_shoes.json: entry 3" in message
        assert f"field '{field}': {problem}" in message


def test_malformed_files_and_empty_splits(tmp_path):
    root = _write_shoes(tmp_path, images=False)
    (root / "eval_im_names.txt").write_text(f"{TEST[0]}\n{TEST[1]} {TEST[2]}\n")
    with pytest.raises(DatasetError, match=r"eval_im_names.txt: line 2: expected one image"):
        load_shoes(root, "test")
    (root / "eval_im_names.txt").write_text(f"{TEST[0]}\n{TEST[1]}\n{TEST[0]}\n")
    with pytest.raises(DatasetError, match=r"line 3: image .* already listed on line 1"):
        load_shoes(root, "test")
    (root / "eval_im_names.txt").write_text("\n")
    with pytest.raises(DatasetError, match="eval_im_names.txt: the file lists no image names"):
        load_shoes(root, "test")
    # Names present, but no caption entry has both images among them.
    (root / "eval_im_names.txt").write_text(f"{TEST[0]}\n{TEST[3]}\n")
    with pytest.raises(DatasetError, match="Shoes split 'test' is empty"):
        load_shoes(root, "test")
    (root / "relative_captions_shoes.json").write_text("[]")
    with pytest.raises(DatasetError, match="holds no query entries"):
        load_shoes(root, "train")
    (root / "relative_captions_shoes.json").write_text('{"ImageName": "x"}')
    with pytest.raises(DatasetError, match="expected a JSON list"):
        load_shoes(root, "train")
    (root / "relative_captions_shoes.json").write_text("[{")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_shoes(root, "train")


def test_missing_files_and_unknown_split(tmp_path):
    with pytest.raises(DatasetError, match="prepare_shoes.py"):
        load_shoes(tmp_path / "nowhere", "test")
    root = _write_shoes(tmp_path / "shoes", images=False)
    with pytest.raises(DatasetError, match="unknown Shoes split 'val'.*'train', 'test'"):
        load_shoes(root, "val")
    (root / "eval_im_names.txt").unlink()
    with pytest.raises(DatasetError, match="eval_im_names.txt does not exist.*prepare_shoes"):
        load_shoes(root, "test")
