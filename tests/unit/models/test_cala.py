import math

import pytest
import torch
import torch.nn.functional as F

from cirlib.models.cala import CaLa, HingeCrossAttention, TwinAttentionCompositor, spatial_tokens
from cirlib.models.combiner import Combiner

B, N, L, WI, WT, D = 3, 9, 7, 6, 5, 8


def _inputs(dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    ref = torch.randn(B, N, WI, generator=g, dtype=dtype)
    tgt = torch.randn(B, N, WI, generator=g, dtype=dtype)
    text = torch.randn(B, L, WT, generator=g, dtype=dtype)
    lengths = torch.tensor([L, 4, 2])
    mask = torch.arange(L)[None, :] < lengths[:, None]
    return ref, text, mask, tgt


def test_hinge_shapes():
    hca = HingeCrossAttention(WI, WT, D).eval()
    ref, text, mask, tgt = _inputs()
    m = hca.maps(ref, text, mask, tgt[:, :4])  # target may have another token count
    assert m["reference_to_text"].shape == (B, N, L)
    assert m["text_to_target"].shape == (B, L, 4)
    assert m["logits"].shape == m["attention"].shape == (B, N, 4)
    torch.testing.assert_close(m["attention"].sum(-1), torch.ones(B, N))
    assert hca(ref, text, mask, tgt).shape == (B, D)


def _adapt(lin, x):
    return torch.relu(x @ lin.weight.T + lin.bias)


def test_hinge_matches_a_loop_over_text_tokens(dtype):
    """Brute force: the two-hop score of (n, m) is a sum over *real* text tokens l of
    a[n, l] * b[l, m]; the pseudo-target is the mean over n of the attention-weighted values."""
    torch.manual_seed(0)
    hca = HingeCrossAttention(WI, WT, D).to(dtype).eval()
    ref, text, mask, tgt = _inputs(dtype)
    lin = hca.image_adapter[0]
    expected = torch.zeros(B, D, dtype=dtype)
    for i in range(B):
        r, g = _adapt(lin, ref[i]), _adapt(lin, tgt[i])
        q = hca.reference_query(r)
        k, v = hca.target_key(g), hca.target_value(g)
        h = hca.hinge(text[i])
        pseudo = torch.zeros(N, D, dtype=dtype)
        for n in range(N):
            scores = torch.zeros(N, dtype=dtype)
            for m in range(N):
                for t in range(L):
                    if mask[i, t]:
                        a = q[n] @ h[t] / math.sqrt(D)
                        b = h[t] @ k[m] / math.sqrt(D)
                        scores[m] += a * b
            pseudo[n] = torch.softmax(scores, 0) @ v
        expected[i] = pseudo.mean(0)
    torch.testing.assert_close(hca(ref, text, mask, tgt), expected)


def test_padded_text_tokens_do_not_matter():
    hca = HingeCrossAttention(WI, WT, D).eval()
    ref, text, mask, tgt = _inputs()
    before = hca.maps(ref, text, mask, tgt)
    out = hca(ref, text, mask, tgt)
    scrambled = text.clone()
    scrambled[~mask] = 1e3 * torch.randn(int((~mask).sum()), WT)
    after = hca.maps(ref, scrambled, mask, tgt)
    for key in ("logits", "attention", "values"):
        torch.testing.assert_close(after[key], before[key])
    torch.testing.assert_close(hca(ref, scrambled, mask, tgt), out)
    # ... while a real token does matter (so the check above can fail)
    changed = text.clone()
    changed[1, 0] += 1.0
    assert not torch.allclose(hca(ref, changed, mask, tgt), out)
    # and so would the padded ones, without the mask
    everything = torch.ones_like(mask)
    assert not torch.allclose(hca(ref, scrambled, everything, tgt), hca(ref, text, everything, tgt))


def test_hinge_dropout_only_in_training():
    hca = HingeCrossAttention(WI, WT, D, dropout=0.5)
    ref, text, mask, tgt = _inputs()
    hca.eval()
    assert torch.equal(hca(ref, text, mask, tgt), hca(ref, text, mask, tgt))
    hca.train()
    torch.manual_seed(0)
    a = hca(ref, text, mask, tgt)
    torch.manual_seed(1)
    assert not torch.equal(a, hca(ref, text, mask, tgt))


def _attention_by_hand(layer, query, key, value):
    """Single-head scaled dot-product attention written out from the layer's weights."""
    d = query.shape[-1]
    wq, wk, wv = layer.in_proj_weight.split(d)
    bq, bk, bv = layer.in_proj_bias.split(d)
    q, k, v = query @ wq.T + bq, key @ wk.T + bk, value @ wv.T + bv
    weights = torch.softmax(q @ k.T / math.sqrt(d), dim=-1)
    return (weights @ v) @ layer.out_proj.weight.T + layer.out_proj.bias


def test_compositor_matches_the_chains_written_out(dtype):
    torch.manual_seed(0)
    tac = TwinAttentionCompositor(WI, D, layers=3).to(dtype).eval()
    ref, _, _, tgt = _inputs(dtype)
    lin = tac.image_adapter[0]
    expected = []
    for i in range(B):
        r = torch.cat([tac.token[None], _adapt(lin, ref[i])])
        g = torch.cat([tac.token[None], _adapt(lin, tgt[i])])
        o1, o2 = g, r
        for k in range(3):
            o1 = _attention_by_hand(tac.reference_layers[k], r, o1, o1)
            o2 = _attention_by_hand(tac.target_layers[k], g, o2, o2)
        expected.append((o1[0] + o2[0]) / 2)
    torch.testing.assert_close(tac(ref, tgt), torch.stack(expected))


def test_compositor_layers_are_separate_and_the_token_is_learned():
    tac = TwinAttentionCompositor(WI, D, layers=4)
    layers = list(tac.reference_layers) + list(tac.target_layers)
    assert len({id(m) for m in layers}) == 8
    weights = {m.in_proj_weight.data_ptr() for m in layers}
    assert len(weights) == 8  # no shared storage either
    assert isinstance(tac.token, torch.nn.Parameter) and tac.token.requires_grad
    ref, _, _, tgt = _inputs()
    tac.eval()
    assert torch.equal(tac(ref, tgt), tac(ref, tgt))  # a random token would differ per call
    out = tac(ref, tgt)
    out.sum().backward()
    assert tac.token.grad is not None and tac.token.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        TwinAttentionCompositor(WI, D, layers=0)


def test_compositor_depends_on_both_images():
    tac = TwinAttentionCompositor(WI, D).eval()
    ref, _, _, tgt = _inputs()
    out = tac(ref, tgt)
    assert out.shape == (B, D)
    assert not torch.allclose(tac(ref, tgt.flip(0)), out)
    assert not torch.allclose(tac(ref.flip(0), tgt), out)


def test_spatial_tokens_are_positions_and_view_is_not():
    fmap = torch.randn(2, 5, 3, 4)  # [B, C, h, w]
    tokens = spatial_tokens(fmap)
    assert tokens.shape == (2, 12, 5)
    for i in range(3):
        for j in range(4):
            torch.testing.assert_close(tokens[:, i * 4 + j], fmap[:, :, i, j])
    scrambled = fmap.view(2, 12, 5)  # the released code's reshape
    assert not torch.allclose(scrambled, tokens)
    # its token 0 is the first 5 numbers of channel 0: four of row 0 and one of row 1
    expected = torch.cat([fmap[:, 0, 0, :4], fmap[:, 0, 1, :1]], dim=1)
    torch.testing.assert_close(scrambled[:, 0], expected)


def test_cala_starts_from_the_baselines_weights_and_forward_is_the_combiner():
    torch.manual_seed(3)
    baseline = Combiner(D)
    torch.manual_seed(3)
    cala = CaLa(D, WI, WT)
    base_state = baseline.state_dict()
    for k, v in cala.combiner.state_dict().items():
        assert torch.equal(v, base_state[k]), k
    cala.eval(), baseline.eval()
    x, t = torch.randn(4, D), torch.randn(4, D)
    assert torch.equal(cala(x, t), baseline(x, t))
    torch.testing.assert_close(cala(x, t).norm(dim=-1), torch.ones(4))


def test_forward_never_runs_the_training_only_modules():
    cala = CaLa(D, WI, WT).eval()
    called = []
    for name, module in cala.training_only_modules().items():
        module.register_forward_hook(lambda *_, name=name: called.append(name))
    cala(torch.randn(2, D), torch.randn(2, D))
    assert called == []
    ref, text, mask, tgt = _inputs()
    cala.hinge(ref, text, mask, tgt)
    assert called == ["hinge"]  # the hooks do fire when the branch runs


def test_complementary_text_uses_the_combiners_text_projection():
    cala = CaLa(D, WI, WT)
    t = torch.randn(4, D)
    u = cala.complementary_text(t)
    assert u.shape == (4, D)
    expected = cala.text_head(F.relu(cala.combiner.text_projection(t)))
    torch.testing.assert_close(u, expected)
    u.sum().backward()
    assert cala.combiner.text_projection.weight.grad.abs().sum() > 0
    assert cala.combiner.image_projection.weight.grad is None


def test_narrower_branches_still_meet_the_query_and_text_widths():
    cala = CaLa(D, WI, WT, branch_dim=4, compositor_layers=2).eval()
    ref, text, mask, tgt = _inputs()
    assert cala.hinge(ref, text, mask, tgt).shape == (B, D)  # compared with the query [B, D]
    assert cala.compositor(ref, tgt).shape == (B, 4)
    assert cala.complementary_text(torch.randn(B, D)).shape == (B, 4)
    assert len(cala.compositor.reference_layers) == 2
