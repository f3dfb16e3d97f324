"""Zero-shot floors: what the frozen encoder retrieves with no training at all.

* image only — the reference's own feature (the text is ignored);
* text only — the modification text's feature (the reference is ignored);
* sum — the normalised image and text features added, CLIP4Cir stage 1's query without any
  training on top.

A trained method that does not beat these has learned nothing about composition. Introduced in
chapter "A tiny CLIP for a tiny world".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FLOORS = ("image only", "text only", "sum")


def zero_shot_queries(features, kind: str) -> torch.Tensor:
    """Query features ``[Q, D]`` (L2-normalised) of one floor for a split's ``SplitFeatures``."""
    img = F.normalize(features.images[features.reference_index].float(), dim=-1)
    txt = F.normalize(features.texts.float(), dim=-1)
    if kind == "image only":
        return img
    if kind == "text only":
        return txt
    if kind == "sum":
        return F.normalize(img + txt, dim=-1)
    raise ValueError(f"unknown floor {kind!r}; choose from {FLOORS}")
