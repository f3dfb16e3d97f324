r"""Exact retrieval rankings, computed in bounded memory.

Every function here ranks a gallery for each query by the plain dot product

.. math:: s_{ij} = \langle q_i, g_j \rangle, \qquad S = Q G^\top \in \mathbb{R}^{n \times m},

(callers L2-normalise the features first if they want cosine similarity). The **ranking order**
of query :math:`i` is descending score with ties broken by the lower gallery index, i.e. exactly
the order of ``torch.sort(S[i], descending=True, stable=True)``. An optional per-query
**excluded** index (the reference image) is deleted from that ranking, so the ranking has
:math:`m - 1` entries; optional per-query **exclusion sets** ``exclude_sets`` delete more items
(Fashion200k: every image with the reference's caption). With :math:`E_i` all the excluded
items of query :math:`i`, the 0-based rank of gallery item :math:`t \notin E_i` is

.. math:: r_i(t) = \#\{\, j \ne t,\ j \notin E_i :\ s_{ij} > s_{it}
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

Cost. :func:`evaluation_ranks` computes R, Rs and mR in one sweep: for each query chunk a first
pass over its blocks reads the scores of the targets, valid targets and subset members, and a
second pass counts, for each wanted target, the scores before it with a single comparison per
entry (against the target's score, or the next float below it for blocks that lie before the
target, which turns the tie rule into a strict comparison). The chunk's blocks are kept between
the two passes when they take at most :data:`STRIP_BYTES`, so each block is computed once; for
larger galleries they are recomputed, with the same shapes and therefore the same scores. The
features are checked for NaN/inf once; blocks are checked only when their scores could overflow.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

DEFAULT_QUERY_CHUNK = 1024
DEFAULT_GALLERY_CHUNK = 8192
# The score blocks of one query chunk are kept between the two passes of a sweep (so each block
# is computed once) when together they take at most this many bytes; beyond, each block is
# computed twice and the extra memory is one block.
STRIP_BYTES = 256 * 2**20
# Score entries compared at a time when counting (a tile of block rows that stays in cache).
TILE_ELEMENTS = 2**17

__all__ = ["best_valid_ranks", "evaluation_ranks", "subset_ranks", "target_ranks", "topk"]


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


def _exclusions(exclude: torch.Tensor | None, exclude_sets, n: int, m: int, device):
    """Each query's excluded indices, ``{exclude[i]} | set(exclude_sets[i])``, as a table
    ``(cols, mask)`` of distinct indices (or None when nothing is excluded) and as Python sets
    (None without ``exclude_sets``)."""
    if exclude_sets is None:
        if exclude is None:
            return None, None
        return (exclude[:, None], torch.ones((n, 1), dtype=torch.bool, device=device)), None
    if isinstance(exclude_sets, torch.Tensor):
        if exclude_sets.ndim != 2:
            raise ValueError(
                f"exclude_sets must be one sequence of gallery indices per query, e.g. a Long "
                f"tensor [{n}, W]; got a tensor of shape {tuple(exclude_sets.shape)}"
            )
        exclude_sets = exclude_sets.tolist()
    if len(exclude_sets) != n:
        raise ValueError(
            f"exclude_sets must be a sequence of one sequence of gallery indices per query "
            f"({n}), got {type(exclude_sets).__name__} of length {len(exclude_sets)}"
        )
    base = [()] * n if exclude is None else [(e,) for e in exclude.tolist()]
    sets = []
    for i, extra in enumerate(exclude_sets):
        idx = {int(v) for v in extra}
        bad = [v for v in idx if not 0 <= v < m]
        if bad:
            raise ValueError(f"exclude_sets[{i}] has index {bad[0]}, outside the gallery [0, {m})")
        sets.append(idx.union(base[i]))
    return _index_table([sorted(x) for x in sets], device), sets


def _check_target_not_in_set(targets: torch.Tensor, table, sets) -> None:
    if sets is None:
        return
    cols, mask = table
    hit = ((cols == targets[:, None]) & mask).any(dim=1)
    if hit.any():
        i = int(hit.nonzero()[0, 0])
        raise ValueError(
            f"query {i}: target {int(targets[i])} is in its exclusion set exclude_sets[{i}], so "
            f"it would be removed from its own ranking; drop such queries or fix the set"
        )


def _valid_table(valid, n: int, m: int, exclude: torch.Tensor | None, sets, device):
    """Each query's distinct valid targets, excluded ones removed, ascending, as a table."""
    if len(valid) != n:
        raise ValueError(f"valid must hold one list per query: {len(valid)} lists for {n} queries")
    if sets is None:
        sets = [set()] * n if exclude is None else [{e} for e in exclude.tolist()]
    rows: list[list[int]] = []
    for i, row in enumerate(valid):
        idx = {int(v) for v in row}
        bad = [v for v in idx if not 0 <= v < m]
        if bad:
            raise ValueError(f"valid[{i}] has index {bad[0]}, outside the gallery [0, {m})")
        idx -= sets[i]
        if not idx:
            raise ValueError(
                f"valid[{i}] has no target left (it is empty or holds only excluded indices)"
            )
        # Ascending order makes "first maximum" the lowest index among tied scores.
        rows.append(sorted(idx))
    return _index_table(rows, device)


def _subset_tensor(subset, targets: torch.Tensor, n: int, m: int, device) -> torch.Tensor:
    if isinstance(subset, torch.Tensor) and (subset.is_floating_point() or subset.is_complex()):
        raise ValueError(f"subset must hold integer gallery indices, got dtype {subset.dtype}")
    subset = torch.as_tensor(subset, dtype=torch.long, device=device)
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
    return subset


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


def _index_table(rows: Sequence[Sequence[int]], device: torch.device):
    """Ragged rows of gallery indices as ``cols`` Long[n, W] and ``mask`` Bool[n, W], W >= 1."""
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long, device=device)
    width = max(1, int(lengths.max())) if len(rows) else 1
    mask = torch.arange(width, device=device)[None, :] < lengths[:, None]
    cols = torch.zeros(mask.shape, dtype=torch.long, device=device)
    # Boolean-mask assignment fills row by row, the order of the flattened rows.
    cols[mask] = torch.tensor([v for r in rows for v in r], dtype=torch.long, device=device)
    return cols, mask


def _read_scores(queries, gallery, q: slice, spans, cols, mask, keep: bool, check: bool):
    """``S[i, cols[i, l]]`` where ``mask`` (shape of ``cols``) for the queries ``q``, and the
    chunk's score blocks (one per span of ``spans``) when ``keep``, else None.

    A value is read out of the same block object that the counting then uses when the blocks
    are kept, so a target is compared against scores produced by exactly the same arithmetic as
    its own.
    """
    out = torch.zeros(cols.shape, dtype=queries.dtype, device=queries.device)
    blocks = [] if keep else None
    for g0, g1 in spans:
        sel = mask & (cols >= g0) & (cols < g1)
        if not keep and not sel.any():
            continue
        block = _score_block(queries, gallery, q, slice(g0, g1), check)
        rows, slots = sel.nonzero(as_tuple=True)
        out[rows, slots] = block[rows, cols[rows, slots] - g0]
        if keep:
            blocks.append(block)
    return out, blocks


def _subnormals_flushed(x: torch.Tensor) -> bool:
    """Whether arithmetic on ``x``'s device and dtype flushes subnormal numbers to zero."""
    tiny = torch.tensor(torch.finfo(x.dtype).smallest_normal, dtype=x.dtype, device=x.device)
    return not bool(tiny / 2 > 0)


def _count_block(block, g0: int, requests, excluded, buffer) -> list[torch.Tensor]:
    r"""For each request ``(t, s_t)`` (a target per row and its score) and each row of ``block``
    (gallery columns ``g0, g0 + 1, ...``), the number of columns that precede the target in the
    ranking order; one Long[r] per request.

    .. math:: \#\{ j \ne t,\ j \notin E :\ s_j > s_t \ \text{or}\ (s_j = s_t,\ j < t) \}

    with :math:`E` the row's ``excluded`` indices (``(cols, mask)`` or None; never ``t``).

    One comparison per entry: when the whole block lies before the target the rule is
    :math:`s_j \ge s_t`, which is :math:`s_j > s_t^-` for :math:`s_t^-` the next float below
    :math:`s_t` (no float lies between them; every score is finite; when subnormal numbers are
    flushed to zero these rows count their equal scores separately); after the target it is
    :math:`s_j > s_t`. The rows whose target lies in the block are counted with
    :math:`s_j > s_t` and their equal scores are counted too; the rare rows with an equal score
    besides the target's own are recounted with the index rule. The block is swept in tiles of
    rows small enough to stay in cache while every request compares against them.
    """
    r, w = block.shape
    g1 = g0 + w
    # 0/1 row sums are exact in float32 below 2**24 columns (every partial sum is an integer).
    acc = torch.float32 if w < 2**24 else torch.float64
    sums = torch.zeros((len(requests), 2, r), dtype=acc, device=block.device)
    rows = max(1, TILE_ELEMENTS // w)
    tiles = range(0, r, rows)
    # With torch.set_flush_denormal(True) a subnormal s_t^- compares as zero, so the next float
    # below s_t is not usable; the rows before their target then count equal scores instead.
    use_below = not _subnormals_flushed(block)
    plans = []
    for t, s_t in requests:
        before = t >= g1  # the whole block precedes the target: equal scores count
        inside = (t >= g0) & (t < g1)
        if use_below:
            below = torch.nextafter(s_t, torch.full_like(s_t, float("-inf")))
            greater = torch.where(before, below, s_t)
            count_equal = inside
        else:
            greater, count_equal = s_t, inside | before
        # NaN equals nothing: only the rows that need it count equal scores.
        equal = torch.where(count_equal, s_t, torch.full_like(s_t, float("nan")))
        tiles_equal = torch.zeros(len(tiles), dtype=torch.bool)
        tiles_equal[count_equal.nonzero()[:, 0].cpu() // rows] = True
        plans.append((inside, before, greater[:, None], equal[:, None], tiles_equal.tolist()))
    for n_tile, r0 in enumerate(tiles):
        r1 = min(r0 + rows, r)
        tile, ones = block[r0:r1], buffer[: (r1 - r0) * w].view(r1 - r0, w)
        for k, (_, _, greater, equal, tiles_equal) in enumerate(plans):
            torch.gt(tile, greater[r0:r1], out=ones)
            torch.sum(ones, 1, dtype=acc, out=sums[k, 0, r0:r1])
            if tiles_equal[n_tile]:
                torch.eq(tile, equal[r0:r1], out=ones)
                torch.sum(ones, 1, dtype=acc, out=sums[k, 1, r0:r1])
    out = []
    for k, (t, s_t) in enumerate(requests):
        counts = sums[k, 0].long()
        if not use_below:
            counts += torch.where(plans[k][1], sums[k, 1].long(), 0)
        inside = plans[k][0].nonzero()[:, 0]
        if inside.numel():
            t_in, s_in = t[inside], s_t[inside]
            own = block[inside, t_in - g0]
            # The target never counts itself (its own entry equals s_t when s_t was read from
            # this very block; a recomputed block is handled too).
            counts[inside] -= (own > s_in).long()
            others_equal = sums[k, 1, inside].long() - (own == s_in).long()
            tied = inside[others_equal > 0]
            if tied.numel():
                j = torch.arange(g0, g1, device=block.device)[None, :]
                for a in range(0, len(tied), rows):
                    tr = tied[a : a + rows]
                    ones = buffer[: len(tr) * w].view(len(tr), w)
                    torch.eq(block[tr], s_t[tr, None], out=ones)
                    ones.masked_fill_(j >= t[tr, None], 0)  # only ties before the target
                    counts[tr] += ones.sum(dim=1, dtype=acc).long()
        if excluded is not None:
            cols, mask = excluded
            sel = mask & (cols >= g0) & (cols < g1)
            e_rows, slots = sel.nonzero(as_tuple=True)
            if e_rows.numel():
                # Exactly what the count above included for each excluded column of the block.
                e, t_r, s_r = cols[e_rows, slots], t[e_rows], s_t[e_rows]
                s_e = block[e_rows, e - g0]
                counted = ((s_e > s_r) | ((s_e == s_r) & (e < t_r))) & (e != t_r)
                counts.index_add_(0, e_rows, -counted.long())
        out.append(counts)
    return out


def _best_valid(cols, mask, scores):
    """The best-placed valid target of each row and its score: the highest score, the lowest
    index among equal scores (its rank is the minimum, rank being monotone in the order)."""
    masked = scores.masked_fill(~mask, float("-inf"))
    top = masked.max(dim=1, keepdim=True).values
    is_top = mask & (masked == top)
    # Rows are ascending, so the first maximum is the lowest index among tied scores.
    slot = is_top.to(torch.uint8).argmax(dim=1, keepdim=True)  # first True
    return cols.gather(1, slot)[:, 0], scores.gather(1, slot)[:, 0]


def _subset_count(subset, scores, t, excluded):
    """Rank of ``t`` among its subset members (their ``scores``), excluded members removed."""
    t = t[:, None]
    s_t = scores.gather(1, (subset == t).to(torch.uint8).argmax(dim=1, keepdim=True))
    before = (scores > s_t) | ((scores == s_t) & (subset < t))
    before &= subset != t
    if excluded is not None:
        cols, mask = excluded
        before &= ~((subset[:, :, None] == cols[:, None, :]) & mask[:, None, :]).any(dim=2)
    return before.sum(dim=1)


def _sweep(
    queries, gallery, *, targets, rank_targets, valid, subset, excluded, query_chunk, gallery_chunk
) -> dict[str, torch.Tensor]:
    """Every requested rank in one sweep over the score blocks (inputs already validated).

    ``targets`` Long[n] or None; ``rank_targets``: return their ranks as ``"R"``; ``valid``:
    ``(cols, mask)`` of each query's valid targets without excluded ones, ascending within a
    row (``"mR"``); ``subset`` Long[n, S] (``"Rs"``, needs ``targets``); ``excluded``:
    ``(cols, mask)`` of each query's excluded indices, or None.

    Per query chunk, a first pass over its blocks reads the scores of targets, valid targets
    and subset members; the second counts. The chunk's blocks are kept between the passes when
    they fit in :data:`STRIP_BYTES` (each block is then computed once), else recomputed.
    """
    n, m = queries.shape[0], gallery.shape[0]
    device = queries.device
    check = _blocks_need_check(queries, gallery)
    spans = list(_spans(m, gallery_chunk))
    out = {}
    if rank_targets:
        out["R"] = torch.zeros(n, dtype=torch.long, device=device)
    if valid is not None:
        out["mR"] = torch.zeros(n, dtype=torch.long, device=device)
    if subset is not None:
        out["Rs"] = torch.zeros(n, dtype=torch.long, device=device)
    counting = rank_targets or valid is not None
    buffer = None
    if counting and n and m:
        # A tile holds min(rows, block rows) * w <= max(min(TILE_ELEMENTS, r * width), width)
        # entries for every block width w <= width (one row when a row exceeds the tile).
        width = min(gallery_chunk, m)
        size = max(min(TILE_ELEMENTS, min(query_chunk, n) * width), width)
        buffer = torch.empty(size, dtype=torch.float32, device=device)
    for q0, q1 in _spans(n, query_chunk):
        q = slice(q0, q1)
        ex = None if excluded is None else (excluded[0][q], excluded[1][q])
        parts = []
        if rank_targets:
            parts.append((targets[q, None], torch.ones((q1 - q0, 1), dtype=torch.bool)))
        if valid is not None:
            parts.append((valid[0][q], valid[1][q]))
        if subset is not None:
            parts.append((subset[q], torch.ones(subset[q].shape, dtype=torch.bool)))
        cols = torch.cat([c for c, _ in parts], dim=1)
        mask = torch.cat([k.to(device) for _, k in parts], dim=1)
        keep = counting and (q1 - q0) * m * queries.element_size() <= STRIP_BYTES
        scores, blocks = _read_scores(queries, gallery, q, spans, cols, mask, keep, check)

        requests, at = [], 0
        if rank_targets:
            requests.append(("R", targets[q], scores[:, 0]))
            at = 1
        if valid is not None:
            width = valid[0].shape[1]
            best = _best_valid(valid[0][q], valid[1][q], scores[:, at : at + width])
            requests.append(("mR", *best))
            at += width
        if subset is not None:
            out["Rs"][q] = _subset_count(subset[q], scores[:, at:], targets[q], ex)
        for b, (g0, g1) in enumerate(spans if requests else ()):
            if blocks is not None:
                block = blocks[b]
            else:
                block = _score_block(queries, gallery, q, slice(g0, g1), check)
            counts = _count_block(block, g0, [(t, s_t) for _, t, s_t in requests], ex, buffer)
            for (name, _, _), c in zip(requests, counts):
                out[name][q] += c
        del blocks
    return out


# ----------------------------------------------------------------------------- public API


def target_ranks(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    targets,
    exclude=None,
    *,
    exclude_sets: Sequence[Sequence[int]] | None = None,
    query_chunk: int = DEFAULT_QUERY_CHUNK,
    gallery_chunk: int = DEFAULT_GALLERY_CHUNK,
) -> torch.Tensor:
    r"""0-based position of each query's target in its ranking.

    .. math:: r_i = \#\{ j \ne t_i, j \notin E_i : s_{ij} > s_{it_i}
              \text{ or } (s_{ij} = s_{it_i} \text{ and } j < t_i) \}

    with :math:`E_i = \{e_i\} \cup X_i`, the excluded index and the exclusion set.

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
    exclude_sets : sequence of n sequences of gallery indices, or None
        More gallery indices removed from each query's ranking (sets may be empty, may repeat
        an index or hold ``exclude[i]``). None (the default) removes nothing more.
    query_chunk, gallery_chunk : int
        Block sizes. Peak extra memory is the ``query_chunk x m`` scores of one query chunk
        when they take at most :data:`STRIP_BYTES`, else one ``query_chunk x gallery_chunk``
        block. The block sizes decide which scores BLAS computes together, hence the rounding
        of real-valued scores (see the module docstring).

    Returns
    -------
    Long[n]
        Ranks in ``[0, m - |E_i|)``: ``[0, m - 1)`` with ``exclude`` alone, ``[0, m)`` without
        any exclusion. ``rank < K`` is a hit at K.

    Raises
    ------
    ValueError
        On shape or dtype mismatch, an index outside ``[0, m)``, or a target equal to its
        excluded index or in its exclusion set.

    Examples
    --------
    >>> import torch
    >>> queries = torch.tensor([[0.9, 0.5, 0.1]])
    >>> target_ranks(queries, torch.eye(3), [1]).tolist()             # image 0 scores higher
    [1]
    >>> target_ranks(queries, torch.eye(3), [1], exclude=[0]).tolist()  # ... unless excluded
    [0]
    """
    return evaluation_ranks(
        queries,
        gallery,
        targets,
        exclude,
        exclude_sets=exclude_sets,
        query_chunk=query_chunk,
        gallery_chunk=gallery_chunk,
    )["R"]


def best_valid_ranks(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    valid: Sequence[Sequence[int]],
    exclude=None,
    *,
    exclude_sets: Sequence[Sequence[int]] | None = None,
    query_chunk: int = DEFAULT_QUERY_CHUNK,
    gallery_chunk: int = DEFAULT_GALLERY_CHUNK,
) -> torch.Tensor:
    r"""Rank of the best-placed valid target of each query (multi-target retrieval).

    .. math:: r_i = \min_{t \in V_i \setminus E_i} r_i(t)

    A query is a hit at K when *any* of its valid targets is in the first K, i.e. ``r_i < K``.

    Parameters
    ----------
    queries : Tensor[n, d]
    gallery : Tensor[m, d]
    valid : sequence of n non-empty sequences of gallery indices
        The targets that satisfy each query; lengths may differ. Duplicates are ignored.
    exclude : Long[n] or None
        Excluded (reference) index per query; a valid index equal to it is ignored.
    exclude_sets : sequence of n sequences of gallery indices, or None
        More excluded indices per query, as in :func:`target_ranks`; valid indices among them
        are ignored too.
    query_chunk, gallery_chunk : int
        Block sizes, as in :func:`target_ranks`.

    Returns
    -------
    Long[n]

    Raises
    ------
    ValueError
        If ``len(valid) != n``, a list is empty (or only holds excluded indices), or an index
        is outside ``[0, m)``.

    Examples
    --------
    >>> import torch
    >>> best_valid_ranks(torch.tensor([[0.9, 0.5, 0.1]]), torch.eye(3), [[1, 2]]).tolist()
    [1]
    """
    n, m = _check_features(queries, gallery)
    _check_chunks(query_chunk, gallery_chunk)
    if exclude is not None:
        exclude = _as_index(exclude, n, m, "exclude", queries.device)
    excluded, sets = _exclusions(exclude, exclude_sets, n, m, queries.device)
    valid = _valid_table(valid, n, m, exclude, sets, queries.device)
    with torch.no_grad():
        return _sweep(
            queries,
            gallery,
            targets=None,
            rank_targets=False,
            valid=valid,
            subset=None,
            excluded=excluded,
            query_chunk=query_chunk,
            gallery_chunk=gallery_chunk,
        )["mR"]


def _block_topk(block: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``k`` columns of each row of ``block`` in (score descending, column ascending)
    order: the stable sort's prefix, without sorting the whole row.

    ``torch.topk`` selects in O(width) but returns ties in no defined order and may pick any of
    the items tied with the k-th score. Only rows whose (k+1)-th score equals their k-th can have
    such a tie straddle the cut; those rows are sorted stably. The kept columns are then put in
    column order before a stable sort by score, so ties come out by ascending column.
    """
    width = block.shape[1]
    if k >= width:
        order = torch.sort(block, dim=1, descending=True, stable=True).indices
        return block.gather(1, order), order
    values, cols = block.topk(k + 1, dim=1)
    straddles = values[:, k] == values[:, k - 1]
    values, cols = values[:, :k], cols[:, :k]
    if straddles.any():
        rows = straddles.nonzero()[:, 0]
        srt = torch.sort(block[rows], dim=1, descending=True, stable=True)
        values[rows], cols[rows] = srt.values[:, :k], srt.indices[:, :k]
    by_col = cols.argsort(dim=1)
    values, cols = values.gather(1, by_col), cols.gather(1, by_col)
    order = torch.sort(values, dim=1, descending=True, stable=True).indices
    return values.gather(1, order), cols.gather(1, order)


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

    Examples
    --------
    >>> import torch
    >>> scores, rows = topk(torch.tensor([[0.9, 0.5, 0.1]]), torch.eye(3), 2, exclude=[0])
    >>> rows.tolist()
    [[1, 2]]
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
                if exclude is not None:
                    # Scores are checked finite, so -inf sorts the excluded item after every
                    # real one; k <= m - 1 then guarantees it never survives the final cut.
                    # The block is a fresh product: write the -inf in place, one per row at most.
                    e = exclude[q0:q1]
                    rows = ((e >= g0) & (e < g1)).nonzero()[:, 0]
                    block[rows, e[rows] - g0] = float("-inf")
                # Merge invariant: the kept entries precede the new block and all have lower
                # indices, and are already in (score desc, index asc) order; a *stable* sort
                # of the concatenation therefore keeps lower indices first among ties.
                s, i = _block_topk(block, min(k, g1 - g0))
                cat_s = torch.cat([best_s, s], dim=1)
                cat_i = torch.cat([best_i, i + g0], dim=1)
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
    exclude_sets: Sequence[Sequence[int]] | None = None,
    query_chunk: int = DEFAULT_QUERY_CHUNK,
    gallery_chunk: int = DEFAULT_GALLERY_CHUNK,
) -> torch.Tensor:
    r"""Rank of the target among its subset, in the global ranking order (CIRR Recall_subset).

    .. math:: r^{sub}_i = \#\{ j \in U_i \setminus (\{t_i\} \cup E_i) : s_{ij} > s_{it_i}
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
    exclude_sets : sequence of n sequences of gallery indices, or None
        More excluded indices per query, as in :func:`target_ranks`; members among them are
        removed from the subset.
    query_chunk, gallery_chunk : int
        Block sizes for computing the scores, as in :func:`target_ranks`.

    Returns
    -------
    Long[n]
        Ranks in ``[0, S - 1)`` when the excluded item is in the subset.

    Examples
    --------
    The target (image 2) is third in the gallery but second within its subset {1, 2}:

    >>> import torch
    >>> queries = torch.tensor([[0.9, 0.5, 0.1]])
    >>> subset_ranks(queries, torch.eye(3), torch.tensor([[1, 2]]), [2]).tolist()
    [1]
    """
    n, m = _check_features(queries, gallery)
    _check_chunks(query_chunk, gallery_chunk)
    targets = _as_index(targets, n, m, "targets", queries.device)
    if exclude is not None:
        exclude = _as_index(exclude, n, m, "exclude", queries.device)
    _check_target_not_excluded(targets, exclude)
    excluded, sets = _exclusions(exclude, exclude_sets, n, m, queries.device)
    _check_target_not_in_set(targets, excluded, sets)
    subset = _subset_tensor(subset, targets, n, m, queries.device)
    with torch.no_grad():
        return _sweep(
            queries,
            gallery,
            targets=targets,
            rank_targets=False,
            valid=None,
            subset=subset,
            excluded=excluded,
            query_chunk=query_chunk,
            gallery_chunk=gallery_chunk,
        )["Rs"]


def evaluation_ranks(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    targets,
    exclude=None,
    *,
    subset=None,
    valid: Sequence[Sequence[int]] | None = None,
    exclude_sets: Sequence[Sequence[int]] | None = None,
    query_chunk: int = DEFAULT_QUERY_CHUNK,
    gallery_chunk: int = DEFAULT_GALLERY_CHUNK,
) -> dict[str, torch.Tensor]:
    """:func:`target_ranks`, and optionally :func:`subset_ranks` and :func:`best_valid_ranks`,
    in one sweep over the score blocks (what :func:`cirlib.eval.evaluate.evaluate` needs).

    Each block is computed once for all three and the results are exactly those of the three
    functions called separately with the same arguments.

    Parameters
    ----------
    queries, gallery, targets, exclude, query_chunk, gallery_chunk
        As in :func:`target_ranks`.
    subset : Long[n, S] or None
        As in :func:`subset_ranks`.
    valid : sequence of n sequences of gallery indices, or None
        As in :func:`best_valid_ranks`.
    exclude_sets : sequence of n sequences of gallery indices, or None
        As in :func:`target_ranks`; applies to all three rankings.

    Returns
    -------
    dict[str, Long[n]]
        ``"R"`` (target ranks), ``"Rs"`` when ``subset`` is given, ``"mR"`` when ``valid`` is.

    Examples
    --------
    >>> import torch
    >>> r = evaluation_ranks(torch.tensor([[0.9, 0.5, 0.1]]), torch.eye(3), [2], valid=[[1, 2]])
    >>> {name: ranks.tolist() for name, ranks in r.items()}
    {'R': [2], 'mR': [1]}
    """
    n, m = _check_features(queries, gallery)
    _check_chunks(query_chunk, gallery_chunk)
    device = queries.device
    targets = _as_index(targets, n, m, "targets", device)
    if exclude is not None:
        exclude = _as_index(exclude, n, m, "exclude", device)
    _check_target_not_excluded(targets, exclude)
    excluded, sets = _exclusions(exclude, exclude_sets, n, m, device)
    _check_target_not_in_set(targets, excluded, sets)
    if subset is not None:
        subset = _subset_tensor(subset, targets, n, m, device)
    if valid is not None:
        valid = _valid_table(valid, n, m, exclude, sets, device)
    with torch.no_grad():
        return _sweep(
            queries,
            gallery,
            targets=targets,
            rank_targets=True,
            valid=valid,
            subset=subset,
            excluded=excluded,
            query_chunk=query_chunk,
            gallery_chunk=gallery_chunk,
        )
