r"""Target-relative negative mining (DQE-CIR's TRNS): negatives from a mid-zone of Δ-scores.

**The Δ-score we use.** For training query :math:`i` with composed query :math:`q_i`, annotated
target :math:`t_i` and a candidate gallery image :math:`c`,

.. math::

    \Delta_{ic} = \mathrm{sim}(q_i, t_i) - \mathrm{sim}(q_i, c),

the candidate's score gap *to the target, under the current model* (the book's reading (a); Park,
Park and Lee, 2026 do not define it). Small or negative :math:`\Delta` means the model already ranks :math:`c` next to
(or above) the target: a hard negative, or a valid image the annotation did not list (a false
negative). Large :math:`\Delta` means an easy negative that teaches nothing. The other
reading, (b) :math:`\Delta_{ic} = \mathrm{sim}(t_i, c)` (image–image similarity to the target),
would never change on a frozen gallery, so refreshing it would be pointless; the chapter's
exercise compares the two. DQE-CIR's own definition is unpublished.

**The mid-zone.** Over the query's candidates :math:`C_i` (the gallery minus the excluded
images: the target, any listed valid target, the reference), sort :math:`\Delta` ascending and
keep ranks :math:`r` with

.. math::

    \lfloor \eta_{lo} |C_i| \rfloor \le r < \max\big(\lfloor \eta_{lo} |C_i| \rfloor + 1,\;
    \lceil \eta_{hi} |C_i| \rceil\big),

i.e. the candidates between the :math:`\eta_{lo}`- and :math:`\eta_{hi}`-quantiles of the
query's Δ-distribution (never empty). :math:`\eta_{lo}` drops the near-target zone,
:math:`\eta_{hi}` the easy tail; ``(0, 1)`` is uniform sampling, ``(0, upper)``
hardest-negative mining.

**Refresh.** :class:`TargetRelativeMiner` stores each query's zone (or a uniform subset of it,
``pool_size``) and rebuilds it every ``refresh_every`` epochs from freshly encoded queries and
gallery; between refreshes the pools stay fixed (a fixed interval, as DQE-CIR describes).

Introduced in chapter "DQE-CIR: attribute-weighted queries and target-relative negatives".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch


def delta_scores(scores: torch.Tensor, target_columns: torch.Tensor) -> torch.Tensor:
    r"""Target-relative Δ-scores :math:`\Delta_{ic} = S_{i,t_i} - S_{ic}`.

    Parameters
    ----------
    scores : ``[Q, N]`` query–candidate scores :math:`S_{ic} = \mathrm{sim}(q_i, c)`.
    target_columns : ``[Q]`` column of each query's target in ``scores``.

    Returns
    -------
    ``[Q, N]``; the target's own column is 0. Introduced in chapter "DQE-CIR: attribute-weighted queries and target-relative negatives".
    """
    target = scores.gather(1, target_columns.long()[:, None])
    return target - scores


def zone_bounds(n_candidates: torch.Tensor, lower: float, upper: float):
    r"""Rank range ``[start, stop)`` of the mid-zone for ``n_candidates`` candidates per row.

    ``start`` :math:`= \lfloor \eta_{lo} n \rfloor`, ``stop`` :math:`= \max(start + 1,
    \lceil \eta_{hi} n \rceil)` with ``lower`` :math:`= \eta_{lo}` and ``upper``
    :math:`= \eta_{hi}`, both clipped to ``n`` (rows with no candidate get an empty range).
    Introduced in chapter "DQE-CIR: attribute-weighted queries and target-relative negatives".
    """
    n = n_candidates.long()
    # the small epsilon keeps e.g. 0.3 * 10 = 3.0000000000000004 from rounding up to 4
    start = torch.floor(lower * n.double() + 1e-9).long()
    stop = torch.ceil(upper * n.double() - 1e-9).long()
    stop = torch.maximum(stop, start + 1)
    return start.clamp(max=n), stop.clamp(max=n)


def mid_zone(
    delta: torch.Tensor, lower: float, upper: float, exclude: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Candidates between the ``lower`` and ``upper`` quantiles of each row's Δ-distribution.

    Parameters
    ----------
    delta : ``[Q, N]`` Δ-scores (see :func:`delta_scores`).
    lower, upper : quantile bounds :math:`0 \le \eta_{lo} < \eta_{hi} \le 1`.
    exclude : ``[Q, N]`` bool, True for candidates that may never be returned (the target,
        listed valid targets, the reference); they are also left out of the distribution.

    Returns
    -------
    ``zone`` ``[Q, Z]`` column indices sorted by ascending Δ, padded with -1, and ``length``
    ``[Q]``, the zone size of each row. Introduced in chapter "DQE-CIR: attribute-weighted queries and target-relative negatives".
    """
    if not 0.0 <= lower < upper <= 1.0:
        raise ValueError(
            f"quantile bounds must satisfy 0 <= lower < upper <= 1, got {lower}, {upper}"
        )
    q, n = delta.shape
    d = delta.float()
    if exclude is not None:
        d = d.masked_fill(exclude, math.inf)  # excluded sort last and are never reached
        n_cand = (~exclude).sum(dim=1)
    else:
        n_cand = torch.full((q,), n, device=delta.device)
    start, stop = zone_bounds(n_cand, lower, upper)
    k = int(stop.max().item()) if q else 0
    if k == 0:
        return torch.full((q, 0), -1, dtype=torch.long, device=delta.device), stop - start
    _, order = torch.topk(d, k, dim=1, largest=False, sorted=True)
    ranks = torch.arange(k, device=delta.device)[None, :]
    inside = (ranks >= start[:, None]) & (ranks < stop[:, None])
    length = inside.sum(dim=1)
    width = int(length.max().item())
    # move each row's zone to the front (stable sort on "not inside" keeps the Δ order)
    front = torch.sort((~inside).to(torch.int8), dim=1, stable=True).indices[:, :width]
    zone = order.gather(1, front)
    pad = torch.arange(width, device=delta.device)[None, :] >= length[:, None]
    return zone.masked_fill(pad, -1), length


def exclusion_mask(
    rows: Sequence[Sequence[int]], n_columns: int, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """``[len(rows), n_columns]`` bool mask, True at the listed columns of each row.

    Introduced in chapter "DQE-CIR: attribute-weighted queries and target-relative negatives".
    """
    mask = torch.zeros(len(rows), n_columns, dtype=torch.bool, device=device)
    for i, cols in enumerate(rows):
        if len(cols):
            mask[i, torch.as_tensor(list(cols), dtype=torch.long, device=device)] = True
    return mask


@dataclass
class TargetRelativeMiner:
    r"""Mid-zone negatives for every training query, refreshed every ``refresh_every`` epochs.

    Parameters
    ----------
    target_index : ``[Q]`` gallery row of each query's target.
    exclude : per query, the gallery rows never to return (the target is always added).
    lower, upper : quantile bounds of the mid-zone (see :func:`mid_zone`).
    refresh_every : R; the pools are rebuilt at epochs 0, R, 2R, … (0 = only once, at the start).
    pool_size : at most this many zone members are kept per query (a uniform draw from the
        zone when it is larger), so the memory is ``[Q, pool_size]`` whatever the gallery size.
    candidates : score only this many gallery rows per refresh (a fresh uniform draw each time;
        None = all). A uniform subset keeps every quantile of the Δ-distribution unbiased.
    seed : seeds the candidate and pool draws; refresh ``e`` uses ``seed`` and ``e`` only, so a
        run that restarts at epoch ``e`` draws what an uninterrupted one would.

    Implements the :class:`~cirlib.miners.Miner` protocol: ``due(epoch)``;
    ``refresh(queries, gallery, epoch)`` takes the current query ``[Q, E]`` and gallery
    ``[N, E]`` embeddings (score = dot product); ``sample(idx, k)`` draws ``k`` negatives per
    query; ``state_dict()`` / ``load_state_dict(state)`` carry the pools between processes. Introduced in chapter "DQE-CIR: attribute-weighted queries and target-relative negatives".
    """

    target_index: torch.Tensor
    exclude: Sequence[Sequence[int]]
    lower: float = 0.002
    upper: float = 0.05
    refresh_every: int = 1
    pool_size: int = 64
    candidates: int | None = None
    seed: int = 0
    chunk: int = 512
    pool: torch.Tensor | None = field(default=None, init=False)  # [Q, P] gallery rows, -1 pad
    pool_length: torch.Tensor | None = field(default=None, init=False)  # [Q]
    refreshed_at: list[int] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if len(self.exclude) != len(self.target_index):
            raise ValueError(
                f"exclude lists {len(self.exclude)} queries but target_index has "
                f"{len(self.target_index)}; give one exclusion list per training query"
            )
        if self.refresh_every < 0:
            raise ValueError(
                f"refresh_every must be >= 0 (0 = never refresh), got {self.refresh_every}"
            )
        mid_zone(torch.zeros(1, 2), self.lower, self.upper)  # validates the bounds early
        self.target_index = self.target_index.long().cpu()
        self.exclude = [
            sorted({int(t), *map(int, ex)}) for t, ex in zip(self.target_index, self.exclude)
        ]
        width = max(len(ex) for ex in self.exclude) if self.exclude else 0
        self._exclude_rows = torch.full((len(self.exclude), width), -1, dtype=torch.long)
        for i, ex in enumerate(self.exclude):
            self._exclude_rows[i, : len(ex)] = torch.as_tensor(ex, dtype=torch.long)

    def due(self, epoch: int) -> bool:
        """Should the pools be rebuilt before training epoch ``epoch`` (0-based)?"""
        if self.pool is None:
            return True
        return (
            self.refresh_every > 0
            and epoch % self.refresh_every == 0
            and (not self.refreshed_at or self.refreshed_at[-1] != epoch)
        )

    @torch.no_grad()
    def refresh(self, queries: torch.Tensor, gallery: torch.Tensor, epoch: int) -> None:
        """Rebuild every query's pool from current embeddings (``[Q, E]`` and ``[N, E]``)."""
        n_gallery = len(gallery)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        if self.candidates is not None and self.candidates < n_gallery:
            cand = torch.randperm(n_gallery, generator=gen)[: self.candidates].sort().values
        else:
            cand = torch.arange(n_gallery)
        column_of = torch.full((n_gallery,), -1, dtype=torch.long)
        column_of[cand] = torch.arange(len(cand))
        device = gallery.device
        g_cand = gallery[cand.to(device)].float()
        pools, lengths = [], []
        for s in range(0, len(queries), self.chunk):
            q = queries[s : s + self.chunk].float()
            tgt = self.target_index[s : s + self.chunk]
            scores = q @ g_cand.T  # [c, M]
            target_score = (q * gallery[tgt.to(device)].float()).sum(-1, keepdim=True)
            delta = (target_score - scores).cpu()
            rows = self._exclude_rows[s : s + self.chunk]
            cols = torch.where(rows >= 0, column_of[rows.clamp_min(0)], -1)
            # padding and non-candidates go to an extra column that is dropped again
            mask = torch.zeros(len(delta), delta.shape[1] + 1, dtype=torch.bool)
            mask.scatter_(1, torch.where(cols >= 0, cols, delta.shape[1]), True)
            mask = mask[:, :-1]
            zone, length = mid_zone(delta, self.lower, self.upper, mask)
            # a uniform subset of at most pool_size members: random keys, padding sorted last
            keys = torch.rand(zone.shape, generator=gen).masked_fill(zone < 0, 2.0)
            pick = keys.argsort(dim=1)[:, : self.pool_size]
            chosen = zone.gather(1, pick)
            chosen = torch.where(chosen >= 0, cand[chosen.clamp_min(0)], chosen)
            if chosen.shape[1] < self.pool_size:
                chosen = torch.nn.functional.pad(
                    chosen, (0, self.pool_size - chosen.shape[1]), value=-1
                )
            pools.append(chosen)
            lengths.append(length.clamp(max=self.pool_size))
        self.pool = torch.cat(pools)
        self.pool_length = torch.cat(lengths)
        self.refreshed_at.append(epoch)

    def state_dict(self) -> dict:
        """What :meth:`sample` and :meth:`due` read: the pools, their lengths and the epochs of
        the refreshes so far (the :class:`~cirlib.miners.Miner` protocol)."""
        return {
            "pool": self.pool,
            "pool_length": self.pool_length,
            "refreshed_at": list(self.refreshed_at),
        }

    def load_state_dict(self, state: dict) -> None:
        """Take over another miner's pools (e.g. rank 0's, under several processes)."""
        self.pool, self.pool_length = state["pool"], state["pool_length"]
        self.refreshed_at = list(state["refreshed_at"])

    def sample(
        self, idx: torch.Tensor, k: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``[B, k]`` gallery rows drawn uniformly (with replacement) from the pools of ``idx``."""
        if self.pool is None:
            raise RuntimeError("the miner has no pools yet: call refresh() first")
        idx = idx.long().cpu()
        length = self.pool_length[idx]
        if (length == 0).any():
            raise RuntimeError(
                "some queries have an empty mid-zone (every candidate excluded); the gallery is "
                "too small for these bounds"
            )
        u = torch.rand(len(idx), k, generator=generator)
        pos = (u * length[:, None]).long().clamp(max=self.pool_size - 1)
        return self.pool[idx].gather(1, pos)
