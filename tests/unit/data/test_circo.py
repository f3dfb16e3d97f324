"""CIRCO: the loader on a small fixture in the release's format (annotations/val.json and
test.json, COCO's unlabeled image list, the image folder), its checks, mAP@K through evaluate on
the validation split, the test server's file, and prepare_data.py circo."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cirlib.data.circo import load_circo
from cirlib.data.records import DatasetError
from cirlib.eval.average_precision import average_precision_at_k
from cirlib.eval.circo_submission import circo_submission_from_scores, write_circo_submission
from cirlib.eval.evaluate import evaluate

REPO = Path(__file__).resolve().parents[3]
IDS = [9761, 85932, 489535, 57541, 375057, 119881] + list(range(1000, 1060))
VAL = [
    {
        "reference_img_id": 85932,
        "target_img_id": 9761,
        "relative_caption": "is held by a little girl on a chair",
        "shared_concept": "a teddy bear",
        "gt_img_ids": [9761, 489535, 57541],
        "id": 0,
    },
    {
        "reference_img_id": 375057,
        "target_img_id": 119881,
        "relative_caption": "is on a beach",
        "shared_concept": "a dog",
        "gt_img_ids": [119881],
        "id": 1,
    },
]
TEST = [
    {"reference_img_id": 1003, "relative_caption": "is red", "shared_concept": "a bus", "id": 0},
    {"reference_img_id": 1004, "relative_caption": "is blue", "shared_concept": "a car", "id": 1},
]


def _write(root: Path, images=True, val=VAL, test=TEST) -> Path:
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "val.json").write_text(json.dumps(val))
    (root / "annotations" / "test.json").write_text(json.dumps(test))
    info = root / "COCO2017_unlabeled" / "annotations"
    info.mkdir(parents=True)
    listed = [{"id": i, "file_name": f"{i:012d}.jpg", "coco_url": "x"} for i in IDS]
    (info / "image_info_unlabeled2017.json").write_text(json.dumps({"images": listed}))
    if images:
        folder = root / "COCO2017_unlabeled" / "unlabeled2017"
        folder.mkdir(parents=True)
        for i in IDS:
            Image.new("RGB", (3, 2), (i % 255, 0, 0)).save(folder / f"{i:012d}.jpg")
    return root


def test_val_and_test_load_in_the_release_format(tmp_path):
    root = _write(tmp_path / "CIRCO")
    val = load_circo(root, "val", check_images=True)
    assert val.name == "circo/val" and val.gallery == [str(i) for i in IDS]
    first = val.triplets[0]
    assert (first.pair_id, first.reference, first.target) == (0, "85932", "9761")
    assert first.valid_targets == ("9761", "489535", "57541")
    assert first.caption == "is held by a little girl on a chair"
    assert first.meta["shared_concept"] == "a teddy bear"
    assert val.load_image("9761").size == (3, 2)
    test = load_circo(root, "test")
    assert all(t.target is None and t.valid_targets is None for t in test.triplets)


@pytest.mark.parametrize(
    ("split", "change", "message"),
    [
        ("val", {"gt_img_ids": [489535, 9761]}, "is not target_img_id 9761"),
        ("val", {"gt_img_ids": []}, "non-empty list"),
        ("val", {"reference_img_id": 4}, "image 4 is not in COCO's image list"),
        ("val", {"relative_caption": 3}, "field 'relative_caption': expected str"),
        ("test", {"id": 1}, "entry 1 \\(id 1\\), field .id.: duplicates entry 0"),
    ],
)
def test_a_malformed_entry_is_named(tmp_path, split, change, message):
    val, test = [dict(e) for e in VAL], [dict(e) for e in TEST]
    (val if split == "val" else test)[0].update(change)
    root = _write(tmp_path / "CIRCO", images=False, val=val, test=test)
    with pytest.raises(DatasetError, match=message) as err:
        load_circo(root, split)
    assert f"annotations/{split}.json" in str(err.value) and "prepare_data.py circo" in str(
        err.value
    )


def test_missing_files_and_unknown_splits_are_explained(tmp_path):
    root = _write(tmp_path / "CIRCO", images=False)
    with pytest.raises(DatasetError, match="no training split"):
        load_circo(root, "train")
    with pytest.raises(DatasetError, match="66 of 66 CIRCO gallery images are missing"):
        load_circo(root, "val", check_images=True)
    with pytest.raises(DatasetError, match="does not exist"):
        load_circo(tmp_path / "nowhere", "val")


def test_missing_images_are_named_with_the_command_that_installs_them(tmp_path):
    root = _write(tmp_path / "CIRCO")
    folder = root / "COCO2017_unlabeled" / "unlabeled2017"
    for i in IDS[1:4]:
        (folder / f"{i:012d}.jpg").unlink()
    with pytest.raises(DatasetError) as err:
        load_circo(root, "val", check_images=True)
    message = str(err.value)
    assert message.startswith(f"3 of {len(IDS)} CIRCO gallery images are missing under {folder}")
    assert f"(first: {', '.join(map(str, IDS[1:4]))}; expected e.g. {folder}/" in message
    assert "python data_scripts/prepare_data.py circo <folder> --images" in message


def test_evaluate_reports_map_over_every_listed_target(tmp_path):
    val = load_circo(_write(tmp_path / "CIRCO", images=False), "val")
    n = len(val.gallery)
    # query 0 ranks 489535 first, 9761 fourth, 1002 fifth (the reference removed)
    scores = torch.zeros(2, n)
    order0 = ["85932", "489535", "1000", "1001", "9761", "1002"]
    for rank, name in enumerate(order0):
        scores[0, val.index_of(name)] = 10.0 - rank
    scores[1, val.index_of("119881")] = 5.0
    images = torch.eye(n)

    class Features:  # what evaluate reads: rows of the gallery and each query's reference row
        pass

    feats = Features()
    feats.images = images
    feats.reference_index = torch.tensor([val.index_of(t.reference) for t in val.triplets])
    feats.target_index = torch.tensor([val.index_of(t.target) for t in val.triplets])
    got = evaluate(scores, feats, val)["all"]
    # by hand: query 0 hits at 1 and 4 of min(5, 3) = 3 targets: (1 + 2/4) / 3; query 1: 1
    assert got["mAP@5"] == pytest.approx(100 * ((1 + 0.5) / 3 + 1) / 2)
    top = torch.tensor([[val.index_of(x) for x in ["489535", "1000", "1001", "9761", "1002"]]])
    ap = average_precision_at_k(
        top, [[val.index_of(str(x)) for x in VAL[0]["gt_img_ids"]]], ks=(5,)
    )
    assert float(ap) == pytest.approx((1 + 0.5) / 3)


def test_the_server_file_holds_every_query_and_fifty_ids(tmp_path):
    test = load_circo(_write(tmp_path / "CIRCO", images=False), "test")
    g = torch.Generator().manual_seed(0)
    gallery = torch.randn(len(test.gallery), 8, generator=g)
    queries = torch.nn.functional.normalize(torch.randn(2, 8, generator=g), dim=-1)
    out = circo_submission_from_scores(queries, gallery, test, tmp_path / "circo.json")
    doc = json.loads(out.read_text())
    assert sorted(doc) == ["0", "1"] and all(len(v) == 50 for v in doc.values())
    assert all(isinstance(i, int) for v in doc.values() for i in v)
    scores = queries @ torch.nn.functional.normalize(gallery, dim=-1).T
    for t, row in zip(test.triplets, scores):
        row[test.index_of(t.reference)] = -float("inf")  # the reference is never listed
        want = [int(test.gallery[j]) for j in row.argsort(descending=True, stable=True)[:50]]
        assert doc[str(t.pair_id)] == want
    with pytest.raises(ValueError, match="1 missing"):
        write_circo_submission(tmp_path / "bad.json", {0: doc["0"]}, test)
    with pytest.raises(ValueError, match="exactly 50 distinct"):
        write_circo_submission(tmp_path / "bad.json", {0: doc["0"][:49], 1: doc["1"]}, test)
    assert not (tmp_path / "bad.json").exists()


def test_prepare_data_circo_installs_and_reports_missing(
    tmp_path, monkeypatch, capsys, load_script
):
    monkeypatch.setenv("CIRLIB_DATA_DIR", str(tmp_path / "data"))
    prepare = load_script("prepare_data")
    src = _write(tmp_path / "download" / "CIRCO")
    (src / "COCO2017_unlabeled" / "unlabeled2017" / f"{IDS[7]:012d}.jpg").unlink()
    assert prepare.main(["circo", str(tmp_path / "download")]) == 1
    out = capsys.readouterr().out
    assert "MISSING CIRCO images (1 of 66)" in out and "cocodataset.org" in out
    assert not (tmp_path / "data" / "circo").exists()
    Image.new("RGB", (3, 2)).save(
        src / "COCO2017_unlabeled" / "unlabeled2017" / f"{IDS[7]:012d}.jpg"
    )
    assert prepare.main(["circo", str(tmp_path / "download")]) == 0
    out = capsys.readouterr().out
    assert "val: 2 queries, gallery 66 images" in out and "test: 2 queries" in out
    installed = load_circo(tmp_path / "data" / "circo", "val", check_images=True)
    assert len(installed) == 2 and (tmp_path / "data" / "circo" / "manifest.json").is_file()


# --------------------------------------------------------------- CIRCO as a profile's dataset
# The fixture's images no query names: every id but the val references and listed targets
# (85932, 375057; 9761, 489535, 57541, 119881) and the test references (1003, 1004).
NAMED = {85932, 375057, 9761, 489535, 57541, 119881, 1003, 1004}
UNNAMED = [str(i) for i in IDS if i not in NAMED]


def _paper_circo(tmp_path, monkeypatch):
    from cirlib.config import resolve

    monkeypatch.setenv("CIRLIB_DATA_DIR", str(tmp_path / "data"))
    _write(tmp_path / "data" / "circo")
    return resolve("paper", dataset="circo", device="cpu")


def test_paper_profile_accepts_circo_and_zero_shot_loads_val_test_and_unlabeled_train(
    tmp_path, monkeypatch
):
    from cirlib.data.registry import load_splits

    splits = load_splits(_paper_circo(tmp_path, monkeypatch), zero_shot=True)
    assert splits["val"] is splits["test"] and splits["val"].name == "circo/val"
    assert [t.pair_id for t in splits["test"].triplets] == [0, 1]
    train = splits["train"]
    assert train.name == "circo/train" and train.triplets == []
    assert train.gallery == UNNAMED  # all 58 left, in the gallery's order
    assert train.load_image(UNNAMED[0]).size == (3, 2)


def test_every_other_caller_is_refused_with_the_zero_shot_chapter_named(tmp_path, monkeypatch):
    from cirlib.data.registry import load_splits

    cfg = _paper_circo(tmp_path, monkeypatch)
    with pytest.raises(DatasetError, match="no training triplets") as err:
        load_splits(cfg)
    assert "08_zero_shot" in str(err.value) and "'cirr'" in str(err.value)


def test_circo_not_installed_names_prepare_data(tmp_path, monkeypatch):
    from cirlib.config import resolve
    from cirlib.data.registry import load_splits

    monkeypatch.setenv("CIRLIB_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(DatasetError, match="CIRCO is not prepared") as err:
        load_splits(resolve("paper", dataset="circo", device="cpu"), zero_shot=True)
    assert "prepare_data.py circo" in str(err.value)


def test_training_sample_is_fixed_in_gallery_order_and_never_a_named_image(tmp_path):
    from cirlib.data.circo_training_images import circo_training_split

    root = _write(tmp_path / "CIRCO", images=False)
    val, test = load_circo(root, "val"), load_circo(root, "test")
    assert circo_training_split(val, test, limit=0).gallery == UNNAMED
    assert circo_training_split(val, test, limit=100).gallery == UNNAMED
    small = circo_training_split(val, test, limit=7).gallery
    assert len(small) == 7 and set(small) <= set(UNNAMED)
    assert small == sorted(small, key=UNNAMED.index)  # gallery order
    assert small == circo_training_split(val, test, limit=7).gallery  # one fixed sample
    assert small != UNNAMED[:7]  # a sample over the whole gallery, not its head
    with pytest.raises(ValueError, match="whole number >= 0"):
        circo_training_split(val, test, limit=-1)


def test_training_split_needs_one_gallery_and_an_image_left(tmp_path):
    import dataclasses

    from cirlib.data.circo_training_images import circo_training_split

    root = _write(tmp_path / "CIRCO", images=False)
    val, test = load_circo(root, "val"), load_circo(root, "test")
    other = dataclasses.replace(test, gallery=test.gallery[:-1])
    with pytest.raises(DatasetError, match="rank different galleries"):
        circo_training_split(val, other)
    only_named = [n for n in val.gallery if int(n) in NAMED]
    crowded = dataclasses.replace(val, gallery=only_named)
    with pytest.raises(DatasetError, match="none is left to train"):
        circo_training_split(crowded, dataclasses.replace(test, gallery=only_named))


def test_an_image_only_split_encodes_to_no_text_rows(tmp_path):
    from cirlib.data.circo_training_images import circo_training_split
    from cirlib.data.features import encode_split

    root = _write(tmp_path / "CIRCO")
    train = circo_training_split(load_circo(root, "val"), load_circo(root, "test"))

    class Model(torch.nn.Module):  # 4-d features: the image's mean colour and a constant
        def encode_image(self, x, normalize=False):
            return torch.cat([x.mean(dim=(2, 3)), torch.ones(len(x), 1)], dim=1)

        def encode_text(self, ids, normalize=False):
            raise AssertionError("an image-only split has no text to encode")

    def preprocess(image):
        return torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)

    feats = encode_split(train, Model(), preprocess, None, batch_size=16)
    assert feats.images.shape == (len(UNNAMED), 4) and feats.texts.shape == (0, 4)
    assert feats.reference_index.dtype == torch.long and len(feats.reference_index) == 0
    # the first training image's red channel (JPEG keeps it within a step or two)
    assert float(feats.images[0, 0]) == pytest.approx(int(UNNAMED[0]) % 255, abs=2)
    with pytest.raises(ValueError, match="no queries, so it has no text tokens"):
        encode_split(train, Model(), preprocess, None, tokens=True)


def test_map_at_k_on_the_profile_split_counts_every_listed_target(tmp_path, monkeypatch):
    """mAP@5/10/25/50 by hand on the split load_splits gives: gt_img_ids feed evaluate."""
    from cirlib.data.registry import load_splits

    test = load_splits(_paper_circo(tmp_path, monkeypatch), zero_shot=True)["test"]
    n = len(test.gallery)
    # query 0 (targets 9761, 489535, 57541): its ranking, reference removed, is 1000, 9761,
    # 489535, 1001, ..., with 57541 at place 30; query 1 finds its only target first.
    fillers = [str(i) for i in range(1001, 1029)]  # places 4 to 31, minus the one taken
    order0 = ["85932", "1000", "9761", "489535", *fillers[:26], "57541", *fillers[26:]]
    scores = torch.zeros(2, n)
    for rank, name in enumerate(order0):
        scores[0, test.index_of(name)] = 100.0 - rank
    scores[1, test.index_of("119881")] = 5.0

    class Features:
        images = torch.eye(n)
        reference_index = torch.tensor([test.index_of(t.reference) for t in test.triplets])
        target_index = torch.tensor([test.index_of(t.target) for t in test.triplets])

    got = evaluate(scores, Features(), test)["all"]
    hits_before_30 = 1 / 2 + 2 / 3  # precision at places 2 and 3
    ap0 = {5: hits_before_30 / 3, 10: hits_before_30 / 3, 25: hits_before_30 / 3}
    ap0[50] = (hits_before_30 + 3 / 30) / 3
    for k in (5, 10, 25, 50):
        assert got[f"mAP@{k}"] == pytest.approx(100 * (ap0[k] + 1) / 2), k
    # R@K reads the first listed target (target_img_id): 9761 at place 3, 119881 at place 1
    assert (got["R@1"], got["R@5"]) == (50.0, 100.0)
    assert got["mR@1"] == 50.0 and got["n"] == 2


def test_only_the_zero_shot_chapter_declares_itself_zero_shot():
    """Chapters 2-7 and 9 call load_splits(cfg) and are refused on CIRCO; chapter 8 alone runs."""
    calls = {}
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        calls[path.stem] = ("load_splits(cfg" in code, "zero_shot=True" in code)
    assert calls["08_zero_shot"] == (True, True)
    takes_dataset = [s for s in calls if s[:2] in {"02", "03", "04", "05", "06", "07", "09"}]
    assert len(takes_dataset) == 7
    for stem in takes_dataset:
        assert calls[stem] == (True, False), stem
