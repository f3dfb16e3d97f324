"""The rehearsal encoder is RN50x4's open_clip family, loaded by the paper path's own branch."""

import json

import open_clip
import pytest
import torch
from open_clip.modified_resnet import ModifiedResNet
from PIL import Image

from cirlib.data.features import encoder_id
from cirlib.models import backbone
from cirlib.models.backbone import image_tokens, load_backbone
from cirlib.models.preprocess import TargetPad
from cirlib.models.rehearsal_encoder import (
    REHEARSAL_CONFIG_DIR,
    REHEARSAL_ENCODER,
    write_rehearsal_weights,
)


def test_config_is_rn50x4_shrunk_in_sizes_only():
    mine = json.loads((REHEARSAL_CONFIG_DIR / f"{REHEARSAL_ENCODER}.json").read_text())
    paper = open_clip.get_model_config("RN50x4")
    # same keys and families: a ResNet tower (patch_size None), CLIP's BPE vocabulary and context
    assert set(mine["vision_cfg"]) == set(paper["vision_cfg"])
    assert mine["vision_cfg"]["patch_size"] is None and paper["vision_cfg"]["patch_size"] is None
    assert len(mine["vision_cfg"]["layers"]) == len(paper["vision_cfg"]["layers"]) == 4
    for key in ("context_length", "vocab_size"):
        assert mine["text_cfg"][key] == paper["text_cfg"][key]
    assert mine["vision_cfg"]["image_size"] < paper["vision_cfg"]["image_size"]
    assert mine["vision_cfg"]["width"] < paper["vision_cfg"]["width"]
    assert sum(mine["vision_cfg"]["layers"]) < sum(paper["vision_cfg"]["layers"])
    assert mine["vision_cfg"]["image_size"] % 32 == 0  # the attention pool needs size/32 cells
    # registered as an open_clip model, and not mistaken for a toy config
    assert REHEARSAL_ENCODER in open_clip.list_models()
    assert REHEARSAL_ENCODER not in backbone.toy_model_names()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_rehearsal_weights(tmp_path_factory.mktemp("w") / "rehearsal.pt", seed=0)


def test_weights_are_seeded_and_an_existing_file_is_kept(weights, tmp_path):
    again = write_rehearsal_weights(tmp_path / "again.pt", seed=0)
    other = write_rehearsal_weights(tmp_path / "other.pt", seed=1)
    a, b, c = (torch.load(p, weights_only=True) for p in (weights, again, other))
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["visual.conv1.weight"], c["visual.conv1.weight"])
    before = other.stat().st_mtime_ns
    write_rehearsal_weights(other, seed=5)  # kept: its hash names features and checkpoints
    assert other.stat().st_mtime_ns == before
    assert encoder_id(REHEARSAL_ENCODER, weights) != encoder_id(REHEARSAL_ENCODER, other)


def test_loaded_like_rn50x4_openai(weights):
    model, preprocess, tokenizer = load_backbone(REHEARSAL_ENCODER, pretrained=weights)
    saved = torch.load(weights, weights_only=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k]), k
    assert isinstance(model.visual, ModifiedResNet)
    assert isinstance(preprocess.transforms[0], TargetPad)  # CLIP4Cir's target pad
    assert preprocess.transforms[-1].mean == pytest.approx(open_clip.OPENAI_DATASET_MEAN)
    ids = tokenizer(["is red and has longer sleeves"])
    assert ids.shape == (1, 77)  # open_clip's CLIP tokenizer, not the toy word tokenizer
    assert ids[0, 0].item() == 49406  # CLIP's start-of-text token
    x = preprocess(Image.new("RGB", (90, 40), (200, 10, 10)))[None]
    assert x.shape == (1, 3, 64, 64)
    pooled, tokens = image_tokens(model, x)
    assert pooled.shape == (1, 64) and tokens.shape == (1, 4, 512)


def test_encoder_id_of_a_weights_file_is_file_name_safe(weights, tmp_path):
    """Chapters put the id into checkpoint file names (``enc.replace(':', '-')``): a path in it
    made names with slashes (fails before the fix: the id held the file's path)."""
    enc = encoder_id(REHEARSAL_ENCODER, weights)
    assert "/" not in enc and str(weights) not in enc
    assert enc.startswith(f"{REHEARSAL_ENCODER}:file-") and enc.endswith(":clip4cir")
    moved = tmp_path / "elsewhere.pt"
    moved.write_bytes(weights.read_bytes())
    assert encoder_id(REHEARSAL_ENCODER, moved) == enc  # content, not location
    assert encoder_id("RN50x4", "openai") == "RN50x4:openai:clip4cir"  # tags unchanged
