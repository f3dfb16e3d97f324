"""Chapters' CIRR test1 upload files: written for the installed test1 split through the feature
cache, accepted by the stand-in server, whose numbers equal the book's evaluation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cirlib.cirr_test_server import score_submission
from cirlib.cirr_upload import cirr_test1_submission, upload_note
from cirlib.config import resolve
from cirlib.data.features import cached_features, encoder_id
from cirlib.data.toy import load_toy
from cirlib.data.toyworld import make_toyworld
from cirlib.eval.evaluate import evaluate
from cirlib.models.backbone import load_backbone
from cirlib.models.rehearsal_encoder import write_rehearsal_weights


def test_upload_files_pass_the_stand_in_and_equal_evaluate(tmp_path, monkeypatch, load_script):
    monkeypatch.setenv("CIRLIB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CIRLIB_REHEARSAL", raising=False)
    world = make_toyworld(tmp_path / "w", {"train": 4, "val": 3, "test": 6}, seed=5, image_size=16)
    assert load_script("prepare_data").main(["cirr", str(world / "cirr_dataset")]) == 0
    cfg = resolve("paper", device="cpu", rehearsal=True)
    write_rehearsal_weights(cfg.encoder_pretrained)
    model, preprocess, tokenizer = load_backbone(cfg.encoder, cfg.encoder_pretrained)
    enc = encoder_id(cfg.encoder, cfg.encoder_pretrained)

    def queries(f):  # the image+text sum, a stand-in for a trained method
        return F.normalize(f.images[f.reference_index] + f.texts, dim=-1)

    recall, subset = cirr_test1_submission(cfg, "sum", queries, model, preprocess, tokenizer, enc)
    assert recall.name.startswith("sum-paper-RN50x4-rehearsal-file-")
    assert recall.name.endswith("-s0_recall.json") and subset.name.endswith("_recall_subset.json")
    assert recall.parent == tmp_path / "data" / "submissions"
    ann = world / "cirr_dataset" / "cirr"
    server = score_submission(
        ann / "captions" / "cap.rc2.test1.json",
        world / "private" / "cirr" / "cap.rc2.test1.targets.json",
        recall,
        subset,
        image_split_file=ann / "image_splits" / "split.rc2.test1.json",
    )
    book = load_toy(world, "test")  # the same queries and gallery, private targets added
    feats = cached_features(
        book, model, preprocess, tokenizer, encoder=enc, cache_dir=tmp_path / "cache"
    )
    ours = evaluate(queries(feats), feats, book, by=())["all"]
    for key in ("R@1", "R@5", "R@10", "R@50", "Rs@1", "Rs@2", "Rs@3", "Avg"):
        assert server[key] == pytest.approx(ours[key], abs=1e-6), key
    assert "score_cirr_submission.py" in upload_note((recall, subset), rehearsal=True)
    assert "cirr.cecs.anu.edu.au" in upload_note((recall, subset))


def test_nothing_is_written_for_other_datasets(tmp_path, monkeypatch):
    monkeypatch.setenv("CIRLIB_DATA_DIR", str(tmp_path))
    cfg = resolve("paper", device="cpu", dataset="fashioniq")
    assert cirr_test1_submission(cfg, "x", torch.nn.Identity(), None, None, None, "e") is None
    assert "Not CIRR" in upload_note(None)
    assert not (tmp_path / "submissions").exists()
