"""MGUR's Gaussian feature augmenter: jitter a target feature with noise drawn from its own
statistics, to stand in for the other images a coarse query would also accept.

Introduced in chapter "MGUR: multi-grained uncertainty regularisation".
"""

from __future__ import annotations

import torch

AUGMENTER_FORMS = ("paper", "norm_preserving")


def standardise_rows(features: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    r"""Zero mean and unit variance for each row, over its ``D`` features.

    .. math::

        \mathrm{IN}(f)_d = \frac{f_d - \mu}{\sqrt{\sigma_b^2 + \epsilon}}, \qquad
        \mu = \tfrac1D\sum_k f_k, \qquad \sigma_b^2 = \tfrac1D\sum_k (f_k - \mu)^2

    This is what ``nn.InstanceNorm1d`` (no affine, no running statistics) computes on a 2-D
    ``[B, D]`` tensor since torch 1.11, which treats it as one unbatched sample with ``B``
    channels: each row is normalised on its own, with the *biased* variance :math:`\sigma_b^2` and
    ``eps = 1e-5``.

    Shapes: ``[B, D]`` in, ``[B, D]`` out. Introduced in chapter "MGUR: multi-grained uncertainty
    regularisation".
    """
    mean = features.mean(dim=-1, keepdim=True)
    var = features.var(dim=-1, unbiased=False, keepdim=True)
    return (features - mean) / torch.sqrt(var + eps)


def gaussian_feature_augment(
    features: torch.Tensor,
    form: str = "paper",
    noise_scale: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""MGUR's uncertainty modelling: a noisy copy of each feature, noise from its own statistics.

    For each row :math:`f \in \mathbb{R}^D` with mean :math:`\mu = \frac1D\sum_d f_d` and
    (unbiased) standard deviation :math:`\sigma` over its features, and independent draws for
    every dimension :math:`d`:

    .. math::

        \alpha_d \sim \mathcal{N}(1, (\kappa\sigma)^2), \qquad
        \beta_d \sim \mathcal{N}(\mu, (\kappa\sigma)^2), \qquad
        \tilde f = \alpha \odot \mathrm{IN}(f) + \beta

    with :math:`\mathrm{IN}` the row standardisation of :func:`standardise_rows` and
    :math:`\kappa` = ``noise_scale`` (1 in MGUR; 0 removes the noise). ``form="paper"`` returns
    :math:`\tilde f` as MGUR's paper and code define it. Because :math:`\mathrm{IN}(f)` has norm
    :math:`\approx\sqrt D` whatever the norm of :math:`f`, the output is about
    :math:`\sqrt{D}/\lVert f\rVert` times longer than the input (MGUR: norm 4, ``D = 512``, so
    about 6 times; MGUR's ``normal_augmenter.py``). ``form="norm_preserving"`` keeps the direction of
    :math:`\tilde f` and gives each row back its input norm:

    .. math:: \tilde f^{\,\mathrm{np}} = \lVert f\rVert\, \frac{\tilde f}{\lVert \tilde f\rVert}

    The noise is drawn without gradient (MGUR uses ``Distribution.sample``), so gradients reach
    ``features`` only through :math:`\mathrm{IN}(f)` (and the rescaling).

    Parameters
    ----------
    features : ``[B, D]``, the (target) features to jitter.
    form : ``"paper"`` or ``"norm_preserving"``.
    noise_scale : :math:`\kappa`, multiplies the noise's standard deviation (not a setting of
        MGUR, whose ``alpha_scale``/``beta_scale`` multiply the draws themselves and are 1).
    generator : optional random generator; the global one otherwise.

    Returns
    -------
    ``[B, D]`` augmented features, same dtype as ``features``.

    Introduced in chapter "MGUR: multi-grained uncertainty regularisation".
    """
    if form not in AUGMENTER_FORMS:
        raise ValueError(f"unknown augmenter form {form!r}; choose one of {AUGMENTER_FORMS}")
    if features.dim() != 2 or features.shape[1] < 2:
        raise ValueError(
            f"features must be [B, D] with D >= 2 (per-row statistics); got {tuple(features.shape)}"
        )
    with torch.no_grad():
        std, mean = torch.std_mean(features, dim=-1, keepdim=True)
        spread = (noise_scale * std).expand_as(features)
        where = generator.device if generator is not None else features.device
        noise = torch.randn((2, *features.shape), generator=generator, device=where)
        noise = noise.to(features.device, features.dtype)
        alpha = 1.0 + spread * noise[0]
        beta = mean + spread * noise[1]
    augmented = alpha * standardise_rows(features) + beta
    if form == "norm_preserving":
        augmented = augmented * (
            features.norm(dim=-1, keepdim=True) / augmented.norm(dim=-1, keepdim=True)
        )
    return augmented
