import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cirlib.models.augmenter import gaussian_feature_augment, standardise_rows


def _patterned_rows(means, spreads, d, zero_fraction=0.5):
    """Rows m + s * z whose standardised pattern z is known: a block of zeros, then +b and -b
    (b chosen so that the biased variance of z is 1)."""
    k = int(d * zero_fraction)
    b = math.sqrt(d / (d - k))
    half = (d - k) // 2
    z = torch.cat([torch.zeros(k), torch.full((half,), b), torch.full((half,), -b)]).double()
    rows = torch.stack([m + s * z for m, s in zip(means, spreads)])
    return rows, z, k, half


def test_standardise_rows_is_instance_norm_on_a_2d_tensor(dtype):
    g = torch.Generator().manual_seed(0)
    x = (3 * torch.randn(5, 17, generator=g) + 2).to(dtype)
    # torch >= 1.11 reads a 2-D tensor as one unbatched sample with B channels: per-row norm.
    # MGUR builds the layer with num_features=D; torch warns that it is unused (no affine).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        reference = nn.InstanceNorm1d(17)(x.float()).to(dtype)
    torch.testing.assert_close(standardise_rows(x), reference, rtol=1e-5, atol=1e-5)
    out = standardise_rows(x)
    assert out.mean(-1).abs().max() < 1e-5
    assert torch.allclose(out.var(-1, unbiased=False), torch.ones(5, dtype=dtype), atol=1e-4)


def test_noise_statistics_on_a_large_sample():
    d = 20000
    means = [0.0, 0.3, -1.2, 2.0]
    spreads = [0.2, 0.5, 1.0, 0.05]
    f, z, k, half = _patterned_rows(means, spreads, d)
    g = torch.Generator().manual_seed(1)
    out = gaussian_feature_augment(f, generator=g)
    residual = out - standardise_rows(f)  # = (alpha - 1) * z + beta
    for i, (m, _) in enumerate(zip(means, spreads)):
        sigma = float(f[i].std())  # the augmenter's sigma: unbiased std of the row
        zero, pos = residual[i, :k], residual[i, k : k + half]
        zi = float(standardise_rows(f)[i, k])  # the +b value after standardisation (~ b)
        # where z = 0 only beta is left: N(mu, sigma)
        assert float(zero.mean()) == pytest.approx(m, abs=5 * sigma / math.sqrt(k))
        assert float(zero.std()) == pytest.approx(sigma, rel=0.05)
        # where z = b: (alpha - 1) b + beta, variance sigma^2 (b^2 + 1); its excess over the
        # z = 0 block is the multiplicative noise alone, variance sigma^2 b^2
        assert float(pos.mean()) == pytest.approx(
            m, abs=5 * sigma * math.sqrt(zi**2 + 1) / math.sqrt(half)
        )
        assert float(pos.var()) == pytest.approx(sigma**2 * (zi**2 + 1), rel=0.06)
        alpha_var = float(pos.var() - zero.var()) / zi**2
        assert alpha_var == pytest.approx(sigma**2, rel=0.15)


def test_noise_is_independent_across_rows_and_dimensions():
    f = torch.randn(2, 50000, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    same = torch.cat([f[:1], f[:1]])  # two identical rows must still get different noise
    out = gaussian_feature_augment(same, generator=torch.Generator().manual_seed(3))
    r = out - standardise_rows(same)
    corr = torch.corrcoef(r)[0, 1]
    assert abs(float(corr)) < 0.02
    assert not torch.equal(out[0], out[1])


def test_zero_noise_limit_and_generator_reproducibility():
    g = torch.Generator().manual_seed(4)
    f = torch.randn(6, 32, generator=g)
    exact = standardise_rows(f) + f.mean(-1, keepdim=True)
    torch.testing.assert_close(gaussian_feature_augment(f, noise_scale=0.0), exact)
    a = gaussian_feature_augment(f, generator=torch.Generator().manual_seed(5))
    b = gaussian_feature_augment(f, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    # noise_scale multiplies the spread: the residual's std scales with it
    big = gaussian_feature_augment(f, noise_scale=2.0, generator=torch.Generator().manual_seed(5))
    ratio = (big - exact).std() / (a - exact).std()
    assert float(ratio) == pytest.approx(2.0, rel=1e-5)


def test_zero_noise_norm_preserving_returns_centred_features_unchanged():
    f = torch.randn(8, 64, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    f = 4 * F.normalize(f - f.mean(-1, keepdim=True), dim=-1)  # zero row mean, norm 4
    out = gaussian_feature_augment(f, form="norm_preserving", noise_scale=0.0)
    torch.testing.assert_close(out, f)


@pytest.mark.parametrize("dim", [128, 512])
def test_norm_paper_vs_norm_preserving(dim):
    """The released form makes targets ~sqrt(D)/||f|| longer (about 6x for MGUR's norm 4, D=512);
    the norm-preserving form keeps each norm and the same direction."""
    g = torch.Generator().manual_seed(7)
    f = 4 * F.normalize(torch.randn(256, dim, generator=g, dtype=torch.float64), dim=-1)
    paper = gaussian_feature_augment(f, form="paper", generator=torch.Generator().manual_seed(8))
    kept = gaussian_feature_augment(
        f, form="norm_preserving", generator=torch.Generator().manual_seed(8)
    )
    # E||f_hat||^2 = D (1 + sigma^2) + D (mu^2 + sigma^2) with the row's own mu and sigma
    std, mean = torch.std_mean(f, dim=-1)
    expected = torch.sqrt(dim * (1 + 2 * std**2 + mean**2))
    ratio = paper.norm(dim=-1) / expected
    assert float(ratio.mean()) == pytest.approx(1.0, abs=0.01)
    growth = float((paper.norm(dim=-1) / f.norm(dim=-1)).mean())
    assert growth == pytest.approx(math.sqrt(dim) / 4 * math.sqrt(1 + 2 * 16 / dim), rel=0.02)
    if dim == 512:
        assert 5.5 < growth < 6.2  # methods.md §7.3: ~4 -> ~23
    torch.testing.assert_close(kept.norm(dim=-1), f.norm(dim=-1))
    torch.testing.assert_close(F.cosine_similarity(kept, paper, dim=-1), torch.ones(256).double())


def test_gradients_flow_through_the_standardisation_only():
    f = torch.randn(4, 16, generator=torch.Generator().manual_seed(9), requires_grad=True)
    # no noise: out = IN(f) + mean(f) with the mean detached (it only parametrises the noise),
    # and the sum of IN(f) is 0 whatever f is, so this gradient must vanish
    gaussian_feature_augment(f, noise_scale=0.0).sum().backward()
    assert torch.isfinite(f.grad).all()
    assert f.grad.abs().max() < 1e-5
    f.grad = None
    w = torch.randn(4, 16, generator=torch.Generator().manual_seed(10))
    for form in ("paper", "norm_preserving"):
        (gaussian_feature_augment(f, form=form) * w).sum().backward()
        assert torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0
        f.grad = None


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="form"):
        gaussian_feature_augment(torch.randn(2, 4), form="doubled")
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        gaussian_feature_augment(torch.randn(4))


def test_matched_feature_norm_reproduces_mgurs_jitter():
    """At r = 4 sqrt(D/512) a 128-d target is turned and lengthened as much as MGUR's 512-d,
    norm-4 target: the two numbers depend on r / sqrt(D) only."""
    from cirlib.methods.mgur import matched_feature_norm

    def jitter(dim, r, seed):
        g = torch.Generator().manual_seed(seed)
        f = r * F.normalize(torch.randn(2000, dim, generator=g, dtype=torch.float64), dim=-1)
        out = gaussian_feature_augment(f, generator=g)
        cos = F.cosine_similarity(out, standardise_rows(f) + f.mean(-1, keepdim=True), dim=-1)
        return float(cos.mean()), float((out.norm(dim=-1) / f.norm(dim=-1)).mean())

    assert matched_feature_norm(512) == 4.0 and matched_feature_norm(128) == 2.0
    cos_mgur, growth_mgur = jitter(512, 4.0, 0)
    cos_toy, growth_toy = jitter(128, matched_feature_norm(128), 1)
    assert cos_toy == pytest.approx(cos_mgur, abs=0.003)
    assert growth_toy == pytest.approx(growth_mgur, rel=0.01)
    assert cos_mgur == pytest.approx(1 / math.sqrt(1 + 2 * 16 / 512), abs=0.003)
    # the unmatched norm 4 at D = 128 jitters visibly more
    cos_unmatched, _ = jitter(128, 4.0, 2)
    assert cos_unmatched < cos_mgur - 0.05
