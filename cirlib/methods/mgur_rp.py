r"""A combination no paper tried: MGUR's uncertainty objective plus MAPNet's relaxed proximity.

Both papers attack the same problem from opposite sides: a query of a CIR dataset often has more
valid targets than the one annotated. MGUR softens the *positive* (the target becomes a Gaussian
cloud early in training, :mod:`cirlib.methods.mgur`); MAPNet's RPLoss softens the *negatives*
(a batch target that looks like the query's own target is pushed less, or pulled,
:func:`cirlib.losses.relaxed_proximity_loss`). On the Combiner head, with :math:`q_i` the
composed query, :math:`\hat t_j` the frozen unit target features and
:math:`W = \mathrm{negative\_confidence}(\hat t; \sigma)`:

.. math::

    \mathcal{L} = \underbrace{\omega_e \mathcal{L}_{coarse} + (1-\omega_e) \mathcal{L}_{BBC}}_{
        \text{MGUR}} + w_{RP}\, \mathcal{L}_{RP}(q, \hat t; W, \gamma)

MGUR's terms and schedule are :func:`~cirlib.methods.mgur.mgur_loss` unchanged; RP uses
MAPNet's README values (:math:`\sigma = 0.6`, :math:`\gamma = 0.5`) and :math:`w_{RP} = 1` (MAPNet's
chapter default). The head is the Combiner, so inference is the Combiner's.

Introduced in chapter "Comparing the methods".
"""

from __future__ import annotations

from dataclasses import dataclass

from cirlib.distributed import gather, gather_with_grad, is_wrapped
from cirlib.losses.relaxed_proximity import negative_confidence, relaxed_proximity_loss
from cirlib.methods import mgur
from cirlib.methods.combiner import combiner_queries
from cirlib.methods.mapnet import TOY_SETTINGS as MAPNET_SETTINGS
from cirlib.methods.mgur import mgur_loss
from cirlib.methods.spec import MethodSpec
from cirlib.train import TrainingRun

RP_DEFAULTS = {
    "sigma": MAPNET_SETTINGS["sigma"],
    "gamma": MAPNET_SETTINGS["gamma"],
    "rp_weight": MAPNET_SETTINGS["rp_weight"],
}


def mgur_rp_loss(
    features,
    *,
    epochs: int,
    batches_per_epoch: int,
    start_epoch: int = 0,
    sigma: float = RP_DEFAULTS["sigma"],
    gamma: float = RP_DEFAULTS["gamma"],
    rp_weight: float = RP_DEFAULTS["rp_weight"],
    device="cpu",
    **mgur_options,
):
    """``loss_fn(model, idx)`` for :func:`cirlib.train.fit`: MGUR's loss on the batch plus
    ``rp_weight`` times the relaxed proximity loss between the same composed queries and the
    frozen targets (one forward pass: the queries MGUR's closure computes are read back with a
    forward hook, so dropout draws and cost are MGUR's own). ``rp_weight=0`` is exactly MGUR.
    Under ``fit(distributed=True)`` both losses are those of the global batch: RP's :math:`N`
    is the global batch size, its pairs cross ranks, and every rank computes the one-process loss
    (:mod:`cirlib.distributed`).

    Introduced in chapter "Comparing the methods".
    """
    mgur = mgur_loss(
        features,
        epochs=epochs,
        batches_per_epoch=batches_per_epoch,
        start_epoch=start_epoch,
        device=device,
        **mgur_options,
    )
    targets = features.images[features.target_index].to(device)

    def loss_fn(model, idx):
        captured = []
        handle = model.register_forward_hook(lambda _m, _args, out: captured.append(out))
        try:
            loss = mgur(model, idx)
        finally:
            handle.remove()
        if not rp_weight:
            return loss
        q, t = captured[-1], targets[idx.to(device)]
        if is_wrapped(model):  # fit(distributed=True): RP over the global batch, as MGUR's terms
            q, t = gather_with_grad(q), gather(t)
        return loss + rp_weight * relaxed_proximity_loss(q, t, negative_confidence(t, sigma), gamma)

    loss_fn.clock = mgur.clock
    return loss_fn


@dataclass(frozen=True)
class Settings(mgur.Settings):
    """MGUR's settings plus RP's kernel width ``sigma``, margin ``gamma`` and weight."""

    sigma: float = RP_DEFAULTS["sigma"]
    gamma: float = RP_DEFAULTS["gamma"]
    rp_weight: float = RP_DEFAULTS["rp_weight"]


def fingerprint(settings: Settings) -> dict:
    """The checkpoint record: dropout, RP's three settings, the feature norm, and those of
    MGUR's loss options that differ from MGUR's defaults (the record this method's checkpoints
    have always had, so they still load)."""
    mgur_defaults = mgur.Settings()
    changed = {
        k: getattr(settings, k)
        for k in mgur.LOSS_OPTIONS
        if getattr(settings, k) != getattr(mgur_defaults, k)
    }
    rp = {k: getattr(settings, k) for k in RP_DEFAULTS}
    return {
        "method": "mgur_rp",
        "dropout": settings.dropout,
        **rp,
        "feature_norm": settings.feature_norm,
        **changed,
    }


def loss(features, settings: Settings, run: TrainingRun):
    """The spec's loss: :func:`mgur_rp_loss` on the run's schedule."""
    return mgur_rp_loss(
        features,
        epochs=run.epochs,
        batches_per_epoch=run.batches_per_epoch,
        start_epoch=run.start_epoch,
        sigma=settings.sigma,
        gamma=settings.gamma,
        rp_weight=settings.rp_weight,
        feature_norm=settings.feature_norm,
        device=run.device,
        **{k: getattr(settings, k) for k in mgur.LOSS_OPTIONS},
    )


MGUR_RP = SPEC = MethodSpec(
    name="mgur_rp",
    title="MGUR + RP (new)",
    chapter="notebooks/09_comparison",
    settings=Settings,
    build=mgur.build,
    loss=loss,
    queries=combiner_queries,
    compared=False,
    fingerprint=fingerprint,
    complete=mgur.complete,
)

# The trainer under its former name (:func:`cirlib.train.train_method` of this spec).
train_mgur_rp = SPEC.fit
