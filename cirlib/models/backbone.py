"""One entry point for the encoder: the shipped toy CLIP or any open_clip model.

``load_backbone(name, pretrained)`` returns ``(model, preprocess, tokenizer)`` for

* a config of ours in ``cirlib/models/configs/*.json`` (the toy encoders), built by open_clip's
  own factory after :func:`open_clip.add_model_config`, with our word-level tokenizer and, for
  ``pretrained="shipped"``, the checkpoint in ``cirlib/models/weights/``;
* any open_clip model name with a pretrained tag or a local weights file (the ``paper`` profile,
  e.g. ``("RN50x4", "openai")``), with open_clip's preprocessing and tokenizer.

Besides global features (what CLIP4Cir's Combiner uses), later methods need **token-level**
features: :func:`image_tokens` returns patch tokens for ViT towers and the last feature map,
flattened to tokens, for ResNet towers; :func:`text_tokens` returns per-token text states and a
padding mask. Introduced in chapter "A tiny CLIP for a tiny world".
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import VisionTransformer
from torchvision import transforms

from cirlib.models.preprocess import clip4cir_preprocess
from cirlib.models.rehearsal_encoder import register_rehearsal_configs
from cirlib.models.tokenizer import WordTokenizer

CONFIG_DIR = Path(__file__).parent / "configs"
WEIGHTS_DIR = Path(__file__).parent / "weights"
TOY_MEAN = (0.5, 0.5, 0.5)
TOY_STD = (0.5, 0.5, 0.5)

open_clip.add_model_config(CONFIG_DIR)
register_rehearsal_configs()  # RN50x4-rehearsal, the paper path's CPU stand-in


def toy_model_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def shipped_weights(name: str) -> Path:
    return WEIGHTS_DIR / f"{name}.pt"


def toy_preprocess() -> transforms.Compose:
    """Toy images are rendered at the encoder's size: no resize, no crop, only scaling."""
    return transforms.Compose([transforms.ToTensor(), transforms.Normalize(TOY_MEAN, TOY_STD)])


PREPROCESSING = ("clip4cir", "open_clip")  # image transforms for open_clip models


def load_backbone(
    name: str = "toy-vit-tiny",
    pretrained: str | os.PathLike | None = "shipped",
    device: str | torch.device = "cpu",
    preprocess: str = "clip4cir",
):
    """Build an encoder and return ``(model, preprocess, tokenizer)``, in eval mode.

    Parameters
    ----------
    name : a toy config name (``toy_model_names()``) or any open_clip model name.
    pretrained : for toy configs ``"shipped"`` (the checkpoint in the package), a path to a
        checkpoint written by ``data_scripts/pretrain_toy_clip.py``, or None (random init);
        for open_clip models an open_clip pretrained tag (e.g. ``"openai"``) or a weights file.
    preprocess : open_clip models only: ``"clip4cir"`` (default; CLIP4Cir's target pad with
        ratio 1.25, then resize and center crop, :func:`cirlib.models.preprocess.clip4cir_preprocess`)
        or ``"open_clip"`` (the model's own resize and center crop). Toy configs have one
        transform. The choice is part of the feature-cache key
        (:func:`cirlib.data.features.encoder_id`).
    """
    if preprocess not in PREPROCESSING:
        raise ValueError(f"unknown preprocess {preprocess!r}: choose one of {PREPROCESSING}")
    if name in toy_model_names():
        model = open_clip.create_model(name, pretrained=None, device=device)
        if pretrained == "shipped":
            pretrained = shipped_weights(name)
            if not pretrained.exists():
                raise FileNotFoundError(
                    f"no shipped checkpoint for {name!r} at {pretrained}; create it with "
                    f"`python data_scripts/pretrain_toy_clip.py --model {name}`"
                )
        if pretrained is not None:
            load_toy_checkpoint(model, pretrained)
        ctx = model.context_length
        tokenizer = WordTokenizer(context_length=ctx)
        if tokenizer.vocab_size != model.vocab_size:
            raise ValueError(
                f"config {name!r} has vocab_size {model.vocab_size} but the toy tokenizer has "
                f"{tokenizer.vocab_size} words; set text_cfg.vocab_size to match"
            )
        return model.eval(), toy_preprocess(), tokenizer
    if name not in open_clip.list_models():
        raise ValueError(
            f"unknown encoder {name!r}: toy configs are {toy_model_names()}; "
            "for the paper profile use an open_clip name from open_clip.list_models()"
        )
    if os.environ.get("CIRLIB_OFFLINE") == "1" and pretrained and not Path(pretrained).exists():
        raise RuntimeError(
            f"CIRLIB_OFFLINE=1: pretrained weights {name}/{pretrained} would be downloaded; "
            "run the paper profile on a machine with network access (e.g. Colab), or pass a "
            "local weights file as `pretrained`"
        )
    try:
        model, _, transform = open_clip.create_model_and_transforms(
            name, pretrained=str(pretrained) if pretrained else None, device=device
        )
    except (PermissionError, FileNotFoundError, IsADirectoryError):
        raise
    except Exception as err:
        if pretrained and Path(pretrained).is_file() and not _readable(pretrained):
            raise WeightsFileError(_unreadable_weights(pretrained, err)) from err
        raise  # a whole file that does not fit the model is another problem: say that one
    if preprocess == "clip4cir":
        size = model.visual.image_size
        transform = clip4cir_preprocess(size if isinstance(size, int) else size[0])
    return model.eval(), transform, open_clip.get_tokenizer(name)


class WeightsFileError(RuntimeError):
    """An encoder's weights file exists but does not load (most often an incomplete download)."""


def _readable(path) -> bool:
    """Whether a weights file is whole as a container: a zip archive with its central directory
    (torch and TorchScript files; a truncated one loses the directory, which sits at the end),
    a safetensors file whose header parses, or a legacy pickle that torch can read."""
    if zipfile.is_zipfile(path):
        return True
    try:
        if str(path).endswith(".safetensors"):
            from safetensors import safe_open

            with safe_open(str(path), framework="pt"):
                return True
        torch.load(path, map_location="cpu", weights_only=False)
        return True
    except Exception:
        return False


def _unreadable_weights(path, err: Exception) -> str:
    size = Path(path).stat().st_size
    first = str(err).split(". ")[0][:160]
    return (
        f"weights file {path} ({size:,} bytes) does not load ({type(err).__name__}: {first}); "
        "it is most likely an incomplete download or copy: delete it and download or copy it "
        "again (compare its size with the source's)"
    )


def load_toy_checkpoint(model: torch.nn.Module, path: str | os.PathLike) -> dict:
    """Load a checkpoint written by the pretraining script; returns its metadata.

    Raises :class:`WeightsFileError` naming the file when it cannot be read."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (PermissionError, FileNotFoundError, IsADirectoryError):
        raise  # not the file's bytes (the reader raises OSError(EINVAL) on a truncated one)
    except Exception as err:  # torch's zip reader and unpickler raise many kinds on bad bytes
        raise WeightsFileError(_unreadable_weights(path, err)) from None
    if "state_dict" not in ckpt:
        raise ValueError(f"{path} is not a toy-encoder checkpoint (no 'state_dict' key)")
    state = {k: v.float() for k, v in ckpt["state_dict"].items()}
    model.load_state_dict(state)
    return ckpt.get("meta", {})


@torch.no_grad()
def encode_images(model, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """Global image features ``[B, D]`` (un-normalised by default, as CLIP4Cir uses them)."""
    return model.encode_image(images, normalize=normalize)


@torch.no_grad()
def encode_texts(model, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """Global text features ``[B, D]``."""
    return model.encode_text(tokens, normalize=normalize)


@torch.no_grad()
def image_tokens(model, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Global features ``[B, D]`` and token features ``[B, N, W]``.

    ViT: the patch tokens after the final LayerNorm (before the projection), N = patches.
    ResNet: the last stage's feature map ``[B, W, h, w]`` permuted to ``[B, h*w, W]`` (a real
    spatial reshape, row-major over positions), and the attention-pooled global feature.
    """
    visual = model.visual
    if isinstance(visual, VisionTransformer):
        old = visual.output_tokens
        visual.output_tokens = True
        try:
            pooled, tokens = visual(images)
        finally:
            visual.output_tokens = old
        return pooled, tokens
    if isinstance(visual, ModifiedResNet):
        x = visual.stem(images.to(visual.conv1.weight.dtype))
        for layer in (visual.layer1, visual.layer2, visual.layer3, visual.layer4):
            x = layer(x)
        pooled = visual.attnpool(x)
        return pooled, x.flatten(2).transpose(1, 2)
    raise TypeError(f"token features are not implemented for {type(visual).__name__}")


@torch.no_grad()
def text_tokens(model, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Global text features ``[B, D]``, token states ``[B, L, W]`` and a mask ``[B, L]``.

    The states are those ``encode_text`` pools from (after ``ln_final``, before the
    projection); the mask is True from the start token through the end-of-text token, which is
    the highest id in every sequence for both CLIP's tokenizer and ours.
    """
    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast) + model.positional_embedding.to(cast)
    x = model.transformer(x, attn_mask=model.attn_mask)
    x = model.ln_final(x)
    eot = tokens.argmax(dim=-1)
    pooled = x[torch.arange(x.shape[0]), eot]
    proj = model.text_projection
    pooled = proj(pooled) if isinstance(proj, torch.nn.Linear) else pooled @ proj
    mask = torch.arange(tokens.shape[1], device=tokens.device)[None, :] <= eot[:, None]
    return pooled, x, mask


def normalize(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1)
