r"""The images a zero-shot method trains on when the benchmark is CIRCO.

CIRCO (Baldrati, Agnolucci, Bertini and Del Bimbo, 2023) has no training split: its methods
train elsewhere (Pic2Word, Saito et al., 2023, on Conceptual Captions' images; SEARLE on
ImageNet's unlabeled test images), data the book does not install. The book's choice is a
**transductive** use of unlabeled images: the mapping networks train on CIRCO's own gallery
(COCO 2017's unlabeled images), read as pixels only, without any caption, minus every image a
query names,

.. math::
    \mathcal T = \mathcal G \setminus \Big( \{r_q\}_{q \in \text{val} \cup \text{test}}
    \ \cup \bigcup_{q \in \text{val}} G_q \Big),

with :math:`\mathcal G` the gallery, :math:`r_q` a query's reference and :math:`G_q` its listed
valid targets (``gt_img_ids``). The test split's targets are private, so some of them can be in
:math:`\mathcal T`: they are seen as unlabeled images, never with their query. A fixed sample of
at most :data:`CIRCO_TRAINING_IMAGES` of :math:`\mathcal T` (drawn with one seed, kept in
gallery order) bounds the cost of encoding it, since the gallery is 123k images.

Introduced in chapter "Zero-shot CIR".
"""

from __future__ import annotations

import random

from cirlib.data.records import CIRSplit, DatasetError

__all__ = ["CIRCO_TRAINING_IMAGES", "CIRCO_TRAINING_SEED", "circo_training_split"]

CIRCO_TRAINING_IMAGES = 20_000
# the sample is part of the protocol, not of a run: one seed for every run
CIRCO_TRAINING_SEED = 0


def circo_training_split(
    val: CIRSplit, test: CIRSplit, limit: int = CIRCO_TRAINING_IMAGES
) -> CIRSplit:
    """The unlabeled training images :math:`\\mathcal T` of CIRCO (module docstring).

    Parameters
    ----------
    val, test : CIRSplit
        ``load_circo(root, "val")`` and ``load_circo(root, "test")``: one gallery, in one order.
    limit : int
        At most this many images (a sample drawn with :data:`CIRCO_TRAINING_SEED`, in gallery
        order); 0 keeps all of them.

    Returns
    -------
    CIRSplit named ``"circo/train"``: no queries, the chosen images as its gallery.

    Raises
    ------
    DatasetError
        The two splits do not share a gallery, or no image is left once the named ones are
        removed.

    Examples
    --------
    Of five images, a val query names 1 (reference), 2 and 3 (its targets) and a test query
    names 4 (its reference; its targets are private): image 5 alone is left to train on.

    >>> from cirlib.data.records import CIRSplit, Triplet
    >>> gallery = ["1", "2", "3", "4", "5"]
    >>> val = CIRSplit("circo/val", [Triplet(0, "1", ("is red",), "is red", "2",
    ...                                      valid_targets=("2", "3"))], gallery, {})
    >>> test = CIRSplit("circo/test", [Triplet(0, "4", ("is blue",), "is blue")], gallery, {})
    >>> circo_training_split(val, test).gallery
    ['5']
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit must be a whole number >= 0 (0: every image), got {limit!r}")
    if val.gallery != test.gallery:
        raise DatasetError(
            f"{val.name} and {test.name} rank different galleries; CIRCO's two splits share "
            "COCO's unlabeled image list: install both from one release with `python "
            "data_scripts/prepare_data.py circo <folder>`"
        )
    named = {t.reference for t in (*val.triplets, *test.triplets)}
    named |= {name for t in val.triplets for name in t.valid_targets or ()}
    pool = [name for name in val.gallery if name not in named]
    if not pool:
        raise DatasetError(
            f"every one of the {len(val.gallery)} gallery images of {val.name} is a reference "
            "or a listed target, so none is left to train a zero-shot method on; CIRCO's "
            "gallery is COCO's whole unlabeled set: check its image_info file"
        )
    if limit and len(pool) > limit:
        keep = sorted(random.Random(CIRCO_TRAINING_SEED).sample(range(len(pool)), limit))
        pool = [pool[i] for i in keep]
    return CIRSplit(
        name="circo/train",
        triplets=[],
        gallery=pool,
        image_paths={n: val.image_paths[n] for n in pool if n in val.image_paths},
    )
