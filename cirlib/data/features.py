"""Encode a split once and cache the features on disk.

Every method in the book trains on the *frozen* encoder's features (CLIP4Cir's stage 2), so the
images and texts of a split are encoded once and reused by every chapter. The cache key hashes
everything the cache holds and everything it was computed from: the encoder (name + weights),
the gallery's names, each query's reference, caption and target, whether token features are
kept, and the images' bytes (:mod:`cirlib.data.image_digest`). A changed checkpoint, annotation
or picture therefore never returns stale features. Files are written atomically; a damaged
cache file (truncated, empty, not what the split needs) is reported and encoded again, since it
is derived data.

Introduced in chapter "The Combiner baseline".
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from cirlib.data.image_digest import image_content_digest
from cirlib.data.records import CIRSplit
from cirlib.io import atomic_torch_save, exclusive
from cirlib.models import backbone

# 2: the key also covers each query's target and the images' bytes (version 1 files could hold
# stale targets or features of other pictures, so none of them is reused).
FORMAT_VERSION = 2


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
    """SHA-256 (hex, 16 characters) of the split's annotations as the cache stores them: the
    gallery's names in order and each query's ``(reference, caption, target)``."""
    h = hashlib.sha256()
    h.update(json.dumps(split.gallery).encode())
    h.update(json.dumps([(t.reference, t.caption, t.target) for t in split.triplets]).encode())
    return h.hexdigest()[:16]


def cache_key(split: CIRSplit, encoder: str, tokens: bool, image_digest: str) -> str:
    """The feature cache's key: format version, encoder id, :func:`split_fingerprint`, the
    token flag and the images' :func:`~cirlib.data.image_digest.image_content_digest`."""
    key = [FORMAT_VERSION, encoder, split_fingerprint(split), bool(tokens), image_digest]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:20]


def _read_cache(path: Path, split: CIRSplit, tokens: bool) -> SplitFeatures | None:
    """The cached features at ``path``, or None (after a warning) when the file is damaged or
    does not fit ``split``."""
    try:
        feats = SplitFeatures(**torch.load(path, weights_only=True))
        problem = None
        if feats.images.shape[0] != len(split.gallery):
            problem = f"{feats.images.shape[0]} image rows for {len(split.gallery)} images"
        elif feats.texts.shape[0] != len(split.triplets):
            problem = f"{feats.texts.shape[0]} text rows for {len(split.triplets)} queries"
        elif tokens and feats.image_tokens is None:
            problem = "no token features"
    except (PermissionError, IsADirectoryError):
        raise  # not the file's bytes (the reader raises OSError(EINVAL) on a truncated one)
    except Exception as err:  # torch.load's reader and unpickler raise many kinds on bad bytes
        problem = f"{type(err).__name__}: {err}"
    if problem is None:
        return feats
    warnings.warn(
        f"feature cache {path} is damaged ({problem}); encoding split {split.name!r} again",
        stacklevel=3,
    )
    return None


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
    if tokens and not split.triplets:
        raise ValueError(
            f"split {split.name!r} has no queries, so it has no text tokens: encode it with "
            "tokens=False (a method that trains on images alone reads images only)"
        )
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
    if not captions:  # images alone (CIRCO's zero-shot training images): no text rows
        texts.append(torch.zeros(0, images[0].shape[1]))
    for start in range(0, len(captions), batch_size):
        ids = tokenizer(captions[start : start + batch_size]).to(device)
        if tokens:
            g, t, m = backbone.text_tokens(model, ids)
            text_toks.append(t.half().cpu())
            masks.append(m.cpu())
        else:
            g = backbone.encode_texts(model, ids)
        texts.append(g.float().cpu())
    ref = [split.index_of(t.reference) for t in split.triplets]
    tgt = [split.index_of(t.target) if t.target else -1 for t in split.triplets]
    return SplitFeatures(
        images=torch.cat(images),
        texts=torch.cat(texts),
        reference_index=torch.tensor(ref, dtype=torch.long),
        target_index=torch.tensor(tgt, dtype=torch.long),
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

    ``encoder`` is :func:`encoder_id` of the model passed in; it is part of the key
    (:func:`cache_key`). The file is ``<cache_dir>/<split name>-<key>.pt``; the images' hashes
    are remembered in ``<cache_dir>/image-digests/`` so a cache hit reads no image. Two
    processes asking for the same missing entry encode it once: the second waits for the first
    and loads its file. A damaged file is reported with a warning and encoded again.
    """
    cache_dir = Path(cache_dir)
    safe = split.name.replace("/", "_")
    # one memo per split and image location (the same split name exists in several worlds)
    first = str(Path(next(iter(split.image_paths.values()), "")).absolute())
    where = hashlib.sha256(first.encode()).hexdigest()[:12]
    memo = cache_dir / "image-digests" / f"{safe}-{where}.json"
    key = cache_key(split, encoder, tokens, image_content_digest(split, memo))
    path = cache_dir / f"{safe}-{key}.pt"
    with exclusive(path):
        if path.exists():
            feats = _read_cache(path, split, tokens)
            if feats is not None:
                return feats
        feats = encode_split(
            split, model, preprocess, tokenizer, tokens=tokens, batch_size=batch_size, device=device
        )
        atomic_torch_save(path, feats.as_dict())
    return feats
