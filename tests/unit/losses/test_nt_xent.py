"""NT-Xent against a loop over the 2B vectors, and its limiting cases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cirlib.losses.nt_xent import nt_xent_loss


def _loop(a, b, tau):
    z = [F.normalize(v, dim=0) for v in list(a) + list(b)]
    n = len(a)
    total = 0.0
    for k in range(2 * n):
        partner = k + n if k < n else k - n
        denominator = sum(math.exp(float(z[k] @ z[j]) / tau) for j in range(2 * n) if j != k)
        total += -float(z[k] @ z[partner]) / tau + math.log(denominator)
    return total / (2 * n)


@pytest.mark.parametrize("tau", [0.25, 1.0])
def test_equals_the_loop(tau):
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 5, generator=gen), torch.randn(6, 5, generator=gen)
    assert float(nt_xent_loss(a, b, tau)) == pytest.approx(_loop(a, b, tau), rel=1e-5)


def test_limiting_cases():
    # all vectors equal: the positive is one of 2B - 1 equal terms
    same = torch.ones(4, 3)
    assert float(nt_xent_loss(same, same, 0.5)) == pytest.approx(math.log(7), rel=1e-6)
    # pairs identical and pairs mutually orthogonal, tiny temperature: loss -> 0
    eye = torch.eye(4)
    assert float(nt_xent_loss(eye, eye, 0.01)) < 1e-6


def test_errors():
    with pytest.raises(ValueError, match="at least two pairs"):
        nt_xent_loss(torch.ones(1, 3), torch.ones(1, 3), 0.5)
    with pytest.raises(ValueError, match="both be"):
        nt_xent_loss(torch.ones(2, 3), torch.ones(2, 4), 0.5)
    with pytest.raises(ValueError, match="positive"):
        nt_xent_loss(torch.ones(2, 3), torch.ones(2, 3), 0.0)
