"""FashionIQ as one training set and one evaluation split with a gallery per category.

The papers train one model on the three categories together (CLIP4Cir, CaLa, DQE-CIR) and report
R@10 and R@50 per category, each category ranked against its own gallery, then the plain means
over categories (:func:`cirlib.eval.recall.fashioniq_summary`). The chapters, which see one
training split and one test split, get that through :func:`load_fashioniq_splits`:

* ``train``: the three categories' training queries in one split (gallery = the union of their
  galleries, an image listed by two categories appears once);
* ``val`` (also returned as ``test``: the test captions carry no targets, so the papers report
  the validation split): the same merge, with :attr:`CIRSplit.galleries` holding each category's
  own gallery; :func:`cirlib.eval.evaluate.evaluate` then ranks every query within its
  category's gallery only (:mod:`cirlib.eval.per_gallery`).

Under the ``"clip4cir"`` protocol the gallery of a category is its split file and the reference
stays in the ranking (CLIP4Cir's evaluation); under ``"cosmo"`` it is the captions' candidates
and targets and the reference is removed (CoSMo, MGUR). Introduced in the data chapter.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from cirlib.data.fashioniq import FASHIONIQ_CATEGORIES, load_fashioniq
from cirlib.data.records import CIRSplit, DatasetError

__all__ = ["load_fashioniq_splits", "merge_category_splits"]


def merge_category_splits(
    parts: Mapping[str, CIRSplit], name: str, *, reference_in_gallery: bool
) -> CIRSplit:
    """One split from per-category splits: queries in category order, renumbered ``pair_id``
    0..n-1, ``meta["gallery"]`` = the category; gallery = the ordered union of the categories'
    galleries; ``galleries`` = each category's own gallery, in its own order."""
    if not parts:
        raise DatasetError("merge_category_splits needs at least one category split")
    triplets, gallery, paths = [], {}, {}
    for category, part in parts.items():
        for t in part.triplets:
            meta = {**t.meta, "gallery": category}
            triplets.append(dataclasses.replace(t, pair_id=len(triplets), meta=meta))
        for image in part.gallery:
            if image in paths and paths[image] != part.image_paths.get(image):
                raise DatasetError(
                    f"image {image!r} has two files ({paths[image]} and "
                    f"{part.image_paths.get(image)}) in the categories of {name!r}; one name "
                    "must be one picture"
                )
            gallery[image] = None
            paths[image] = part.image_paths.get(image)
    return CIRSplit(
        name=name,
        triplets=triplets,
        gallery=list(gallery),
        image_paths={k: v for k, v in paths.items() if v is not None},
        galleries={c: list(p.gallery) for c, p in parts.items()},
        reference_in_gallery=reference_in_gallery,
    )


def load_fashioniq_splits(
    root: str | os.PathLike,
    *,
    protocol: str = "clip4cir",
    categories=FASHIONIQ_CATEGORIES,
    missing_images: str = "skip",
) -> dict[str, CIRSplit]:
    """``{"train", "val", "test"}`` for the chapters (``test`` is ``val``, see the module
    docstring); ``missing_images="skip"`` by default, since few FashionIQ copies are complete."""
    splits = {}
    for split in ("train", "val"):
        parts = {
            c: load_fashioniq(root, c, split, protocol=protocol, missing_images=missing_images)
            for c in categories
        }
        splits[split] = merge_category_splits(
            parts,
            f"fashioniq/{'+'.join(categories)}/{split}/{protocol}",
            reference_in_gallery=protocol == "clip4cir",
        )
    splits["test"] = splits["val"]
    return splits
