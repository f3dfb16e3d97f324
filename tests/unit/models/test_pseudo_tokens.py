"""The pseudo-word hook: injecting a real word's embedding reproduces the tower's own output."""

from __future__ import annotations

import open_clip
import pytest
import torch
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg, CustomTextCLIP

from cirlib.models.backbone import load_backbone
from cirlib.models.pseudo_tokens import (
    encode_text_with_pseudo_tokens,
    placeholder_id,
    token_embedding_layer,
)


@pytest.fixture(scope="module")
def toy():
    torch.manual_seed(0)
    model, _, tokenizer = load_backbone("toy-vit-tiny", pretrained=None)
    return model, tokenizer


def _small_open_clip(kind):
    """A randomly initialised open_clip model at CLIP's real vocabulary and context length."""
    torch.manual_seed(1)
    vision = CLIPVisionCfg(layers=1, width=32, head_width=16, patch_size=16, image_size=32)
    text = CLIPTextCfg(context_length=77, vocab_size=49408, width=48, heads=4, layers=2)
    return (CLIP if kind == "clip" else CustomTextCLIP)(24, vision, text).eval()


def _check_real_word_round_trip(model, tokenizer, templates, word):
    star = placeholder_id(tokenizer, "*")
    word_id = placeholder_id(tokenizer, word)
    with_star = tokenizer([t.replace("{}", "*") for t in templates])
    with_word = tokenizer([t.replace("{}", word) for t in templates])
    embedding = token_embedding_layer(model).weight[word_id]
    pseudo = embedding.expand(len(templates), -1)
    with torch.no_grad():
        got = encode_text_with_pseudo_tokens(model, with_star, pseudo, star)
        want = model.encode_text(with_word)
        plain = model.encode_text(with_star)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    # and the injection changed something: the placeholder's own embedding gives other features
    assert (plain - want).abs().max() > 1e-3
    return star


def test_toy_tower_reproduces_a_real_word(toy):
    model, tokenizer = toy
    templates = ["{} at top left", "a red {} , make it blue", "{}"]
    star = _check_real_word_round_trip(model, tokenizer, templates, "circle")
    assert star == tokenizer.index["<unk>"]  # '*' is outside the toy vocabulary


@pytest.mark.parametrize("kind", ["clip", "custom_text"])
def test_random_open_clip_tower_reproduces_a_real_word(kind):
    model = _small_open_clip(kind)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")  # the BPE tokenizer ships with open_clip
    templates = ["a photo of {} , that is red", "{} with a dog", "a photo of {}"]
    _check_real_word_round_trip(model, tokenizer, templates, "cat")


def test_several_pseudo_words_fill_placeholders_left_to_right(toy):
    model, tokenizer = toy
    star = placeholder_id(tokenizer, "*")
    table = token_embedding_layer(model).weight
    a, b = tokenizer.index["circle"], tokenizer.index["red"]
    pseudo = torch.stack([table[a], table[b]])[None]  # [1, 2, W]
    with torch.no_grad():
        got = encode_text_with_pseudo_tokens(model, tokenizer(["* and *"]), pseudo, star)
        want = model.encode_text(tokenizer(["circle and red"]))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_gradients_reach_the_pseudo_word_and_the_hook_is_removed(toy):
    model, tokenizer = toy
    star = placeholder_id(tokenizer, "*")
    tokens = tokenizer(["a * at top left"])
    pseudo = torch.randn(1, token_embedding_layer(model).embedding_dim, requires_grad=True)
    encode_text_with_pseudo_tokens(model, tokens, pseudo, star, normalize=True).sum().backward()
    assert pseudo.grad is not None and pseudo.grad.abs().sum() > 0
    assert not token_embedding_layer(model)._forward_hooks
    with torch.no_grad():  # the model itself is untouched afterwards
        assert torch.equal(model.encode_text(tokens), model.encode_text(tokens))


def test_errors_say_what_is_wrong(toy):
    model, tokenizer = toy
    star = placeholder_id(tokenizer, "*")
    width = token_embedding_layer(model).embedding_dim
    with pytest.raises(ValueError, match="holds the placeholder .* 0 times"):
        encode_text_with_pseudo_tokens(model, tokenizer(["a circle"]), torch.zeros(1, width), star)
    # an unknown word is '<unk>' too, so the count catches it
    with pytest.raises(ValueError, match="2 times"):
        encode_text_with_pseudo_tokens(model, tokenizer(["* zebra"]), torch.zeros(1, width), star)
    with pytest.raises(ValueError, match="width 3"):
        encode_text_with_pseudo_tokens(model, tokenizer(["*"]), torch.zeros(1, 3), star)
    with pytest.raises(ValueError, match="exactly one token"):
        placeholder_id(tokenizer, "red circle")
    with pytest.raises(TypeError, match="token-embedding table"):
        token_embedding_layer(torch.nn.Linear(2, 2))
