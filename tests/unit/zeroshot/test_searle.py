"""SEARLE-style OTI: the inversion loss against a loop and inversion lowering it (the distillation
through the registered method: tests/unit/zeroshot/test_methods.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cirlib.models.backbone import load_backbone
from cirlib.models.pseudo_tokens import encode_text_with_pseudo_tokens, placeholder_id
from cirlib.zeroshot.oti import inversion_loss, invert_images


@pytest.fixture(scope="module")
def toy():
    torch.manual_seed(0)
    model, _, tokenizer = load_backbone("toy-vit-tiny", pretrained=None)
    return model, tokenizer


def test_inversion_loss_equals_a_loop(toy):
    model, tokenizer = toy
    star = placeholder_id(tokenizer, "*")
    tokens = tokenizer(["*"])[0]
    gen = torch.Generator().manual_seed(2)
    images = torch.randn(3, 128, generator=gen)
    pseudo = torch.randn(3, model.token_embedding.embedding_dim, generator=gen)
    with torch.no_grad():
        got = inversion_loss(model, images, pseudo, tokens, star)
        terms = []
        for i in range(3):
            t = encode_text_with_pseudo_tokens(model, tokens[None], pseudo[i : i + 1], star)[0]
            terms.append(1 - float(t @ images[i]) / float(t.norm() * images[i].norm()))
    assert float(got) == pytest.approx(sum(terms) / 3, rel=1e-5)


def test_inversion_finds_a_pseudo_word_for_each_image(toy):
    model, tokenizer = toy
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # targets the tower can reach: text features of three real sentences
    with torch.no_grad():
        images = model.encode_text(tokenizer(["red circle", "blue triangle", "small rectangle"]))
    v, history = invert_images(model, tokenizer, images, steps=60, lr=5e-2, seed=1)
    assert v.shape == (3, model.token_embedding.embedding_dim) and not v.requires_grad
    assert len(history) == 60 and history[-1] < 0.3 * history[0]
    star = placeholder_id(tokenizer, "*")
    with torch.no_grad():
        texts = encode_text_with_pseudo_tokens(model, tokenizer(["*"] * 3), v, star)
    cos = F.normalize(texts, dim=-1) @ F.normalize(images, dim=-1).T
    # each averaged pseudo-word is closest to its own image
    assert torch.equal(cos.argmax(dim=1), torch.arange(3))
    assert all(torch.equal(before[k], x) for k, x in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())  # unfrozen again


def test_tensor_digest_tells_contents_apart():
    from cirlib.zeroshot.tensor_digest import tensor_digest

    x = torch.arange(6.0).reshape(2, 3)
    assert tensor_digest(x) == tensor_digest(x.clone())
    assert tensor_digest(x) != tensor_digest(x.flip(0))
    assert tensor_digest(x) != tensor_digest(x.reshape(3, 2))  # same bytes, other shape
    assert tensor_digest(x) != tensor_digest(x.double())
    assert tensor_digest(x.T) == tensor_digest(x.T.contiguous())
