r"""CIRCO's test-server file: each test query's first 50 gallery images.

CIRCO's test targets are private (Baldrati et al., 2023); its server scores mAP@K from a JSON
object ``{"<query id>": [image id, ...]}`` holding *every* test query and exactly the first 50
results of each, as integers (COCO ids). The ranking here is the one
:func:`~cirlib.eval.evaluate.evaluate` uses: descending :math:`\langle q_i, \hat g_j \rangle`,
ties to the lower gallery index, the reference removed (it is never a valid target, so removing
it can only move a valid target up).

Introduced in chapter "Zero-shot CIR".
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

from cirlib.data.records import CIRSplit
from cirlib.eval.ranking import topk
from cirlib.io import atomic_write_json

__all__ = ["CIRCO_SUBMISSION_LENGTH", "circo_submission_from_scores", "write_circo_submission"]

CIRCO_SUBMISSION_LENGTH = 50


def write_circo_submission(path: str | os.PathLike, ranked: dict, split: CIRSplit) -> Path:
    """Check ``ranked`` (``{query id: [image name, ...]}``) against ``split`` and write it
    atomically in the server's format.

    Refused, with a message saying what is wrong: a query of the split without a list or a query
    the split does not have; a list that is not exactly 50 distinct gallery images; an image name
    that is not a COCO id of the gallery.
    """
    ids = [t.pair_id for t in split.triplets]
    keys = {int(k) for k in ranked}
    if keys != set(ids):
        lacking, extra = sorted(set(ids) - keys), sorted(keys - set(ids))
        raise ValueError(
            f"the CIRCO server needs one list per query of {split.name}: "
            f"{len(lacking)} missing (first: {lacking[:3]}), {len(extra)} unknown (first: "
            f"{extra[:3]}); rank the whole {split.name} split"
        )
    gallery = set(split.gallery)
    doc = {}
    for qid in ids:
        names = [str(n) for n in ranked.get(qid, ranked.get(str(qid)))]
        if len(names) != CIRCO_SUBMISSION_LENGTH or len(set(names)) != len(names):
            raise ValueError(
                f"query {qid}: the server takes exactly {CIRCO_SUBMISSION_LENGTH} distinct "
                f"images per query, got {len(names)} ({len(set(names))} distinct)"
            )
        outside = [n for n in names if n not in gallery or not n.isdigit()]
        if outside:
            raise ValueError(
                f"query {qid}: {outside[0]!r} is not an image of the {split.name} gallery"
            )
        doc[str(qid)] = [int(n) for n in names]
    return atomic_write_json(path, doc)


def circo_submission_from_scores(
    queries: torch.Tensor, gallery: torch.Tensor, split: CIRSplit, path: str | os.PathLike
) -> Path:
    """Rank ``split``'s gallery for every query and write the server file.

    Parameters
    ----------
    queries : Tensor[n, d]
        One row per ``split.triplets`` entry (L2-normalised, as for ``evaluate``).
    gallery : Tensor[m, d]
        One row per ``split.gallery`` image (normalised here).
    split : CIRSplit
        ``load_circo(root, "test")``.
    path : where the JSON goes.
    """
    n, m = len(split.triplets), len(split.gallery)
    if queries.ndim != 2 or queries.shape[0] != n:
        raise ValueError(f"queries must be [{n}, d] for {split.name}, got {tuple(queries.shape)}")
    if gallery.ndim != 2 or gallery.shape[0] != m:
        raise ValueError(f"gallery must be [{m}, d] for {split.name}, got {tuple(gallery.shape)}")
    if m - 1 < CIRCO_SUBMISSION_LENGTH:
        raise ValueError(
            f"{split.name} has {m} images; the server needs the first 50 of each ranking"
        )
    ref = torch.tensor([split.index_of(t.reference) for t in split.triplets])
    top = topk(
        queries.float(), F.normalize(gallery.float(), dim=-1), CIRCO_SUBMISSION_LENGTH, exclude=ref
    )[1]
    ranked = {
        t.pair_id: [split.gallery[j] for j in row] for t, row in zip(split.triplets, top.tolist())
    }
    return write_circo_submission(path, ranked, split)
