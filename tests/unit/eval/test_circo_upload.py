"""Chapter 8's CIRCO test-server file: written only for CIRCO, from the validation split's image
rows and the test captions, with the method's own queries; the stand-in server reads it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cirlib.circo_upload import circo_test_features, circo_test_submission, circo_upload_note
from cirlib.config import resolve
from cirlib.data.circo import load_circo
from cirlib.data.features import SplitFeatures
from cirlib.data.records import DatasetError
from cirlib.data.registry import load_splits
from cirlib.eval.circo_submission import circo_submission_from_scores

IDS = list(range(1, 61))
VAL = [
    {
        "reference_img_id": 1,
        "target_img_id": 2,
        "relative_caption": "is red",
        "shared_concept": "",
        "gt_img_ids": [2, 3],
        "id": 0,
    }
]
TEST = [
    {"reference_img_id": 4, "relative_caption": "is blue", "shared_concept": "", "id": 0},
    {
        "reference_img_id": 5,
        "relative_caption": "is a long green one",
        "shared_concept": "",
        "id": 1,
    },
]


def _install(root: Path) -> None:
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "val.json").write_text(json.dumps(VAL))
    (root / "annotations" / "test.json").write_text(json.dumps(TEST))
    info = root / "COCO2017_unlabeled" / "annotations"
    info.mkdir(parents=True)
    images = [{"id": i, "file_name": f"{i:012d}.jpg"} for i in IDS]
    (info / "image_info_unlabeled2017.json").write_text(json.dumps({"images": images}))
    folder = root / "COCO2017_unlabeled" / "unlabeled2017"
    folder.mkdir(parents=True)
    for i in IDS:
        (folder / f"{i:012d}.jpg").write_bytes(b"")  # never opened: features are given


class TextModel(torch.nn.Module):
    """encode_text: the token row itself (the tokenizer below writes the caption's length)."""

    def encode_text(self, ids, normalize=False):
        return ids.float()


def tokenizer(texts):
    return torch.tensor([[float(len(t)), 1.0, 0.0, 0.0] for t in texts])


@pytest.fixture
def installed(tmp_path, monkeypatch):
    monkeypatch.setenv("CIRLIB_DATA_DIR", str(tmp_path / "data"))
    _install(tmp_path / "data" / "circo")
    return tmp_path / "data"


def _val_features(val):
    g = torch.Generator().manual_seed(0)
    return SplitFeatures(
        images=torch.randn(len(val.gallery), 4, generator=g),
        texts=torch.zeros(len(val), 4),
        reference_index=torch.tensor([val.index_of(t.reference) for t in val.triplets]),
        target_index=torch.tensor([val.index_of(t.target) for t in val.triplets]),
    )


def test_test_features_reuse_the_gallery_rows_and_encode_the_captions(installed):
    root = installed / "circo"
    val, test = load_circo(root, "val"), load_circo(root, "test")
    fv = _val_features(val)
    ft = circo_test_features(test, val, fv, TextModel(), tokenizer, batch_size=1)
    assert ft.images is fv.images
    assert ft.texts[:, 0].tolist() == [len("is blue"), len("is a long green one")]
    assert ft.reference_index.tolist() == [3, 4] and ft.target_index.tolist() == [-1, -1]
    other = dataclasses.replace(test, gallery=test.gallery[::-1])
    with pytest.raises(DatasetError, match="rank different galleries"):
        circo_test_features(other, val, fv, TextModel(), tokenizer)


def test_the_file_holds_the_methods_own_ranking_of_every_test_query(installed):
    cfg = resolve("paper", dataset="circo", device="cpu", seeds=(7,), feature_batch=8)
    val = load_splits(cfg, zero_shot=True)["test"]
    fv = _val_features(val)

    def make(features, split):  # the reference's image row plus the text row
        ref = features.images[features.reference_index]
        return F.normalize(ref + features.texts, dim=-1)

    path = circo_test_submission(cfg, "sum", make, val, fv, TextModel(), tokenizer, "enc:x")
    assert path.name == "sum-paper-enc-x-s7_circo_test.json"
    assert path.parent == installed / "submissions"
    doc = json.loads(path.read_text())
    test = load_circo(installed / "circo", "test")
    want = circo_submission_from_scores(
        make(circo_test_features(test, val, fv, TextModel(), tokenizer), test),
        fv.images,
        test,
        installed / "want.json",
    )
    assert doc == json.loads(want.read_text()) and sorted(doc) == ["0", "1"]
    assert "Rehearsal" in circo_upload_note(path, rehearsal=True)
    assert "https://circo.micc.unifi.it/" in circo_upload_note(path)


def test_other_datasets_write_nothing(installed):
    cfg = resolve("paper", dataset="cirr", device="cpu")
    assert circo_test_submission(cfg, "sum", None, None, None, None, None, "enc") is None
    assert not (installed / "submissions").exists()
    assert circo_upload_note(None).startswith("Not CIRCO")
