"""CIRLIB_REHEARSAL keeps the paper profile and changes only sizes."""

import dataclasses

import pytest

from cirlib.config import PROFILES, resolve
from cirlib.rehearsal import (
    REHEARSAL_ENCODER,
    REHEARSAL_SIZES,
    dataset_manifest,
    rehearsal_weights_path,
    run_provenance,
)


def test_rehearsal_replaces_only_sizes(monkeypatch, tmp_path):
    monkeypatch.setenv("CIRLIB_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("CIRLIB_REHEARSAL", raising=False)
    paper = resolve("paper", device="cpu")
    monkeypatch.setenv("CIRLIB_REHEARSAL", "1")
    rehearsal = resolve("paper", device="cpu")
    assert rehearsal.name == "paper" and rehearsal.rehearsal and not paper.rehearsal
    changed = {
        f.name
        for f in dataclasses.fields(paper)
        if getattr(paper, f.name) != getattr(rehearsal, f.name)
    }
    # only sizes (seeds is already (0,) in the paper profile, so it may not differ)
    assert changed <= set(REHEARSAL_SIZES) | {"encoder_pretrained", "rehearsal"}
    assert {"encoder", "encoder_pretrained", "image_size", "epochs", "batch_size"} <= changed
    assert rehearsal.encoder == REHEARSAL_ENCODER
    assert rehearsal.encoder_pretrained == str(rehearsal_weights_path())
    assert rehearsal.dataset == paper.dataset == "cirr"
    assert rehearsal.lr == paper.lr  # not a size: stays the paper's
    assert rehearsal.seeds == (0,) and rehearsal.epochs <= 2
    assert "REHEARSAL" in rehearsal.describe() and "REHEARSAL" not in paper.describe()
    # an explicit override still wins, and the other profiles ignore the variable
    assert resolve("paper", device="cpu", epochs=1).epochs == 1
    assert not resolve("smoke").rehearsal
    assert resolve("smoke").encoder == "toy-vit-tiny"


def test_rehearsal_flag_without_environment(monkeypatch):
    monkeypatch.delenv("CIRLIB_REHEARSAL", raising=False)
    assert resolve("paper", device="cpu", rehearsal=True).encoder == REHEARSAL_ENCODER


def test_bad_rehearsal_value_is_refused(monkeypatch):
    monkeypatch.setenv("CIRLIB_REHEARSAL", "yes")
    with pytest.raises(ValueError, match="set it to 1"):
        resolve("paper")


def test_dataset_parameter(monkeypatch):
    monkeypatch.delenv("CIRLIB_REHEARSAL", raising=False)
    assert resolve("paper", dataset="").dataset == PROFILES["paper"]["dataset"]
    assert resolve("paper", dataset="fashioniq").dataset == "fashioniq"
    assert resolve("smoke", dataset="").dataset == "toy"
    with pytest.raises(ValueError, match="DATASET"):
        resolve("smoke", dataset="cirr")
    with pytest.raises(ValueError, match="not one of"):
        resolve("paper", dataset="fashion-iq")


def test_provenance_names_architecture_and_manifest(monkeypatch, tmp_path):
    monkeypatch.setenv("CIRLIB_DATA_DIR", str(tmp_path))
    cfg = resolve("paper", device="cpu", rehearsal=True)
    assert dataset_manifest("cirr") is None
    (tmp_path / "cirr").mkdir(exist_ok=True)
    (tmp_path / "cirr" / "manifest.json").write_text('{"dataset": "cirr", "sources": {}}')
    prov = run_provenance(cfg)
    assert prov["rehearsal"] is True
    assert prov["encoder_architecture"]["name"] == REHEARSAL_ENCODER
    assert prov["encoder_architecture"]["open_clip_config"]["vision_cfg"]["patch_size"] is None
    assert prov["dataset_manifest"] == {"dataset": "cirr", "sources": {}}
    toy = run_provenance(resolve("smoke"))
    assert toy["encoder_architecture"] is None and toy["dataset_manifest"] is None


def test_encoder_label_names_a_weights_file_without_its_path(monkeypatch, tmp_path):
    from cirlib.harness import encoder_label

    monkeypatch.setenv("CIRLIB_DATA_DIR", str(tmp_path))
    cfg = resolve("paper", device="cpu", rehearsal=True)
    assert encoder_label(resolve("paper", device="cpu")) == "RN50x4:openai"
    assert encoder_label(resolve("smoke")) == "toy-vit-tiny:shipped"
    rehearsal_weights_path().write_bytes(b"x")
    assert encoder_label(cfg) == f"{REHEARSAL_ENCODER}:{REHEARSAL_ENCODER}-seed0.pt"
