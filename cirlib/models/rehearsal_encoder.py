"""The rehearsal encoder: RN50x4's architecture family, shrunk so the ``paper`` path runs on a CPU.

The ``paper`` profile encodes images with OpenAI's CLIP RN50x4 (Radford et al., 2021), as
CLIP4Cir does (Baldrati et al., 2023): an open_clip ``ModifiedResNet`` image tower (stem of three
convolutions, four bottleneck stages, attention pooling) and a 12-layer text transformer with
QuickGELU. ``RN50x4-rehearsal`` is the same open_clip architecture with every size cut:

==================  ====================  =====================
                    RN50x4                RN50x4-rehearsal
==================  ====================  =====================
input size          288                   64
ResNet stages       [4, 6, 10, 6]         [1, 1, 1, 1]
ResNet width        80                    16
embedding D         640                   64
text width/layers   640 / 12              64 / 2
tokenizer           CLIP BPE, 77 tokens   the same
==================  ====================  =====================

Its config is registered with :func:`open_clip.add_model_config` (the way open_clip registers
its own ``model_configs/*.json``) when :mod:`cirlib.models.backbone` is imported, and it is
loaded by the same branch of :func:`cirlib.models.backbone.load_backbone` as
``("RN50x4", "openai")``: open_clip's factory with a weights file, CLIP4Cir's target-pad
preprocessing and open_clip's tokenizer. No weights can be downloaded for it, so
:func:`write_rehearsal_weights` writes a seeded random initialisation to a local file at
rehearsal time; the features it produces are meaningless and the numbers of a rehearsal are
never results.
"""

from __future__ import annotations

import os
from pathlib import Path

import open_clip
import torch

from cirlib.io import atomic_torch_save

REHEARSAL_CONFIG_DIR = Path(__file__).parent / "rehearsal_configs"
__all__ = ["REHEARSAL_CONFIG_DIR", "REHEARSAL_ENCODER", "write_rehearsal_weights"]

# the stem of its open_clip config, rehearsal_configs/RN50x4-rehearsal.json
REHEARSAL_ENCODER = "RN50x4-rehearsal"


def register_rehearsal_configs() -> None:
    """Make ``RN50x4-rehearsal`` an open_clip model name (idempotent)."""
    open_clip.add_model_config(REHEARSAL_CONFIG_DIR)


def write_rehearsal_weights(
    path: str | os.PathLike, seed: int = 0, name: str = REHEARSAL_ENCODER
) -> Path:
    """Write the ``state_dict`` of ``open_clip.create_model(name)`` initialised under
    ``torch.manual_seed(seed)`` to ``path`` (atomically), in the plain state-dict format
    open_clip's ``load_checkpoint`` reads. The same random seed yields the same tensors, so a rehearsal
    reuses its feature cache and checkpoints.

    An existing file is kept: its hash names the features and checkpoints made from it.
    """
    path = Path(path)
    if path.exists():
        return path
    register_rehearsal_configs()
    if name not in open_clip.list_models():
        raise ValueError(f"unknown rehearsal encoder {name!r}; use {REHEARSAL_ENCODER!r}")
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = open_clip.create_model(name, pretrained=None)
    finally:
        torch.random.set_rng_state(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_torch_save(path, model.state_dict())
