"""Recall@K and the dataset protocols built on it (CIRR, multi-target, FashionIQ).

All numbers are percentages in [0, 100], as every CIR paper reports them, and the denominator is
always the number of queries (one positive per query, or "any valid target" for multi-target).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch

from cirlib.eval.ranking import (
    DEFAULT_GALLERY_CHUNK,
    DEFAULT_QUERY_CHUNK,
    best_valid_ranks,
    evaluation_ranks,
    target_ranks,
)

__all__ = [
    "CIRR_KS",
    "CIRR_SUBSET_KS",
    "FASHIONIQ_KS",
    "FASHIONIQ_PROTOCOLS",
    "cirr_metrics",
    "fashioniq_category_recall",
    "fashioniq_summary",
    "multi_target_recall",
    "recall_at_k",
]

CIRR_KS = (1, 5, 10, 50)
CIRR_SUBSET_KS = (1, 2, 3)
FASHIONIQ_KS = (10, 50)

FASHIONIQ_PROTOCOLS = {
    "clip4cir": "CLIP4Cir/SPRC/CaLa: gallery = split.{cat}.val.json, reference NOT removed",
    "cosmo": "CoSMo/MGUR: gallery = val candidates and targets, reference removed",
}


def recall_at_k(ranks, ks: Iterable[int] = CIRR_KS, prefix: str = "R") -> dict[str, float]:
    r"""Percentage of queries whose rank is below each cut-off (Recall@K as CIRR, Liu et al.,
    2021, and FashionIQ, Wu et al., 2021, report it).

    .. math:: \mathrm{R@}K = \frac{100}{n} \sum_{i=1}^{n} [\, r_i < K \,]

    Parameters
    ----------
    ranks : Long[n] or sequence of int
        0-based ranks (from :mod:`cirlib.eval.ranking`).
    ks : iterable of int
        Positive cut-offs.
    prefix : str
        Key prefix: ``"R"`` gives ``"R@1"``, ``"Rs"`` gives ``"Rs@1"``.

    Returns
    -------
    dict[str, float]
        ``{f"{prefix}@{K}": percentage}`` in the order of ``ks``.

    Examples
    --------
    Ranks are 0-based: the first query found its target first, the second fifth.

    >>> recall_at_k([0, 4], ks=[1, 5])
    {'R@1': 50.0, 'R@5': 100.0}
    """
    r = torch.as_tensor(ranks).reshape(-1)
    if r.numel() == 0:
        raise ValueError("recall needs at least one query; got an empty ranks tensor")
    if r.is_floating_point() or (r < 0).any():
        raise ValueError("ranks must be non-negative integers (0 = first place)")
    out = {}
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"cut-offs must be positive ints, got {k!r}")
        # Python ints avoid float32 rounding in the ratio (4181 queries is not a round number).
        out[f"{prefix}@{k}"] = 100.0 * int((r < k).sum()) / r.numel()
    return out


def cirr_metrics(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    targets,
    references,
    subsets,
    *,
    ks: Iterable[int] = CIRR_KS,
    subset_ks: Iterable[int] = CIRR_SUBSET_KS,
    query_chunk: int = DEFAULT_QUERY_CHUNK,
    gallery_chunk: int = DEFAULT_GALLERY_CHUNK,
) -> dict[str, float]:
    r"""CIRR validation metrics: Recall@K, Recall_subset@K and the two summary numbers (Liu et al.,
    2021; the evaluation code of CLIP4Cir, Baldrati et al., 2023).

    The reference is removed from the ranking (``m - 1`` entries). ``Rs@K`` ranks the target
    among the subset members other than the reference (5 for CIRR), ordered by the global scores.

    .. math::
        \mathrm{Avg} = \tfrac12(\mathrm{R@5} + \mathrm{Rs@1}), \qquad
        \mathrm{Mean7} = \tfrac17\Big(\sum_{K \in \{1,5,10,50\}} \mathrm{R@}K
                          + \sum_{K \in \{1,2,3\}} \mathrm{Rs@}K\Big)

    ``Avg`` is the papers' headline; ``Mean7`` is the CLIP4Cir/SPRC model-selection criterion.
    Both always use these fixed cut-offs, whatever ``ks`` and ``subset_ks`` ask to report.

    Parameters
    ----------
    queries : Tensor[n, d]
    gallery : Tensor[m, d]
    targets : Long[n]
        Gallery index of ``target_hard``.
    references : Long[n]
        Gallery index of the reference image.
    subsets : Long[n, S]
        Gallery indices of ``img_set.members`` (S = 6 in CIRR).
    ks, subset_ks : iterable of int
    query_chunk, gallery_chunk : int
        Block sizes (see :func:`cirlib.eval.ranking.target_ranks`).

    Returns
    -------
    dict[str, float]
        ``R@K`` for ``ks``, ``Rs@K`` for ``subset_ks``, ``Avg`` and ``Mean7``.

    Examples
    --------
    A gallery of four one-hot images; the query points at image 2, its target (its reference,
    image 0, is removed from the ranking).

    >>> import torch
    >>> gallery = torch.eye(4)
    >>> queries = torch.tensor([[0.5, 0.1, 1.0, 0.2]])
    >>> m = cirr_metrics(queries, gallery, [2], [0], torch.tensor([[0, 1, 2, 3]]), ks=[1], subset_ks=[1])
    >>> m["R@1"], m["Rs@1"]
    (100.0, 100.0)
    """
    both = evaluation_ranks(  # one sweep over the score blocks for both rankings
        queries,
        gallery,
        targets,
        references,
        subset=subsets,
        query_chunk=query_chunk,
        gallery_chunk=gallery_chunk,
    )
    ranks, sranks = both["R"], both["Rs"]
    out = {**recall_at_k(ranks, ks, "R"), **recall_at_k(sranks, subset_ks, "Rs")}
    std = {**recall_at_k(ranks, CIRR_KS, "R"), **recall_at_k(sranks, CIRR_SUBSET_KS, "Rs")}
    out["Avg"] = (std["R@5"] + std["Rs@1"]) / 2
    out["Mean7"] = sum(std.values()) / len(std)
    return out


def multi_target_recall(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    valid_lists: Sequence[Sequence[int]],
    references=None,
    ks: Iterable[int] = CIRR_KS,
    *,
    query_chunk: int = DEFAULT_QUERY_CHUNK,
    gallery_chunk: int = DEFAULT_GALLERY_CHUNK,
) -> dict[str, float]:
    r"""Recall@K where a query is a hit if *any* of its valid targets is in the first K (the book's
    multi-target view of the CIRCO-style setting, Baldrati et al., 2023b; here on the toy world).

    .. math:: \mathrm{mR@}K = \frac{100}{n} \sum_i [\, \min_{t \in V_i} r_i(t) < K \,]

    Parameters
    ----------
    queries : Tensor[n, d]
    gallery : Tensor[m, d]
    valid_lists : n non-empty sequences of gallery indices
    references : Long[n] or None
        Removed from each ranking (and from the valid lists) when given.
    ks : iterable of int
    query_chunk, gallery_chunk : int

    Returns
    -------
    dict[str, float]
        ``{"mR@K": percentage}``.

    Examples
    --------
    >>> import torch
    >>> queries = torch.tensor([[0.1, 1.0, 0.5]])   # ranks image 1, then 2, then 0
    >>> multi_target_recall(queries, torch.eye(3), [[0, 2]], ks=[1, 2])
    {'mR@1': 0.0, 'mR@2': 100.0}
    """
    ranks = best_valid_ranks(
        queries,
        gallery,
        valid_lists,
        references,
        query_chunk=query_chunk,
        gallery_chunk=gallery_chunk,
    )
    return recall_at_k(ranks, ks, "mR")


def fashioniq_category_recall(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    targets,
    references=None,
    *,
    protocol: str,
    ks: Iterable[int] = FASHIONIQ_KS,
    query_chunk: int = DEFAULT_QUERY_CHUNK,
    gallery_chunk: int = DEFAULT_GALLERY_CHUNK,
) -> dict[str, float | str]:
    """R@10 and R@50 of one FashionIQ category (Wu et al., 2021) under a named protocol.

    ``protocol="clip4cir"`` keeps the reference in the ranking (it may take first place and push
    the target down); ``protocol="cosmo"`` removes it, like CIRR. The two are not comparable,
    which is why the result carries its protocol and :func:`fashioniq_summary` checks it.

    Parameters
    ----------
    queries : Tensor[n, d]
    gallery : Tensor[m, d]
        This category's gallery only.
    targets : Long[n]
    references : Long[n] or None
        Required for ``"cosmo"``; ignored by ``"clip4cir"``.
    protocol : {"clip4cir", "cosmo"}
    ks : iterable of int
    query_chunk, gallery_chunk : int

    Returns
    -------
    dict
        ``{"R@10": float, "R@50": float, "protocol": str}``.

    Examples
    --------
    The CLIP4Cir protocol keeps the reference (image 0) in the ranking, the CoSMo one removes it:

    >>> import torch
    >>> queries = torch.tensor([[1.0, 0.5, 0.0]])
    >>> fashioniq_category_recall(queries, torch.eye(3), [1], [0], protocol="clip4cir", ks=[1])
    {'R@1': 0.0, 'protocol': 'clip4cir'}
    >>> fashioniq_category_recall(queries, torch.eye(3), [1], [0], protocol="cosmo", ks=[1])
    {'R@1': 100.0, 'protocol': 'cosmo'}
    """
    if protocol not in FASHIONIQ_PROTOCOLS:
        raise ValueError(
            f"unknown FashionIQ protocol {protocol!r}; choose one of {sorted(FASHIONIQ_PROTOCOLS)}"
        )
    if protocol == "cosmo" and references is None:
        raise ValueError("protocol 'cosmo' removes the reference, so references must be given")
    exclude = references if protocol == "cosmo" else None
    ranks = target_ranks(
        queries,
        gallery,
        targets,
        exclude,
        query_chunk=query_chunk,
        gallery_chunk=gallery_chunk,
    )
    return {**recall_at_k(ranks, ks, "R"), "protocol": protocol}


def fashioniq_summary(per_category: Mapping[str, Mapping[str, float | str]]) -> dict:
    r"""Per-category R@10/R@50, their plain means and the overall score.

    .. math::
        \mathrm{Avg\,R@}K = \frac{1}{C} \sum_c \mathrm{R@}K_c, \qquad
        \mathrm{Score} = \tfrac12(\mathrm{Avg\,R@10} + \mathrm{Avg\,R@50})

    The means are not weighted by query count (the papers' convention).

    Parameters
    ----------
    per_category : mapping category -> dict
        Each dict as returned by :func:`fashioniq_category_recall`: ``"R@10"``, ``"R@50"`` and
        ``"protocol"``. Usually dress, shirt and toptee, but any non-empty set is accepted.

    Returns
    -------
    dict
        ``"{cat} R@10"`` and ``"{cat} R@50"`` for each category (in input order), then
        ``"Avg R@10"``, ``"Avg R@50"``, ``"Score"`` and ``"protocol"``.

    Raises
    ------
    ValueError
        If there are no categories, a number or the protocol label is missing, or the categories
        were evaluated under different protocols.

    Examples
    --------
    >>> per = {c: {"R@10": r, "R@50": r + 20, "protocol": "clip4cir"}
    ...        for c, r in (("dress", 30.0), ("shirt", 40.0), ("toptee", 50.0))}
    >>> s = fashioniq_summary(per)
    >>> s["Avg R@10"], s["Avg R@50"]
    (40.0, 60.0)
    """
    if not per_category:
        raise ValueError("fashioniq_summary needs at least one category")
    protocols = {}
    for cat, res in per_category.items():
        missing = [k for k in ("R@10", "R@50", "protocol") if k not in res]
        if missing:
            raise ValueError(
                f"category {cat!r} lacks {missing}; pass the dict from fashioniq_category_recall"
            )
        protocols[cat] = res["protocol"]
    if len(set(protocols.values())) != 1:
        raise ValueError(
            f"categories were evaluated under different protocols {protocols}; their numbers "
            f"are not comparable, so they are not averaged"
        )
    out: dict[str, float | str] = {}
    for cat, res in per_category.items():
        out[f"{cat} R@10"] = float(res["R@10"])
        out[f"{cat} R@50"] = float(res["R@50"])
    c = len(per_category)
    out["Avg R@10"] = sum(float(r["R@10"]) for r in per_category.values()) / c
    out["Avg R@50"] = sum(float(r["R@50"]) for r in per_category.values()) / c
    out["Score"] = (out["Avg R@10"] + out["Avg R@50"]) / 2
    out["protocol"] = next(iter(protocols.values()))
    return out
