"""The single-sweep ranking (one comparison per score, blocks kept or recomputed, row tiles)
against a brute-force full stable sort, with planted ties and excluded references."""

from __future__ import annotations

import random

import pytest
import torch

import cirlib.eval.ranking as ranking
from cirlib.eval.ranking import (
    best_valid_ranks,
    evaluation_ranks,
    subset_ranks,
    target_ranks,
)

# Kept blocks or recomputed ones (STRIP_BYTES = 0), one tile per block or tiles of a few rows
# (TILE_ELEMENTS smaller than a block row: one row per tile).
MODES = {
    "kept-blocks": (ranking.STRIP_BYTES, ranking.TILE_ELEMENTS),
    "recomputed-blocks": (0, ranking.TILE_ELEMENTS),
    "small-tiles": (ranking.STRIP_BYTES, 7),
    "recomputed-one-row-tiles": (0, 1),
}


@pytest.fixture(params=list(MODES))
def mode(request, monkeypatch):
    strip, tile = MODES[request.param]
    monkeypatch.setattr(ranking, "STRIP_BYTES", strip)
    monkeypatch.setattr(ranking, "TILE_ELEMENTS", tile)


def brute_rank(row: list[float], target: int, excluded: set[int]) -> int:
    """The definition: sort by (-score, index), delete the excluded items, find the target."""
    order = [j for j in sorted(range(len(row)), key=lambda j: (-row[j], j)) if j not in excluded]
    return order.index(target)


def brute_all(scores, targets, exclude, valid, subset):
    n = scores.shape[0]
    rows = scores.tolist()
    ex = [set() if exclude is None else {int(exclude[i])} for i in range(n)]
    want = {"R": [brute_rank(rows[i], int(targets[i]), ex[i]) for i in range(n)]}
    want["mR"] = [
        min(brute_rank(rows[i], v, ex[i]) for v in valid[i] if v not in ex[i]) for i in range(n)
    ]
    # The subset ranking: the full ranking with every non-member deleted too.
    everything = set(range(scores.shape[1]))
    want["Rs"] = [
        brute_rank(rows[i], int(targets[i]), ex[i] | (everything - set(subset[i].tolist())))
        for i in range(n)
    ]
    return want


def planted_case(seed: int, dtype=torch.float32):
    """Integer features (exact scores) with planted ties: duplicate gallery rows, rows that tie
    with the target on purpose, zero scores of both signs, a reference that ties too."""
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    n, m, d = rng.randint(1, 12), rng.randint(4, 40), rng.randint(1, 4)
    q = torch.randint(-2, 3, (n, d), generator=gen).to(dtype)
    g = torch.randint(-2, 3, (m, d), generator=gen).to(dtype)
    targets = torch.randint(0, m, (n,), generator=gen)
    for _ in range(m // 3):  # copies of target images, before and after them in the gallery
        t = int(targets[rng.randrange(n)])
        g[rng.randrange(m)] = g[t]
    if rng.random() < 0.5:
        q[rng.randrange(n)] = 0  # every score of this query is 0
        g[rng.randrange(m)] = -g[rng.randrange(m)]
    exclude = (targets + torch.randint(1, m, (n,), generator=gen)) % m
    for i in range(n):
        if rng.random() < 0.3:  # a reference that is a copy of the target: an exact tie
            g[int(exclude[i])] = g[int(targets[i])]
    valid = [[int(targets[i])] + rng.sample(range(m), rng.randint(0, min(m, 5))) for i in range(n)]
    subset = []
    for i in range(n):
        others = [j for j in range(m) if j not in (int(targets[i]), int(exclude[i]))]
        members = [int(targets[i]), int(exclude[i])] + rng.sample(others, min(m, 6) - 2)
        rng.shuffle(members)
        subset.append(members)
    chunks = [(1, 1), (rng.randint(1, n + 1), rng.randint(1, m + 1)), (n + 3, 3), (n, m)]
    return q, g, targets, exclude, valid, torch.tensor(subset), chunks


@pytest.mark.parametrize("seed", range(8))
def test_one_sweep_equals_a_full_stable_sort(seed, mode):
    q, g, targets, exclude, valid, subset, chunks = planted_case(seed)
    scores = q @ g.T
    assert (scores.unsqueeze(2) == scores.unsqueeze(1)).sum() > scores.numel()  # ties exist
    for ex in (None, exclude):
        want = brute_all(scores, targets, ex, valid, subset)
        for qc, gc in chunks:
            kw = dict(query_chunk=qc, gallery_chunk=gc)
            got = evaluation_ranks(q, g, targets, ex, subset=subset, valid=valid, **kw)
            assert {k: v.tolist() for k, v in got.items()} == want
            assert target_ranks(q, g, targets, ex, **kw).tolist() == want["R"]
            assert best_valid_ranks(q, g, valid, ex, **kw).tolist() == want["mR"]
            assert subset_ranks(q, g, subset, targets, ex, **kw).tolist() == want["Rs"]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_other_dtypes(dtype, mode):
    # Small integers are exact in every one of these dtypes, and so are their dot products.
    q, g, targets, exclude, valid, subset, chunks = planted_case(5, dtype)
    want = brute_all((q @ g.T).double(), targets, exclude, valid, subset)
    for qc, gc in chunks:
        got = evaluation_ranks(
            q, g, targets, exclude, subset=subset, valid=valid, query_chunk=qc, gallery_chunk=gc
        )
        assert {k: v.tolist() for k, v in got.items()} == want


def test_ties_across_blocks_on_both_sides_of_the_target():
    # Every gallery item scores 1 except item 9 (score 2): the target 6 ties with 0..5 before
    # it and 7, 8, 10, 11 after it; chunks of 4 put ties in blocks before, at and after it.
    g = torch.ones(12, 1)
    g[9] = 2
    q = torch.ones(1, 1)
    for gc in (1, 2, 4, 5, 12):
        kw = dict(gallery_chunk=gc)
        assert target_ranks(q, g, [6], **kw).tolist() == [7]  # 9, then 0..5
        assert target_ranks(q, g, [6], [3], **kw).tolist() == [6]
        assert target_ranks(q, g, [6], [10], **kw).tolist() == [7]  # 10 comes after 6 anyway
        assert target_ranks(q, g, [9], [6], **kw).tolist() == [0]
        assert target_ranks(q, g, [11], **kw).tolist() == [11]
        assert best_valid_ranks(q, g, [[11, 7, 8]], [0], **kw).tolist() == [7]  # 9, 1..6


def test_signed_zero_scores_tie():
    # 0.0 and -0.0 are equal scores. MKL's products do not produce -0.0 here, so the counting
    # step is fed a block by hand: gallery columns g0..g0+4, one row per target position.
    block = torch.tensor([[0.0, -0.0, 0.0, -0.0, -1.0]]).expand(3, 5).contiguous()
    buffer = torch.empty(64)
    for s_t in (0.0, -0.0):
        score = torch.full((3,), s_t)
        # Target 20 (after the block): all four zeros count; target 3 (before): none; target
        # 13 (column 3 of the block): the zeros at 10, 11, 12.
        (counts,) = ranking._count_block(
            block, 10, [(torch.tensor([20, 3, 13]), score)], None, buffer
        )
        assert counts.tolist() == [4, 0, 3]


def test_the_most_negative_score():
    # The next float below -max is -inf: every finite score still counts as >= the target's.
    big = torch.finfo(torch.float32).max
    q = torch.tensor([[1.0]])
    g = torch.tensor([[-big], [-big], [0.0], [-big]])
    for gc in (1, 2, 4):
        assert target_ranks(q, g, [1], gallery_chunk=gc).tolist() == [2]
        assert target_ranks(q, g, [3], [0], gallery_chunk=gc).tolist() == [2]


def test_subnormals_flushed_to_zero():
    # torch.set_flush_denormal(True) makes the next float below 0 compare as 0; the count must
    # not depend on it.
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush subnormal numbers")
    try:
        q, g, targets, exclude, valid, subset, chunks = planted_case(3)
        q[0] = 0
        want = brute_all(q @ g.T, targets, exclude, valid, subset)
        for qc, gc in chunks:
            got = evaluation_ranks(
                q, g, targets, exclude, subset=subset, valid=valid, query_chunk=qc, gallery_chunk=gc
            )
            assert {k: v.tolist() for k, v in got.items()} == want
    finally:
        torch.set_flush_denormal(False)


@pytest.mark.parametrize("seed", range(4))
def test_float_scores_equal_the_separate_functions_bit_for_bit(seed, mode):
    # Real-valued scores: the one sweep and the three separate calls score the same blocks, so
    # the ranks agree exactly, and agree with a full sort of the matrix assembled from them.
    gen = torch.Generator().manual_seed(seed)
    n, m, d = 37, 300, 16
    q = torch.nn.functional.normalize(torch.randn(n, d, generator=gen), dim=-1)
    g = torch.nn.functional.normalize(torch.randn(m, d, generator=gen), dim=-1)
    targets = torch.randint(0, m, (n,), generator=gen)
    exclude = (targets + 1 + torch.randint(0, m - 1, (n,), generator=gen)) % m
    valid = [[int(targets[i]), (int(targets[i]) * 7 + 3) % m, i % m] for i in range(n)]
    subset = torch.stack([targets, exclude, (targets + exclude) % m], 1)
    keep = (subset[:, 2] != subset[:, 0]) & (subset[:, 2] != subset[:, 1])
    q, targets, exclude, subset = q[keep], targets[keep], exclude[keep], subset[keep]
    valid = [v for v, k in zip(valid, keep.tolist()) if k]
    qc, gc = 16, 128
    kw = dict(query_chunk=qc, gallery_chunk=gc)
    got = evaluation_ranks(q, g, targets, exclude, subset=subset, valid=valid, **kw)
    assert torch.equal(got["R"], target_ranks(q, g, targets, exclude, **kw))
    assert torch.equal(got["mR"], best_valid_ranks(q, g, valid, exclude, **kw))
    assert torch.equal(got["Rs"], subset_ranks(q, g, subset, targets, exclude, **kw))
    blocks = torch.cat(
        [
            torch.cat([q[a : a + qc] @ g[b : b + gc].T for b in range(0, m, gc)], 1)
            for a in range(0, len(q), qc)
        ]
    )
    want = brute_all(blocks, targets, exclude, valid, subset)
    assert {k: v.tolist() for k, v in got.items()} == want


# ---------------------------------------------------------------------------- exclusion sets


def random_sets(seed: int, targets, exclude, valid, m: int):
    """Per query a few excluded indices: never the target, sometimes the reference again, a
    valid target, a repeated index, or nothing."""
    rng = random.Random(seed)
    sets = []
    for i, t in enumerate(targets.tolist()):
        others = [j for j in range(m) if j != t]
        chosen = rng.sample(others, rng.randint(0, min(len(others), 6)))
        if rng.random() < 0.3:
            chosen.append(int(exclude[i]))
        spare = [v for v in valid[i] if v != t]
        if spare and rng.random() < 0.5:
            chosen.append(spare[0])
        if chosen and rng.random() < 0.3:
            chosen.append(chosen[0])
        sets.append(chosen)
    return sets


@pytest.mark.parametrize("seed", range(8))
def test_exclusion_sets_equal_a_full_stable_sort(seed, mode):
    q, g, targets, exclude, valid, subset, chunks = planted_case(seed)
    m = g.shape[0]
    sets = random_sets(seed, targets, exclude, valid, m)
    # A query is only valid when one of its valid targets survives: the target always does.
    scores = q @ g.T
    rows = scores.tolist()
    everything = set(range(m))
    for ex in (None, exclude):
        gone = [set(sets[i]) | (set() if ex is None else {int(ex[i])}) for i in range(len(q))]
        want = {
            "R": [brute_rank(rows[i], int(targets[i]), gone[i]) for i in range(len(q))],
            "mR": [
                min(brute_rank(rows[i], v, gone[i]) for v in valid[i] if v not in gone[i])
                for i in range(len(q))
            ],
            "Rs": [
                brute_rank(
                    rows[i], int(targets[i]), gone[i] | (everything - set(subset[i].tolist()))
                )
                for i in range(len(q))
            ],
        }
        for qc, gc in chunks:
            kw = dict(exclude_sets=sets, query_chunk=qc, gallery_chunk=gc)
            got = evaluation_ranks(q, g, targets, ex, subset=subset, valid=valid, **kw)
            assert {k: v.tolist() for k, v in got.items()} == want
            assert target_ranks(q, g, targets, ex, **kw).tolist() == want["R"]
            assert best_valid_ranks(q, g, valid, ex, **kw).tolist() == want["mR"]
            assert subset_ranks(q, g, subset, targets, ex, **kw).tolist() == want["Rs"]


def test_exclusion_sets_by_hand():
    # Scores 4, 1, 4, 3, 2 (items 0..4); ranking 0, 2, 3, 4, 1.
    q = torch.tensor([[1.0]])
    g = torch.tensor([[4.0], [1.0], [4.0], [3.0], [2.0]])
    assert target_ranks(q, g, [1]).tolist() == [4]
    assert target_ranks(q, g, [1], exclude_sets=[[0, 2]]).tolist() == [2]
    assert target_ranks(q, g, [1], [3], exclude_sets=[[0, 2]]).tolist() == [1]
    assert target_ranks(q, g, [2], exclude_sets=[[0]]).tolist() == [0]  # the tie winner gone
    assert target_ranks(q, g, [4], exclude_sets=[[]]).tolist() == [3]  # an empty set
    assert best_valid_ranks(q, g, [[2, 4]], exclude_sets=[[2, 0]]).tolist() == [1]
    assert subset_ranks(q, g, [[1, 2, 3]], [1], exclude_sets=[[2]]).tolist() == [1]
    # None, the default, is the same as no exclusion at all.
    assert target_ranks(q, g, [3], exclude_sets=None).tolist() == [2]


def test_exclusion_set_errors():
    q, g = torch.ones(2, 1), torch.arange(5.0)[:, None]
    with pytest.raises(ValueError, match=r"target 3 is in its exclusion set exclude_sets\[1\]"):
        target_ranks(q, g, [0, 3], exclude_sets=[[], [1, 3]])
    with pytest.raises(ValueError, match="one sequence of gallery indices per query"):
        target_ranks(q, g, [0, 3], exclude_sets=[[1]])
    with pytest.raises(ValueError, match=r"a tensor of shape \(2,\)"):
        target_ranks(q, g, [0, 3], exclude_sets=torch.tensor([1, 2]))
    # A rectangular Long tensor is a sequence of sets too.
    sets = torch.tensor([[1, 2], [0, 0]])
    assert target_ranks(q, g, [0, 3], exclude_sets=sets).tolist() == [2, 1]  # ranking 4, 3, 2, 1, 0
    with pytest.raises(ValueError, match=r"exclude_sets\[0\] has index 5, outside the gallery"):
        target_ranks(q, g, [0, 3], exclude_sets=[[5], []])
    with pytest.raises(ValueError, match=r"valid\[1\] has no target left"):
        best_valid_ranks(q, g, [[0], [2, 4]], [1, 2], exclude_sets=[[], [4]])
    with pytest.raises(ValueError, match="is in its exclusion set"):
        subset_ranks(q, g, [[0, 1], [2, 3]], [0, 3], exclude_sets=[[0], []])
