r"""Exact retrieval rankings, computed in bounded memory.

Every function here ranks a gallery for each query by the plain dot product

.. math:: s_{ij} = \langle q_i, g_j \rangle, \qquad S = Q G^\top \in \mathbb{R}^{n \times m},

(callers L2-normalise the features first if they want cosine similarity). The **ranking order**
of query :math:`i` is descending score with ties broken by the lower gallery index, i.e. exactly
the order of ``torch.sort(S[i], descending=True, stable=True)``. An optional per-query
**excluded** index (the reference image) is deleted from that ranking, so the ranking has
:math:`m - 1` entries. The 0-based rank of gallery item :math:`t` is then

.. math:: r_i(t) = \#\{\, j \ne t,\ j \ne e_i :\ s_{ij} > s_{it}
          \ \text{or}\ (s_{ij} = s_{it} \text{ and } j < t) \,\}.

``S`` is never materialised: it is computed in blocks of ``query_chunk x gallery_chunk``.
Results equal those of a full stable sort of the matrix assembled from these blocks. That matrix
is bit-for-bit ``queries @ gallery.T`` when one block covers everything (``n <= query_chunk``
and ``m <= gallery_chunk``) and whenever the dot products are exact (e.g. integer-valued
features). Otherwise BLAS may round the same dot product differently for different block shapes
(we measured differences of 1e-14 in float64 with MKL), which can only reorder scores that are
equal to within a few ulps. Even a single ``queries @ gallery.T`` does not always give two
identical gallery rows bit-identical scores, so exact ties are only guaranteed to be broken by
index when the scores are computed exactly.

Within one call every comparison uses scores from the same blocks (a target's own score is read
out of the block that holds it), so ranks are always self-consistent: the target never counts
itself and the excluded item is removed by index, whatever the rounding.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

DEFAULT_QUERY_CHUNK = 1024
DEFAULT_GALLERY_CHUNK = 8192

__all__ = ["best_valid_ranks", "subset_ranks", "target_ranks", "topk"]


# ----------------------------------------------------------------------------- validation


def _check_features(queries: torch.Tensor, gallery: torch.Tensor) -> tuple[int, int]:
    if not isinstance(queries, torch.Tensor) or not isinstance(gallery, torch.Tensor):
        raise TypeError("queries and gallery must be torch tensors of shape [n, d] and [m, d]")
    if queries.ndim != 2 or gallery.ndim != 2:
        raise ValueError(
            f"queries and gallery must be 2-D ([n, d] and [m, d]); got shapes "
            f"{tuple(queries.shape)} and {tuple(gallery.shape)}"
        )
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"feature sizes differ: queries have d={queries.shape[1]}, gallery has "
            f"d={gallery.shape[1]}"
        )
    if queries.dtype != gallery.dtype:
        raise ValueError(
            f"queries ({queries.dtype}) and gallery ({gallery.dtype}) must have the same dtype; "
            f"cast one of them so both are scored at the same precision"
        )
    return queries.shape[0], gallery.shape[0]


def _check_chunks(query_chunk: int, gallery_chunk: int) -> None:
    for name, value in (("query_chunk", query_chunk), ("gallery_chunk", gallery_chunk)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def _as_index(x, n: int, m: int, name: str, device: torch.device) -> torch.Tensor:
    """``x`` as a Long[n] tensor of gallery indices in [0, m)."""
    if isinstance(x, torch.Tensor) and (x.is_floating_point() or x.is_complex()):
        raise ValueError(f"{name} must hold integer gallery indices, got dtype {x.dtype}")
    idx = torch.as_tensor(x, dtype=torch.long, device=device)
    if idx.shape != (n,):
        raise ValueError(f"{name} must have shape [{n}] (one per query), got {tuple(idx.shape)}")
    _check_range(idx, m, name)
    return idx


def _check_range(idx: torch.Tensor, m: int, name: str) -> None:
    bad = (idx < 0) | (idx >= m)
    if bad.any():
        pos = tuple(int(p) for p in bad.nonzero()[0])
        raise ValueError(
            f"{name} has index {int(idx[pos])} at position {pos}, outside the gallery [0, {m})"
        )


def _check_target_not_excluded(targets: torch.Tensor, exclude: torch.Tensor | None) -> None:
    if exclude is None:
        return
    same = targets == exclude
    if same.any():
        i = int(same.nonzero()[0, 0])
        raise ValueError(
            f"query {i}: target {int(targets[i])} equals its excluded (reference) index, so it "
            f"would be removed from its own ranking; drop such queries or pass exclude=None"
        )


# ----------------------------------------------------------------------------- blocks


def _spans(total: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, size):
        yield start, min(start + size, total)


_NON_FINITE = (
    "non-finite similarity scores: the features contain NaN/inf or overflow; "
    "check the encoder output and normalise the features"
)


def _blocks_need_check(queries: torch.Tensor, gallery: torch.Tensor) -> bool:
    r"""Raise on NaN/inf features; return whether a score block can still overflow.

    A NaN would silently break every comparison (and -inf is the exclusion sentinel of
    :func:`topk`), so non-finite scores must be refused. With finite features a block can only
    hold inf or NaN through overflow, which Cauchy-Schwarz rules out cheaply: every partial sum
    of :math:`\langle q, g \rangle`, in any order and with any rounding, is at most
    :math:`\sum_k |q_k g_k| (1 + u)^{d+1} \le \|q\| \|g\| (1 + u)^{d+1}`, and
    :math:`(1 + u)^{d+1} \le 2` when :math:`(d + 1) u \le 1/2` (:math:`u` the machine epsilon).
    So when :math:`\max \|q_i\| \max \|g_j\|` is below a quarter of the largest finite number
    no block is checked; otherwise (huge features) every block is.
    """
    for x in (queries, gallery):
        # One sum is far cheaper than an elementwise test and is non-finite whenever an entry
        # is; it can also overflow on finite entries, hence the exact test in that case.
        if not torch.isfinite(x.sum()) and not torch.isfinite(x).all():
            raise ValueError(_NON_FINITE)
    if queries.numel() == 0 or gallery.numel() == 0:
        return False
    info = torch.finfo(queries.dtype)
    # Norms in float64: exact enough, and no overflow for float32/16 features.
    q_norm = torch.linalg.vector_norm(queries, dim=1, dtype=torch.float64).max()
    g_norm = torch.linalg.vector_norm(gallery, dim=1, dtype=torch.float64).max()
    bounded = (queries.shape[1] + 1) * info.eps <= 0.5 and float(q_norm * g_norm) <= info.max / 4
    return not bounded


def _score_block(
    queries: torch.Tensor, gallery: torch.Tensor, q: slice, g: slice, check: bool
) -> torch.Tensor:
    scores = queries[q] @ gallery[g].T
    # Only when _blocks_need_check said so; a sum is non-finite whenever an entry is (the exact
    # test then tells a real inf/NaN from a sum that overflowed on large finite scores).
    if check and not torch.isfinite(scores.sum()) and not torch.isfinite(scores).all():
        raise ValueError(_NON_FINITE)
    return scores


def _gather_scores(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    cols: torch.Tensor,
    mask: torch.Tensor,
    query_chunk: int,
    gallery_chunk: int,
    check: bool,
) -> torch.Tensor:
    """``S[i, cols[i, l]]`` for every slot with ``mask[i, l]``; shape [n, L].

    The values are read out of the same blocks that the counting pass computes, so a target is
    compared against scores produced by exactly the same arithmetic as its own.
    """
    n, m = queries.shape[0], gallery.shape[0]
    out = torch.zeros(cols.shape, dtype=queries.dtype, device=queries.device)
    for q0, q1 in _spans(n, query_chunk):
        c, k = cols[q0:q1], mask[q0:q1]
        for g0, g1 in _spans(m, gallery_chunk):
            sel = k & (c >= g0) & (c < g1)
            if not sel.any():
                continue
            block = _score_block(queries, gallery, slice(q0, q1), slice(g0, g1), check)
            rows, slots = sel.nonzero(as_tuple=True)
            out[q0 + rows, slots] = block[rows, c[rows, slots] - g0]
    return out


def _count_before(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    targets: torch.Tensor,
    target_scores: torch.Tensor,
    exclude: torch.Tensor | None,
    query_chunk: int,
    gallery_chunk: int,
    check: bool,
) -> torch.Tensor:
    """Number of gallery items ranked before ``targets`` (excluded item not counted); Long[n]."""
    n, m = queries.shape[0], gallery.shape[0]
    counts = torch.zeros(n, dtype=torch.long, device=queries.device)
    for q0, q1 in _spans(n, query_chunk):
        t = targets[q0:q1, None]
        s_t = target_scores[q0:q1, None]
        e = None if exclude is None else exclude[q0:q1, None]
        for g0, g1 in _spans(m, gallery_chunk):
            block = _score_block(queries, gallery, slice(q0, q1), slice(g0, g1), check)
            j = torch.arange(g0, g1, device=queries.device)[None, :]
            before = (block > s_t) | ((block == s_t) & (j < t))
            # The target is excluded by index, not by score, so it can never count itself.
            before &= j != t
            if e is not None:
                before &= j != e
            counts[q0:q1] += before.sum(dim=1)
    return counts


# ----------------------------------------------------------------------------- public API


def target_ranks(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    targets,
    exclude=None,
    *,
    query_chunk: int = DEFAULT_QUERY_CHUNK,
    gallery_chunk: int = DEFAULT_GALLERY_CHUNK,
) -> torch.Tensor:
    r"""0-based position of each query's target in its ranking.

    .. math:: r_i = \#\{ j \ne t_i, j \ne e_i : s_{ij} > s_{it_i}
              \text{ or } (s_{ij} = s_{it_i} \text{ and } j < t_i) \}

    Parameters
    ----------
    queries : Tensor[n, d]
        Query features (already normalised if cosine similarity is wanted).
    gallery : Tensor[m, d]
        Gallery features, same dtype as ``queries``.
    targets : Long[n]
        Gallery index of each query's target.
    exclude : Long[n] or None
        Gallery index removed from each query's ranking (the reference image), or None.
    query_chunk, gallery_chunk : int
        Block sizes; peak extra memory is one ``query_chunk x gallery_chunk`` score block.

    Returns
    -------
    Long[n]
        Ranks in ``[0, m - 1)`` with ``exclude`` (``[0, m)`` without). ``rank < K`` is a hit at K.

    Raises
    ------
    ValueError
        On shape or dtype mismatch, an index outside ``[0, m)``, or a target equal to its
        excluded index.
    """
    n, m = _check_features(queries, gallery)
    _check_chunks(query_chunk, gallery_chunk)
    targets = _as_index(targets, n, m, "targets", queries.device)
    if exclude is not None:
        exclude = _as_index(exclude, n, m, "exclude", queries.device)
    _check_target_not_excluded(targets, exclude)
    with torch.no_grad():
        cols = targets[:, None]
        everything = torch.ones_like(cols, dtype=torch.bool)
        check = _blocks_need_check(queries, gallery)
        chunks = (query_chunk, gallery_chunk, check)
        s_t = _gather_scores(queries, gallery, cols, everything, *chunks)[:, 0]
        return _count_before(queries, gallery, targets, s_t, exclude, *chunks)


def best_valid_ranks(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    valid: Sequence[Sequence[int]],
    exclude=None,
    *,
    query_chunk: int = DEFAULT_QUERY_CHUNK,
    gallery_chunk: int = DEFAULT_GALLERY_CHUNK,
) -> torch.Tensor:
    r"""Rank of the best-placed valid target of each query (multi-target retrieval).

    .. math:: r_i = \min_{t \in V_i \setminus \{e_i\}} r_i(t)

    A query is a hit at K when *any* of its valid targets is in the first K, i.e. ``r_i < K``.

    Parameters
    ----------
    queries : Tensor[n, d]
    gallery : Tensor[m, d]
    valid : sequence of n non-empty sequences of gallery indices
        The targets that satisfy each query; lengths may differ. Duplicates are ignored.
    exclude : Long[n] or None
        Excluded (reference) index per query; a valid index equal to it is ignored.
    query_chunk, gallery_chunk : int
        Block sizes, as in :func:`target_ranks`.

    Returns
    -------
    Long[n]

    Raises
    ------
    ValueError
        If ``len(valid) != n``, a list is empty (or only holds the excluded index), or an index
        is outside ``[0, m)``.
    """
    n, m = _check_features(queries, gallery)
    _check_chunks(query_chunk, gallery_chunk)
    if len(valid) != n:
        raise ValueError(f"valid must hold one list per query: {len(valid)} lists for {n} queries")
    if exclude is not None:
        exclude = _as_index(exclude, n, m, "exclude", queries.device)
    rows: list[list[int]] = []
    for i, row in enumerate(valid):
        idx = {int(v) for v in row}
        bad = [v for v in idx if not 0 <= v < m]
        if bad:
            raise ValueError(f"valid[{i}] has index {bad[0]}, outside the gallery [0, {m})")
        if exclude is not None:
            idx.discard(int(exclude[i]))
        if not idx:
            raise ValueError(
                f"valid[{i}] has no target left (it is empty or holds only the excluded index)"
            )
        # Ascending order makes "first maximum" below the lowest index among tied scores.
        rows.append(sorted(idx))
    width = max((len(r) for r in rows), default=1)
    cols = torch.zeros((n, width), dtype=torch.long, device=queries.device)
    mask = torch.zeros((n, width), dtype=torch.bool, device=queries.device)
    for i, r in enumerate(rows):
        cols[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = True
    with torch.no_grad():
        check = _blocks_need_check(queries, gallery)
        chunks = (query_chunk, gallery_chunk, check)
        scores = _gather_scores(queries, gallery, cols, mask, *chunks)
        # The best-placed valid target is the one with the highest score, lowest index on ties;
        # its rank is the minimum because rank is monotone in the ranking order.
        masked = scores.masked_fill(~mask, float("-inf"))
        top = masked.max(dim=1, keepdim=True).values
        is_top = mask & (masked == top)
        slot = is_top.to(torch.uint8).argmax(dim=1, keepdim=True)  # first True
        best = cols.gather(1, slot)[:, 0]
        best_score = scores.gather(1, slot)[:, 0]
        return _count_before(queries, gallery, best, best_score, exclude, *chunks)


def topk(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    k: int,
    exclude=None,
    *,
    query_chunk: int = DEFAULT_QUERY_CHUNK,
    gallery_chunk: int = DEFAULT_GALLERY_CHUNK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``k`` entries of each query's ranking (excluded item removed).

    Equal to ``torch.sort(S, dim=1, descending=True, stable=True)`` truncated to ``k`` after
    deleting ``exclude[i]`` from row ``i``.

    Parameters
    ----------
    queries : Tensor[n, d]
    gallery : Tensor[m, d]
    k : int
        ``1 <= k <= m`` (``<= m - 1`` when ``exclude`` is given).
    exclude : Long[n] or None
    query_chunk, gallery_chunk : int
        Block sizes, as in :func:`target_ranks`.

    Returns
    -------
    scores : Tensor[n, k]
        Descending within each row.
    indices : Long[n, k]
        Gallery indices; among equal scores, ascending.
    """
    n, m = _check_features(queries, gallery)
    _check_chunks(query_chunk, gallery_chunk)
    if exclude is not None:
        exclude = _as_index(exclude, n, m, "exclude", queries.device)
    available = m - (0 if exclude is None else 1)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= available:
        raise ValueError(
            f"k must be an int in [1, {available}] (gallery of {m}"
            f"{' minus the excluded item' if exclude is not None else ''}), got {k!r}"
        )
    out_scores = torch.empty((n, k), dtype=queries.dtype, device=queries.device)
    out_idx = torch.empty((n, k), dtype=torch.long, device=queries.device)
    with torch.no_grad():
        check = _blocks_need_check(queries, gallery)
        for q0, q1 in _spans(n, query_chunk):
            best_s = torch.empty((q1 - q0, 0), dtype=queries.dtype, device=queries.device)
            best_i = torch.empty((q1 - q0, 0), dtype=torch.long, device=queries.device)
            for g0, g1 in _spans(m, gallery_chunk):
                block = _score_block(queries, gallery, slice(q0, q1), slice(g0, g1), check)
                j = torch.arange(g0, g1, device=queries.device).expand(q1 - q0, -1)
                if exclude is not None:
                    # Scores are checked finite, so -inf sorts the excluded item after every
                    # real one; k <= m - 1 then guarantees it never survives the final cut.
                    block = block.masked_fill(j == exclude[q0:q1, None], float("-inf"))
                # Merge invariant: the kept entries precede the new block and all have lower
                # indices, and are already in (score desc, index asc) order; a *stable* sort
                # of the concatenation therefore keeps lower indices first among ties.
                cat_s = torch.cat([best_s, block], dim=1)
                cat_i = torch.cat([best_i, j], dim=1)
                order = torch.sort(cat_s, dim=1, descending=True, stable=True).indices[:, :k]
                best_s = cat_s.gather(1, order)
                best_i = cat_i.gather(1, order)
            out_scores[q0:q1] = best_s
            out_idx[q0:q1] = best_i
    return out_scores, out_idx


def subset_ranks(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    subset,
    targets,
    exclude=None,
    *,
    query_chunk: int = DEFAULT_QUERY_CHUNK,
    gallery_chunk: int = DEFAULT_GALLERY_CHUNK,
) -> torch.Tensor:
    r"""Rank of the target among its subset, in the global ranking order (CIRR Recall_subset).

    .. math:: r^{sub}_i = \#\{ j \in U_i \setminus \{t_i, e_i\} : s_{ij} > s_{it_i}
              \text{ or } (s_{ij} = s_{it_i} \text{ and } j < t_i) \}

    No separate scoring: the subset ordering is induced by the same scores and tie rule as the
    full ranking. For CIRR, ``U_i`` is the 6 ``img_set.members`` and ``e_i`` the reference, so
    the target competes with 4 others and chance level of ``r < 1`` is 1/5.

    Parameters
    ----------
    queries : Tensor[n, d]
    gallery : Tensor[m, d]
    subset : Long[n, S]
        Gallery indices of each query's subset; must contain the target, no duplicates in a row.
        The excluded index may or may not be among them (it is removed if present).
    targets : Long[n]
    exclude : Long[n] or None
    query_chunk, gallery_chunk : int
        Block sizes for computing the scores, as in :func:`target_ranks`.

    Returns
    -------
    Long[n]
        Ranks in ``[0, S - 1)`` when the excluded item is in the subset.
    """
    n, m = _check_features(queries, gallery)
    _check_chunks(query_chunk, gallery_chunk)
    targets = _as_index(targets, n, m, "targets", queries.device)
    if exclude is not None:
        exclude = _as_index(exclude, n, m, "exclude", queries.device)
    _check_target_not_excluded(targets, exclude)
    if isinstance(subset, torch.Tensor) and (subset.is_floating_point() or subset.is_complex()):
        raise ValueError(f"subset must hold integer gallery indices, got dtype {subset.dtype}")
    subset = torch.as_tensor(subset, dtype=torch.long, device=queries.device)
    if subset.ndim != 2 or subset.shape[0] != n or subset.shape[1] < 1:
        raise ValueError(f"subset must have shape [{n}, S] with S >= 1, got {tuple(subset.shape)}")
    _check_range(subset, m, "subset")
    missing = ~(subset == targets[:, None]).any(dim=1)
    if missing.any():
        i = int(missing.nonzero()[0, 0])
        raise ValueError(f"query {i}: target {int(targets[i])} is not in its subset")
    srt = subset.sort(dim=1).values
    dup = (srt[:, 1:] == srt[:, :-1]).any(dim=1)
    if dup.any():
        i = int(dup.nonzero()[0, 0])
        raise ValueError(f"query {i}: subset {subset[i].tolist()} repeats an index")
    with torch.no_grad():
        everything = torch.ones_like(subset, dtype=torch.bool)
        check = _blocks_need_check(queries, gallery)
        scores = _gather_scores(
            queries, gallery, subset, everything, query_chunk, gallery_chunk, check
        )
        t = targets[:, None]
        s_t = scores.gather(1, (subset == t).to(torch.uint8).argmax(dim=1, keepdim=True))
        before = (scores > s_t) | ((scores == s_t) & (subset < t))
        before &= subset != t
        if exclude is not None:
            before &= subset != exclude[:, None]
        return before.sum(dim=1)
