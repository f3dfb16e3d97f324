"""Recall@K, CIRR metrics, multi-target recall and the FashionIQ protocols, on hand-worked cases."""

from __future__ import annotations

import pytest
import torch

from cirlib.eval.ranking import subset_ranks, target_ranks
from cirlib.eval.recall import (
    cirr_metrics,
    fashioniq_category_recall,
    fashioniq_summary,
    multi_target_recall,
    recall_at_k,
)


def identity_gallery(score_rows):
    """Queries and gallery such that score(i, j) = score_rows[i][j]: the gallery is the identity."""
    q = torch.tensor(score_rows, dtype=torch.float64)
    return q, torch.eye(q.shape[1], dtype=torch.float64)


def test_recall_at_k_hand():
    ranks = torch.tensor([0, 3, 7, 50, 1])
    # < 1: {0} -> 1/5;  < 5: {0, 3, 1} -> 3/5;  < 10: also 7 -> 4/5;  < 50: 50 is not -> 4/5
    assert recall_at_k(ranks) == {"R@1": 20.0, "R@5": 60.0, "R@10": 80.0, "R@50": 80.0}
    assert list(recall_at_k(ranks, (10, 1), "Rs")) == ["Rs@10", "Rs@1"]
    assert recall_at_k([2, 2, 2], (2, 3))["R@3"] == 100.0
    assert recall_at_k([2, 2, 2], (2, 3))["R@2"] == 0.0


def test_recall_at_k_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one query"):
        recall_at_k(torch.tensor([], dtype=torch.long))
    with pytest.raises(ValueError, match="non-negative"):
        recall_at_k([0, -1])
    with pytest.raises(ValueError, match="positive"):
        recall_at_k([0], (0,))


# Four CIRR-like queries over an 8-image gallery; score(i, j) is row i below.
CIRR_SCORES = [
    [5, 9, 1, 7, 3, 0, 2, 4],
    [6, 6, 8, 2, 6, 1, 0, 3],
    [0, 1, 2, 3, 4, 5, 6, 7],
    [3, 3, 3, 3, 3, 3, 3, 3],
]
CIRR_REFS = [1, 2, 7, 0]
CIRR_TARGETS = [3, 4, 0, 5]
CIRR_SUBSETS = [
    [1, 3, 0, 2, 5, 6],
    [2, 4, 1, 5, 6, 7],
    [7, 0, 1, 2, 3, 4],
    [0, 5, 6, 7, 1, 2],
]
# Global order, reference removed, and the target's rank:
#   q0: 1(ref) 3 0 7 4 6 2 5   -> 3 first: rank 0 (rank 1 if the reference stayed)
#   q1: 2(ref) 0 1 4 7 3 5 6   -> 0, 1, 4 tie at 6, lower index first: rank 2
#   q2: 7(ref) 6 5 4 3 2 1 0   -> rank 6
#   q3: all tie; 0(ref) 1 2 3 4 5 6 7 -> rank 4
# Subset order (members minus the reference, in global order):
#   q0: 3 0 6 2 5 -> 0     q1: 1 4 7 5 6 -> 1 (ties with 1, loses on index)
#   q2: 4 3 2 1 0 -> 4     q3: 1 2 5 6 7 -> 2
CIRR_RANKS = [0, 2, 6, 4]
CIRR_RANKS_KEEP_REF = [1, 3, 7, 5]
CIRR_SUBSET_RANKS = [0, 1, 4, 2]


def test_cirr_hand_ranks():
    q, g = identity_gallery(CIRR_SCORES)
    assert target_ranks(q, g, CIRR_TARGETS, CIRR_REFS).tolist() == CIRR_RANKS
    assert target_ranks(q, g, CIRR_TARGETS).tolist() == CIRR_RANKS_KEEP_REF
    got = subset_ranks(q, g, CIRR_SUBSETS, CIRR_TARGETS, CIRR_REFS).tolist()
    assert got == CIRR_SUBSET_RANKS


def test_cirr_metrics_hand():
    q, g = identity_gallery(CIRR_SCORES)
    m = cirr_metrics(q, g, CIRR_TARGETS, CIRR_REFS, CIRR_SUBSETS, query_chunk=3, gallery_chunk=5)
    # ranks 0 2 6 4 -> R@1 1/4, R@5 3/4, R@10 and R@50 4/4
    # subset ranks 0 1 4 2 -> Rs@1 1/4, Rs@2 2/4, Rs@3 3/4
    want = {"R@1": 25.0, "R@5": 75.0, "R@10": 100.0, "R@50": 100.0}
    want |= {"Rs@1": 25.0, "Rs@2": 50.0, "Rs@3": 75.0}
    assert {k: m[k] for k in want} == want
    assert m["Avg"] == 50.0  # (75 + 25) / 2
    assert m["Mean7"] == pytest.approx(450 / 7)  # (25+75+100+100+25+50+75) / 7
    # Avg and Mean7 keep their fixed definitions when other cut-offs are reported.
    m2 = cirr_metrics(q, g, CIRR_TARGETS, CIRR_REFS, CIRR_SUBSETS, ks=(2,), subset_ks=(4,))
    assert set(m2) == {"R@2", "Rs@4", "Avg", "Mean7"}
    assert m2["R@2"] == 25.0 and m2["Rs@4"] == 75.0
    assert (m2["Avg"], m2["Mean7"]) == (m["Avg"], m["Mean7"])


def test_cirr_subset_chance_is_one_in_five():
    # Random features, 6-member subsets holding reference and target: with the reference removed
    # the target competes with 4 others, so Rs@1 is 20% (std 0.73 points over 3000 queries).
    gen = torch.Generator().manual_seed(0)
    n, m, d = 3000, 400, 8
    q = torch.randn(n, d, generator=gen)
    g = torch.randn(m, d, generator=gen)
    members = torch.stack([torch.randperm(m, generator=gen)[:6] for _ in range(n)])
    refs, targets = members[:, 0], members[:, 1]
    out = cirr_metrics(q, g, targets, refs, members, query_chunk=700, gallery_chunk=150)
    assert 17.5 < out["Rs@1"] < 22.5
    assert 37.5 < out["Rs@2"] < 42.5
    assert 57.5 < out["Rs@3"] < 62.5
    assert 0.0 < out["R@1"] < 1.5  # 1 / 399 = 0.25%


def test_multi_target_recall_hand():
    # q0 scores 5 4 3 2 1 over items 0..4; q1 scores 1 2 3 4 5.
    q, g = identity_gallery([[5, 4, 3, 2, 1], [1, 2, 3, 4, 5]])
    valid = [[3, 4], [0, 2]]
    # q0: order 0 1 2 3 4 -> best valid 3 at rank 3; q1: order 4 3 2 1 0 -> 2 at rank 2
    assert multi_target_recall(q, g, valid, ks=(1, 3, 4)) == {
        "mR@1": 0.0,
        "mR@3": 50.0,
        "mR@4": 100.0,
    }
    # Removing references 0 and 4 moves both valid targets up one place: ranks 2 and 1.
    out = multi_target_recall(q, g, valid, [0, 4], ks=(2, 3))
    assert out == {"mR@2": 50.0, "mR@3": 100.0}


# FashionIQ: 60-image gallery. Query 0's reference (item 0) scores highest, then items 1..9,
# then the target (item 10), everything else 0. Query 1's target (item 20) is first.
def fiq_case():
    rows = torch.zeros(2, 60, dtype=torch.float64)
    rows[0, 0] = 100
    rows[0, 1:10] = 50
    rows[0, 10] = 40
    rows[1, 20] = 100
    rows[1, 21] = 90  # its reference
    return rows, torch.eye(60, dtype=torch.float64), [10, 20], [0, 21]


def test_fashioniq_protocols_differ_when_reference_ranks_first():
    q, g, targets, refs = fiq_case()
    # clip4cir keeps the reference: query 0's target has 10 items ahead of it -> rank 10, a miss
    # at 10. cosmo removes it -> rank 9, a hit. Both hit at 50; query 1 always hits.
    clip = fashioniq_category_recall(q, g, targets, refs, protocol="clip4cir")
    cosmo = fashioniq_category_recall(q, g, targets, refs, protocol="cosmo")
    assert clip == {"R@10": 50.0, "R@50": 100.0, "protocol": "clip4cir"}
    assert cosmo == {"R@10": 100.0, "R@50": 100.0, "protocol": "cosmo"}
    # clip4cir does not need the references at all.
    assert fashioniq_category_recall(q, g, targets, protocol="clip4cir") == clip


def test_fashioniq_protocol_errors():
    q, g, targets, refs = fiq_case()
    with pytest.raises(ValueError, match="unknown FashionIQ protocol"):
        fashioniq_category_recall(q, g, targets, refs, protocol="sprc")
    with pytest.raises(ValueError, match="references must be given"):
        fashioniq_category_recall(q, g, targets, protocol="cosmo")


def test_fashioniq_summary_hand():
    per_cat = {
        "dress": {"R@10": 30.0, "R@50": 60.0, "protocol": "clip4cir"},
        "shirt": {"R@10": 20.0, "R@50": 50.0, "protocol": "clip4cir"},
        "toptee": {"R@10": 40.0, "R@50": 70.0, "protocol": "clip4cir"},
    }
    s = fashioniq_summary(per_cat)
    assert s["dress R@10"] == 30.0 and s["toptee R@50"] == 70.0
    assert s["Avg R@10"] == pytest.approx(30.0)  # (30 + 20 + 40) / 3
    assert s["Avg R@50"] == pytest.approx(60.0)  # (60 + 50 + 70) / 3
    assert s["Score"] == pytest.approx(45.0)
    assert s["protocol"] == "clip4cir"


def test_fashioniq_summary_is_not_weighted_by_query_count():
    # Category a: 2 queries, R@10 = 50 (from fiq_case). Category b: 4 queries that all hit.
    q, g, targets, refs = fiq_case()
    a = fashioniq_category_recall(q, g, targets, refs, protocol="clip4cir")
    qb = torch.eye(4, dtype=torch.float64)
    b = fashioniq_category_recall(
        qb, torch.eye(4, dtype=torch.float64), [0, 1, 2, 3], protocol="clip4cir"
    )
    s = fashioniq_summary({"a": a, "b": b})
    assert s["Avg R@10"] == 75.0  # weighted by queries it would be (1 + 4) / 6 = 83.3
    assert s["Avg R@50"] == 100.0
    assert s["Score"] == 87.5


def test_fashioniq_summary_refuses_mixed_protocols():
    q, g, targets, refs = fiq_case()
    clip = fashioniq_category_recall(q, g, targets, refs, protocol="clip4cir")
    cosmo = fashioniq_category_recall(q, g, targets, refs, protocol="cosmo")
    with pytest.raises(ValueError, match="different protocols"):
        fashioniq_summary({"dress": clip, "shirt": cosmo})
    with pytest.raises(ValueError, match="lacks"):
        fashioniq_summary({"dress": {"R@10": 1.0, "R@50": 2.0}})
    with pytest.raises(ValueError, match="at least one"):
        fashioniq_summary({})
