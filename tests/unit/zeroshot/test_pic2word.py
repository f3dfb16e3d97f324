"""Pic2Word-style mapping: the loss against a loop over a hand-written text forward, and the
composed queries (training through the registered method: tests/unit/zeroshot/test_methods.py)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cirlib.models.backbone import load_backbone
from cirlib.models.pseudo_tokens import encode_text_with_pseudo_tokens, placeholder_id
from cirlib.zeroshot.pic2word import pseudo_word_contrastive_loss
from cirlib.zeroshot.queries import pseudo_word_queries


@pytest.fixture(scope="module")
def toy():
    torch.manual_seed(0)
    model, _, tokenizer = load_backbone("toy-vit-tiny", pretrained=None)
    return model, tokenizer


def _text_feature_by_hand(model, ids, pseudo, placeholder):
    """One text through the toy tower written out: embeddings with the placeholder's row
    replaced, positions, transformer, final norm, the end-of-text state, projection."""
    rows = [pseudo if t == placeholder else model.token_embedding.weight[t] for t in ids.tolist()]
    x = torch.stack(rows)[None] + model.positional_embedding
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask))[0]
    return x[int(ids.argmax())] @ model.text_projection


def test_mapping_loss_equals_a_loop(toy):
    model, tokenizer = toy
    gen = torch.Generator().manual_seed(3)
    b, width = 5, model.token_embedding.embedding_dim
    images = torch.randn(b, 128, generator=gen)
    pseudo = 0.1 * torch.randn(b, width, generator=gen)
    star = placeholder_id(tokenizer, "*")
    tokens = tokenizer(["* , make it red"])[0]
    scale = 7.5
    with torch.no_grad():
        got = pseudo_word_contrastive_loss(model, images, pseudo, tokens, star, scale)
        texts = [_text_feature_by_hand(model, tokens, pseudo[i], star) for i in range(b)]
        s = [
            [scale * float(F.cosine_similarity(images[i], texts[j], dim=0)) for j in range(b)]
            for i in range(b)
        ]
        image_to_text = sum(
            -s[i][i] + math.log(sum(math.exp(s[i][j]) for j in range(b))) for i in range(b)
        )
        text_to_image = sum(
            -s[j][j] + math.log(sum(math.exp(s[i][j]) for i in range(b))) for j in range(b)
        )
    want = 0.5 * (image_to_text + text_to_image) / b
    assert float(got) == pytest.approx(want, rel=1e-5)


def test_limiting_case_perfect_alignment(toy):
    """When the text of image i *is* image i's direction and the scale is large, the loss is ~0;
    when every image and every pseudo-word is the same, it is log B (nothing to tell apart)."""
    model, tokenizer = toy
    star = placeholder_id(tokenizer, "*")
    tokens = tokenizer(["*"])[0]
    pseudo = 0.1 * torch.randn(4, model.token_embedding.embedding_dim)
    with torch.no_grad():
        same = pseudo[:1].expand(4, -1)
        one_image = torch.randn(1, 128).expand(4, -1)
        chance = pseudo_word_contrastive_loss(model, one_image, same, tokens, star, 10.0)
        assert float(chance) == pytest.approx(math.log(4), rel=1e-4)
        texts = encode_text_with_pseudo_tokens(model, tokens.expand(4, -1), pseudo, star)
        aligned = pseudo_word_contrastive_loss(model, texts, pseudo, tokens, star, 1e4)
    assert float(aligned) < 1e-3


def test_queries_are_the_template_with_the_pseudo_word(toy):
    model, tokenizer = toy
    star = placeholder_id(tokenizer, "*")
    table = model.token_embedding.weight
    # the pseudo-word of a real word gives that sentence's own feature
    pseudo = table[[tokenizer.index["circle"], tokenizer.index["triangle"]]].detach()
    q = pseudo_word_queries(model, tokenizer, pseudo, ["make it red", "remove the circle"])
    with torch.no_grad():
        want = model.encode_text(
            tokenizer(["circle , make it red", "triangle , remove the circle"])
        )
    torch.testing.assert_close(q, F.normalize(want, dim=-1), rtol=1e-5, atol=1e-6)
    assert star == tokenizer.index["<unk>"]
    with pytest.raises(ValueError, match="needs '\\{\\}'"):
        pseudo_word_queries(model, tokenizer, pseudo, ["a", "b"], template="*")
