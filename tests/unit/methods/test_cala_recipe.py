"""CaLa's recipe on synthetic cached features. (Not named test_cala.py: pytest's default import
mode refuses two test modules with one basename, and tests/unit/models/test_cala.py exists.)"""

import pytest
import torch
import torch.nn.functional as F

from cirlib.config import resolve
from cirlib.data.features import SplitFeatures
from cirlib.losses.cala_losses import diagonal_cross_entropy
from cirlib.methods.cala import (
    build_cala,
    cala_logits,
    cala_loss,
    cala_queries,
    pair_and_text_embeddings,
    pair_to_text_ranks,
    train_cala,
)
from cirlib.methods.combiner import combiner_loss, combiner_queries, train_combiner

N_IMG, Q, D, T, WI, L, WT = 40, 64, 8, 9, 6, 10, 5
MAX_LEN = 7  # texts are shorter than the token tensor, as in the toy world (12 of 32)


@pytest.fixture
def features():
    g = torch.Generator().manual_seed(0)
    ref = torch.randint(0, N_IMG, (Q,), generator=g)
    tgt = (ref + 1 + torch.randint(0, N_IMG - 1, (Q,), generator=g)) % N_IMG
    lengths = torch.randint(2, MAX_LEN + 1, (Q,), generator=g)
    images = torch.randn(N_IMG, D, generator=g)
    return SplitFeatures(
        images=images,
        texts=images[tgt] - images[ref] + 0.1 * torch.randn(Q, D, generator=g),
        reference_index=ref,
        target_index=tgt,
        image_tokens=torch.randn(N_IMG, T, WI, generator=g).half(),
        text_tokens=torch.randn(Q, L, WT, generator=g).half(),
        text_mask=torch.arange(L)[None, :] < lengths[:, None],
    )


@pytest.fixture
def cfg():
    return resolve("smoke", epochs=3, batch_size=16, lr=1e-3, device="cpu")


def test_build_needs_tokens(features):
    model = build_cala(features)
    assert model.hinge.hinge.in_features == WT and model.hinge.image_adapter[0].in_features == WI
    with pytest.raises(ValueError, match="tokens=True"):
        build_cala(SplitFeatures(features.images, features.texts, features.reference_index,
                                 features.target_index))  # fmt: skip


def test_without_branches_training_is_exactly_the_combiners(features, cfg):
    """Same seed, branches present in the model but switched off: the same Combiner weights
    and bit-identical queries, so the branches add nothing by merely existing."""
    base = train_combiner(features, cfg, seed=1)
    cala = train_cala(features, cfg, seed=1, branches=())
    assert torch.equal(cala_queries(cala.model, features), combiner_queries(base.model, features))
    assert [h["loss"] for h in cala.history] == [h["loss"] for h in base.history]


def test_inference_never_touches_the_branches(features, cfg):
    trained = train_cala(features, cfg, seed=0).model
    before = cala_queries(trained, features)
    torch.testing.assert_close(before, combiner_queries(trained.combiner, features), rtol=0, atol=0)

    class Tripwire(torch.nn.Module):
        def forward(self, *args, **kwargs):
            raise AssertionError("a training-only branch ran at inference")

    for name in trained.training_only_modules():
        setattr(trained, name, Tripwire())
    assert torch.equal(cala_queries(trained, features), before)


def test_every_branch_and_form_changes_the_combiners_gradient(features):
    model = build_cala(features).eval()  # eval: no dropout, so the only difference is the loss
    idx = torch.arange(16)
    params = list(model.combiner.parameters())

    def combiner_grads(**options):
        loss = cala_loss(features, **options)(model, idx)
        return torch.autograd.grad(loss, params, allow_unused=True)

    base = combiner_grads(branches=())
    for branches in (("tbia",), ("ctr",), ("tbia", "ctr")):
        for combination in ("additive", "convex"):
            grads = combiner_grads(branches=branches, combination=combination)
            assert any(g is not None and not torch.allclose(g, b) for g, b in zip(grads, base)), (
                branches,
                combination,
            )


def _batch(features, idx):
    r, t = features.reference_index[idx], features.target_index[idx]
    return {
        "reference": features.images[r],
        "text": features.texts[idx],
        "target": F.normalize(features.images[t], dim=-1),
        "reference_tokens": features.image_tokens[r].float(),
        "target_tokens": features.image_tokens[t].float(),
        "text_tokens": features.text_tokens[idx].float(),
        "text_mask": features.text_mask[idx],
    }


def test_each_branch_alone_sends_gradient_where_intended(features):
    model = build_cala(features).eval()
    s = cala_logits(model, _batch(features, torch.arange(12)))
    assert all(s[k].shape == (12, 12) for k in ("qtm", "tbia", "ctr"))
    c = model.combiner
    # TBIA compares the pseudo-target with the composed query: the whole Combiner learns
    grads = torch.autograd.grad(diagonal_cross_entropy(s["tbia"]), [c.output.weight, c.image_projection.weight], retain_graph=True)  # fmt: skip
    assert all(g.abs().sum() > 0 for g in grads)
    # CTR compares the fused images with the Combiner's text projection: only that part learns
    ctr = diagonal_cross_entropy(s["ctr"])
    g_text, g_out = torch.autograd.grad(
        ctr, [c.text_projection.weight, c.output.weight], allow_unused=True
    )
    assert g_text.abs().sum() > 0 and g_out is None


def test_loss_fn_forms(features):
    idx = torch.arange(16)
    model = build_cala(features).eval()
    plain = cala_loss(features, branches=())(model, idx)
    torch.testing.assert_close(plain, combiner_loss(features)(model.combiner, idx))
    s = cala_logits(model, _batch(features, idx))
    ce = {k: diagonal_cross_entropy(v) for k, v in s.items()}
    got = cala_loss(features, alpha=0.3, beta=0.7)(model, idx)
    torch.testing.assert_close(got, ce["qtm"] + 0.3 * ce["tbia"] + 0.7 * ce["ctr"])
    got = cala_loss(features, branches=("tbia",), alpha=0.3, beta=0.7)(model, idx)
    torch.testing.assert_close(got, ce["qtm"] + 0.3 * ce["tbia"])
    got = cala_loss(features, combination="convex", tac_weight=0.4, hca_weight=0.2)(model, idx)
    mixed = diagonal_cross_entropy(0.4 * s["ctr"] + 0.6 * s["qtm"])
    torch.testing.assert_close(got, 0.2 * ce["tbia"] + 0.8 * mixed)
    got = cala_loss(features, branches=("ctr",), combination="convex", tac_weight=0.4)(model, idx)
    torch.testing.assert_close(got, mixed)
    with pytest.raises(ValueError, match="branch"):
        cala_loss(features, branches=("tbia", "hinge"))
    with pytest.raises(ValueError, match="combination"):
        cala_loss(features, combination="sum")


def test_pair_and_text_embeddings(features):
    model = build_cala(features)
    pairs, texts = pair_and_text_embeddings(model, features, batch_size=10)
    assert pairs.shape == texts.shape == (Q, D)
    torch.testing.assert_close(pairs.norm(dim=-1), torch.ones(Q))
    r = features.image_tokens[features.reference_index[:3]].float()
    t = features.image_tokens[features.target_index[:3]].float()
    torch.testing.assert_close(pairs[:3], F.normalize(model.compositor(r, t), dim=-1))


def test_pair_to_text_ranks_match_a_loop():
    g = torch.Generator().manual_seed(0)
    pairs = F.normalize(torch.randn(9, 4, generator=g), dim=-1)
    texts = F.normalize(torch.randn(9, 4, generator=g), dim=-1)
    captions = ["a", "b", "a", "c", "d", "b", "e", "f", "a"]
    got = pair_to_text_ranks(pairs, texts, captions)
    for i in range(9):
        scores = [float(pairs[i] @ texts[j]) for j in range(9)]
        right = max(s for s, c in zip(scores, captions) if c == captions[i])
        wrong_above = sum(1 for s, c in zip(scores, captions) if c != captions[i] and s > right)
        assert got[i].item() == wrong_above
    # perfect embeddings (each pair equals its own text) rank the right text first
    assert (pair_to_text_ranks(texts, texts, captions) == 0).all()
