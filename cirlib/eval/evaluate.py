"""Evaluate composed queries on a split: every metric of the book in one call, with breakdowns.

``evaluate(queries, features, split)`` normalises the gallery, then reports CIRR's Recall@K
(reference removed), Recall_subset@K when the split has image sets, multi-target recall and
mAP@K over all valid targets when it lists them (the toy world), and the same numbers per value
of a ``Triplet.meta`` key (edit type, coarse vs fine). Introduced in chapter "The task, the
data and the metrics".
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import torch
import torch.nn.functional as F

from cirlib.data.records import CIRSplit
from cirlib.eval.average_precision import CIRCO_KS, average_precision_at_k, valid_top_lists
from cirlib.eval.index import (
    best_valid_ranks_from_topk,
    drop_excluded,
    make_index,
    ranks_from_topk,
)
from cirlib.eval.per_gallery import evaluate_per_gallery
from cirlib.eval.query_ranks import RANK_KINDS, RankedEvaluation
from cirlib.eval.ranking import evaluation_ranks, subset_ranks
from cirlib.eval.recall import recall_at_k

KS = (1, 5, 10, 50)
SUBSET_KS = (1, 2, 3)
MAP_KS = CIRCO_KS


def _rows(idx: torch.Tensor, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v[idx] for k, v in values.items()}


def evaluate(
    queries: torch.Tensor,
    features,
    split: CIRSplit,
    *,
    ks: Iterable[int] = KS,
    subset_ks: Iterable[int] = SUBSET_KS,
    map_ks: Iterable[int] = MAP_KS,
    by: Iterable[str] = ("edit_type", "granularity"),
    gallery: torch.Tensor | None = None,
    index=None,
    keep_ranks: bool = False,
) -> dict:
    """All metrics for ``queries`` (``[Q, D]``, one row per triplet, L2-normalised).

    ``gallery`` replaces the frozen image features (``features.images``) for methods that embed
    gallery images with a trained module of their own; rows follow ``split.gallery``.

    The reference is removed from every ranking, and so are a query's
    :attr:`~cirlib.data.records.Triplet.excluded` images when the split lists them
    (Fashion200k: the images with the reference's caption).

    ``index`` (opt-in, for large galleries): ``"exact"`` or ``"faiss"`` builds a top-k index
    (:mod:`cirlib.eval.index`) over the normalised gallery, or pass one already built over it.
    ``R@K`` and ``mR@K`` then come from each query's top ``max(ks)`` (the same numbers with the
    exact index; with FAISS up to ties within float32 rounding); ``Rs@K`` stays exact.

    When the split lists every query's valid targets, ``mAP@K`` for ``map_ks`` (CIRCO's 5, 10,
    25, 50) is computed over them (:mod:`cirlib.eval.average_precision`), with the excluded
    items removed from both the ranking and the valid targets.

    Returns ``{"all": {...}, "<meta key>": {value: {...}}}`` with percentages; keys ``R@K``,
    ``Rs@K`` (if subsets), ``mR@K`` and ``mAP@K`` (if valid targets), ``Avg`` = (R@5 + Rs@1)/2,
    and ``n``.
    With ``keep_ranks=True`` the same dict as a
    :class:`~cirlib.eval.query_ranks.RankedEvaluation`, which also carries each query's 0-based
    ranks (``.ranks``: ``"R"``, ``"Rs"``, ``"mR"``) and breakdown labels (``.groups``), what a
    resampling test over queries needs (:mod:`cirlib.verdict`).

    A split with separate galleries (FashionIQ's categories, ``split.galleries``) is evaluated
    by :func:`cirlib.eval.per_gallery.evaluate_per_gallery`: R@K per gallery under
    ``"gallery"``, their means under ``"all"``, and the ``"protocol"`` in words.
    Examples
    --------
    Queries that are their targets' own features find them first:

    >>> import torch
    >>> from cirlib.data.features import SplitFeatures
    >>> from cirlib.data.toy import generated_split
    >>> split = generated_split("test", 2, 0)
    >>> ref = torch.tensor([split.index_of(t.reference) for t in split.triplets])
    >>> tgt = torch.tensor([split.index_of(t.target) for t in split.triplets])
    >>> images = torch.eye(len(split.gallery))
    >>> features = SplitFeatures(images, torch.zeros(len(tgt), len(images)), ref, tgt)
    >>> metrics = evaluate(images[tgt], features, split)
    >>> metrics["all"]["R@1"], metrics["all"]["n"] == len(split.triplets)
    (100.0, True)
    """
    gallery = F.normalize((features.images if gallery is None else gallery).float(), dim=-1)
    q = queries.float()
    ref, tgt = features.reference_index, features.target_index
    if (tgt < 0).any():
        raise ValueError(
            f"split {split.name!r} has queries without a target (a test split); evaluate on a "
            "split with targets, or write a CIRR submission file instead"
        )
    if split.galleries is not None:
        # FashionIQ: each query ranked within its category's gallery, means over categories
        return evaluate_per_gallery(q, gallery, ref, tgt, split, ks, keep_ranks=keep_ranks)
    trip = split.triplets
    map_ks = tuple(map_ks)
    subsets = valid = excluded = None
    if all(t.subset for t in trip):
        subsets = torch.tensor([[split.index_of(n) for n in t.subset] for t in trip])
    if all(t.valid_targets for t in trip):
        valid = [[split.index_of(n) for n in t.valid_targets] for t in trip]
    if any(t.excluded for t in trip):
        excluded = [[split.index_of(n) for n in t.excluded or ()] for t in trip]
    if index is None:
        # One sweep over the score blocks for R, Rs and mR.
        ranks = evaluation_ranks(
            q, gallery, tgt, ref, subset=subsets, valid=valid, exclude_sets=excluded
        )
        if valid is not None and map_ks:
            top_ids = valid_top_lists(q, gallery, max(map_ks), ref, excluded)
    else:
        if isinstance(index, str):
            index = make_index(gallery, index)
        if index.size != len(gallery):
            raise ValueError(f"the index holds {index.size} rows, the gallery {len(gallery)}")
        # Deep enough for R@K and, with valid targets, for mAP@K.
        depth = max(max(ks), max(map_ks) if valid is not None and map_ks else 0)
        k = min(depth, len(gallery) - 1)
        if excluded is None:
            top_ids = index.search(q, k, exclude=ref)[1]
        else:
            # Search deep enough that k items are left once the excluded ones are dropped.
            extra = max(len(set(e) - {r}) for e, r in zip(excluded, ref.tolist()))
            top_ids = index.search(q, min(k + extra, len(gallery) - 1), exclude=ref)[1]
            top_ids = drop_excluded(top_ids, excluded, k)
        ranks = {"R": ranks_from_topk(top_ids, tgt)}
        if subsets is not None:
            ranks["Rs"] = subset_ranks(q, gallery, subsets, tgt, ref, exclude_sets=excluded)
        if valid is not None:
            ranks["mR"] = best_valid_ranks_from_topk(top_ids, valid)
    if valid is not None and map_ks:
        # Excluded items can neither be retrieved nor count as missed targets.
        gone = [
            {r} | set(excluded[i] if excluded is not None else ())
            for i, r in enumerate(ref.tolist())
        ]
        kept = [sorted(set(v) - g) for v, g in zip(valid, gone)]
        if top_ids.shape[1] < max(map_ks):
            pad = top_ids.new_full((top_ids.shape[0], max(map_ks) - top_ids.shape[1]), -1)
            top_ids = torch.cat([top_ids, pad], dim=1)
        ranks["AP"] = average_precision_at_k(top_ids, kept, map_ks)

    def summarise(r: dict[str, torch.Tensor]) -> dict[str, float]:
        out = dict(recall_at_k(r["R"], ks, "R"))
        if "Rs" in r:
            out.update(recall_at_k(r["Rs"], subset_ks, "Rs"))
            out["Avg"] = (
                recall_at_k(r["R"], (5,))["R@5"] + recall_at_k(r["Rs"], (1,), "Rs")["Rs@1"]
            ) / 2
        if "mR" in r:
            out.update(recall_at_k(r["mR"], ks, "mR"))
        if "AP" in r:
            for j, k in enumerate(map_ks):
                out[f"mAP@{k}"] = 100.0 * float(r["AP"][:, j].mean())
        out["n"] = int(len(r["R"]))
        return out

    result = {"all": summarise(ranks)}
    for key in by:
        groups = defaultdict(list)
        for i, t in enumerate(trip):
            if key in t.meta:
                groups[t.meta[key]].append(i)
        if groups:
            result[key] = {
                v: summarise(_rows(torch.tensor(idx), ranks)) for v, idx in sorted(groups.items())
            }
    if not keep_ranks:
        return result
    labels = {key: [t.meta.get(key) for t in trip] for key in result if key != "all"}
    # Per-query average precisions (``"AP"``) are scores, not ranks: the verdict rule resamples
    # rank hits, so only the rank kinds travel with the result.
    kept_ranks = {k: v.cpu().numpy() for k, v in ranks.items() if k in RANK_KINDS}
    return RankedEvaluation(result, kept_ranks, labels)
