r"""CLIP4Cir stage 1: fine-tune the CLIP encoders on the task, optionally with gradient
checkpointing.

The query is the *sum* of the un-normalised reference-image and text embeddings, the target the
target-image embedding, and the loss the batch-based classification loss at scale 100
(Baldrati et al., 2023):

.. math::

    q_i = \frac{\psi_I(I^r_i) + \psi_T(T_i)}{\lVert \psi_I(I^r_i) + \psi_T(T_i) \rVert}, \quad
    t_i = \frac{\psi_I(I^t_i)}{\lVert \psi_I(I^t_i) \rVert}, \quad
    \mathcal{L} = \frac{1}{B}\sum_i -\log\frac{e^{100\, q_i^\top t_i}}{\sum_j e^{100\, q_i^\top t_j}}.

CLIP4Cir calls ``clip_model.eval()`` once and never ``train()``, so a ResNet's BatchNorm keeps
its running statistics; :class:`Stage1Model` reproduces that (the CLIP stays in eval mode while
gradients flow). The authors fit batch 128 for both encoders on a 24 GB GPU only with gradient
checkpointing, which is not in their public code; :func:`set_grad_checkpointing` turns it on:
open_clip's own switch for transformer towers (ViT and the text tower), plus per-block
checkpointing of the four ResNet stages, which open_clip's ``ModifiedResNet`` leaves as a no-op.
Activations inside a checkpointed block are recomputed in the backward pass instead of stored:
less memory for about one extra forward pass of compute, and the same loss and gradients.

Introduced in the book page "Running the paper profile on a GPU".
"""

from __future__ import annotations

import types
from pathlib import Path

import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet
from torch.utils.checkpoint import checkpoint

from cirlib.distributed import global_batch
from cirlib.losses import batch_classification_loss
from cirlib.train import FitResult, fit

LOGIT_SCALE = 100.0
ENCODERS = ("both", "image", "text")
# CLIP4Cir's stage 1: AdamW (0.9, 0.999), eps 1e-7, PyTorch's default weight decay 0.01, lr 2e-6,
# batch 128 (README command), constant learning rate.
STAGE1 = {"lr": 2e-6, "batch_size": 128, "betas": (0.9, 0.999), "eps": 1e-7, "weight_decay": 0.01}

__all__ = [
    "STAGE1",
    "Stage1Model",
    "set_grad_checkpointing",
    "stage1_loss",
    "stage1_optimizer",
    "train_stage1",
]


def _checkpointed_stage(self, x: torch.Tensor) -> torch.Tensor:
    """``nn.Sequential.forward`` with every block under activation checkpointing."""
    for block in self:
        x = checkpoint(block, x, use_reentrant=False)
    return x


def set_grad_checkpointing(clip, enable: bool = True) -> None:
    """Recompute activations block by block in the backward pass, for any open_clip CLIP.

    Transformer towers use open_clip's ``set_grad_checkpointing``. For a ``ModifiedResNet``
    (RN50, RN50x4, ...) each stage ``layer1..layer4`` gets a checkpointed forward as an instance
    attribute, so parameter names (and checkpoints) do not change. With BatchNorm in train mode
    the recomputation would update running statistics twice; CLIP4Cir keeps them frozen (eval
    mode), which :class:`Stage1Model` does.

    Introduced in the book page "Running the paper profile on a GPU".
    """
    clip.set_grad_checkpointing(enable)
    if isinstance(clip.visual, ModifiedResNet):
        for name in ("layer1", "layer2", "layer3", "layer4"):
            stage = getattr(clip.visual, name)
            if enable:
                stage.forward = types.MethodType(_checkpointed_stage, stage)
            elif "forward" in vars(stage):
                del stage.forward


class Stage1Model(torch.nn.Module):
    """A CLIP model set up for CLIP4Cir's stage 1.

    Parameters
    ----------
    clip : an open_clip CLIP (``load_backbone(...)[0]``).
    encoder : ``"both"`` (CLIP4Cir's default), ``"image"`` or ``"text"``: which tower trains;
        the other is frozen (``requires_grad=False``).
    grad_checkpointing : recompute activations in the backward pass
        (:func:`set_grad_checkpointing`).

    ``forward(reference_images, tokens, target_images)`` returns the unit query and target
    embeddings ``([B, D], [B, D])``. ``train()`` leaves the CLIP in eval mode (frozen BatchNorm
    statistics, as CLIP4Cir).

    Introduced in the book page "Running the paper profile on a GPU".
    """

    def __init__(self, clip, encoder: str = "both", grad_checkpointing: bool = False):
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
        self.clip = clip
        self.encoder = encoder
        text_params = [p for n, p in clip.named_parameters() if not n.startswith("visual.")]
        for p in clip.visual.parameters():
            p.requires_grad_(encoder in ("both", "image"))
        for p in text_params:
            p.requires_grad_(encoder in ("both", "text"))
        if "logit_scale" in dict(clip.named_parameters()):
            clip.logit_scale.requires_grad_(False)  # CLIP4Cir fixes the scale at 100
        if hasattr(clip, "logit_bias") and isinstance(clip.logit_bias, torch.nn.Parameter):
            clip.logit_bias.requires_grad_(False)
        set_grad_checkpointing(clip, grad_checkpointing)

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()
        return self

    def forward(self, reference_images, tokens, target_images):
        # One image pass for references and targets together: half the kernel launches.
        both = self.clip.encode_image(torch.cat([reference_images, target_images]))
        ref, tgt = both[: len(reference_images)], both[len(reference_images) :]
        query = F.normalize(ref + self.clip.encode_text(tokens), dim=-1)
        return query, F.normalize(tgt, dim=-1)


def stage1_loss(split, preprocess, tokenizer, device="cpu", scale: float = LOGIT_SCALE):
    """``loss_fn(model, idx)`` for :func:`cirlib.train.fit`: reads the images and captions of
    triplets ``idx`` of ``split``, and takes the loss over the global batch (all ranks, when
    run under torchrun; one process otherwise).

    Introduced in the book page "Running the paper profile on a GPU".
    """
    triplets = split.triplets
    if any(t.target is None for t in triplets):
        raise ValueError(f"split {split.name!r} has queries without a target; train on train")

    def images(names):
        return torch.stack([preprocess(split.load_image(n)) for n in names]).to(device)

    def loss_fn(model, idx):
        batch = [triplets[int(i)] for i in idx]
        ref = images([t.reference for t in batch])
        tgt = images([t.target for t in batch])
        tokens = tokenizer([t.caption for t in batch]).to(device)
        query, target = model(ref, tokens, tgt)
        return global_batch(batch_classification_loss, query, target, scale=scale)

    return loss_fn


def stage1_optimizer(lr: float = STAGE1["lr"]):
    """``optimizer(model)`` for :func:`cirlib.train.fit`: CLIP4Cir's AdamW over the trainable
    parameters (betas (0.9, 0.999), eps 1e-7, weight decay 0.01)."""

    def build(model):
        trainable = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.AdamW(
            trainable,
            lr=lr,
            betas=STAGE1["betas"],
            eps=STAGE1["eps"],
            weight_decay=STAGE1["weight_decay"],
        )

    return build


def train_stage1(
    split,
    clip,
    preprocess,
    tokenizer,
    cfg,
    *,
    seed: int,
    encoder: str = "both",
    grad_checkpointing: bool = True,
    epochs: int | None = None,
    batch_size: int = STAGE1["batch_size"],
    lr: float = STAGE1["lr"],
    checkpoint: str | Path | None = None,
    eval_fn=None,
    distributed: bool = False,
) -> FitResult:
    """Fine-tune ``clip`` on ``split`` with CLIP4Cir's stage-1 recipe (epochs: the profile's
    unless given; CLIP4Cir's README runs 100). The trained encoder is ``result.model.clip``.

    Introduced in the book page "Running the paper profile on a GPU".
    """
    torch.manual_seed(seed)
    model = Stage1Model(clip, encoder=encoder, grad_checkpointing=grad_checkpointing)
    settings = {
        "method": "clip4cir-stage1",
        "encoder": encoder,
        "optimizer": {k: STAGE1[k] for k in ("betas", "eps", "weight_decay")},
        "scale": LOGIT_SCALE,
        "split": split.name,
        "n": len(split),
    }
    return fit(
        model,
        stage1_loss(split, preprocess, tokenizer, device=cfg.device),
        len(split),
        epochs=cfg.epochs if epochs is None else epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        checkpoint=checkpoint,
        settings=settings,
        device=cfg.device,
        amp=cfg.amp,
        eval_fn=eval_fn,
        desc=f"CLIP stage 1 seed {seed}",
        distributed=distributed,
        optimizer=stage1_optimizer(lr),
    )
