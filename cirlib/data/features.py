"""Encode a split once and cache the features on disk.

Every method in the book trains on the *frozen* encoder's features (CLIP4Cir's stage 2), so the
images and texts of a split are encoded once and reused by every chapter. The cache key hashes
the encoder (name + weights) and the split's content (gallery names, captions), so a changed
checkpoint or dataset never returns stale features; files are written atomically.

Introduced in chapter "The Combiner baseline".
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from cirlib.data.records import CIRSplit
from cirlib.io import atomic_torch_save
from cirlib.models import backbone

FORMAT_VERSION = 1


@dataclass
class SplitFeatures:
    """Features of one split; rows of ``images`` follow ``split.gallery``, rows of ``texts``
    follow ``split.triplets``. Global features are float32 and un-normalised; token features
    (when asked for) are float16 to halve the cache."""

    images: torch.Tensor  # [N, D]
    texts: torch.Tensor  # [Q, D]
    reference_index: torch.Tensor  # [Q] gallery row of each query's reference
    target_index: torch.Tensor  # [Q] gallery row of the target, -1 when unknown (test split)
    image_tokens: torch.Tensor | None = None  # [N, T, W]
    text_tokens: torch.Tensor | None = None  # [Q, L, W]
    text_mask: torch.Tensor | None = None  # [Q, L] True on real tokens

    def as_dict(self) -> dict:
        return dict(vars(self))


def encoder_id(name: str, pretrained, preprocess: str = "clip4cir") -> str:
    """Name plus a hash of the weights file when there is one (so a retrained checkpoint differs);
    for open_clip models also the image transform (``load_backbone``'s ``preprocess``), so
    features computed with another transform are never reused. A local weights file is named by
    a hash of its content, never by its path, since chapters put the id into file names."""
    if name in backbone.toy_model_names():
        path = backbone.shipped_weights(name) if pretrained == "shipped" else pretrained
        if path is None:
            return f"{name}:random"
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
        return f"{name}:{digest}"
    if pretrained is not None and Path(pretrained).is_file():
        # A local weights file: its content, not its path (the id names checkpoint files).
        digest = hashlib.sha256(Path(pretrained).read_bytes()).hexdigest()[:16]
        return f"{name}:file-{digest}:{preprocess}"
    return f"{name}:{pretrained}:{preprocess}"


def split_fingerprint(split: CIRSplit) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(split.gallery).encode())
    h.update(json.dumps([(t.reference, t.caption) for t in split.triplets]).encode())
    return h.hexdigest()[:16]


@torch.no_grad()
def encode_split(
    split: CIRSplit,
    model,
    preprocess,
    tokenizer,
    *,
    tokens: bool = False,
    batch_size: int = 512,
    device: str = "cpu",
) -> SplitFeatures:
    model.to(device).eval()
    images, image_toks = [], []
    for start in range(0, len(split.gallery), batch_size):
        names = split.gallery[start : start + batch_size]
        x = torch.stack([preprocess(split.load_image(n)) for n in names]).to(device)
        if tokens:
            g, t = backbone.image_tokens(model, x)
            image_toks.append(t.half().cpu())
        else:
            g = backbone.encode_images(model, x)
        images.append(g.float().cpu())
    texts, text_toks, masks = [], [], []
    captions = [t.caption for t in split.triplets]
    for start in range(0, len(captions), batch_size):
        ids = tokenizer(captions[start : start + batch_size]).to(device)
        if tokens:
            g, t, m = backbone.text_tokens(model, ids)
            text_toks.append(t.half().cpu())
            masks.append(m.cpu())
        else:
            g = backbone.encode_texts(model, ids)
        texts.append(g.float().cpu())
    ref = torch.tensor([split.index_of(t.reference) for t in split.triplets])
    tgt = torch.tensor([split.index_of(t.target) if t.target else -1 for t in split.triplets])
    return SplitFeatures(
        images=torch.cat(images),
        texts=torch.cat(texts),
        reference_index=ref,
        target_index=tgt,
        image_tokens=torch.cat(image_toks) if tokens else None,
        text_tokens=torch.cat(text_toks) if tokens else None,
        text_mask=torch.cat(masks) if tokens else None,
    )


def cached_features(
    split: CIRSplit,
    model,
    preprocess,
    tokenizer,
    *,
    encoder: str,
    cache_dir: str | Path,
    tokens: bool = False,
    batch_size: int = 512,
    device: str = "cpu",
) -> SplitFeatures:
    """Features of ``split`` from the cache, encoding and saving them on a miss.

    ``encoder`` is :func:`encoder_id` of the model passed in; it is part of the key.
    """
    key = hashlib.sha256(
        json.dumps([FORMAT_VERSION, encoder, split_fingerprint(split), tokens]).encode()
    ).hexdigest()[:20]
    safe = split.name.replace("/", "_")
    path = Path(cache_dir) / f"{safe}-{key}.pt"
    if path.exists():
        return SplitFeatures(**torch.load(path, weights_only=True))
    feats = encode_split(
        split, model, preprocess, tokenizer, tokens=tokens, batch_size=batch_size, device=device
    )
    atomic_torch_save(path, feats.as_dict())
    return feats
