"""MAPNet's losses: MSI against a loop over schemas with a brute-force matching, RP against a
double loop over the batch, their limiting cases, and finite gradients."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from cirlib.losses import multi_schema_interaction_loss, relaxed_proximity_loss
from cirlib.losses.multi_schema_interaction import schema_assignment, schema_similarity
from cirlib.losses.relaxed_proximity import negative_confidence

# ---- Multi-Schema Interaction ----------------------------------------------------------------


def _cos(a, b):
    return float(a @ b) / (float(a.norm()) * float(b.norm()))


def test_schema_similarity_is_positive_and_its_log_is_the_cosine_distance(dtype):
    g = torch.Generator().manual_seed(0)
    t, q = (
        torch.randn(2, 4, 6, generator=g, dtype=dtype),
        torch.randn(2, 5, 6, generator=g, dtype=dtype),
    )
    for kappa in (1.0, 0.5):
        c = schema_similarity(t, q, kappa)
        assert c.shape == (2, 4, 5) and (c > 0).all() and (c <= 1 + 1e-6).all()
        for b, i, k in itertools.product(range(2), range(4), range(5)):
            expected = (1 - _cos(t[b, i], q[b, k])) / kappa
            assert -math.log(float(c[b, i, k])) == pytest.approx(expected, abs=1e-5)


def _best_permutation(cost):
    n = len(cost)
    return min(itertools.permutations(range(n)), key=lambda p: sum(cost[i][p[i]] for i in range(n)))


def test_small_tau_assignment_is_the_optimal_matching():
    """At small tau the plan is the optimal transport plan; with uniform marginals and n = m
    that is the minimum-cost permutation, found here by trying all 5! of them."""
    g = torch.Generator().manual_seed(1)
    t = torch.randn(3, 5, 8, generator=g, dtype=torch.float64)
    q = torch.randn(3, 5, 8, generator=g, dtype=torch.float64)
    _, assignment = schema_assignment(t, q, tau=0.005, max_iters=5000, tol=1e-9)
    for b in range(3):
        cost = [[1 - _cos(t[b, i], q[b, k]) for k in range(5)] for i in range(5)]
        assert assignment[b].tolist() == list(_best_permutation(cost))


def test_msi_loss_matches_a_loop_given_the_assignment(dtype):
    g = torch.Generator().manual_seed(2)
    fq = torch.randn(4, 6, 5, generator=g, dtype=dtype)
    ft = torch.randn(4, 6, 5, generator=g, dtype=dtype)
    loss, plan, assignment = multi_schema_interaction_loss(fq, ft, tau=0.1, return_assignment=True)
    assert plan.shape == (4, 6, 6)
    assert torch.equal(assignment, plan.argmax(-1))  # p_i = argmax of the plan's row i
    total = 0.0
    for b in range(4):
        for i in range(6):
            total += 1 - _cos(fq[b, int(assignment[b, i])], ft[b, i])
    assert loss.item() == pytest.approx(total / 24, abs=1e-5)


def test_msi_is_zero_when_query_schemas_are_shuffled_target_schemas():
    g = torch.Generator().manual_seed(3)
    ft = torch.randn(2, 8, 16, generator=g)
    perm = torch.randperm(8, generator=g)
    fq = 3.0 * ft[:, perm]  # scale does not matter: D is a cosine distance
    loss, _, assignment = multi_schema_interaction_loss(fq, ft, return_assignment=True)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert torch.equal(perm[assignment[0]], torch.arange(8))


def test_msi_stops_the_gradient_on_the_target_side():
    g = torch.Generator().manual_seed(4)
    fq = torch.randn(3, 4, 6, generator=g, requires_grad=True)
    ft = torch.randn(3, 4, 6, generator=g, requires_grad=True)
    multi_schema_interaction_loss(fq, ft).backward()
    assert ft.grad is None or (ft.grad == 0).all()
    assert torch.isfinite(fq.grad).all() and fq.grad.abs().sum() > 0


# ---- Relaxed Proximity -----------------------------------------------------------------------


def _brute_rp(q, t, w, gamma):
    n = len(q)
    total = 0.0
    for i in range(n):
        for j in range(n):
            c = (1 + _cos(q[i], t[j])) / 2
            total += float(w[i, j]) * c**2 + max(gamma - float(w[i, j]), 0.0) * (1 - c) ** 2
    return total / n**2


def test_negative_confidence_matches_the_kernel_formula(dtype):
    g = torch.Generator().manual_seed(5)
    t = torch.randn(6, 4, generator=g, dtype=dtype)
    sigma = 0.6
    w = negative_confidence(t, sigma)
    for i, j in itertools.product(range(6), range(6)):
        a, b = F.normalize(t[i], dim=0), F.normalize(t[j], dim=0)
        expected = 0.0 if i == j else 1 - math.exp(-float((a - b).pow(2).sum()) / (2 * sigma**2))
        assert float(w[i, j]) == pytest.approx(expected, abs=1e-6)
    # the threshold the docstring states: W < 1/2 exactly when cos > 1 - sigma^2 ln 2
    cos_edge = 1 - sigma**2 * math.log(2)
    pair = torch.tensor([[1.0, 0.0], [cos_edge, math.sqrt(1 - cos_edge**2)]])
    assert float(negative_confidence(pair, sigma)[0, 1]) == pytest.approx(0.5, abs=1e-6)


def test_rp_loss_matches_a_double_loop(dtype):
    g = torch.Generator().manual_seed(6)
    q, t = torch.randn(7, 5, generator=g, dtype=dtype), torch.randn(7, 5, generator=g, dtype=dtype)
    for w in (torch.rand(7, 7, generator=g, dtype=dtype), negative_confidence(t, 0.6)):
        for gamma in (0.0, 0.3, 0.5, 1.0):
            got = relaxed_proximity_loss(q, t, w, gamma).item()
            assert got == pytest.approx(_brute_rp(q, t, w, gamma), abs=1e-6)


def test_rp_limiting_cases():
    g = torch.Generator().manual_seed(7)
    n, gamma = 6, 0.5
    q, t = torch.randn(n, 4, generator=g), torch.randn(n, 4, generator=g)
    c = 0.5 * (1 + F.normalize(q, dim=-1) @ F.normalize(t, dim=-1).T)
    eye = torch.eye(n)
    off = 1 - eye
    # W = identity: the diagonal is pushed (weight 1, and not pulled since gamma < 1); every
    # off-diagonal pair has W = 0 < gamma and is pulled with weight gamma
    expected = (eye * c**2 + gamma * off * (1 - c) ** 2).sum() / n**2
    assert relaxed_proximity_loss(q, t, eye, gamma).item() == pytest.approx(
        expected.item(), abs=1e-6
    )
    # W = 1 - identity: the classic contrastive loss, true pairs pulled with weight gamma and
    # every other pair pushed
    expected = (gamma * eye * (1 - c) ** 2 + off * c**2).sum() / n**2
    assert relaxed_proximity_loss(q, t, off, gamma).item() == pytest.approx(
        expected.item(), abs=1e-6
    )
    # W = 0 (every target alike): everything is pulled, nothing pushed
    expected = gamma * ((1 - c) ** 2).mean()
    zero = torch.zeros(n, n)
    assert relaxed_proximity_loss(q, t, zero, gamma).item() == pytest.approx(
        expected.item(), abs=1e-6
    )
    # gamma = 0: no pull at all, only the push of W C^2
    w = torch.rand(n, n, generator=g)
    assert relaxed_proximity_loss(q, t, w, 0.0).item() == pytest.approx(
        (w * c**2).mean().item(), abs=1e-6
    )
    # a perfect retrieval (t = q, orthogonal) under W = 1 - identity costs only the push of
    # C = 1/2 on the n(n-1) negatives
    e = torch.eye(n)
    expected = (n * (n - 1) * 0.25) / n**2
    assert relaxed_proximity_loss(e, e, off, gamma).item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("w", [0.0, 0.1, 0.25, 0.4])
def test_rp_minimiser_for_one_pair_is_one_minus_w_over_gamma(w):
    """For one pair the loss w C^2 + (gamma - w)(1 - C)^2 is smallest at C* = 1 - w / gamma."""
    gamma = 0.5
    grid = torch.linspace(0, 1, 2001)
    angles = torch.arccos(2 * grid - 1)  # the cosine that gives each C on the grid
    q = torch.stack([torch.ones_like(angles), torch.zeros_like(angles)], -1)
    t = torch.stack([torch.cos(angles), torch.sin(angles)], -1)
    values = torch.stack(
        [
            relaxed_proximity_loss(q[k : k + 1], t[k : k + 1], torch.tensor([[w]]), gamma)
            for k in range(len(grid))
        ]
    )
    best = float(grid[values.argmin()])
    assert best == pytest.approx(1 - w / gamma, abs=1e-3)


def test_rp_gradients_are_finite_and_pull_false_negatives():
    g = torch.Generator().manual_seed(8)
    q = torch.randn(5, 6, generator=g, requires_grad=True)
    t = torch.randn(5, 6, generator=g, requires_grad=True)
    relaxed_proximity_loss(q, t, negative_confidence(t.detach(), 0.6), 0.5).backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(t.grad).all()
    assert q.grad.abs().sum() > 0
    # identical (normalised) vectors: cos = 1 must not give a NaN gradient through normalize
    x = torch.ones(3, 4, requires_grad=True)
    relaxed_proximity_loss(x, x, torch.zeros(3, 3), 0.5).backward()
    assert torch.isfinite(x.grad).all()
    # a suspected false negative (W < gamma) at low similarity is pulled: d loss / d S_ij < 0
    sim = torch.zeros(1, 1, requires_grad=True)  # S_ij = cos = 0, C = 1/2
    w = torch.tensor([[0.1]])
    c = 0.5 * (1 + sim)
    loss = (w * c**2 + (0.5 - w).clamp(min=0) * (1 - c) ** 2).mean()
    loss.backward()
    assert sim.grad.item() < 0
