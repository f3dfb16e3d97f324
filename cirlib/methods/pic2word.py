r"""Pic2Word-style zero-shot CIR as a registered method: a mapping network trained on images alone.

The frozen encoder's image features :math:`x_i` of the training split's gallery (no triplet, no
caption) train a mapping network :math:`\phi` so that the template holding the pseudo-word
:math:`\phi(x_i)` retrieves its own image in the batch (Saito et al., 2023):

.. math:: y_i = E_T(\text{template};\ {*} \mapsto \phi(x_i)), \qquad
          \mathcal{L}(\phi) = \mathrm{CLIP}_s(\{\hat x_i\}, \{\hat y_i\}),

CLIP's symmetric contrastive loss at the encoder's logit scale :math:`s`
(:func:`cirlib.zeroshot.pic2word.pseudo_word_contrastive_loss`). A query is the text feature of
the query template, the reference's pseudo-word followed by the modification text
(:func:`cirlib.zeroshot.queries.mapper_queries`), scored against the frozen image features.

The method's batch indices address images (``SPEC.samples``), the first ``images`` of a fixed
permutation of the gallery (all of them when ``images`` is 0); the checkpoint records a digest
of those features, so a run on other images refuses it.

Introduced in chapter "Zero-shot CIR".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from cirlib.distributed import gather, gather_with_grad, is_wrapped
from cirlib.losses.clip_contrastive import clip_contrastive_loss
from cirlib.methods.spec import MethodSpec
from cirlib.models.pseudo_tokens import (
    encode_text_with_pseudo_tokens,
    placeholder_id,
    token_embedding_layer,
)
from cirlib.train import TrainingRun
from cirlib.zeroshot.mapping_network import PseudoWordMapper
from cirlib.zeroshot.pseudo_word_model import PseudoWordModel, frozen_encoder
from cirlib.zeroshot.queries import (
    IMAGE_TEMPLATE,
    PAPER_IMAGE_TEMPLATE,
    PAPER_QUERY_TEMPLATE,
    PLACEHOLDER,
    QUERY_TEMPLATE,
    mapper_queries,
)
from cirlib.zeroshot.tensor_digest import tensor_digest

# The chapter's training images and budget per profile (the Combiner family's cfg.epochs do not
# apply: one epoch here is one text-tower pass per image).
BUDGET = {
    "smoke": dict(images=600, epochs=2, batch_size=64, lr=1e-3),
    "toy": dict(images=6000, epochs=4, batch_size=128, lr=1e-3),
    "paper": dict(images=0, epochs=10, batch_size=256, lr=1e-4),
    # a CPU rehearsal of the paper profile (cirlib.rehearsal): smoke sizes, the paper rate
    "rehearsal": dict(images=600, epochs=2, batch_size=64, lr=1e-4),
}


@dataclass(frozen=True)
class Settings:
    """The frozen encoder (name and weights), the templates, the mapping network's shape and
    how many training images it sees (0: the whole gallery)."""

    encoder: str = "toy-vit-tiny"
    pretrained: str = "shipped"
    image_template: str = IMAGE_TEMPLATE
    query_template: str = QUERY_TEMPLATE
    hidden_layers: int = 2
    dropout: float = 0.1
    images: int = 0
    images_digest: str = ""  # filled by complete(): which features the run trained on


def training_images(features, settings: Settings) -> torch.Tensor:
    """Gallery rows ``[n]`` the run trains on: the first ``settings.images`` of a permutation
    drawn with seed 0 (fixed, so every seed of a method trains on the same images)."""
    n = len(features.images)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    return order if settings.images <= 0 else order[: min(settings.images, n)]


def complete(features, settings: Settings) -> Settings:
    """Record a digest of the training images' features in the settings."""
    rows = training_images(features, settings)
    return dataclasses.replace(settings, images_digest=tensor_digest(features.images[rows]))


def samples(features, settings: Settings) -> int:
    """The run's training examples are images."""
    return len(training_images(features, settings))


def build(features, settings: Settings, activation: str = "relu") -> PseudoWordModel:
    """A :class:`~cirlib.zeroshot.mapping_network.PseudoWordMapper` from the features' width to
    the text tower's word width (``activation``: Pic2Word's ReLU by default), bound to the
    frozen encoder."""
    encoder, tokenizer = frozen_encoder(settings.encoder, settings.pretrained)
    width = int(encoder.visual.output_dim)
    if features.images.shape[1] != width:
        raise ValueError(
            f"the features have width {features.images.shape[1]} but {settings.encoder} "
            f"({settings.pretrained}) embeds into {width}: train on features of the encoder "
            "named in the settings"
        )
    mapper = PseudoWordMapper(
        width,
        token_embedding_layer(encoder).embedding_dim,
        hidden_layers=settings.hidden_layers,
        dropout=settings.dropout,
        activation=activation,
    )
    return PseudoWordModel(
        mapper, encoder, tokenizer, settings.image_template, settings.query_template
    )


def loss(features, settings: Settings, run: TrainingRun):
    r"""``loss_fn(model, idx)``: :math:`\mathcal{L}(\phi)` over the images ``idx`` addresses.
    Under DDP the image and text features of all ranks are gathered (the global batch)."""
    encoder, tokenizer = frozen_encoder(settings.encoder, settings.pretrained)
    images = features.images[training_images(features, settings)].float().to(run.device)
    star = placeholder_id(tokenizer, PLACEHOLDER)
    tokens = tokenizer([settings.image_template])[0].to(run.device)
    scale = float(encoder.logit_scale.detach().exp())

    def loss_fn(model, idx):
        x = images[idx.to(run.device)]
        pseudo = model(x)
        template = tokens.expand(len(pseudo), -1)
        texts = encode_text_with_pseudo_tokens(encoder, template, pseudo, star)
        if is_wrapped(model):
            x, texts = gather(x), gather_with_grad(texts)
        return clip_contrastive_loss(x, texts, scale)

    return loss_fn


def queries(model: PseudoWordModel, features, split) -> torch.Tensor:
    """``[Q, D]`` unit rows: the query template holding each reference's pseudo-word and its
    modification text (:func:`~cirlib.zeroshot.queries.mapper_queries`)."""
    return mapper_queries(
        model.mapper, model.encoder, model.tokenizer, features, split, model.query_template
    )


def chapter_options(cfg) -> dict:
    """The profile's encoder, its templates (the caption grammar on the toy world, Pic2Word's
    "a photo of" on real data) and the number of training images."""
    toy = cfg.dataset == "toy"
    return {
        "encoder": cfg.encoder,
        "pretrained": str(cfg.encoder_pretrained),
        "image_template": IMAGE_TEMPLATE if toy else PAPER_IMAGE_TEMPLATE,
        "query_template": QUERY_TEMPLATE if toy else PAPER_QUERY_TEMPLATE,
        "images": BUDGET[budget_key(cfg)]["images"],
    }


def budget_key(cfg) -> str:
    """The row of :data:`BUDGET` for ``cfg``: its profile, or ``"rehearsal"`` for a CPU
    rehearsal of the paper profile (only sizes shrink)."""
    return "rehearsal" if getattr(cfg, "rehearsal", False) else cfg.name


def budget(cfg):
    """The chapter's epochs, batch size and learning rate for the profile (:data:`BUDGET`)."""
    b = BUDGET[budget_key(cfg)]
    return dataclasses.replace(cfg, epochs=b["epochs"], batch_size=b["batch_size"], lr=b["lr"])


def fingerprint(settings: Settings) -> dict:
    """The settings plus the encoder's id (a hash of its weights file for the toy encoder), so
    a mapper trained for other weights of the same name is never loaded."""
    from cirlib.data.features import encoder_id

    return {
        "method": "pic2word",
        **dataclasses.asdict(settings),
        "encoder_id": encoder_id(settings.encoder, settings.pretrained),
    }


SPEC = MethodSpec(
    name="pic2word",
    title="Pic2Word-style (images only)",
    chapter="notebooks/08_zero_shot",
    settings=Settings,
    build=build,
    loss=loss,
    queries=queries,
    compared=False,
    chapter_options=chapter_options,
    budget=budget,
    fingerprint=fingerprint,
    complete=complete,
    samples=samples,
    needs_captions=True,
)
