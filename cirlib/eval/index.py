r"""Top-k search over galleries too large to score in one matrix: exact blocks, or FAISS.

Recall@K only asks whether the target is among a query's first :math:`K` gallery items, so a
ranker never needs the full :math:`Q \times N` score matrix, only each query's top
:math:`k \ge K`:

.. math:: \mathrm{top}_k(i) = \text{the first } k \text{ items of the ranking of }
          s_{ij} = \langle q_i, g_j \rangle, \quad j \ne e_i,

in the book's ranking order (descending score, ties broken by the **lower gallery index**, the
order of :mod:`cirlib.eval.ranking`), with the optional excluded item :math:`e_i` (CIRR's
reference image) removed.

* :class:`ExactIndex` multiplies a block of queries with a block of gallery rows, keeps the
  block's top :math:`k` and merges it into the running top :math:`k`: peak memory
  :math:`O(Q_b N_b)` for one score block plus :math:`O(Q k)` for the answer, whatever :math:`N`.
  The gallery may be float16 (half the memory) or a memory-mapped array; each block is scored in
  float32.
* :class:`FaissFlatIndex` is FAISS's exact flat inner-product index (``IndexFlatIP``), an
  optional dependency (``pip install faiss-cpu``, or the ``scale`` extra of cirlib). Same
  scores up to float32 rounding, so the same ids unless two scores are within rounding of each
  other; FAISS does not define an order for ties.

:func:`ranks_from_topk` and :func:`best_valid_ranks_from_topk` turn a top-k list into ranks
clipped at :math:`k`, which give exactly the same Recall@K for every :math:`K \le k` as the full
ranks of :mod:`cirlib.eval.ranking`; ``evaluate(..., index=...)`` uses them.

Introduced in the book page "Running the paper profile on a GPU" (galleries beyond memory).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "ExactIndex",
    "FaissFlatIndex",
    "best_valid_ranks_from_topk",
    "drop_excluded",
    "make_index",
    "ranks_from_topk",
]

FAISS_INSTALL_HINT = (
    "the FAISS gallery index needs the optional package faiss-cpu: install it with "
    "`pip install faiss-cpu` (or `pip install 'cirlib[scale]'`), or use the exact index "
    "(index='exact'), which needs nothing extra"
)


def _import_faiss():
    """FAISS, imported only when asked for, with an install hint when it is missing."""
    try:
        import faiss
    except ImportError as err:
        raise ImportError(FAISS_INSTALL_HINT) from err
    return faiss


def _as_tensor(x) -> torch.Tensor:
    """A 2-D tensor view of a tensor or (memory-mapped) NumPy array, without copying."""
    if isinstance(x, np.ndarray):
        with warnings.catch_warnings():
            # A read-only memmap is the normal way to hold a huge gallery; we never write to it.
            warnings.filterwarnings("ignore", message=".*not writable.*")
            x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or not x.is_floating_point():
        raise ValueError("a gallery and its queries must be 2-D float arrays [rows, d]")
    return x


def _check_search(index, queries: torch.Tensor, k: int, exclude) -> torch.Tensor | None:
    if queries.shape[1] != index.dim:
        raise ValueError(f"queries have d={queries.shape[1]}, the index holds d={index.dim}")
    available = index.size - (0 if exclude is None else 1)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= available:
        raise ValueError(f"k must be an int in [1, {available}], got {k!r}")
    if exclude is None:
        return None
    exclude = torch.as_tensor(exclude, dtype=torch.long)
    if exclude.shape != (queries.shape[0],):
        raise ValueError(
            f"exclude must have one gallery index per query, got {tuple(exclude.shape)}"
        )
    return exclude


def _order_by_score_then_index(scores: torch.Tensor, ids: torch.Tensor, k: int):
    """The first ``k`` of each row in (score descending, index ascending) order."""
    by_id = ids.argsort(dim=1)
    scores, ids = scores.gather(1, by_id), ids.gather(1, by_id)
    # A stable sort keeps the ascending-index order among equal scores.
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
    return scores.gather(1, order), ids.gather(1, order)


class ExactIndex:
    r"""Exact top-k by blocked matrix products: a gallery of any size in bounded memory.

    Parameters
    ----------
    gallery : Tensor or ndarray [N, d]
        Gallery features (L2-normalised by the caller for cosine similarity). float16 storage
        and ``numpy.memmap`` arrays are fine: rows are read and cast to float32 one block at a
        time.
    gallery_block : int
        Gallery rows scored at once; with ``query_block`` queries the score block takes
        ``4 * query_block * gallery_block`` bytes.

    Introduced in the book page "Running the paper profile on a GPU".
    """

    def __init__(self, gallery, *, gallery_block: int = 16384):
        self.gallery = _as_tensor(gallery)
        self.gallery_block = int(gallery_block)
        if self.gallery_block < 1:
            raise ValueError("gallery_block must be positive")

    @property
    def size(self) -> int:
        return self.gallery.shape[0]

    @property
    def dim(self) -> int:
        return self.gallery.shape[1]

    def search(
        self, queries, k: int, exclude=None, *, query_block: int = 1024
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Scores and gallery ids of each query's first ``k`` items.

        Parameters
        ----------
        queries : Tensor[Q, d]
        k : int
            ``1 <= k <= N`` (``N - 1`` with ``exclude``).
        exclude : Long[Q] or None
            A gallery index removed from each query's ranking (the reference image).
        query_block : int
            Queries scored at once.

        Returns
        -------
        scores : float32 [Q, k]
            Descending along each row.
        ids : Long[Q, k]
            Gallery indices; ascending among equal scores (the order of
            :func:`cirlib.eval.ranking.topk`).
        """
        queries = _as_tensor(queries)
        exclude = _check_search(self, queries, k, exclude)
        n_q = queries.shape[0]
        out_s = torch.empty((n_q, k), dtype=torch.float32)
        out_i = torch.empty((n_q, k), dtype=torch.long)
        with torch.no_grad():
            for q0 in range(0, n_q, query_block):
                q = queries[q0 : q0 + query_block].float()
                if not torch.isfinite(q.sum()):
                    raise ValueError(f"non-finite query features in rows {q0}..")
                ex = None if exclude is None else exclude[q0 : q0 + query_block, None]
                best_s = torch.empty((len(q), 0))
                best_i = torch.empty((len(q), 0), dtype=torch.long)
                for g0 in range(0, self.size, self.gallery_block):
                    block = self.gallery[g0 : g0 + self.gallery_block].float()
                    # One sum is ~10x cheaper than an elementwise check, and any NaN/inf in the
                    # block makes it non-finite.
                    if not torch.isfinite(block.sum()):
                        raise ValueError(f"non-finite gallery features in rows {g0}..")
                    scores = q @ block.T
                    if ex is not None:
                        j = torch.arange(g0, g0 + len(block))
                        scores.masked_fill_(j[None, :] == ex, float("-inf"))
                    s, i = self._block_topk(scores, min(k, len(block)))
                    best_s, best_i = _order_by_score_then_index(
                        torch.cat([best_s, s], 1), torch.cat([best_i, i + g0], 1), k
                    )
                out_s[q0 : q0 + len(q)] = best_s
                out_i[q0 : q0 + len(q)] = best_i
        return out_s, out_i

    @staticmethod
    def _block_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The block's top ``k`` with the lowest indices kept among ties at the cut."""
        if scores.shape[1] <= k:
            return scores, torch.arange(scores.shape[1]).expand_as(scores)
        values, positions = scores.topk(k + 1, dim=1)
        # torch.topk picks arbitrarily among items tied with the k-th score. Such a tie can
        # straddle the cut only if the (k+1)-th score equals the k-th; redo those rows with a
        # stable sort (rare for real-valued features, and no extra pass over the block).
        straddles = values[:, k] == values[:, k - 1]
        values, positions = values[:, :k], positions[:, :k]
        if straddles.any():
            rows = straddles.nonzero()[:, 0]
            srt = torch.sort(scores[rows], dim=1, descending=True, stable=True)
            values[rows], positions[rows] = srt.values[:, :k], srt.indices[:, :k]
        return values, positions


class FaissFlatIndex:
    r"""FAISS's exact inner-product index (``IndexFlatIP``) behind the :class:`ExactIndex` API.

    The gallery is copied into FAISS as float32 (``4 N d`` bytes; 2.6 GB for a million 640-d
    rows), added in blocks so a float16 or memory-mapped source is never converted whole.

    Parameters
    ----------
    gallery : Tensor or ndarray [N, d]
    add_block : int
        Rows converted and added at a time.
    threads : int or None
        FAISS's OpenMP threads (None: torch's current thread count).

    Raises
    ------
    ImportError
        With the install command, when faiss-cpu is not installed.

    Introduced in the book page "Running the paper profile on a GPU".
    """

    def __init__(self, gallery, *, add_block: int = 65536, threads: int | None = None):
        faiss = _import_faiss()
        gallery = _as_tensor(gallery)
        faiss.omp_set_num_threads(threads or torch.get_num_threads())
        self.index = faiss.IndexFlatIP(gallery.shape[1])
        for g0 in range(0, gallery.shape[0], add_block):
            rows = gallery[g0 : g0 + add_block].float().contiguous().numpy()
            self.index.add(rows)

    @property
    def size(self) -> int:
        return self.index.ntotal

    @property
    def dim(self) -> int:
        return self.index.d

    def search(
        self, queries, k: int, exclude=None, *, query_block: int = 1024
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Same contract as :meth:`ExactIndex.search` (ties in FAISS's own order)."""
        queries = _as_tensor(queries)
        exclude = _check_search(self, queries, k, exclude)
        extra = 0 if exclude is None else 1
        out_s, out_i = [], []
        for q0 in range(0, queries.shape[0], query_block):
            q = queries[q0 : q0 + query_block].float().contiguous().numpy()
            s, i = self.index.search(q, k + extra)
            s, i = torch.from_numpy(s), torch.from_numpy(i).long()
            if exclude is not None:
                # Drop the excluded id where it was found, else the (k+1)-th item: a stable sort
                # of "is excluded" moves it last and keeps the others in FAISS's order.
                hit = i == exclude[q0 : q0 + query_block, None]
                keep = torch.sort(hit.to(torch.uint8), dim=1, stable=True).indices[:, :k]
                s, i = s.gather(1, keep), i.gather(1, keep)
            out_s.append(s)
            out_i.append(i)
        return torch.cat(out_s), torch.cat(out_i)


def make_index(gallery, kind: str = "exact", **options):
    """An :class:`ExactIndex` (``kind="exact"``) or :class:`FaissFlatIndex` (``"faiss"``)."""
    if kind == "exact":
        return ExactIndex(gallery, **options)
    if kind == "faiss":
        return FaissFlatIndex(gallery, **options)
    raise ValueError(f"unknown index kind {kind!r}; use 'exact' or 'faiss'")


def ranks_from_topk(ids: torch.Tensor, targets) -> torch.Tensor:
    r"""Each target's 0-based position in its query's top-k list, or ``k`` when absent.

    .. math:: \hat r_i = \min(r_i, k)

    so :math:`[\hat r_i < K] = [r_i < K]` for every :math:`K \le k`: Recall@K from these clipped
    ranks equals Recall@K from the full ranks.

    Parameters
    ----------
    ids : Long[Q, k]
        From ``index.search``.
    targets : Long[Q]

    Returns
    -------
    Long[Q]
    """
    targets = torch.as_tensor(targets, dtype=torch.long)
    found = ids == targets[:, None]
    k = ids.shape[1]
    # argmax of a 0/1 row is its first 1; a row without any hit gets k.
    first = found.to(torch.uint8).argmax(dim=1)
    return torch.where(found.any(dim=1), first, torch.full_like(first, k))


def drop_excluded(ids: torch.Tensor, exclude_sets: Sequence[Sequence[int]], k: int) -> torch.Tensor:
    """The first ``k`` ids of each top list that are not in the query's exclusion set.

    Search ``k`` plus the largest set size (or the whole gallery), then drop: the kept ids are
    the first ``k`` items of the ranking without the excluded ones, in the same order. Rows that
    run out (the search reached the end of the gallery) end with ``-1``.

    Parameters
    ----------
    ids : Long[Q, k']
        From ``index.search``.
    exclude_sets : Q sequences of gallery indices
    k : int

    Returns
    -------
    Long[Q, k]
    """
    if len(exclude_sets) != ids.shape[0]:
        raise ValueError(f"{len(exclude_sets)} exclusion sets for {ids.shape[0]} queries")
    rows = [sorted({int(v) for v in e}) for e in exclude_sets]
    width = max(1, max((len(r) for r in rows), default=1))
    # Each row ascending, padded with a value above every id, so a binary search finds members.
    table = torch.full((len(rows), width), torch.iinfo(torch.long).max, dtype=torch.long)
    for i, r in enumerate(rows):
        table[i, : len(r)] = torch.as_tensor(r, dtype=torch.long)
    pos = torch.searchsorted(table, ids).clamp(max=width - 1)
    gone = table.gather(1, pos) == ids
    # A stable sort of "gone" moves the dropped ids to the end and keeps the others in order.
    order = torch.sort(gone.to(torch.uint8), dim=1, stable=True).indices
    kept = ids.gather(1, order).masked_fill(gone.gather(1, order), -1)
    if kept.shape[1] < k:
        kept = torch.cat([kept, kept.new_full((kept.shape[0], k - kept.shape[1]), -1)], dim=1)
    return kept[:, :k]


def best_valid_ranks_from_topk(ids: torch.Tensor, valid: Sequence[Sequence[int]]) -> torch.Tensor:
    r"""Position of the first valid target in each top-k list, or ``k`` (multi-target recall).

    .. math:: \hat r_i = \min\big(\min_{t \in V_i} r_i(t),\ k\big)

    Parameters
    ----------
    ids : Long[Q, k]
    valid : Q sequences of gallery indices (the excluded index, if listed, never appears in
        ``ids``, so it is ignored automatically)

    Returns
    -------
    Long[Q]
    """
    if len(valid) != ids.shape[0]:
        raise ValueError(f"{len(valid)} valid lists for {ids.shape[0]} queries")
    width = max(1, max(len(v) for v in valid))
    padded = torch.full((len(valid), width), -1, dtype=torch.long)
    for row, v in enumerate(valid):
        padded[row, : len(v)] = torch.as_tensor(list(v), dtype=torch.long)
    # The padding never matches, not even the -1 that drop_excluded leaves at the end of a list.
    found = ((ids[:, :, None] == padded[:, None, :]) & (padded[:, None, :] >= 0)).any(dim=2)
    k = ids.shape[1]
    first = found.to(torch.uint8).argmax(dim=1)
    return torch.where(found.any(dim=1), first, torch.full_like(first, k))
