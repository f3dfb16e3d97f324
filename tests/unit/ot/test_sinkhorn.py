"""The batched Sinkhorn solver (log and kernel domain) against POT, its limits, and the argmax
assignment."""

import importlib

import numpy as np
import ot
import pytest
import torch
import torch.nn.functional as F
from ot.batch import solve_batch

from cirlib.ot import plan_assignment, sinkhorn, sinkhorn_potentials


def _pot_plan(cost, tau, a=None, b=None):
    n, m = cost.shape
    a = np.full(n, 1.0 / n) if a is None else np.asarray(a, dtype=np.float64)
    b = np.full(m, 1.0 / m) if b is None else np.asarray(b, dtype=np.float64)
    return ot.sinkhorn(
        a, b, cost.double().numpy(), tau, method="sinkhorn_log", stopThr=1e-10, numItermax=20000
    )


@pytest.mark.parametrize("domain", ["log", "kernel"])
@pytest.mark.parametrize("shape", [(6, 6), (5, 8), (32, 32)])
@pytest.mark.parametrize("tau", [0.1, 0.5])  # MAPNet uses 0.1
def test_matches_pot_on_random_costs(dtype, device, shape, tau, domain):
    gen = torch.Generator().manual_seed(sum(shape))
    cost = 2 * torch.rand(3, *shape, generator=gen, dtype=dtype)
    # some small-tau problems need a few thousand iterations (POT is given 20000 too)
    tol = 1e-9 if dtype == torch.float64 else 1e-7
    plan = sinkhorn(cost.to(device), tau, tol=tol, max_iters=20000, domain=domain).cpu()
    for k in range(len(cost)):
        expected = torch.from_numpy(_pot_plan(cost[k], tau)).to(dtype)
        torch.testing.assert_close(plan[k], expected, atol=1e-5, rtol=0)
    n, m = shape
    torch.testing.assert_close(
        plan.sum(2), torch.full((3, n), 1 / n, dtype=dtype), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        plan.sum(1), torch.full((3, m), 1 / m, dtype=dtype), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("domain", ["log", "kernel"])
@pytest.mark.parametrize("method", ["sinkhorn", "log_sinkhorn"])
def test_matches_pots_batched_solver(domain, method):
    """POT's ot.batch solver on the same torch batch: the benchmark's comparison, as a check."""
    gen = torch.Generator().manual_seed(5)
    cost = 2 * torch.rand(16, 8, 6, generator=gen, dtype=torch.float64)
    ours = sinkhorn(cost, 0.1, tol=1e-11, max_iters=20000, domain=domain)
    pot = solve_batch(cost, 0.1, method=method, tol=1e-11, max_iter=20000, grad="detach").plan
    torch.testing.assert_close(ours, pot, atol=1e-9, rtol=0)
    assert torch.equal(plan_assignment(ours), plan_assignment(pot))


@pytest.mark.parametrize("domain", ["log", "kernel"])
def test_matches_pot_with_given_marginals(domain):
    gen = torch.Generator().manual_seed(3)
    cost = torch.rand(2, 5, 7, generator=gen, dtype=torch.float64)
    a = torch.tensor([0.1, 0.3, 0.2, 0.25, 0.15], dtype=torch.float64)
    b = torch.softmax(torch.randn(7, generator=gen, dtype=torch.float64), 0)
    plan = sinkhorn(cost, 0.2, a, b, tol=1e-10, domain=domain)
    for k in range(2):
        expected = torch.from_numpy(_pot_plan(cost[k], 0.2, a.numpy(), b.numpy()))
        torch.testing.assert_close(plan[k], expected, atol=1e-8, rtol=0)
    torch.testing.assert_close(plan.sum(2), a.expand(2, 5), atol=1e-9, rtol=0)
    torch.testing.assert_close(plan.sum(1), b.expand(2, 7), atol=1e-9, rtol=0)


def test_batched_equals_one_problem_at_a_time_and_2d_input():
    cost = torch.rand(3, 6, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    plan = sinkhorn(cost, 0.3, tol=1e-12)
    for k in range(3):
        torch.testing.assert_close(plan[k], sinkhorn(cost[k], 0.3, tol=1e-12), atol=1e-12, rtol=0)


def test_large_tau_gives_the_independent_coupling():
    cost = torch.rand(5, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # P_ik = a_i b_k exp(-M_ik / tau) / normaliser: deviations are O(1 / (64 tau))
    plan = sinkhorn(cost, 1e8)
    torch.testing.assert_close(plan, torch.full_like(plan, 1 / 64), atol=1e-9, rtol=0)
    assert not torch.allclose(sinkhorn(cost, 1.0), plan, atol=1e-4)


def test_small_tau_on_a_permutation_cost_gives_that_permutation():
    n = 7
    perms = [torch.randperm(n, generator=torch.Generator().manual_seed(s)) for s in range(4)]
    cost = torch.ones(4, n, n, dtype=torch.float64)
    for k, perm in enumerate(perms):
        cost[k, torch.arange(n), perm] = 0.0
    plan = sinkhorn(cost, 0.01, max_iters=5000, tol=1e-12)
    for k, perm in enumerate(perms):
        expected = torch.zeros(n, n, dtype=torch.float64)
        expected[torch.arange(n), perm] = 1 / n
        torch.testing.assert_close(plan[k], expected, atol=1e-12, rtol=0)
        assert torch.equal(plan_assignment(plan[k]), perm)


def test_tiny_tau_stays_finite():
    # exp(-cost / tau) reaches exp(-2000) at tau = 1e-3: 0 even in float64, so the kernel domain
    # divides by zero; the log domain does not. (float64: in float32 the potentials grow to
    # ~1e3 and their rounding alone moves plan entries by ~1e-4 relative.)
    gen = torch.Generator().manual_seed(0)
    cost = 2 * torch.rand(2, 16, 16, generator=gen, dtype=torch.float64)
    assert (torch.exp(-cost / 1e-3) == 0).any()
    plan = sinkhorn(cost, 1e-3, max_iters=200)
    assert torch.isfinite(plan).all()
    expected = torch.full((2, 16), 1 / 16, dtype=torch.float64)
    torch.testing.assert_close(plan.sum(1), expected, atol=1e-6, rtol=0)


def test_argmax_recovers_a_planted_correspondence():
    """Query schemas are the target schemas shuffled and perturbed: the plan's row-argmax on the
    cosine cost undoes the shuffle."""
    gen = torch.Generator().manual_seed(0)
    batch, n, d = 8, 32, 64
    targets = F.normalize(torch.randn(batch, n, d, generator=gen), dim=-1)
    perms = torch.stack([torch.randperm(n, generator=gen) for _ in range(batch)])
    queries = torch.stack([targets[b, perms[b].argsort()] for b in range(batch)])
    queries = F.normalize(queries + 0.3 * torch.randn(batch, n, d, generator=gen) / d**0.5, dim=-1)
    # target i now sits at query position perm[i]
    cost = 1 - targets @ queries.transpose(1, 2)
    with torch.no_grad():  # as in MAPNet: only the argmax is used, a loose tolerance will do
        plan = sinkhorn(cost, 0.1, tol=1e-4, max_iters=300)
    assert torch.equal(plan_assignment(plan), perms)


def test_reports_iterations_and_rejects_bad_tau():
    cost = torch.rand(2, 4, 4, dtype=torch.float64)
    _, _, iters = sinkhorn_potentials(cost, 0.5, max_iters=7, tol=0.0)
    assert iters == 7
    with pytest.raises(ValueError, match="tau"):
        sinkhorn(cost, 0.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernel_and_log_domain_run_the_same_iterations(dtype):
    """Same sequence of scalings in exact arithmetic: after any number of iterations the two
    domains agree to rounding, and they stop at the same iteration."""
    gen = torch.Generator().manual_seed(5)
    cost = 2 * torch.rand(64, 8, 8, generator=gen, dtype=dtype)  # MAPNet's MSI problems
    for iters in (1, 3, 100):
        u_log, v_log, n_log = sinkhorn_potentials(cost, 0.1, max_iters=iters, tol=0.0, domain="log")
        u_k, v_k, n_k = sinkhorn_potentials(cost, 0.1, max_iters=iters, tol=0.0, domain="kernel")
        assert n_log == n_k == iters
        # the potentials are defined up to a constant moved between u and v: compare the plans
        plan_log = (u_log[..., :, None] - cost / 0.1 + v_log[..., None, :]).exp()
        plan_k = (u_k[..., :, None] - cost / 0.1 + v_k[..., None, :]).exp()
        atol = 1e-12 if dtype == torch.float64 else 1e-6
        torch.testing.assert_close(plan_k, plan_log, atol=atol, rtol=0)
    _, _, stop_log = sinkhorn_potentials(cost, 0.1, tol=1e-4, domain="log")
    _, _, stop_k = sinkhorn_potentials(cost, 0.1, tol=1e-4, domain="kernel")
    assert stop_log == stop_k < 1000


def test_auto_takes_the_kernel_domain_only_for_moderate_spans(monkeypatch):
    solver = importlib.import_module("cirlib.ot.sinkhorn")  # the module, not the function
    taken = []
    for name in ("_kernel_iterations", "_log_iterations"):
        real = getattr(solver, name)
        monkeypatch.setattr(solver, name, lambda *a, _r=real, _n=name: taken.append(_n) or _r(*a))
    cost = 2 * torch.rand(4, 8, 8, generator=torch.Generator().manual_seed(0))
    sinkhorn(cost, 0.1)  # span <= 20 nats in float32
    sinkhorn(cost, 1e-3)  # up to 2000 nats: exp underflows
    sinkhorn(cost.half(), 1.0)  # half precision: always the log domain
    sinkhorn(cost.double(), 0.01)  # 200 nats is fine in float64
    assert taken == [
        "_kernel_iterations", "_log_iterations", "_log_iterations", "_kernel_iterations"
    ]  # fmt: skip
    with pytest.raises(ValueError, match="domain"):
        sinkhorn(cost, 0.1, domain="exp")


def test_kernel_domain_keeps_a_row_far_from_the_others():
    """A row whose costs all sit far above the rest: the row shift keeps its kernel at 1, where
    the unshifted kernel exp(-M / tau) underflows to zero in float32 and divides by it."""
    cost = 2 * torch.rand(1, 6, 6, generator=torch.Generator().manual_seed(2))
    cost[0, 3] += 50.0  # exp(-500) == 0 in float32, but the row spans only 20 nats
    assert (torch.exp(-cost / 0.1)[0, 3] == 0).all()
    plan = sinkhorn(cost, 0.1, tol=1e-7, max_iters=5000, domain="kernel")
    expected = torch.from_numpy(_pot_plan(cost[0], 0.1)).float()
    torch.testing.assert_close(plan[0], expected, atol=1e-5, rtol=0)
