"""Per-query exclusion sets (Triplet.excluded) through evaluate, exact and with a top-k index."""

from __future__ import annotations

import dataclasses
import random
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from cirlib.data.records import CIRSplit, Triplet
from cirlib.eval.evaluate import evaluate
from cirlib.eval.index import drop_excluded, ranks_from_topk


def test_drop_excluded_against_brute_force():
    rng = random.Random(0)
    for _ in range(50):
        m, q = rng.randint(2, 30), rng.randint(1, 6)
        width = rng.randint(1, m)
        lists = [rng.sample(range(m), width) for _ in range(q)]
        sets = [rng.sample(range(m), rng.randint(0, m)) + [-5] * rng.randint(0, 1) for _ in lists]
        k = rng.randint(1, width + 2)
        got = drop_excluded(torch.tensor(lists), sets, k).tolist()
        want = [([i for i in row if i not in set(s)] + [-1] * k)[:k] for row, s in zip(lists, sets)]
        assert got == want


def _split_with_exclusions(seed=0, n=60, m=90, d=12, all_rows=True):
    """Queries near their targets; each excludes a few random images besides its reference,
    the best-scoring image other than its target, and one of its other valid targets."""
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    names = [f"img{j}" for j in range(m)]
    images = torch.randn(m, d, generator=gen)
    picks = [rng.sample(range(m), 8) for _ in range(n)]
    tgts = torch.tensor([p[1] for p in picks])
    noise = torch.randn(n, d, generator=gen)
    queries = F.normalize(images[tgts] + 1.2 * noise, dim=-1)
    scores = queries @ F.normalize(images, dim=-1).T
    scores[torch.arange(n), tgts] = float("-inf")
    rival = scores.argmax(dim=1).tolist()
    triplets = []
    for i, (ref, tgt, *others) in enumerate(picks):
        excluded = [ref, *rng.sample([j for j in range(m) if j != tgt], rng.randint(0, 12))]
        excluded += [others[0], rival[i]]  # an excluded valid target is never a hit
        if not all_rows and i % 2:
            excluded = None
        triplets.append(
            Triplet(
                pair_id=i,
                reference=names[ref],
                captions=("c",),
                caption="c",
                target=names[tgt],
                subset=tuple(names[j] for j in [ref, tgt, *others[3:7]]),
                valid_targets=tuple(names[j] for j in sorted({tgt, *others[:3]})),
                meta={"edit_type": "ab"[i % 2]},
                excluded=None if excluded is None else tuple(names[j] for j in excluded),
            )
        )
    features = SimpleNamespace(
        images=images,
        reference_index=torch.tensor([p[0] for p in picks]),
        target_index=tgts,
    )
    return queries, features, CIRSplit("excl", triplets, names, {})


def _brute_recall(queries, features, split):
    """R@K, Rs@K and mR@K from a full stable sort of the one-block score matrix."""
    scores = (queries @ F.normalize(features.images, dim=-1).T).tolist()
    r, rs, mr = [], [], []
    for i, t in enumerate(split.triplets):
        gone = {split.index_of(t.reference)} | {split.index_of(x) for x in t.excluded or ()}
        order = sorted(range(len(split.gallery)), key=lambda j: (-scores[i][j], j))
        order = [j for j in order if j not in gone]
        r.append(order.index(split.index_of(t.target)))
        members = {split.index_of(x) for x in t.subset}
        rs.append([j for j in order if j in members].index(split.index_of(t.target)))
        valid = [split.index_of(v) for v in t.valid_targets]
        mr.append(min(order.index(v) for v in valid if v not in gone))
    out = {}
    for prefix, ranks, ks in (("R", r, (1, 5, 10, 50)), ("Rs", rs, (1, 2, 3)), ("mR", mr, (1, 5))):
        for k in ks:
            out[f"{prefix}@{k}"] = 100.0 * sum(x < k for x in ranks) / len(ranks)
    return out


def _assert_matches(got, want):
    for key, value in want.items():
        assert got[key] == pytest.approx(value), key


@pytest.mark.parametrize("all_rows", [True, False])
def test_evaluate_removes_the_excluded_images(all_rows):
    queries, features, split = _split_with_exclusions(all_rows=all_rows)
    got = evaluate(queries, features, split)["all"]
    _assert_matches(got, _brute_recall(queries, features, split))
    # The exclusions matter here: without them the numbers are lower.
    plain = CIRSplit(
        split.name,
        [dataclasses.replace(t, excluded=None) for t in split.triplets],
        split.gallery,
        {},
    )
    without = evaluate(queries, features, plain)["all"]
    assert without["R@1"] < got["R@1"] and without["Rs@1"] <= got["Rs@1"]
    _assert_matches(without, _brute_recall(queries, features, plain))


@pytest.mark.parametrize("kind", ["exact", "faiss"])
def test_evaluate_with_an_index_removes_them_too(kind):
    if kind == "faiss":
        pytest.importorskip("faiss")
    queries, features, split = _split_with_exclusions(seed=3)
    full = evaluate(queries, features, split)
    assert evaluate(queries, features, split, index=kind) == full
    # k beyond the gallery: the search reaches its end and the lists end in -1.
    deep = evaluate(queries, features, split, ks=(1, 89))
    assert evaluate(queries, features, split, ks=(1, 89), index=kind) == deep
    assert deep["all"]["R@89"] == 100.0


def test_ranks_from_a_dropped_list():
    ids = drop_excluded(torch.tensor([[4, 2, 7, 1]]), [[2, 9]], 3)
    assert ids.tolist() == [[4, 7, 1]]
    assert ranks_from_topk(ids, [1]).tolist() == [2]
    assert ranks_from_topk(ids, [2]).tolist() == [3]  # excluded: never found, clipped at k
