r"""SEARLE-style zero-shot CIR as a registered method: invert a few images, distil a network.

Optimisation-based textual inversion (:func:`cirlib.zeroshot.oti.invert_images`) finds one
pseudo-word :math:`v_i` per training image, then a mapping network :math:`\phi` (GELU, dropout
0.5) learns to reproduce them with NT-Xent at :math:`\tau = 0.25` and AdamW (Baldrati et al.,
2023; :func:`loss` below):

.. math:: \mathcal{L}(\phi) = \mathrm{NTXent}_\tau\big(\{v_i\},\ \{\phi(x_i)\}\big).

The inversion is part of the run: it is computed with the run's seed when training starts (not
when a finished checkpoint is loaded), over the first ``oti_images`` images of the same fixed
permutation of the gallery as :mod:`cirlib.methods.pic2word`, so the spread over seeds includes
the inversion's own randomness. Queries are written as Pic2Word's. Left out, as in
:mod:`cirlib.zeroshot.oti`: the language-model regulariser of the inversion.

Introduced in chapter "Zero-shot CIR".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from cirlib.distributed import gather, gather_with_grad, is_wrapped
from cirlib.losses.nt_xent import nt_xent_loss
from cirlib.methods import pic2word
from cirlib.methods.pic2word import budget_key
from cirlib.methods.spec import MethodSpec
from cirlib.train import TrainingRun
from cirlib.zeroshot.oti import invert_images
from cirlib.zeroshot.pseudo_word_model import PseudoWordModel, frozen_encoder
from cirlib.zeroshot.queries import IMAGE_TEMPLATE, QUERY_TEMPLATE
from cirlib.zeroshot.searle import SEARLE_TEMPERATURE
from cirlib.zeroshot.tensor_digest import tensor_digest

# Images inverted, inversion steps, and the distillation's budget per profile; SEARLE's release
# inverts with 350 steps and distils with AdamW, learning rate 1e-4, batch 256.
BUDGET = {
    "smoke": dict(oti_images=24, oti_steps=40, epochs=20, batch_size=64, lr=1e-4),
    "toy": dict(oti_images=128, oti_steps=150, epochs=100, batch_size=64, lr=1e-4),
    "paper": dict(oti_images=1000, oti_steps=350, epochs=100, batch_size=256, lr=1e-4),
    # a CPU rehearsal of the paper profile (cirlib.rehearsal): smoke sizes, the paper rate
    "rehearsal": dict(oti_images=24, oti_steps=40, epochs=20, batch_size=64, lr=1e-4),
}


@dataclass(frozen=True)
class Settings:
    """The frozen encoder, the templates, the inversion (images, steps, learning rate) and
    the distilled network (shape, dropout, temperature, AdamW's weight decay)."""

    encoder: str = "toy-vit-tiny"
    pretrained: str = "shipped"
    image_template: str = IMAGE_TEMPLATE
    query_template: str = QUERY_TEMPLATE
    oti_images: int = 128
    oti_steps: int = 150
    oti_lr: float = 2e-2
    hidden_layers: int = 2
    dropout: float = 0.5
    temperature: float = SEARLE_TEMPERATURE
    weight_decay: float = 0.01
    images_digest: str = ""  # filled by complete()


def _as_pic2word(settings: Settings) -> pic2word.Settings:
    return pic2word.Settings(images=settings.oti_images)


def training_images(features, settings: Settings) -> torch.Tensor:
    """Gallery rows ``[n]`` that are inverted: Pic2Word's permutation, the first ``oti_images``."""
    return pic2word.training_images(features, _as_pic2word(settings))


def complete(features, settings: Settings) -> Settings:
    """Record a digest of the inverted images' features in the settings."""
    rows = training_images(features, settings)
    return dataclasses.replace(settings, images_digest=tensor_digest(features.images[rows]))


def samples(features, settings: Settings) -> int:
    """The run's training examples are the inverted images."""
    return len(training_images(features, settings))


def build(features, settings: Settings) -> PseudoWordModel:
    """A GELU :class:`~cirlib.zeroshot.mapping_network.PseudoWordMapper` bound to the frozen
    encoder: :func:`cirlib.methods.pic2word.build` with SEARLE's activation."""
    return pic2word.build(features, settings, activation="gelu")


def invert(features, settings: Settings, seed: int, device="cpu") -> torch.Tensor:
    """The OTI pseudo-words ``[n, W]`` of the run's images (``seed`` draws their start)."""
    encoder, tokenizer = frozen_encoder(settings.encoder, settings.pretrained)
    x = features.images[training_images(features, settings)].float().to(device)
    with torch.autocast(torch.device(device).type, enabled=False):
        v, _ = invert_images(
            encoder,
            tokenizer,
            x,
            template=settings.image_template,
            steps=settings.oti_steps,
            lr=settings.oti_lr,
            seed=seed,
        )
    return v


def loss(features, settings: Settings, run: TrainingRun):
    r"""``loss_fn(model, idx)``: NT-Xent between the OTI pseudo-words of the images ``idx``
    addresses and :math:`\phi`'s predictions. The inversion runs on the first call, so loading
    a finished checkpoint costs none; under DDP the global batch is gathered."""
    images = features.images[training_images(features, settings)].float().to(run.device)
    targets: list[torch.Tensor] = []

    def loss_fn(model, idx):
        if not targets:
            targets.append(invert(features, settings, run.seed, run.device))
        idx = idx.to(run.device)
        v, pred = targets[0][idx], model(images[idx])
        if is_wrapped(model):
            v, pred = gather(v), gather_with_grad(pred)
        return nt_xent_loss(v, pred, settings.temperature)

    return loss_fn


def chapter_options(cfg) -> dict:
    """Pic2Word's encoder and templates for the profile; the inversion's size (:data:`BUDGET`)."""
    base = pic2word.chapter_options(cfg)
    b = BUDGET[budget_key(cfg)]
    return {
        **{k: base[k] for k in ("encoder", "pretrained", "image_template", "query_template")},
        "oti_images": b["oti_images"],
        "oti_steps": b["oti_steps"],
    }


def budget(cfg):
    """The distillation's epochs, batch size and learning rate for the profile."""
    b = BUDGET[budget_key(cfg)]
    return dataclasses.replace(cfg, epochs=b["epochs"], batch_size=b["batch_size"], lr=b["lr"])


def optimizer(settings: Settings, cfg):
    """AdamW at the budget's learning rate and the settings' weight decay (SEARLE's release)."""
    return lambda model: torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, weight_decay=settings.weight_decay
    )


def fingerprint(settings: Settings) -> dict:
    """The settings, the optimiser and the encoder's id (see :func:`cirlib.methods.pic2word.fingerprint`)."""
    return {**pic2word.fingerprint(settings), "method": "searle", "optimizer": "adamw"}


SPEC = MethodSpec(
    name="searle",
    title="SEARLE-style (OTI + distillation)",
    chapter="notebooks/08_zero_shot",
    settings=Settings,
    build=build,
    loss=loss,
    queries=pic2word.queries,
    compared=False,
    chapter_options=chapter_options,
    budget=budget,
    fingerprint=fingerprint,
    complete=complete,
    samples=samples,
    needs_captions=True,
    optimizer=optimizer,
)
