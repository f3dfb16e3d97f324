r"""Recall when each query has its own gallery (FashionIQ's categories).

For a split with :attr:`~cirlib.data.records.CIRSplit.galleries`, query :math:`i` of gallery
:math:`c` is ranked against the images :math:`G_c` only:

.. math::

    r_i = \#\{ j \in G_c \setminus E_i : s_{ij} > s_{it_i}
          \text{ or } (s_{ij} = s_{it_i} \text{ and } j \text{ before } t_i \text{ in } G_c) \},
    \qquad \mathrm{R@}K_c = \frac{100}{|Q_c|} \sum_{i \in Q_c} [r_i < K]

with :math:`E_i = \{\text{reference}\}` when the split removes the reference and
:math:`E_i = \emptyset` under CLIP4Cir's FashionIQ protocol (the reference may rank first,
Baldrati et al., 2023). The overall numbers are the plain means over galleries,
:math:`\mathrm{R@}K = \frac{1}{C}\sum_c \mathrm{R@}K_c`, the papers' convention for FashionIQ
(Wu et al., 2021), not a mean over queries.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from cirlib.data.records import CIRSplit
from cirlib.eval.ranking import target_ranks
from cirlib.eval.recall import recall_at_k


def protocol_label(split: CIRSplit) -> str:
    """How the split's galleries were ranked, for tables and results files."""
    kept = "kept in" if split.reference_in_gallery else "removed from"
    return (
        f"one gallery per category ({', '.join(split.galleries)}); the reference {kept} the ranking"
    )


def evaluate_per_gallery(
    queries: torch.Tensor,
    gallery_features: torch.Tensor,
    reference_index: torch.Tensor,
    target_index: torch.Tensor,
    split: CIRSplit,
    ks: Iterable[int],
    keep_ranks: bool = False,
) -> dict:
    """R@K per gallery and their means (see the module docstring).

    With ``keep_ranks=True`` the result is a :class:`~cirlib.eval.query_ranks.RankedEvaluation`
    carrying each query's rank within its own gallery (``"R"``) and its gallery's name (group
    ``"gallery"``), so the verdict rule can pair queries; note that the rule's estimate weighs
    every query alike, while ``"all"`` here is the plain mean over galleries.

    Parameters
    ----------
    queries : Tensor[Q, D], one row per ``split.triplets``.
    gallery_features : Tensor[N, D], L2-normalised, rows follow ``split.gallery``.
    reference_index, target_index : Long[Q], rows of ``split.gallery``.
    split : a split with ``galleries``; ``triplet.meta["gallery"]`` names each query's.

    Returns
    -------
    ``{"all": {"R@K": mean over galleries, "n": Q}, "gallery": {name: {"R@K", "n"}},
    "protocol": str}``
    """
    ks = tuple(ks)
    groups: dict[str, list[int]] = {name: [] for name in split.galleries}
    for i, t in enumerate(split.triplets):
        name = t.meta.get("gallery")
        if name not in groups:
            raise ValueError(
                f"query {t.pair_id} of {split.name!r} names gallery {name!r}, not one of "
                f"{list(groups)}; build the split with merge_category_splits"
            )
        groups[name].append(i)
    per = {}
    all_ranks = torch.full((len(split.triplets),), -1, dtype=torch.long)
    for name, rows in groups.items():
        if not rows:
            continue
        columns = torch.tensor([split.index_of(n) for n in split.galleries[name]])
        local = torch.full((len(split.gallery),), -1, dtype=torch.long)
        local[columns] = torch.arange(len(columns))
        rows_t = torch.tensor(rows)
        tgt, ref = local[target_index[rows_t]], local[reference_index[rows_t]]
        if (tgt < 0).any():
            bad = split.triplets[rows[int((tgt < 0).nonzero()[0])]]
            raise ValueError(
                f"target {bad.target!r} of query {bad.pair_id} is not in the {name!r} gallery of "
                f"{split.name!r}; the split file must list every target"
            )
        exclude = None
        if not split.reference_in_gallery:
            if (ref < 0).any():
                raise ValueError(f"a reference is missing from the {name!r} gallery")
            exclude = ref
        ranks = target_ranks(queries[rows_t], gallery_features[columns], tgt, exclude)
        per[name] = {**recall_at_k(ranks, ks, "R"), "n": len(rows)}
        all_ranks[rows_t] = ranks.to(all_ranks.dtype).cpu()
    overall = {f"R@{k}": sum(p[f"R@{k}"] for p in per.values()) / len(per) for k in ks}
    overall["n"] = sum(p["n"] for p in per.values())
    result = {"all": overall, "gallery": per, "protocol": protocol_label(split)}
    if not keep_ranks:
        return result
    from cirlib.eval.query_ranks import RankedEvaluation

    labels = {"gallery": [t.meta.get("gallery") for t in split.triplets]}
    return RankedEvaluation(result, {"R": all_ranks.numpy()}, labels)
