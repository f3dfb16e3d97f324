import math

import pytest
import torch
import torch.nn.functional as F

from cirlib.losses import batch_classification_loss
from cirlib.losses.cala_losses import (
    additive_cala_loss,
    convex_cala_loss,
    cosine_logits,
    diagonal_cross_entropy,
)


def _ce_loop(logits):
    """Mean over rows of -log softmax(row)[own column], with Python floats."""
    total = 0.0
    for i, row in enumerate(logits.tolist()):
        m = max(row)
        total += m + math.log(sum(math.exp(x - m) for x in row)) - row[i]
    return total / len(logits)


def _logits(dtype, seed, b=6):
    g = torch.Generator().manual_seed(seed)
    return [5 * torch.randn(b, b, generator=g, dtype=dtype) for _ in range(3)]


def test_cosine_logits_match_a_loop(dtype, device):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 3, generator=g, dtype=dtype).to(device)
    b = 3 * torch.randn(4, 3, generator=g, dtype=dtype).to(device)
    got = cosine_logits(a, b, 10.0)
    for i in range(4):
        for j in range(4):
            cos = float(a[i] @ b[j]) / (float(a[i].norm()) * float(b[j].norm()))
            assert got[i, j].item() == pytest.approx(10 * cos, rel=1e-5, abs=1e-5)
    # scale-free in the inputs' norms: a branch cannot win by inflating them
    torch.testing.assert_close(cosine_logits(7 * a, b, 10.0), got)


def test_diagonal_cross_entropy_matches_a_loop(dtype):
    s, _, _ = _logits(dtype, 0)
    assert diagonal_cross_entropy(s).item() == pytest.approx(_ce_loop(s), rel=1e-5)


def test_additive_matches_a_loop(dtype):
    qtm, tbia, ctr = _logits(dtype, 1)
    for alpha, beta in ((0.5, 0.5), (0.1, 2.0), (0.0, 1.0), (1.0, 0.0)):
        expected = _ce_loop(qtm) + alpha * _ce_loop(tbia) + beta * _ce_loop(ctr)
        got = additive_cala_loss(qtm, tbia, ctr, alpha=alpha, beta=beta)
        assert got.item() == pytest.approx(expected, rel=1e-5)


def test_additive_without_branches_is_the_bbc_loss():
    g = torch.Generator().manual_seed(2)
    q = F.normalize(torch.randn(5, 4, generator=g), dim=-1)
    t = F.normalize(torch.randn(5, 4, generator=g), dim=-1)
    got = additive_cala_loss(100 * q @ t.T, alpha=0.0, beta=0.0)
    torch.testing.assert_close(got, batch_classification_loss(q, t, 100.0))


def _convex_loop(qtm, tbia, ctr, tac, hca):
    mixed = [
        [tac * c + (1 - tac) * q for c, q in zip(cr, qr)]
        for cr, qr in zip(ctr.tolist(), qtm.tolist())
    ]
    return hca * _ce_loop(tbia) + (1 - hca) * _ce_loop(torch.tensor(mixed, dtype=torch.float64))


def test_convex_matches_a_loop(dtype):
    qtm, tbia, ctr = _logits(dtype, 3)
    for tac, hca in ((0.45, 0.1), (0.1, 0.1), (0.0, 0.3), (1.0, 0.0), (0.7, 1.0)):
        got = convex_cala_loss(qtm, tbia, ctr, tac_weight=tac, hca_weight=hca)
        assert got.item() == pytest.approx(_convex_loop(qtm, tbia, ctr, tac, hca), rel=1e-5)


def test_convex_limits():
    qtm, tbia, ctr = _logits(torch.float64, 4)
    torch.testing.assert_close(
        convex_cala_loss(qtm, tac_weight=0.0, hca_weight=0.0).double(),
        diagonal_cross_entropy(qtm).double(),
    )
    # CTR logits enter *inside* the softmax: w_t = 1 keeps CTR and drops QTM entirely
    torch.testing.assert_close(
        convex_cala_loss(qtm, tbia, ctr, tac_weight=1.0, hca_weight=0.0),
        diagonal_cross_entropy(ctr),
    )
    torch.testing.assert_close(
        convex_cala_loss(qtm, tbia, ctr, tac_weight=0.3, hca_weight=1.0),
        diagonal_cross_entropy(tbia),
    )
    # ... and so the convex form is not the additive one with matching weights
    convex = convex_cala_loss(qtm, tbia, ctr, tac_weight=0.45, hca_weight=0.1)
    additive = 0.1 * diagonal_cross_entropy(tbia) + 0.9 * (
        0.45 * diagonal_cross_entropy(ctr) + 0.55 * diagonal_cross_entropy(qtm)
    )
    assert not torch.isclose(convex, additive)


def test_weights_need_their_logits_and_convex_weights_are_checked():
    qtm, tbia, ctr = _logits(torch.float32, 5)
    with pytest.raises(ValueError, match="TBIA"):
        additive_cala_loss(qtm, None, ctr, alpha=0.5, beta=0.5)
    with pytest.raises(ValueError, match="CTR"):
        convex_cala_loss(qtm, tbia, None, tac_weight=0.45, hca_weight=0.1)
    with pytest.raises(ValueError, match="convex"):
        convex_cala_loss(qtm, tbia, ctr, tac_weight=1.5, hca_weight=0.1)


def test_gradients_reach_every_term():
    qtm, tbia, ctr = (x.requires_grad_() for x in _logits(torch.float32, 6))
    for loss in (
        additive_cala_loss(qtm, tbia, ctr, alpha=0.5, beta=0.5),
        convex_cala_loss(qtm, tbia, ctr, tac_weight=0.45, hca_weight=0.1),
    ):
        grads = torch.autograd.grad(loss, (qtm, tbia, ctr))
        assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)
