import math

import pytest
import torch
import torch.nn.functional as F

from cirlib.losses import batch_classification_loss, clip_contrastive_loss


def _brute_bbc(q, t, s):
    total = 0.0
    for i in range(len(q)):
        logits = [s * float(q[i] @ t[j]) for j in range(len(t))]
        m = max(logits)
        log_z = m + math.log(sum(math.exp(x - m) for x in logits))
        total += log_z - logits[i]
    return total / len(q)


def test_bbc_matches_brute_force_loop(dtype, device):
    g = torch.Generator().manual_seed(0)
    q = F.normalize(torch.randn(7, 5, generator=g, dtype=dtype), dim=-1).to(device)
    t = F.normalize(torch.randn(7, 5, generator=g, dtype=dtype), dim=-1).to(device)
    for s in (1.0, 10.0, 100.0):
        got = batch_classification_loss(q, t, scale=s)
        assert got.item() == pytest.approx(_brute_bbc(q.cpu(), t.cpu(), s), rel=1e-5, abs=1e-5)


def test_bbc_limits():
    # identical orthonormal queries and targets at a large scale: loss -> 0
    eye = torch.eye(4)
    assert batch_classification_loss(eye, eye, scale=100.0).item() < 1e-30 + 1e-6
    # scale 0: every target equally likely, loss = log B
    q = F.normalize(torch.randn(6, 3), dim=-1)
    assert batch_classification_loss(q, q, scale=0.0).item() == pytest.approx(math.log(6))


def test_clip_loss_matches_brute_force_and_is_symmetric():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    xn, yn = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
    s = 7.0
    i2t = _brute_bbc(xn, yn, s)
    t2i = _brute_bbc(yn, xn, s)
    assert clip_contrastive_loss(x, y, s).item() == pytest.approx((i2t + t2i) / 2, rel=1e-5)
    assert clip_contrastive_loss(x, y, s).item() == pytest.approx(
        clip_contrastive_loss(y, x, s).item(), rel=1e-6
    )


def test_losses_have_finite_gradients():
    q = torch.randn(8, 6, requires_grad=True)
    t = torch.randn(8, 6, requires_grad=True)
    loss = batch_classification_loss(F.normalize(q, dim=-1), F.normalize(t, dim=-1))
    loss.backward()
    assert torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0
