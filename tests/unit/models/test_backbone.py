import json

import open_clip
import pytest
import torch

from cirlib.models import backbone
from cirlib.models.backbone import image_tokens, load_backbone, text_tokens
from cirlib.models.tokenizer import WordTokenizer


def test_tokenizer_layout():
    tok = WordTokenizer(context_length=8)
    ids = tok(["Make the circle RED", "remove zebra"])
    assert ids.shape == (2, 8)
    assert ids[0, 0] == tok.index["<sot>"] and ids[0, 5] == tok.eot_id
    assert (ids.argmax(-1) == torch.tensor([5, 3])).all()  # end of text is the highest id
    assert ids[1, 2] == tok.index["<unk>"] and tok.unknown_words("remove zebra") == ["zebra"]
    long = tok(" ".join(["red"] * 20))
    assert long[0, -1] == tok.eot_id  # truncated, still terminated
    assert tok.decode(ids[0]) == "make the circle red"


@pytest.fixture(scope="module")
def toy():
    torch.manual_seed(0)
    return load_backbone("toy-vit-tiny", pretrained=None)


def test_toy_token_features_agree_with_global_ones(toy):
    model, preprocess, tokenizer = toy
    x = torch.randn(3, 3, 48, 48)
    pooled, tokens = image_tokens(model, x)
    assert tokens.shape == (3, 9, 128)  # one token per grid cell
    assert torch.allclose(pooled, model.encode_image(x), atol=1e-5)
    ids = tokenizer(["make the circle red", "add a large blue triangle at top-left", "x"])
    g, states, mask = text_tokens(model, ids)
    assert torch.allclose(g, model.encode_text(ids), atol=1e-5)
    assert states.shape == (3, 32, 128)
    assert mask.sum(1).tolist() == [6, 9, 3]  # sot + words + eot


def test_unknown_encoder_and_offline_errors(monkeypatch):
    with pytest.raises(ValueError, match="unknown encoder"):
        load_backbone("no-such-model")
    monkeypatch.setenv("CIRLIB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="network"):
        load_backbone("RN50", pretrained="openai")


@pytest.fixture(scope="module")
def tiny_resnet(tmp_path_factory):
    """A format-faithful stand-in for the paper profile's RN50x4: an open_clip ModifiedResNet
    config registered like any open_clip model, with a weights file on disk."""
    d = tmp_path_factory.mktemp("cfg")
    cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "patch_size": None},
        "text_cfg": {
            "context_length": 16,
            "vocab_size": 49408,
            "width": 32,
            "heads": 2,
            "layers": 1,
        },
    }
    (d / "test-tiny-rn.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(d)
    torch.manual_seed(1)
    model = open_clip.create_model("test-tiny-rn")
    weights = d / "weights.pt"
    torch.save(model.state_dict(), weights)
    return model, weights


def test_paper_path_loads_open_clip_weights_from_a_file(tiny_resnet):
    reference, weights = tiny_resnet
    model, preprocess, tokenizer = load_backbone("test-tiny-rn", pretrained=weights)
    for (k, a), b in zip(reference.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k
    assert tokenizer(["a dress"]).shape == (1, 16)
    assert preprocess.transforms[-1].mean == pytest.approx(open_clip.OPENAI_DATASET_MEAN)


def test_resnet_tokens_are_the_spatial_map_in_row_major_order(tiny_resnet):
    model, _ = tiny_resnet
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    pooled, tokens = image_tokens(model, x)
    assert torch.allclose(pooled, model.encode_image(x), atol=1e-5)
    v = model.visual
    fmap = v.layer4(v.layer3(v.layer2(v.layer1(v.stem(x)))))
    b, c, h, w = fmap.shape
    assert tokens.shape == (2, h * w, c)
    assert torch.equal(tokens[:, 1 * w + 0], fmap[:, :, 1, 0])  # token k = position (k//w, k%w)


def test_shipped_checkpoint_is_small_and_meets_the_retrieval_target():
    from cirlib.models.pretrain import image_to_caption_recall

    path = backbone.shipped_weights("toy-vit-tiny")
    assert path.stat().st_size < 10e6
    model, _, tokenizer = load_backbone("toy-vit-tiny")
    meta = torch.load(path, weights_only=True)["meta"]
    assert {"command", "seed", "held_out"} <= set(meta)
    recall = image_to_caption_recall(model, tokenizer, n=1000, seed=meta["seed"])
    assert recall["i2t_R@1"] >= 0.7
    assert recall["i2t_R@1"] == pytest.approx(meta["held_out"]["i2t_R@1"], abs=0.01)


def test_paper_path_uses_clip4cir_target_pad_by_default(tiny_resnet):
    from PIL import Image

    from cirlib.data.features import encoder_id
    from cirlib.models.preprocess import TargetPad

    _, weights = tiny_resnet
    _, clip4cir, _ = load_backbone("test-tiny-rn", pretrained=weights)
    _, plain, _ = load_backbone("test-tiny-rn", pretrained=weights, preprocess="open_clip")
    assert isinstance(clip4cir.transforms[0], TargetPad)
    assert not any(isinstance(t, TargetPad) for t in plain.transforms)
    wide = Image.new("RGB", (200, 50), (255, 0, 0))
    a, b = clip4cir(wide), plain(wide)
    assert a.shape == b.shape == (3, 64, 64)
    # the padded image keeps black bands above and below the content; the plain crop has none
    assert not torch.allclose(a, b)
    assert encoder_id("test-tiny-rn", weights) != encoder_id(
        "test-tiny-rn", weights, preprocess="open_clip"
    )
    with pytest.raises(ValueError, match="preprocess"):
        load_backbone("test-tiny-rn", pretrained=weights, preprocess="nope")


def test_pretraining_can_stop_early_on_the_full_schedule():
    """stop_after runs the first steps of the ``steps``-long schedule: the same losses and
    learning rates as the full run's first steps, not a shorter schedule."""
    from cirlib.models.pretrain import pretrain_toy_clip

    kw = dict(steps=6, batch_size=8, n_scenes=32, seed=0, lr=1e-3, warmup=0.34)
    runs = []
    for stop in (None, 3):
        torch.manual_seed(0)  # the random initialisation happens before pretrain_toy_clip seeds
        model, _, tokenizer = load_backbone("toy-vit-tiny", pretrained=None)
        runs.append(pretrain_toy_clip(model, tokenizer, stop_after=stop, **kw))
    full, part = runs
    assert len(full) == 6 and len(part) == 3
    assert [h["lr"] for h in part] == [h["lr"] for h in full[:3]]
    assert [h["loss"] for h in part] == pytest.approx([h["loss"] for h in full[:3]], rel=1e-5)
    with pytest.raises(ValueError, match="stop_after"):
        pretrain_toy_clip(model, tokenizer, stop_after=7, **kw)
