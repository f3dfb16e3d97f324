"""DQE-CIR's loss pieces against brute-force Python loops, and their limiting cases."""

import math

import pytest
import torch
import torch.nn.functional as F

from cirlib.losses import (
    attribute_margin_loss,
    margin_ranking_loss,
    pairwise_preference_loss,
    target_distribution_kl_loss,
    target_relative_distribution,
)


def _scores(b, k, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    pos = (torch.rand(b, generator=g, dtype=dtype) * 2 - 1).to(device)
    neg = (torch.rand(b, k, generator=g, dtype=dtype) * 2 - 1).to(device)
    return pos, neg


def _log_sigmoid(x):
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


# --- pairwise preference -----------------------------------------------------------------------


def test_pairwise_matches_brute_force_loop(dtype, device):
    pos, neg = _scores(5, 3, dtype, device)
    for tau in (0.05, 0.5, 2.0):
        expected = 0.0
        for i in range(5):
            for k in range(3):
                expected -= _log_sigmoid((float(pos[i]) - float(neg[i, k])) / tau)
        expected /= 15
        got = pairwise_preference_loss(pos, neg, tau).item()
        assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_pairwise_limits():
    pos = torch.tensor([0.3, -0.2])
    # a tie costs log 2 whatever the temperature
    assert pairwise_preference_loss(pos, pos[:, None], 0.07).item() == pytest.approx(math.log(2))
    # target far ahead: loss -> 0; far behind: loss -> gap / tau (linear, no saturation)
    ahead = pairwise_preference_loss(torch.tensor([1.0]), torch.tensor([[-1.0]]), 0.01)
    assert ahead.item() < 1e-30 + 1e-12
    behind = pairwise_preference_loss(torch.tensor([-1.0]), torch.tensor([[1.0]]), 0.01)
    assert behind.item() == pytest.approx(200.0, rel=1e-6)


# --- margin ranking ----------------------------------------------------------------------------


def test_margin_ranking_matches_brute_force_loop(dtype, device):
    pos, neg = _scores(6, 4, dtype, device, seed=1)
    for m in (0.0, 0.1, 0.5):
        terms = [max(0.0, m - float(pos[i]) + float(neg[i, k])) for i in range(6) for k in range(4)]
        got = margin_ranking_loss(pos, neg, m).item()
        assert got == pytest.approx(sum(terms) / len(terms), rel=1e-5, abs=1e-6)


def test_margin_ranking_limits():
    # every pair separated by more than the margin: exactly zero (and zero gradient)
    pos = torch.tensor([0.9, 0.8], requires_grad=True)
    neg = torch.tensor([[0.1, 0.2], [0.0, 0.3]], requires_grad=True)
    loss = margin_ranking_loss(pos, neg, 0.2)
    loss.backward()
    assert loss.item() == 0.0 and pos.grad.abs().sum() == 0 and neg.grad.abs().sum() == 0
    # margin 0 and a negative ahead by d: loss = d (averaged over the pairs)
    got = margin_ranking_loss(torch.tensor([0.1]), torch.tensor([[0.4, 0.0]]), 0.0)
    assert got.item() == pytest.approx(0.3 / 2)


# --- KL to a target distribution -----------------------------------------------------------------


def test_kl_matches_brute_force_loop(dtype, device):
    pos, neg = _scores(4, 3, dtype, device, seed=2)
    g = torch.Generator().manual_seed(3)
    p = torch.softmax(torch.randn(4, 4, generator=g, dtype=dtype), dim=1).to(device)
    p[0] = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=dtype)  # zeros in p contribute nothing
    tau = 0.1
    expected = 0.0
    for i in range(4):
        logits = [float(pos[i]) / tau] + [float(neg[i, k]) / tau for k in range(3)]
        m = max(logits)
        log_z = m + math.log(sum(math.exp(x - m) for x in logits))
        for k in range(4):
            pk = float(p[i, k])
            if pk > 0:
                expected += pk * (math.log(pk) - (logits[k] - log_z))
    expected /= 4
    got = target_distribution_kl_loss(pos, neg, p, tau).item()
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_kl_limits():
    pos, neg = _scores(5, 3, torch.float64, "cpu", seed=4)
    tau = 0.2
    model = torch.softmax(torch.cat([pos[:, None], neg], 1) / tau, dim=1)
    # the model already matches the target distribution: KL = 0
    assert target_distribution_kl_loss(pos, neg, model, tau).item() == pytest.approx(0, abs=1e-12)
    # one-hot on the target: cross-entropy of the target among its negatives
    one_hot = torch.zeros(5, 4, dtype=torch.float64)
    one_hot[:, 0] = 1
    ce = F.cross_entropy(torch.cat([pos[:, None], neg], 1) / tau, torch.zeros(5, dtype=torch.long))
    assert target_distribution_kl_loss(pos, neg, one_hot, tau).item() == pytest.approx(ce.item())
    # ... and with a single negative it is exactly the pairwise logistic loss
    got = target_distribution_kl_loss(pos, neg[:, :1], one_hot[:, :2], tau)
    assert got.item() == pytest.approx(pairwise_preference_loss(pos, neg[:, :1], tau).item())


def test_target_relative_distribution():
    rel = torch.tensor([[0.2, 0.9], [1.0, -1.0]])
    p = target_relative_distribution(rel, 0.1)
    torch.testing.assert_close(p.sum(1), torch.ones(2))
    # written out: weights exp(cos / tau), target's cos = 1
    w = torch.exp(torch.tensor([[1.0, 0.2, 0.9], [1.0, 1.0, -1.0]]) / 0.1)
    torch.testing.assert_close(p, w / w.sum(1, keepdim=True))
    # a negative identical to the target shares its mass equally
    assert p[1, 0].item() == pytest.approx(p[1, 1].item())
    # tau -> 0: one-hot on the target for every negative less similar than the target itself
    sharp = target_relative_distribution(torch.tensor([[0.99, 0.5]]), 1e-4)
    torch.testing.assert_close(sharp, torch.tensor([[1.0, 0.0, 0.0]]))


# --- attribute margin --------------------------------------------------------------------------


def _unit(*shape, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=dtype), dim=-1)


def test_attribute_margin_matches_brute_force_loop(dtype, device):
    b, k, a, e = 4, 3, 2, 5
    q = _unit(b, a, e, seed=5, dtype=dtype).to(device)
    t = _unit(b, a, e, seed=6, dtype=dtype).to(device)
    n = _unit(b, k, a, e, seed=7, dtype=dtype).to(device)
    gates = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]], dtype=dtype).to(device)
    m = 0.3
    total, weight = 0.0, 0.0
    for i in range(b):
        for j in range(a):
            g = float(gates[i, j])
            weight += g * k
            for kk in range(k):
                pos = sum(float(q[i, j, x]) * float(t[i, j, x]) for x in range(e))
                neg = sum(float(q[i, j, x]) * float(n[i, kk, j, x]) for x in range(e))
                total += g * max(0.0, m - pos + neg)
    got = attribute_margin_loss(q, t, n, m, gates).item()
    assert got == pytest.approx(total / weight, rel=1e-5, abs=1e-6)


def test_attribute_margin_limits():
    q, t = _unit(3, 2, 4, seed=8), _unit(3, 2, 4, seed=9)
    n = _unit(3, 2, 2, 4, seed=10)
    # no gate open: zero, still differentiable
    q.requires_grad_(True)
    zero = attribute_margin_loss(q, t, n, 0.2, torch.zeros(3, 2))
    zero.backward()
    assert zero.item() == 0.0
    # gates None == every gate open
    ones = attribute_margin_loss(q, t, n, 0.2, torch.ones(3, 2))
    assert attribute_margin_loss(q, t, n, 0.2).item() == pytest.approx(ones.item())
    # a negative equal to the target: every hinge sits exactly at the margin
    same = t[:, None].expand(3, 2, 2, 4)
    assert attribute_margin_loss(q, t, same, 0.25).item() == pytest.approx(0.25)
    # the query equal to the target and negatives orthogonal to it: loss = max(0, m - 1)
    ortho = torch.zeros(1, 1, 1, 2)
    ortho[..., 1] = 1.0
    e0 = torch.tensor([[[1.0, 0.0]]])
    assert attribute_margin_loss(e0, e0, ortho, 0.5).item() == 0.0
    assert attribute_margin_loss(e0, e0, ortho, 1.5).item() == pytest.approx(0.5)
