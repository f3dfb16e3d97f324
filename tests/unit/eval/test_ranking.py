"""Exact chunked rankings: hand-worked examples and agreement with a brute-force full sort."""

from __future__ import annotations

import random

import pytest
import torch

from cirlib.eval.ranking import best_valid_ranks, subset_ranks, target_ranks, topk

# ---------------------------------------------------------------------------- hand-ranked example
# One query q = [1, 2] against five gallery items; scores q.g worked out by hand:
#   g0 = [ 2,  0] -> 2      g1 = [0, 2] -> 4      g2 = [1, 0] -> 1
#   g3 = [ 2,  1] -> 4      g4 = [-1, -1] -> -3
# Ranking (score desc, lower index first on the 4-4 tie): 1, 3, 0, 2, 4.
# With item 1 excluded (as a reference):                  3, 0, 2, 4.
Q = torch.tensor([[1.0, 2.0]])
G = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0], [2.0, 1.0], [-1.0, -1.0]])


@pytest.mark.parametrize(
    ("target", "exclude", "expected"),
    [
        (1, None, 0),
        (3, None, 1),  # ties with item 1 and loses on index
        (0, None, 2),
        (4, None, 4),
        (3, 1, 0),  # removing the reference moves the target up
        (0, 1, 1),
        (0, 3, 1),
        (4, 0, 3),
    ],
)
def test_target_ranks_hand(target, exclude, expected):
    ex = None if exclude is None else [exclude]
    assert target_ranks(Q, G, [target], ex).tolist() == [expected]


def test_ties_broken_by_lower_index():
    # All five items score 0 (orthogonal query), so the ranking is just the index order.
    q = torch.tensor([[0.0, 0.0]])
    assert [target_ranks(q, G, [t]).item() for t in range(5)] == [0, 1, 2, 3, 4]
    assert target_ranks(q, G, [4], [2]).item() == 3
    assert topk(q, G, 5)[1].tolist() == [[0, 1, 2, 3, 4]]
    # Python's sort with key (-score, index) is the definition; torch's stable sort agrees.
    s = (Q @ G.T)[0].tolist()
    by_key = sorted(range(5), key=lambda j: (-s[j], j))
    assert by_key == [1, 3, 0, 2, 4]
    assert torch.sort(Q @ G.T, descending=True, stable=True).indices[0].tolist() == by_key


def test_topk_hand():
    scores, idx = topk(Q, G, 3)
    assert idx.tolist() == [[1, 3, 0]]
    assert scores.tolist() == [[4.0, 4.0, 2.0]]
    scores, idx = topk(Q, G, 4, [1])
    assert idx.tolist() == [[3, 0, 2, 4]]
    assert scores.tolist() == [[4.0, 2.0, 1.0, -3.0]]


def test_best_valid_ranks_hand():
    assert best_valid_ranks(Q, G, [[2, 4]]).tolist() == [3]  # ranks 3 and 4
    assert best_valid_ranks(Q, G, [[4, 3]]).tolist() == [1]  # ranks 4 and 1
    assert best_valid_ranks(Q, G, [[2, 4]], [1]).tolist() == [2]
    assert best_valid_ranks(Q, G, [[1, 2]], [1]).tolist() == [2]  # 1 is the reference: ignored
    assert best_valid_ranks(Q, G, [[3, 3, 1]]).tolist() == [0]  # duplicates are harmless


def test_subset_ranks_hand():
    # Subset {0, 1, 2, 3}; without exclusion the induced order is 1, 3, 0, 2.
    assert subset_ranks(Q, G, [[0, 1, 2, 3]], [0]).tolist() == [2]
    # Excluding 1 leaves 3, 0, 2.
    assert subset_ranks(Q, G, [[0, 1, 2, 3]], [0], [1]).tolist() == [1]
    assert subset_ranks(Q, G, [[0, 1, 2, 3]], [2], [1]).tolist() == [2]
    # Two-member subset {3, 1}: they tie at 4 and the lower index (1) comes first.
    assert subset_ranks(Q, G, [[3, 1]], [3]).tolist() == [1]
    # An excluded index outside the subset changes nothing.
    assert subset_ranks(Q, G, [[3, 1]], [3], [4]).tolist() == [1]


# ---------------------------------------------------------------------------- input errors


def test_errors_are_clear():
    with pytest.raises(ValueError, match="equals its excluded"):
        target_ranks(Q, G, [2], [2])
    with pytest.raises(ValueError, match="outside the gallery"):
        target_ranks(Q, G, [5])
    with pytest.raises(ValueError, match="outside the gallery"):
        target_ranks(Q, G, [0], [-1])
    with pytest.raises(ValueError, match="shape"):
        target_ranks(Q, G, [0, 1])
    with pytest.raises(ValueError, match="feature sizes differ"):
        target_ranks(torch.ones(1, 3), G, [0])
    with pytest.raises(ValueError, match="same dtype"):
        target_ranks(Q.double(), G, [0])
    with pytest.raises(ValueError, match="integer"):
        target_ranks(Q, G, torch.tensor([0.0]))
    with pytest.raises(ValueError, match="non-finite"):
        target_ranks(torch.tensor([[float("nan"), 0.0]]), G, [0])
    with pytest.raises(ValueError, match="query_chunk"):
        target_ranks(Q, G, [0], query_chunk=0)
    with pytest.raises(ValueError, match="no target left"):
        best_valid_ranks(Q, G, [[1]], [1])
    with pytest.raises(ValueError, match="no target left"):
        best_valid_ranks(Q, G, [[]])
    with pytest.raises(ValueError, match="one list per query"):
        best_valid_ranks(Q, G, [[0], [1]])
    with pytest.raises(ValueError, match=r"k must be an int in \[1, 4\]"):
        topk(Q, G, 5, [0])
    with pytest.raises(ValueError, match="not in its subset"):
        subset_ranks(Q, G, [[0, 1]], [2])
    with pytest.raises(ValueError, match="repeats"):
        subset_ranks(Q, G, [[0, 0, 2]], [2])
    with pytest.raises(ValueError, match="equals its excluded"):
        subset_ranks(Q, G, [[0, 2]], [2], [2])


# ---------------------------------------------------------------------------- brute force


def brute_order(scores: torch.Tensor, i: int, exclude) -> list[int]:
    """Ranking of query i by the definition: sort by (-score, index), drop the excluded item."""
    row = scores[i].tolist()
    order = sorted(range(len(row)), key=lambda j: (-row[j], j))
    if exclude is not None:
        order.remove(int(exclude[i]))
    return order


def blockwise_scores(q, g, qc, gc):
    """The score matrix assembled from the same blocks the library computes."""
    rows = []
    for q0 in range(0, q.shape[0], qc):
        rows.append(
            torch.cat([q[q0 : q0 + qc] @ g[g0 : g0 + gc].T for g0 in range(0, len(g), gc)], 1)
        )
    return torch.cat(rows, 0)


def random_case(seed: int, dtype, integer: bool):
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    n, m, d = rng.randint(1, 20), rng.randint(3, 30), rng.randint(1, 5)
    if integer:
        # Few distinct small integers: exact dot products and many ties.
        q = torch.randint(-2, 3, (n, d), generator=gen).to(dtype)
        g = torch.randint(-2, 3, (m, d), generator=gen).to(dtype)
        g[rng.randrange(m)] = g[rng.randrange(m)]  # an exact duplicate image
    else:
        q = torch.randn(n, d, generator=gen, dtype=dtype)
        g = torch.randn(m, d, generator=gen, dtype=dtype)
    targets = torch.randint(0, m, (n,), generator=gen)
    # A reference different from the target.
    exclude = (targets + torch.randint(1, m, (n,), generator=gen)) % m
    valid = [rng.sample(range(m), rng.randint(1, min(m, 6))) + [int(targets[i])] for i in range(n)]
    s_size = min(m, 6)
    subset = []
    for i in range(n):
        others = [j for j in range(m) if j not in (int(targets[i]), int(exclude[i]))]
        members = [int(targets[i]), int(exclude[i])] + rng.sample(others, s_size - 2)
        rng.shuffle(members)
        subset.append(members)
    # Chunk 1, a random size, m // 2 + 1 (never divides m >= 3), and one block for everything.
    chunks = [
        (1, 1),
        (rng.randint(1, n + 2), rng.randint(1, m + 2)),
        (n // 2 + 1, m // 2 + 1),
        (n + 7, m + 7),
    ]
    return q, g, targets, exclude, valid, torch.tensor(subset), chunks


def check_against(scores, q, g, targets, exclude, valid, subset, qc, gc):
    n = q.shape[0]
    kw = dict(query_chunk=qc, gallery_chunk=gc)
    for ex in (None, exclude):
        orders = [brute_order(scores, i, ex) for i in range(n)]
        want = [orders[i].index(int(targets[i])) for i in range(n)]
        assert target_ranks(q, g, targets, ex, **kw).tolist() == want

        want = [min(orders[i].index(v) for v in valid[i] if v in orders[i]) for i in range(n)]
        assert best_valid_ranks(q, g, valid, ex, **kw).tolist() == want

        k = len(orders[0])
        for kk in sorted({1, max(1, k // 2), k}):
            s, idx = topk(q, g, kk, ex, **kw)
            assert idx.tolist() == [o[:kk] for o in orders]
            want_s = torch.stack([scores[i, orders[i][:kk]] for i in range(n)])
            assert torch.equal(s, want_s)

        want = []
        for i in range(n):
            members = set(subset[i].tolist())
            induced = [j for j in orders[i] if j in members]
            want.append(induced.index(int(targets[i])))
        assert subset_ranks(q, g, subset, targets, ex, **kw).tolist() == want


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(8))
def test_chunked_equals_full_sort_with_ties(seed, dtype):
    q, g, targets, exclude, valid, subset, chunks = random_case(seed, dtype, integer=True)
    scores = q @ g.T  # exact: integer-valued features
    assert (scores.unsqueeze(2) == scores.unsqueeze(1)).sum() > scores.numel()  # ties exist
    for qc, gc in chunks:
        check_against(scores, q, g, targets, exclude, valid, subset, qc, gc)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(100, 104))
def test_chunked_equals_blockwise_sort_float(seed, dtype):
    # For general floats the order is that of the matrix assembled from the same blocks, and
    # with one block (the default for small galleries) that matrix is exactly queries @ gallery.T.
    q, g, targets, exclude, valid, subset, chunks = random_case(seed, dtype, integer=False)
    for qc, gc in chunks:
        scores = blockwise_scores(q, g, qc, gc)
        check_against(scores, q, g, targets, exclude, valid, subset, qc, gc)
    big = chunks[-1]
    assert torch.equal(blockwise_scores(q, g, *big), q @ g.T)


def test_ranks_span_the_gallery_without_gaps():
    # Each gallery item as the target once: ranks must be a permutation of 0..m-1
    # (0..m-2 once an item is excluded), which fails if any tie is double-counted or skipped.
    gen = torch.Generator().manual_seed(3)
    m = 23
    g = torch.randint(-1, 2, (m, 3), generator=gen).float()
    q = torch.randint(-1, 2, (1, 3), generator=gen).float().expand(m, 3)
    ranks = target_ranks(q, g, torch.arange(m), query_chunk=4, gallery_chunk=5)
    assert sorted(ranks.tolist()) == list(range(m))
    others = [t for t in range(m) if t != 7]
    ranks = target_ranks(q[:-1], g, others, [7] * (m - 1), query_chunk=3, gallery_chunk=6)
    assert sorted(ranks.tolist()) == list(range(m - 1))


# ---------------------------------------------------------------------------- non-finite scores


def test_non_finite_inputs_and_overflow_are_refused():
    g_nan = G.clone()
    g_nan[3, 1] = float("inf")
    huge = torch.tensor([[1e30, 1e30]])
    calls = [
        lambda q, g: target_ranks(q, g, [0]),
        lambda q, g: best_valid_ranks(q, g, [[0, 1]]),
        lambda q, g: subset_ranks(q, g, [[0, 1]], [0]),
        lambda q, g: topk(q, g, 2),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="non-finite"):
            call(Q, g_nan)
        # Finite features whose dot products overflow float32 (1e30 * 1e30).
        with pytest.raises(ValueError, match="non-finite"):
            call(huge, G * 1e30)
    # Large but finite scores (the block check runs, its sum overflows, nothing is refused):
    # 2e38 + 2e38 overflows in the sum of the block, every single score is finite.
    big_q = torch.tensor([[1e19, 0.0]])
    big_g = torch.tensor([[2e19, 0.0], [1e19, 0.0], [2e19, 0.0]])
    assert target_ranks(big_q, big_g, [1]).tolist() == [2]
    assert topk(big_q, big_g, 3)[1].tolist() == [[0, 2, 1]]
