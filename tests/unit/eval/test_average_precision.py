"""mAP@K over all valid targets: hand-ranked lists, a brute-force loop, and evaluate's keys."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from cirlib.data.records import CIRSplit, Triplet
from cirlib.eval import average_precision_at_k, mean_average_precision_at_k
from cirlib.eval.evaluate import evaluate


def test_hand_ranked_lists():
    # Query 0: valid {7, 3}; ranking 7 1 3 ...: hits at 1 and 3 -> precisions 1/1 and 2/3.
    # Query 1: valid {9}; ranking 2 4 6 9: one hit at 4 -> precision 1/4.
    # Query 2: valid {0..5} (6 targets); ranking 0 1 x 2 x x ...
    top = torch.tensor(
        [
            [7, 1, 3, 4, 5, 6],
            [2, 4, 6, 9, 8, 0],
            [0, 1, 8, 2, 9, 7],
        ]
    )
    valid = [[7, 3], [9], [0, 1, 2, 3, 4, 5]]
    ap = average_precision_at_k(top, valid, ks=(1, 2, 3, 5))
    want = [
        # K=1: 1/min(1,2); K=2: 1/2; K=3: (1 + 2/3)/2; K=5: the same
        [1.0, 0.5, (1 + 2 / 3) / 2, (1 + 2 / 3) / 2],
        # normaliser min(K, 1) = 1; the hit at position 4 counts from K=4 on
        [0.0, 0.0, 0.0, 0.25],
        # hits at 1, 2, 4: precisions 1, 1, 3/4; normaliser min(K, 6) = K
        [1.0, 1.0, 2 / 3, (1 + 1 + 0.75) / 5],
    ]
    torch.testing.assert_close(ap, torch.tensor(want, dtype=torch.float64))


def test_perfect_and_worst_rankings():
    # Every valid target first: AP = 1 at every K, even with more targets than K.
    top = torch.tensor([[4, 5, 6, 7, 0, 1]])
    assert average_precision_at_k(top, [[4, 5, 6, 7]], ks=(2, 4, 6)).tolist() == [[1, 1, 1]]
    # No valid target in the list, and padding (-1) never counts as a hit.
    top = torch.tensor([[1, 2, -1, -1]])
    assert average_precision_at_k(top, [[3]], ks=(4,)).tolist() == [[0.0]]
    # A single valid target: AP@K is the reciprocal rank when it is within K.
    top = torch.tensor([[5, 6, 3, 0]])
    assert average_precision_at_k(top, [[3, 3]], ks=(2, 3)).tolist() == [[0.0, 1 / 3]]


def test_errors_are_explicit():
    top = torch.tensor([[0, 1, 2]])
    with pytest.raises(ValueError, match="first 5 results"):
        average_precision_at_k(top, [[0]], ks=(5,))
    with pytest.raises(ValueError, match="empty"):
        average_precision_at_k(top, [[]], ks=(1,))
    with pytest.raises(ValueError, match="one per query"):
        average_precision_at_k(top, [[0], [1]], ks=(1,))
    with pytest.raises(ValueError, match="positive ints"):
        average_precision_at_k(top, [[0]], ks=(0,))
    q, g = torch.eye(3), torch.eye(3)
    with pytest.raises(ValueError, match="no target left"):
        mean_average_precision_at_k(q[:1], g, [[0]], exclude=[0], ks=(1,))
    with pytest.raises(ValueError, match="outside the gallery"):
        mean_average_precision_at_k(q[:1], g, [[3]], ks=(1,))


def _brute_map(scores, valid, exclude, exclude_sets, ks):
    """CIRCO's recipe with plain loops on a full stable sort (ties: lower index first)."""
    out = {k: [] for k in ks}
    for i, row in enumerate(scores):
        gone = set() if exclude is None else {exclude[i]}
        if exclude_sets is not None:
            gone |= set(exclude_sets[i])
        order = sorted(range(len(row)), key=lambda j: (-row[j], j))
        order = [j for j in order if j not in gone]
        targets = set(valid[i]) - gone
        for k in ks:
            hits, total = 0, 0.0
            for pos, j in enumerate(order[:k], start=1):
                if j in targets:
                    hits += 1
                    total += hits / pos
            out[k].append(total / min(k, len(targets)))
    return {f"mAP@{k}": 100.0 * sum(v) / len(v) for k, v in out.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("with_sets", [False, True])
def test_against_a_brute_force_loop(seed, with_sets):
    gen = torch.Generator().manual_seed(seed)
    n, m, d = 9, 40, 4
    # Integer features: exact dot products, and many ties, which the tie rule must break.
    queries = torch.randint(-2, 3, (n, d), generator=gen).double()
    gallery = torch.randint(-2, 3, (m, d), generator=gen).double()
    exclude = torch.randint(0, m, (n,), generator=gen).tolist()
    valid = [
        torch.randperm(m, generator=gen)[: 1 + i % 7].tolist() + [exclude[i]] for i in range(n)
    ]
    sets = None
    if with_sets:
        sets = [torch.randint(0, m, (3,), generator=gen).tolist() for _ in range(n)]
        # keep at least one valid target outside the exclusions
        valid = [
            v + [j for j in range(m) if j not in s and j != e][:1]
            for v, s, e in zip(valid, sets, exclude)
        ]
    ks = (1, 3, 5, 10, 25)
    got = mean_average_precision_at_k(
        queries, gallery, valid, exclude, ks, exclude_sets=sets, query_chunk=4, gallery_chunk=7
    )
    want = _brute_map((queries @ gallery.T).tolist(), valid, exclude, sets, ks)
    assert list(got) == [f"mAP@{k}" for k in ks]
    for key in want:
        assert got[key] == pytest.approx(want[key]), key
    assert 0 < got["mAP@25"] < 100


def _split_with_valid_targets(seed=0, n_queries=30, n_gallery=80, d=6):
    gen = torch.Generator().manual_seed(seed)
    names = [f"img{i}" for i in range(n_gallery)]
    triplets, refs, tgts = [], [], []
    for i in range(n_queries):
        ref, tgt = torch.randperm(n_gallery, generator=gen)[:2].tolist()
        extra = torch.randint(0, n_gallery, (i % 6,), generator=gen).tolist()
        triplets.append(
            Triplet(
                pair_id=i,
                reference=names[ref],
                captions=("c",),
                caption="c",
                target=names[tgt],
                valid_targets=tuple(names[v] for v in sorted({tgt, *extra} - {ref})),
                meta={"edit_type": "ab"[i % 2]},
            )
        )
        refs.append(ref)
        tgts.append(tgt)
    images = torch.randn(n_gallery, d, generator=gen)
    features = SimpleNamespace(
        images=images, reference_index=torch.tensor(refs), target_index=torch.tensor(tgts)
    )
    noise = torch.randn(n_queries, d, generator=gen)
    queries = F.normalize(images[features.target_index] + noise, dim=-1)
    return queries, features, CIRSplit("valid", triplets, names, {})


def test_evaluate_reports_map_for_splits_with_valid_targets():
    queries, features, split = _split_with_valid_targets()
    res = evaluate(queries, features, split)
    g = F.normalize(features.images, dim=-1)
    valid = [[split.index_of(v) for v in t.valid_targets] for t in split.triplets]
    want = _brute_map(
        (queries @ g.T).tolist(), valid, features.reference_index.tolist(), None, (5, 10, 25, 50)
    )
    for key, value in want.items():
        assert res["all"][key] == pytest.approx(value), key
    assert 0 < res["all"]["mAP@10"] < 100
    # per edit type, over that group's queries only
    for value, part in res["edit_type"].items():
        idx = [i for i, t in enumerate(split.triplets) if t.meta["edit_type"] == value]
        sub = _brute_map(
            (queries[idx] @ g.T).tolist(),
            [valid[i] for i in idx],
            features.reference_index[idx].tolist(),
            None,
            (5, 10, 25, 50),
        )
        assert part["mAP@50"] == pytest.approx(sub["mAP@50"])
    # an index gives the same numbers; other cut-offs on request; none without valid targets
    assert evaluate(queries, features, split, index="exact") == res
    assert list(k for k in evaluate(queries, features, split, map_ks=(3,))["all"] if "AP" in k) == [
        "mAP@3"
    ]
    plain = CIRSplit(
        split.name,
        [dataclasses.replace(t, valid_targets=()) for t in split.triplets],
        split.gallery,
        {},
    )
    assert not any(k.startswith("mAP") for k in evaluate(queries, features, plain)["all"])


def test_gallery_shorter_than_the_cut_off():
    # 4 images, reference removed: 3 ranked, padded to K = 10; AP@10 still follows the loop
    q = torch.tensor([[4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    g = torch.eye(4)
    valid, exclude = [[1, 3], [0]], [0, 3]
    got = mean_average_precision_at_k(q, g, valid, exclude, ks=(2, 10))
    # query 0: ranking 1 2 3 -> hits at 1 and 3: (1 + 2/3) / 2; AP@2 = 1 / 2
    # query 1: ranking 2 1 0 -> hit at 3: (1/3) / 1; AP@2 = 0
    assert got["mAP@10"] == pytest.approx(100 * ((1 + 2 / 3) / 2 + 1 / 3) / 2)
    assert got["mAP@2"] == pytest.approx(100 * (0.5 + 0) / 2)
    assert got == pytest.approx(_brute_map(q.tolist(), valid, exclude, None, (2, 10)))
