"""The ``paper`` profile rehearsed on a CPU: the same code, every size shrunk.

``CIRLIB_REHEARSAL=1`` (or ``resolve("paper", rehearsal=True)``) keeps ``PROFILE="paper"`` and
its code path (real-format datasets installed by ``prepare_data.py``, an open_clip model loaded
from a weights file, CLIP4Cir's target pad, the feature cache, the heads, the evaluation
protocols, the CIRR submission files, chapter 8's tables) and replaces only sizes
(:data:`REHEARSAL_SIZES`): the encoder becomes :data:`REHEARSAL_ENCODER` (:mod:`cirlib.models.rehearsal_encoder`)
with a seeded random weights file, training runs 2 epochs of small batches with one seed. A
rehearsal's numbers measure nothing (random encoder, toy images); every output that carries
them says "rehearsal" (:attr:`cirlib.config.Profile.rehearsal`, :func:`run_provenance`).

``data_scripts/rehearse_paper.py`` runs the whole rehearsal (see ``book/paper_profile.md``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cirlib.models.rehearsal_encoder import REHEARSAL_ENCODER
from cirlib.paths import subdir

REHEARSAL_ENV = "CIRLIB_REHEARSAL"
# RN50x4's open_clip family shrunk; config and weights writer in cirlib.models.rehearsal_encoder

# The sizes a rehearsal replaces in the paper profile; everything else stays the paper's.
REHEARSAL_SIZES = dict(
    encoder=REHEARSAL_ENCODER,
    image_size=64,
    epochs=2,
    batch_size=32,
    seeds=(0,),
    feature_batch=64,
    # chapter 2's demonstration of the toy encoder's pretraining: the smoke profile's sizes
    pretrain_steps=4,
    pretrain_batch=32,
    pretrain_scenes=256,
)


def rehearsal_requested() -> bool:
    """True when ``$CIRLIB_REHEARSAL`` is ``1``; unset, empty or ``0`` is False."""
    value = os.environ.get(REHEARSAL_ENV, "").strip()
    if value in ("", "0"):
        return False
    if value == "1":
        return True
    raise ValueError(
        f"{REHEARSAL_ENV}={value!r}: set it to 1 to rehearse the paper profile on the CPU "
        "(tiny random encoder, toy data in the real formats), or unset it"
    )


def rehearsal_weights_path(seed: int = 0) -> Path:
    """Where the rehearsal encoder's weights file lives: ``$CIRLIB_DATA_DIR/rehearsal/``."""
    return subdir("rehearsal") / f"{REHEARSAL_ENCODER}-seed{seed}.pt"


def rehearsal_settings() -> dict:
    """The profile fields a rehearsal sets (:data:`REHEARSAL_SIZES` plus the weights file)."""
    return {
        **REHEARSAL_SIZES,
        "encoder_pretrained": str(rehearsal_weights_path()),
        "rehearsal": True,
    }


def dataset_manifest(dataset: str) -> dict | None:
    """The ``manifest.json`` that ``prepare_data.py`` wrote when it installed ``dataset`` under
    ``$CIRLIB_DATA_DIR`` (None when there is none, e.g. the toy world)."""
    path = subdir(dataset) / "manifest.json" if dataset != "toy" else None
    if path is None or not path.is_file():
        return None
    return json.loads(path.read_text())


def run_provenance(cfg) -> dict:
    """What a results file needs to say which path produced it: whether it was a rehearsal, the
    open_clip architecture (name and config) for open_clip encoders, and the manifest of the
    installed dataset."""
    import open_clip

    from cirlib.models import backbone

    arch = None
    if cfg.encoder not in backbone.toy_model_names():
        arch = {"name": cfg.encoder, "open_clip_config": open_clip.get_model_config(cfg.encoder)}
    return {
        "rehearsal": bool(getattr(cfg, "rehearsal", False)),
        "encoder_architecture": arch,
        "dataset_manifest": dataset_manifest(cfg.dataset),
    }
