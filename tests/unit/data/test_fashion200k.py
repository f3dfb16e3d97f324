"""Fashion200k loader on format-faithful fixtures (no real Fashion200k files are available here:
``shared/realdata`` holds none, so every test builds the release layout in tmp_path)."""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from cirlib.data.fashion200k import (
    fashion200k_modification,
    load_fashion200k,
    read_fashion200k_labels,
)
from cirlib.data.records import DatasetError
from cirlib.eval.evaluate import evaluate

# (category file, split, caption) per product; image paths follow the release:
# women/<category folder>/<caption folder>/<id>/<id>_<k>.jpeg
PRODUCTS = [
    ("dress", "test", "black jersey maxi dress", 2),
    ("dress", "test", "red jersey maxi dress", 1),
    ("dress", "test", "black silk maxi dress", 1),
    ("skirt", "test", "blue pleated midi skirt", 1),
    ("skirt", "test", "blue leather midi skirt", 1),
    ("dress", "train", "black jersey maxi dress", 1),
    ("dress", "train", "white jersey maxi dress", 2),
    ("dress", "train", "white jersey mini dress", 1),
    ("dress", "train", "green lace shift dress", 1),
    ("skirt", "train", "navy a-line skirt", 1),
    ("skirt", "train", "navy pencil skirt", 1),
    ("skirt", "train", "grey pencil skirt", 1),
]
FOLDERS = {"dress": "dresses", "skirt": "skirts"}


def _paths():
    """Split -> list of (image path, caption) in label-file order."""
    out: dict[str, list[tuple[str, str]]] = {"train": [], "test": []}
    for number, (category, split, caption, copies) in enumerate(PRODUCTS):
        product = 51727800 + number
        slug = caption.replace(" ", "_")
        for k in range(copies):
            path = f"women/{FOLDERS[category]}/{slug}/{product}/{product}_{k}.jpeg"
            out[split].append((path, caption, category))
    return out


def _write_f200k(root: Path, images=True, queries=None):
    labels = root / "labels"
    labels.mkdir(parents=True, exist_ok=True)
    lines: dict[str, list[str]] = {}
    for split, rows in _paths().items():
        for i, (path, caption, category) in enumerate(rows):
            # The release: path \t score \t caption, one per line, newline-terminated.
            lines.setdefault(f"{category}_{split}_detect_all.txt", []).append(
                f"{path}\t{0.5 + i / 100:.4f}\t{caption}"
            )
            if images:
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (2, 3), (i, 0, 0)).save(root / path, format="JPEG")
    for name, content in lines.items():
        (labels / name).write_text("\n".join(content) + "\n")
    test = [p for p, _, _ in _paths()["test"]]
    if queries is None:
        # black jersey -> red jersey; black jersey (copy 2) -> black silk; pleated -> leather.
        queries = [f"{test[0]} {test[2]}", f"{test[1]} {test[3]}", f"{test[4]} {test[5]}"]
    (root / "test_queries.txt").write_text("\n".join(queries) + "\n")
    return root


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# ---------------------------------------------------------------- test split


def test_test_split_round_trip(tmp_path, recwarn):
    root = _write_f200k(tmp_path)
    split = load_fashion200k(root, "test")
    assert len(recwarn) == 0
    rows = _paths()["test"]
    # dress_test_... is read before skirt_test_... (label files sorted by name).
    assert split.name == "fashion200k/test"
    assert split.gallery == [p for p, _, _ in rows]
    assert len(split) == 3 and [t.pair_id for t in split.triplets] == [0, 1, 2]
    first, second, third = split.triplets
    assert (first.reference, first.target) == (rows[0][0], rows[2][0])
    assert first.caption == "replace black with red" and first.captions == (first.caption,)
    assert second.caption == "replace jersey with silk"
    assert third.caption == "replace pleated with leather"
    assert dict(first.meta) == {
        "reference_caption": "black jersey maxi dress",
        "target_caption": "red jersey maxi dress",
        "old_word": "black",
        "new_word": "red",
    }
    # Every image with the target's caption is a valid target, the named one included.
    for t in split.triplets:
        same = tuple(p for p, c, _ in rows if c == t.meta["target_caption"])
        assert t.valid_targets == same and t.target in same
    assert split.image_paths[rows[0][0]] == root / rows[0][0]
    assert split.load_image(rows[4][0]).size == (2, 3)


def test_hit_is_any_image_with_the_target_caption(tmp_path):
    root = _write_f200k(tmp_path)
    # A second image captioned like query 1's target: the protocol counts it as a hit.
    rows = _paths()["test"]
    extra = "women/dresses/black_silk_maxi_dress/51727802/51727802_9.jpeg"
    with open(root / "labels" / "dress_test_detect_all.txt", "a") as f:
        f.write(f"{extra}\t0.9\tblack silk maxi dress\n")
    Image.new("RGB", (2, 3)).save(root / extra, format="JPEG")
    split = load_fashion200k(root, "test")
    assert split.triplets[1].valid_targets == (rows[3][0], extra)
    m = len(split.gallery)
    images = torch.eye(m)
    ref = torch.tensor([split.index_of(t.reference) for t in split.triplets])
    tgt = torch.tensor([split.index_of(t.target) for t in split.triplets])
    features = SimpleNamespace(images=images, reference_index=ref, target_index=tgt)
    # Queries 0 and 2 point at their named target, query 1 at the other image of its caption.
    other = [int(tgt[0]), split.index_of(extra), int(tgt[2])]
    queries = torch.stack([images[ref[i]] + 0.1 * images[other[i]] for i in range(3)])
    result = evaluate(torch.nn.functional.normalize(queries, dim=-1), features, split)["all"]
    assert result["mR@1"] == 100.0  # the protocol's R@1
    assert result["R@1"] == pytest.approx(200 / 3)  # query 1's named target is not first


def test_modification_rule():
    assert fashion200k_modification("black jersey dress", "red jersey dress") == ("black", "red")
    # Word order is the caption's; the first differing word on each side is used.
    assert fashion200k_modification("a b c", "c x b") == ("a", "x")
    # No differing word on a side: TIRG's loop ends on the last word.
    assert fashion200k_modification("red dress", "red long dress") == ("dress", "long")
    assert fashion200k_modification("red dress", "dress red") == ("dress", "red")


def test_self_pair_dropped_with_count(tmp_path):
    test = [p for p, _, _ in _paths()["test"]]
    queries = [f"{test[0]} {test[2]}", f"{test[3]} {test[3]}", f"{test[4]} {test[5]}"]
    root = _write_f200k(tmp_path, queries=queries)
    with pytest.warns(UserWarning, match="fashion200k/test: dropped 1 of 3 queries"):
        split = load_fashion200k(root, "test")
    assert [t.reference for t in split.triplets] == [test[0], test[4]]


# ---------------------------------------------------------------- generated training queries


def _one_word_apart(a: str, b: str) -> set[tuple[str, str]]:
    """Brute force: every (deleted word of a, deleted word of b) giving equal word sequences."""
    wa, wb = a.split(), b.split()
    return {
        (wa[i], wb[j])
        for i, j in itertools.product(range(len(wa)), range(len(wb)))
        if wa[:i] + wa[i + 1 :] == wb[:j] + wb[j + 1 :]
    }


@pytest.mark.parametrize("per_image", [1, 2, 5])
def test_training_queries_against_brute_force(tmp_path, per_image):
    root = _write_f200k(tmp_path)
    split = load_fashion200k(root, "train", train_pairs_per_image=per_image, seed=3)
    rows = _paths()["train"]
    caption = {p: c for p, c, _ in rows}
    assert split.gallery == [p for p, _, _ in rows]
    count = {p: 0 for p in caption}
    for t in split.triplets:
        source, target = caption[t.reference], caption[t.target]
        assert source != target
        old, new = t.meta["old_word"], t.meta["new_word"]
        assert (old, new) in _one_word_apart(source, target)
        assert t.caption == f"replace {old} with {new}"
        assert t.valid_targets == tuple(p for p in caption if caption[p] == target)
        count[t.reference] += 1
    for path, source in caption.items():
        neighbours = {
            c for c in set(caption.values()) if c != source and _one_word_apart(source, c)
        }
        assert count[path] == min(per_image, len(neighbours)), (path, neighbours)
    assert len({(t.reference, t.meta["target_caption"]) for t in split.triplets}) == len(split)
    assert [t.pair_id for t in split.triplets] == list(range(len(split)))


def test_training_queries_are_reproducible(tmp_path):
    root = _write_f200k(tmp_path)
    a = load_fashion200k(root, "train", train_pairs_per_image=1, seed=0)
    b = load_fashion200k(root, "train", train_pairs_per_image=1, seed=0)
    assert a.triplets == b.triplets
    draws = {
        tuple((t.reference, t.target) for t in load_fashion200k(root, "train", seed=s).triplets)
        for s in range(8)
    }
    # "white jersey maxi dress" has 2 images and 2 neighbour captions: seeds must differ somewhere.
    assert len(draws) > 1
    with pytest.raises(DatasetError, match="train_pairs_per_image must be >= 1"):
        load_fashion200k(root, "train", train_pairs_per_image=0)


def test_training_split_without_neighbours_is_empty(tmp_path):
    root = tmp_path
    (root / "labels").mkdir()
    (root / "labels" / "top_train_detect_all.txt").write_text(
        "women/tops/a/1/1_0.jpeg\t0.9\tred silk blouse\nwomen/tops/b/2/2_0.jpeg\t0.8\tgrey wool coat\n"
    )
    with pytest.raises(DatasetError, match="no two of its 2 captions are one word apart"):
        load_fashion200k(root, "train")


# ---------------------------------------------------------------- missing images


def test_missing_images_error_skip_ignore(tmp_path):
    root = _write_f200k(tmp_path)
    rows = [p for p, _, _ in _paths()["test"]]
    (root / rows[3]).unlink()  # the target of query 1
    (root / rows[1]).unlink()  # and its reference: two images, one query
    with pytest.raises(DatasetError, match=r"2 of 6 images of fashion200k/test"):
        load_fashion200k(root, "test")
    with pytest.warns(UserWarning, match="2 of 6 gallery images.*1 of 3 queries") as record:
        split = load_fashion200k(root, "test", missing_images="skip")
    assert len(record) == 1
    assert [t.reference for t in split.triplets] == [rows[0], rows[4]]
    assert split.gallery == [rows[0], rows[2], rows[4], rows[5]]
    assert len(load_fashion200k(root, "test", missing_images="ignore")) == 3


def test_skip_trims_valid_targets(tmp_path):
    root = _write_f200k(tmp_path)
    rows = [p for p, _, _ in _paths()["train"]]
    (root / rows[1]).unlink()  # one of the two "white jersey maxi dress" images
    full = _quiet(load_fashion200k, root, "train", missing_images="ignore")
    split = _quiet(load_fashion200k, root, "train", missing_images="skip")
    assert rows[1] not in split.gallery
    kept = [t for t in full.triplets if rows[1] not in (t.reference, t.target)]
    assert [(t.reference, t.target) for t in split.triplets] == [
        (t.reference, t.target) for t in kept
    ]
    for t in split.triplets:
        assert rows[1] not in t.valid_targets and t.target in t.valid_targets


def test_annotation_only_without_image_folder(tmp_path):
    root = _write_f200k(tmp_path, images=False)
    split = load_fashion200k(root, "test")
    assert len(split) == 3
    with pytest.raises(DatasetError, match="is missing"):
        split.load_image(split.gallery[0])
    with pytest.raises(DatasetError, match="image folder .*women does not exist"):
        load_fashion200k(root, "test", missing_images="error")


# ---------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    "line, problem",
    [
        ("women/dresses/x/1/1_0.jpeg\t0.9", "expected 3 tab-separated fields"),
        ("women/dresses/x/1/1_0.jpeg 0.9 red dress", "expected 3 tab-separated fields"),
        ("women/dresses/x/1/1_0.jpeg\thigh\tred dress", "detection_score 'high' is not a number"),
        ("women/dresses/x/1/1_0.jpeg\t0.9\t  ", "empty caption"),
        ("\t0.9\tred dress", "empty image_path"),
    ],
)
def test_malformed_label_line_names_file_and_line(tmp_path, line, problem):
    root = _write_f200k(tmp_path, images=False)
    path = root / "labels" / "skirt_test_detect_all.txt"
    lines = path.read_text().splitlines()
    lines.insert(1, line)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=f"skirt_test_detect_all.txt: line 2 .*{problem}"):
        load_fashion200k(root, "test")
    with pytest.raises(DatasetError, match="line 2"):
        read_fashion200k_labels(path)


def test_malformed_queries_and_empty_files(tmp_path):
    root = _write_f200k(tmp_path, images=False)
    test = [p for p, _, _ in _paths()["test"]]
    queries = root / "test_queries.txt"
    queries.write_text(f"{test[0]} {test[2]}\n{test[0]}\n")
    with pytest.raises(DatasetError, match=r"test_queries.txt: line 2 .*got 1 fields"):
        load_fashion200k(root, "test")
    queries.write_text(f"{test[0]} women/dresses/gone/1/1_0.jpeg\n")
    with pytest.raises(DatasetError, match=r"line 1: target image .*gone.* not in the test label"):
        load_fashion200k(root, "test")
    queries.write_text("\n")
    with pytest.raises(DatasetError, match="test_queries.txt: the file lists no test query"):
        load_fashion200k(root, "test")
    queries.unlink()
    with pytest.raises(DatasetError, match="test_queries.txt does not exist.*TIRG"):
        load_fashion200k(root, "test")
    for path in (root / "labels").glob("*_test_*"):
        path.write_text("\n")
    with pytest.raises(DatasetError, match="Fashion200k split 'test' is empty"):
        load_fashion200k(root, "test")
    for path in (root / "labels").glob("*_test_*"):
        path.unlink()
    with pytest.raises(DatasetError, match="no Fashion200k label file of split 'test'.*present"):
        load_fashion200k(root, "test")


def test_repeated_path_kept_once_with_warning(tmp_path):
    root = _write_f200k(tmp_path, images=False)
    path = root / "labels" / "skirt_test_detect_all.txt"
    first = path.read_text().splitlines()[0]
    with open(path, "a") as f:
        f.write(first.replace("blue pleated", "navy pleated") + "\n")
    with pytest.warns(UserWarning, match="1 label lines repeat an image path"):
        split = load_fashion200k(root, "test")
    assert len(split.gallery) == 6
    assert split.triplets[2].meta["reference_caption"] == "blue pleated midi skirt"


def test_windows_line_endings_read_the_same(tmp_path):
    root = _write_f200k(tmp_path, images=False)
    expected = load_fashion200k(root, "test")
    for path in [*root.glob("labels/*.txt"), root / "test_queries.txt"]:
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    loaded = load_fashion200k(root, "test")
    assert loaded.gallery == expected.gallery and loaded.triplets == expected.triplets


def test_unknown_split_and_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="prepare_fashion200k.py"):
        load_fashion200k(tmp_path / "nowhere", "test")
    with pytest.raises(DatasetError, match="unknown Fashion200k split 'val'"):
        load_fashion200k(_write_f200k(tmp_path, images=False), "val")


# ---------------------------------------------------------------- MGUR's caption filter


def test_excluded_is_every_image_with_the_reference_caption(tmp_path):
    root = _write_f200k(tmp_path)
    split = load_fashion200k(root, "test")
    rows = _paths()["test"]
    for t in split.triplets:
        same = tuple(p for p, c, _ in rows if c == t.meta["reference_caption"])
        assert t.excluded == same and t.reference in same
        assert not set(t.excluded) & set(t.valid_targets)
    # Query 0's reference (black jersey, copy 0) has a twin with its caption (copy 2, rows[1]).
    assert split.triplets[0].excluded == (rows[0][0], rows[1][0])


def test_evaluate_removes_the_reference_caption(tmp_path):
    root = _write_f200k(tmp_path)
    split = load_fashion200k(root, "test")
    m = len(split.gallery)
    images = torch.eye(m)
    ref = torch.tensor([split.index_of(t.reference) for t in split.triplets])
    tgt = torch.tensor([split.index_of(t.target) for t in split.triplets])
    features = SimpleNamespace(images=images, reference_index=ref, target_index=tgt)
    # Query 0 scores the reference's twin (same caption) above its target: first without the
    # caption filter, removed with it. Queries 1 and 2 score their target first.
    twin = split.index_of(_paths()["test"][1][0])
    queries = torch.stack([images[twin] + 0.5 * images[tgt[0]], images[tgt[1]], images[tgt[2]]])
    queries = torch.nn.functional.normalize(queries, dim=-1)
    result = evaluate(queries, features, split)["all"]
    assert result["R@1"] == 100.0 and result["mR@1"] == 100.0
    assert evaluate(queries, features, split, index="exact")["all"] == result
    # TIRG's protocol (the reference alone removed) for query 0:
    split.triplets[0] = dataclasses.replace(split.triplets[0], excluded=None)
    result = evaluate(queries, features, split)["all"]
    assert result["R@1"] == pytest.approx(200 / 3)  # the twin comes first for query 0


def test_same_caption_query_dropped_with_count(tmp_path):
    test = [p for p, _, _ in _paths()["test"]]
    # rows 0 and 1 share "black jersey maxi dress": the filter would remove the target.
    queries = [f"{test[0]} {test[2]}", f"{test[0]} {test[1]}", f"{test[4]} {test[5]}"]
    root = _write_f200k(tmp_path, queries=queries)
    with pytest.warns(UserWarning, match="dropped 1 of 3 queries whose source and target have"):
        split = load_fashion200k(root, "test")
    assert [(t.reference, t.target) for t in split.triplets] == [
        (test[0], test[2]),
        (test[4], test[5]),
    ]


def test_skip_trims_the_excluded_images(tmp_path):
    root = _write_f200k(tmp_path)
    rows = [p for p, _, _ in _paths()["test"]]
    (root / rows[1]).unlink()  # the twin of query 0's reference, and query 1's reference
    with pytest.warns(UserWarning, match="1 of 6 gallery images"):
        split = load_fashion200k(root, "test", missing_images="skip")
    assert [t.reference for t in split.triplets] == [rows[0], rows[4]]
    assert split.triplets[0].excluded == (rows[0],)
    for t in split.triplets:
        assert all(split.index_of(n) >= 0 for n in t.excluded)
