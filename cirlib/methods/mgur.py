r"""MGUR (multi-grained uncertainty regularisation) as a recipe on cached features.

The compositor is the book's Combiner (:mod:`cirlib.models.combiner`), trained on the same frozen
features as in chapter "The Combiner baseline"; MGUR changes only the loss:

.. math::

    \mathcal{L} = \omega_e\, \underbrace{\tfrac12\big(e^{-u}\,\mathcal{L}_{aug} + u\big)}_{\text{coarse}}
                + (1 - \omega_e)\, \underbrace{\mathcal{L}_{BBC}(q, t)}_{\text{fine}},
    \qquad \omega_e = e^{-g e / E}

with :math:`\mathcal{L}_{aug}` the batch classification loss against targets jittered by the
Gaussian feature augmenter and :math:`u` their spread (MGUR's uncertainty). Each piece can be
switched off for ablations.

Introduced in chapter "MGUR: multi-grained uncertainty regularisation".
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cirlib.distributed import broadcast, gather, gather_with_grad, is_wrapped
from cirlib.losses import batch_classification_loss, blend_losses, uncertainty_regularisation_loss
from cirlib.methods.combiner import combiner_queries
from cirlib.methods.spec import MethodSpec
from cirlib.models.augmenter import AUGMENTER_FORMS, gaussian_feature_augment
from cirlib.models.combiner import Combiner
from cirlib.schedules import EpochClock, coarse_to_fine_weight, mean_coarse_to_fine_weight
from cirlib.train import TrainingRun

# The Combiner's scale on cosines, so that MGUR and its baseline differ only in the
# uncertainty pieces (MGUR's own code has an effective scale of 4 * 4 = 16; Chen et al., 2024).
LOGIT_SCALE = 100.0
# MGUR's ``norm_scale``: its 512-d features are L2-normalised, then multiplied by 4.
MGUR_FEATURE_NORM = 4.0
MGUR_FEATURE_DIM = 512
BLENDS = ("coarse_to_fine", "constant")

# What MGUR ran on real data (Chen et al., 2024: the released configs and code).
MGUR_PAPER_SETTINGS = {
    "FashionIQ": {"base lr": 2e-2, "layer4 stride": 1, "metrics": "R@10, R@50 per category"},
    "Shoes": {"base lr": 4e-2, "layer4 stride": 1, "metrics": "R@1, R@10, R@50"},
    "Fashion200k": {"base lr": 2e-3, "layer4 stride": 2, "metrics": "R@1, R@10, R@50"},
}
MGUR_PAPER_RECIPE = {
    "backbone": "ImageNet ResNet-50 + roberta-base + CoSMo compositor, all trained",
    "optimiser": "SGD, momentum 0.9, weight decay 5e-5; text encoder at 0.01x lr",
    "schedule": "5-epoch linear warm-up, x0.1 at epochs 35 and 42",
    "epochs / batch": "60 / 32",
    "feature norm / effective scale": "4 / 16",
    "blend": "omega_e = exp(-e / 60)",
    "augmenter": "alpha ~ N(1, sigma^2), beta ~ N(mu, sigma^2), paper form (norm ~6x)",
    "model selection": "best epoch by validation R@10, on the split that is reported",
}


def matched_feature_norm(dim: int) -> float:
    r"""The target norm :math:`r` at which the augmenter jitters ``dim``-d features as much as
    MGUR jitters its 512-d, norm-4 ones.

    The augmenter reads the noise level off the feature itself: :math:`\sigma \approx r/\sqrt D`.
    Both what the noise does to a target's direction (:math:`\cos \approx 1/\sqrt{1 + 2\sigma^2}`)
    and how much the paper form lengthens it (:math:`\approx \sqrt D / r`) depend on
    :math:`r/\sqrt D` only, so :math:`r = 4\sqrt{D/512}` keeps both at MGUR's values
    (``dim = 128`` gives 2).

    Introduced in chapter "MGUR: multi-grained uncertainty regularisation".
    """
    return MGUR_FEATURE_NORM * math.sqrt(dim / MGUR_FEATURE_DIM)


def mgur_queries(model: Combiner, features, batch_size: int = 4096) -> torch.Tensor:
    """Normalised query embeddings ``[Q, D]`` (eval mode): MGUR's compositor is the Combiner, so
    inference is exactly :func:`cirlib.methods.combiner.combiner_queries`.

    Introduced in chapter "MGUR: multi-grained uncertainty regularisation"."""
    return combiner_queries(model, features, batch_size)


def _augment(targets: torch.Tensor, form: str, noise_scale: float, wrapped: bool) -> torch.Tensor:
    """The augmenter on the batch's (frozen) targets; over ranks, drawn once for the global batch.

    Under DDP rank 0 jitters all ``B`` targets and sends them to the other ranks: the noise is
    then the same on every rank (the spread :math:`u` and the coarse logits are one batch's),
    and it is drawn from rank 0's stream, which is the one-process stream, so with dropout off
    it is the one-process noise exactly. With dropout on, rank 0's dropout draws (for its
    ``B / W`` rows) move that stream differently, so the noise equals a one-process run's in
    distribution only. The targets are frozen features, so nothing is lost by sending values
    without gradient.
    """
    if not wrapped:
        return gaussian_feature_augment(targets, form=form, noise_scale=noise_scale)
    if torch.distributed.get_rank() == 0:
        targets = gaussian_feature_augment(targets, form=form, noise_scale=noise_scale)
    return broadcast(targets)


def mgur_loss(
    features,
    *,
    epochs: int,
    batches_per_epoch: int,
    start_epoch: int = 0,
    augmenter: str | None = "paper",
    noise_scale: float = 1.0,
    regulariser: bool = True,
    blend: str = "coarse_to_fine",
    gamma_scale: float = 1.0,
    scale: float = LOGIT_SCALE,
    feature_norm: float | None = None,
    device="cpu",
):
    r"""``loss_fn(model, idx)`` for :func:`cirlib.train.fit` with MGUR's blended objective.

    With :math:`q` the Combiner's (unit) queries, :math:`t` the unit target features and
    :math:`r` = ``feature_norm``, the fine term is :math:`\mathcal{L}_{BBC}` with logits
    :math:`s\, q^\top t`. The coarse term jitters :math:`r t` (MGUR's norm-:math:`r`
    feature) with the augmenter and scores :math:`\tfrac{s}{r}\, q^\top \tilde f`, which equals
    :math:`s \cos` for an un-jittered or norm-preserved target and reproduces MGUR's logits
    :math:`f_s^\top \tilde f` exactly for :math:`s = 16, r = 4`.

    Parameters
    ----------
    features : training :class:`~cirlib.data.features.SplitFeatures`.
    epochs, batches_per_epoch : the run's length, for the schedule and the batch-counting clock
        (``fit`` makes ``max(1, n_samples // batch_size)`` batches per epoch).
    start_epoch : epoch a resumed run starts from.
    augmenter : ``"paper"``, ``"norm_preserving"`` or ``None`` (coarse term on clean targets).
    noise_scale : multiplies the augmenter's noise spread (1 = MGUR, 0 = no noise).
    regulariser : wrap the coarse term in the aleatoric form (else use :math:`\mathcal{L}_{aug}`).
    feature_norm : :math:`r`; ``None`` takes :func:`matched_feature_norm` of the feature size.
    blend : ``"coarse_to_fine"`` (:math:`\omega_e = e^{-g e/E}`) or ``"constant"`` (the schedule's
        mean over the run, so only the coarse-first order is removed).

    Under ``fit(distributed=True)`` (``model`` wrapped in DDP) the queries and targets of all
    ranks are gathered, so both terms, the spread :math:`u` and the augmenter's draws are those
    of the global batch (:func:`_augment`), and every rank computes the one-process loss of the
    whole batch (:mod:`cirlib.distributed`).

    The returned closure carries ``clock`` (an :class:`~cirlib.schedules.EpochClock`) and
    ``weight(epoch)``. Introduced in chapter "MGUR: multi-grained uncertainty regularisation".
    """
    if augmenter is not None and augmenter not in AUGMENTER_FORMS:
        raise ValueError(f"augmenter must be one of {AUGMENTER_FORMS} or None, got {augmenter!r}")
    if blend not in BLENDS:
        raise ValueError(f"blend must be one of {BLENDS}, got {blend!r}")
    if feature_norm is None:
        feature_norm = matched_feature_norm(features.images.shape[1])
    ref = features.images[features.reference_index].to(device)
    tgt = F.normalize(features.images[features.target_index], dim=-1).to(device)
    texts = features.texts.to(device)
    clock = EpochClock(batches_per_epoch, start_epoch)
    constant = mean_coarse_to_fine_weight(epochs, gamma_scale)

    def weight(epoch: int) -> float:
        if blend == "constant":
            return constant
        return coarse_to_fine_weight(min(epoch, epochs - 1), epochs, gamma_scale)

    def loss_fn(model, idx):
        w = weight(clock.tick())
        idx = idx.to(device)
        q = model(ref[idx], texts[idx])
        t = tgt[idx]
        wrapped = is_wrapped(model)
        if wrapped:  # fit(distributed=True): this rank's rows -> the global batch
            q, t = gather_with_grad(q), gather(t)
        fine = batch_classification_loss(q, t, scale)
        if w == 0.0:
            return fine
        jittered = feature_norm * t
        if augmenter is not None:
            jittered = _augment(jittered, augmenter, noise_scale, wrapped)
        if regulariser:
            coarse = uncertainty_regularisation_loss(q, jittered, scale / feature_norm)
        else:
            coarse = batch_classification_loss(q, jittered, scale / feature_norm)
        return blend_losses(coarse, fine, w)

    loss_fn.clock = clock
    loss_fn.weight = weight
    return loss_fn


@dataclass(frozen=True)
class Settings:
    """MGUR's settings (see :func:`mgur_loss` for each); ``feature_norm=None`` is filled with
    :func:`matched_feature_norm` of the features' width when a run starts."""

    augmenter: str | None = "paper"
    noise_scale: float = 1.0
    regulariser: bool = True
    blend: str = "coarse_to_fine"
    gamma_scale: float = 1.0
    scale: float = LOGIT_SCALE
    feature_norm: float | None = None
    dropout: float = 0.5

    def __post_init__(self):
        if self.augmenter is not None and self.augmenter not in AUGMENTER_FORMS:
            raise ValueError(
                f"augmenter must be one of {AUGMENTER_FORMS} or None, got {self.augmenter!r}"
            )
        if self.blend not in BLENDS:
            raise ValueError(f"blend must be one of {BLENDS}, got {self.blend!r}")


LOSS_OPTIONS = ("augmenter", "noise_scale", "regulariser", "blend", "gamma_scale", "scale")


def complete(features, settings):
    """``settings`` with the feature norm matched to the features' width when it is None."""
    if settings.feature_norm is not None:
        return settings
    return dataclasses.replace(
        settings, feature_norm=matched_feature_norm(features.images.shape[1])
    )


def build(features, settings) -> Combiner:
    """MGUR's compositor: the Combiner (:mod:`cirlib.models.combiner`)."""
    return Combiner(features.images.shape[1], dropout=settings.dropout)


def loss(features, settings, run: TrainingRun):
    """The spec's loss: :func:`mgur_loss` on the run's schedule (resumed runs continue it)."""
    return mgur_loss(
        features,
        epochs=run.epochs,
        batches_per_epoch=run.batches_per_epoch,
        start_epoch=run.start_epoch,
        feature_norm=settings.feature_norm,
        device=run.device,
        **{k: getattr(settings, k) for k in LOSS_OPTIONS},
    )


SPEC = MethodSpec(
    name="mgur",
    title="MGUR",
    chapter="notebooks/04_mgur",
    settings=Settings,
    build=build,
    loss=loss,
    queries=mgur_queries,
    complete=complete,
)

# The chapter's name for the trainer (:func:`cirlib.train.train_method` of this spec).
train_mgur = SPEC.fit
