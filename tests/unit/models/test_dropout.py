"""cirlib.models.dropout: the same distribution as nn.Dropout (drop probability rounded to a
multiple of 2^-16), drawn from random integers."""

import pytest
import torch

from cirlib.models.dropout import Dropout, dropout, effective_drop_probability


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 0.001, 0.999])  # the last two: the rand path
def test_keep_rate_and_scale_match_inverted_dropout(p, dtype, device):
    torch.manual_seed(0)
    x = torch.ones(400, 500, dtype=dtype, device=device)
    y = dropout(x, p)
    if device != "cuda":
        p = effective_drop_probability(p)
    kept = y != 0
    # 200k Bernoulli(1 - p) draws: the kept fraction is within 5 standard errors of 1 - p
    se = (p * (1 - p) / x.numel()) ** 0.5
    assert abs(kept.double().mean().item() - (1 - p)) < 5 * se
    # kept entries are scaled by 1 / (1 - p), dropped ones are exactly zero
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / (1 - p)))
    # the expectation is preserved, as in nn.Dropout
    assert abs(y.double().mean().item() - 1.0) < 5 * se / (1 - p)


def test_identity_when_not_training_or_p_zero(device):
    x = torch.randn(7, 9, device=device)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0) is x
    layer = Dropout(0.5).eval()
    assert layer(x) is x


def test_gradient_is_the_forward_mask(device):
    torch.manual_seed(1)
    x = torch.randn(64, 33, device=device, requires_grad=True)
    y = dropout(x, 0.3)
    y.sum().backward()
    # d(sum y)/dx = the mask the forward pass used (0 or 1/(1-p)), entry by entry
    scale = torch.where(y != 0, 1 / (1 - effective_drop_probability(0.3)), 0.0)
    torch.testing.assert_close(x.grad, scale)


def test_seeded_runs_repeat_and_rows_differ(device):
    x = torch.ones(8, 256, device=device)
    torch.manual_seed(3)
    a = dropout(x, 0.5)
    torch.manual_seed(3)
    b = dropout(x, 0.5)
    assert torch.equal(a, b)
    assert not torch.equal(a[0], a[1])  # a fresh mask per entry, not one per row


def test_module_matches_nn_dropout_in_distribution():
    torch.manual_seed(0)
    x = torch.randn(300, 300).abs() + 1
    ours, ref = Dropout(0.25).train()(x), torch.nn.Dropout(0.25).train()(x)
    # different random streams, same law: kept fractions and means agree to sampling error
    assert abs((ours != 0).float().mean() - (ref != 0).float().mean()) < 0.01
    assert abs(ours.mean() - ref.mean()) < 0.02 * x.mean()


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_bad_probability_is_refused(p):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        Dropout(p)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        dropout(torch.ones(2), p)


def test_heads_use_it():
    from cirlib.models.combiner import Combiner

    layer = Combiner(8).dropout
    assert isinstance(layer, Dropout) and isinstance(layer, torch.nn.Dropout)
    layer.p = 0.0  # how tests switch dropout off: found as an nn.Dropout, and obeyed
    x = torch.randn(4, 8)
    assert layer.train()(x) is x


def test_effective_probability_is_the_nearest_multiple_of_2_to_the_minus_16():
    assert effective_drop_probability(0.5) == 0.5
    assert effective_drop_probability(0.1) == 6554 / 65536  # 0.1000061
    for p in (0.1, 0.25, 0.3, 0.7, 0.9):
        assert abs(effective_drop_probability(p) - p) <= 2.0**-17
    # near 0 and 1 the rounding would be coarse relative to p or 1 - p: p itself (rand path)
    assert effective_drop_probability(0.001) == 0.001
    assert effective_drop_probability(0.999) == 0.999


def test_integer_lanes_are_uniform_and_odd_sizes_work():
    """Every 16-bit lane of the 64-bit words is uniform (random_() without bounds would leave
    the top lane's sign bit at 0 and drop only where three lanes of four say so)."""
    torch.manual_seed(4)
    x = torch.ones(4 * 50_000 + 3)  # not a multiple of 4 lanes
    for p in (0.25, 0.5):
        kept = (dropout(x, p) != 0).double()
        se = (p * (1 - p) / (len(x) / 4)) ** 0.5
        for lane in range(4):  # each lane position of the words, separately
            assert abs(kept[lane::4].mean().item() - (1 - p)) < 5 * se, (p, lane)
    # a small odd shape keeps its shape and both values
    y = dropout(torch.ones(7, 9), 0.5)
    assert y.shape == (7, 9) and set(y.unique().tolist()) <= {0.0, 2.0}
