"""cirlib.models.short_softmax: the softmax of short rows as whole-tensor passes, against the
definition written as a loop, torch.softmax, masked entries and autograd."""

import math

import pytest
import torch

import cirlib.models.short_softmax as short
from cirlib.models.short_softmax import attention_softmax, short_softmax


def softmax_by_hand(row: list[float]) -> list[float]:
    peak = max(row)
    exps = [math.exp(x - peak) for x in row]
    return [e / sum(exps) for e in exps]


def test_matches_the_definition_row_by_row():
    gen = torch.Generator().manual_seed(0)
    x = 5 * torch.randn(3, 4, 9, generator=gen, dtype=torch.float64)
    y = short_softmax(x)
    for row_in, row_out in zip(x.reshape(-1, 9).tolist(), y.reshape(-1, 9).tolist()):
        assert row_out == pytest.approx(softmax_by_hand(row_in), abs=1e-15)


@pytest.mark.parametrize("n", [1, 3, 8, 9, 15, 16, 21])
def test_equals_torch_softmax_to_rounding_in_float32(n):
    x = 4 * torch.randn(64, 4, 8, n, generator=torch.Generator().manual_seed(n))
    torch.testing.assert_close(short_softmax(x), x.softmax(-1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(attention_softmax(x), x.softmax(-1), atol=1e-6, rtol=1e-5)


def test_large_logits_do_not_overflow():
    x = torch.tensor([[1000.0, 999.0, -1000.0]])
    torch.testing.assert_close(short_softmax(x), x.softmax(-1))
    assert torch.isfinite(short_softmax(x)).all()


def test_minus_infinity_gets_zero_weight_and_an_all_masked_row_is_nan_like_torch():
    x = torch.tensor([[0.5, float("-inf"), 1.5], [float("-inf")] * 3])
    y = short_softmax(x)
    assert y[0, 1] == 0 and y[0].sum().item() == pytest.approx(1.0)
    assert torch.isnan(y[1]).all() and torch.isnan(x.softmax(-1)[1]).all()


def test_gradient_matches_autograd_of_the_definition():
    x = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(short_softmax, (x,))
    grad = torch.randn(5, 7, dtype=torch.float64)
    (ours,) = torch.autograd.grad(short_softmax(x), x, grad)
    (reference,) = torch.autograd.grad(x.softmax(-1), x, grad)
    torch.testing.assert_close(ours, reference, atol=1e-14, rtol=0)


def test_gradient_through_masked_entries_is_zero():
    x = torch.tensor([[0.3, -0.2, float("-inf")]], requires_grad=True)
    short_softmax(x)[0, 0].backward()
    assert x.grad[0, 2] == 0 and torch.isfinite(x.grad).all()


def test_attention_softmax_switches_at_the_threshold(monkeypatch):
    calls = []
    monkeypatch.setattr(short, "short_softmax", lambda x: calls.append(x.shape[-1]) or x)
    short.attention_softmax(torch.zeros(2, short.SHORT_ROW - 1))
    short.attention_softmax(torch.zeros(2, short.SHORT_ROW))
    short.attention_softmax(torch.zeros(2, short.SHORT_ROW - 1, dtype=torch.bfloat16))
    assert calls == [short.SHORT_ROW - 1]
    assert short.SHORT_ROW in (8, 16)
