r"""mAP@K over every valid target of a query (the CIRCO protocol).

A composed query can have several correct answers. Recall@K looks at one of them (or, as mR@K, at
the best-placed one); average precision at K rewards a ranking for placing *all* of them early.
With :math:`G_i` the valid targets of query :math:`i`, :math:`\pi_i(1), \pi_i(2), \dots` its
ranking and :math:`\mathrm{rel}_i(k) = [\pi_i(k) \in G_i]`,

.. math::
    P_i@k = \frac1k \sum_{j \le k} \mathrm{rel}_i(j), \qquad
    \mathrm{AP}_i@K = \frac{1}{\min(K, |G_i|)} \sum_{k=1}^{K} P_i@k \ \mathrm{rel}_i(k), \qquad
    \mathrm{mAP@}K = \frac{100}{n} \sum_{i=1}^{n} \mathrm{AP}_i@K .

The normaliser :math:`\min(K, |G_i|)` is the number of valid targets that *can* fit in the first
K places, so a perfect ranking scores 100 whatever the number of valid targets, and a query with
more valid targets than K is not penalised for the ones that cannot fit. This is the definition
of Baldrati, Agnolucci, Bertini and Del Bimbo (2023, "Zero-shot composed image retrieval with
textual inversion", the CIRCO benchmark), reported there at :math:`K \in \{5, 10, 25, 50\}`.

Exclusion. CIRCO's released evaluation ranks the whole gallery (the reference is never one of
its ground truths). The book removes the reference from every ranking, as for CIRR; here an
excluded item is removed from the ranking *and* from :math:`G_i` before the normaliser is taken,
so it cannot count as a target that was missed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from cirlib.eval.index import drop_excluded
from cirlib.eval.ranking import DEFAULT_GALLERY_CHUNK, DEFAULT_QUERY_CHUNK, topk

__all__ = ["CIRCO_KS", "average_precision_at_k", "mean_average_precision_at_k", "valid_top_lists"]

CIRCO_KS = (5, 10, 25, 50)


def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks:
        raise ValueError("give at least one cut-off K")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"cut-offs must be positive ints, got {k!r}")
    return ks


def average_precision_at_k(
    top_ids: torch.Tensor, valid: Sequence[Sequence[int]], ks: Iterable[int] = CIRCO_KS
) -> torch.Tensor:
    r"""Each query's :math:`\mathrm{AP}_i@K` (in [0, 1]) from its ranked list.

    Parameters
    ----------
    top_ids : Long[n, L]
        Each query's first ``L`` gallery indices in ranking order, ``L >= max(ks)``, no index
        twice in a row; ``-1`` pads a list that ran out of gallery (it is never relevant).
    valid : n non-empty sequences of gallery indices
        :math:`G_i`. Repeated indices count once.
    ks : iterable of int
        Cut-offs.

    Returns
    -------
    Float64[n, len(ks)]
        :math:`\mathrm{AP}_i@K`, one column per cut-off in the order of ``ks``.
    """
    ks = _check_ks(ks)
    top_ids = torch.as_tensor(top_ids, dtype=torch.long)
    if top_ids.ndim != 2:
        raise ValueError(f"top_ids must be [n, L], got shape {tuple(top_ids.shape)}")
    n, depth = top_ids.shape
    if max(ks) > depth:
        raise ValueError(
            f"AP@{max(ks)} needs each query's first {max(ks)} results; top_ids holds {depth}: "
            f"search deeper or ask for smaller cut-offs"
        )
    if len(valid) != n:
        raise ValueError(f"{len(valid)} valid-target lists for {n} queries; give one per query")
    sets = [{int(v) for v in row} for row in valid]
    for i, s in enumerate(sets):
        if not s:
            raise ValueError(f"valid[{i}] is empty: every query needs at least one valid target")
        if min(s) < 0:
            raise ValueError(f"valid[{i}] holds a negative index {min(s)}")
    width = max(len(s) for s in sets)
    table = torch.full((n, width), -1, dtype=torch.long)
    for i, s in enumerate(sets):
        table[i, : len(s)] = torch.tensor(sorted(s), dtype=torch.long)
    ids = top_ids[:, : max(ks)]
    rel = ((ids[:, :, None] == table[:, None, :]) & (table[:, None, :] >= 0)).any(dim=2)
    rel = rel.to(torch.float64)
    positions = torch.arange(1, ids.shape[1] + 1, dtype=torch.float64)
    # Precision at each position, kept only where the item there is relevant.
    gains = rel.cumsum(dim=1) / positions * rel
    sizes = torch.tensor([len(s) for s in sets], dtype=torch.float64)
    cols = [gains[:, :k].sum(dim=1) / sizes.clamp(max=k) for k in ks]
    return torch.stack(cols, dim=1)


def valid_top_lists(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    depth: int,
    exclude=None,
    exclude_sets: Sequence[Sequence[int]] | None = None,
    *,
    query_chunk: int = DEFAULT_QUERY_CHUNK,
    gallery_chunk: int = DEFAULT_GALLERY_CHUNK,
) -> torch.Tensor:
    """Each query's first ``depth`` results with its excluded items removed (``-1`` pads a list
    that ran out of gallery); the ranking order of :mod:`cirlib.eval.ranking`.

    Parameters
    ----------
    queries : Tensor[n, d]
    gallery : Tensor[m, d]
    depth : int
        Positive; lists are cut at ``min(depth, m - 1)`` then padded when items are excluded.
    exclude : Long[n] or None
        One excluded index per query (the reference).
    exclude_sets : n sequences of gallery indices, or None
        More excluded indices per query.

    Returns
    -------
    Long[n, depth]
    """
    m = gallery.shape[0]
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive int, got {depth!r}")
    available = m - (0 if exclude is None else 1)
    extra = 0
    if exclude_sets is not None:
        if len(exclude_sets) != queries.shape[0]:
            raise ValueError(
                f"{len(exclude_sets)} exclusion sets for {queries.shape[0]} queries; give one "
                "per query"
            )
        extra = max((len(set(int(v) for v in e)) for e in exclude_sets), default=0)
    k = min(depth + extra, available)
    ids = topk(queries, gallery, k, exclude, query_chunk=query_chunk, gallery_chunk=gallery_chunk)[
        1
    ]
    if exclude_sets is not None:
        ids = drop_excluded(ids, exclude_sets, depth)
    if ids.shape[1] < depth:
        ids = torch.cat([ids, ids.new_full((ids.shape[0], depth - ids.shape[1]), -1)], dim=1)
    return ids[:, :depth]


def mean_average_precision_at_k(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    valid: Sequence[Sequence[int]],
    exclude=None,
    ks: Iterable[int] = CIRCO_KS,
    *,
    exclude_sets: Sequence[Sequence[int]] | None = None,
    query_chunk: int = DEFAULT_QUERY_CHUNK,
    gallery_chunk: int = DEFAULT_GALLERY_CHUNK,
) -> dict[str, float]:
    r""":math:`\mathrm{mAP@}K` (percent) of ``queries`` over their valid targets.

    Parameters
    ----------
    queries : Tensor[n, d]
    gallery : Tensor[m, d]
        Scored by the plain dot product (normalise first for cosine similarity).
    valid : n sequences of gallery indices
        :math:`G_i`; excluded indices are dropped from it first, and at least one must remain.
    exclude : Long[n] or None
        Removed from each ranking (the reference, the book's convention; CIRCO's own script
        passes none).
    ks : iterable of int
        Cut-offs, CIRCO's by default.
    exclude_sets : n sequences of gallery indices, or None
        More items removed from each ranking and from :math:`G_i`.
    query_chunk, gallery_chunk : int
        Block sizes, as in :func:`cirlib.eval.ranking.target_ranks`.

    Returns
    -------
    dict[str, float]
        ``{"mAP@K": percentage}`` in the order of ``ks``.
    """
    ks = _check_ks(ks)
    n = queries.shape[0]
    if len(valid) != n:
        raise ValueError(f"{len(valid)} valid-target lists for {n} queries; give one per query")
    if n == 0:
        raise ValueError("mAP needs at least one query")
    gone = [set() for _ in range(n)]
    if exclude is not None:
        for i, e in enumerate(torch.as_tensor(exclude).reshape(-1).tolist()):
            gone[i].add(int(e))
    if exclude_sets is not None:
        for i, e in enumerate(exclude_sets):
            gone[i].update(int(v) for v in e)
    kept = []
    for i, row in enumerate(valid):
        left = {int(v) for v in row} - gone[i]
        bad = [v for v in left if not 0 <= v < gallery.shape[0]]
        if bad:
            raise ValueError(
                f"valid[{i}] has index {bad[0]}, outside the gallery [0, {gallery.shape[0]})"
            )
        if not left:
            raise ValueError(
                f"valid[{i}] has no target left (it is empty or holds only excluded indices)"
            )
        kept.append(sorted(left))
    ids = valid_top_lists(
        queries,
        gallery,
        max(ks),
        exclude,
        exclude_sets,
        query_chunk=query_chunk,
        gallery_chunk=gallery_chunk,
    )
    ap = average_precision_at_k(ids, kept, ks)
    return {f"mAP@{k}": 100.0 * float(ap[:, j].mean()) for j, k in enumerate(ks)}
