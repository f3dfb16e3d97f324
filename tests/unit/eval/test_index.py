"""Top-k indexes for large galleries: exact blocks vs a full sort, FAISS vs exact, recall."""

import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cirlib.data.records import CIRSplit, Triplet
from cirlib.eval.evaluate import evaluate
from cirlib.eval.index import (
    ExactIndex,
    FaissFlatIndex,
    best_valid_ranks_from_topk,
    make_index,
    ranks_from_topk,
)
from cirlib.eval.ranking import best_valid_ranks, target_ranks, topk


def _full_topk(q, g, k, exclude=None):
    """Reference: the whole score matrix, one stable sort (ties by lower index), then cut."""
    s = q.float() @ g.float().T
    if exclude is not None:
        s[torch.arange(len(q)), exclude] = float("-inf")
    order = torch.sort(s, dim=1, descending=True, stable=True).indices[:, :k]
    return s.gather(1, order), order


def _unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def _without_near_ties(q, g, k, gap=1e-5):
    """The queries whose first k+2 scores are all more than ``gap`` apart (float32 rounding of
    another BLAS, ~1e-7 here, cannot reorder them)."""
    s = torch.sort(q @ g.T, dim=1, descending=True).values[:, : k + 2]
    return (s[:, :-1] - s[:, 1:]).min(dim=1).values > gap


@pytest.mark.parametrize("blocks", [(7, 5), (1000, 1000), (64, 3)])
def test_exact_blocks_equal_a_full_sort(blocks):
    gallery_block, query_block = blocks
    q, g = _unit(23, 16, seed=1), _unit(300, 16, seed=2)
    exclude = torch.randint(0, 300, (23,), generator=torch.Generator().manual_seed(3))
    for ex in (None, exclude):
        s, i = ExactIndex(g, gallery_block=gallery_block).search(q, 10, ex, query_block=query_block)
        ref_s, ref_i = _full_topk(q, g, 10, ex)
        assert torch.equal(i, ref_i)
        torch.testing.assert_close(s, ref_s)
        if ex is not None:
            assert not (i == ex[:, None]).any()


def test_ties_are_broken_by_the_lower_gallery_index():
    # Integer features make every dot product exact, with many equal scores; small blocks make
    # ties straddle the top-k cut inside a block and across blocks.
    gen = torch.Generator().manual_seed(0)
    q = torch.randint(-1, 2, (40, 4), generator=gen).float()
    g = torch.randint(-1, 2, (200, 4), generator=gen).float()
    exclude = torch.randint(0, 200, (40,), generator=gen)
    scores = q @ g.T
    kth = torch.sort(scores, dim=1, descending=True).values[:, 9:10]
    assert ((scores == kth).sum(1) > 3).all()  # the test really is about ties
    for ex in (None, exclude):
        s, i = ExactIndex(g, gallery_block=13).search(q, 10, ex, query_block=7)
        ref_s, ref_i = _full_topk(q, g, 10, ex)
        assert torch.equal(i, ref_i) and torch.equal(s, ref_s)
        # the same order as the blocked ranker that evaluate() uses
        _, rank_i = topk(q, g, 10, ex, query_chunk=7, gallery_chunk=13)
        assert torch.equal(i, rank_i)


def test_float16_and_memory_mapped_galleries(tmp_path):
    q, g = _unit(11, 32, seed=4), _unit(500, 32, seed=5).half()
    ref = ExactIndex(g.float(), gallery_block=64).search(q, 5)
    half = ExactIndex(g, gallery_block=64).search(q, 5)
    path = tmp_path / "gallery.f16"
    mm = np.memmap(path, dtype=np.float16, mode="w+", shape=tuple(g.shape))
    mm[:] = g.numpy()
    mm.flush()
    mapped = ExactIndex(np.memmap(path, dtype=np.float16, mode="r", shape=tuple(g.shape)))
    for got in (half, mapped.search(q, 5)):
        assert torch.equal(got[1], ref[1]) and torch.equal(got[0], ref[0])


def test_search_refuses_bad_requests():
    index = ExactIndex(_unit(5, 4))
    with pytest.raises(ValueError, match="k must be"):
        index.search(_unit(2, 4), 5, exclude=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="d=3"):
        index.search(_unit(2, 3), 1)
    with pytest.raises(ValueError, match="unknown index kind"):
        make_index(_unit(5, 4), "annoy")
    broken = _unit(50, 4)
    broken[37, 2] = float("nan")
    with pytest.raises(ValueError, match="non-finite gallery features in rows 32"):
        ExactIndex(broken, gallery_block=16).search(_unit(2, 4), 3)
    queries = _unit(3, 4)
    queries[1, 0] = float("inf")
    with pytest.raises(ValueError, match="non-finite query features"):
        index.search(queries, 1)


def test_faiss_flat_gives_the_exact_top_k():
    pytest.importorskip("faiss")
    q, g = _unit(80, 24, seed=6), _unit(2000, 24, seed=7)
    g = g.half().float()  # the values FAISS receives from the float16 copy below
    keep = _without_near_ties(q, g, 20)
    assert keep.sum() >= 40
    q = q[keep]
    exclude = torch.randint(0, 2000, (len(q),), generator=torch.Generator().manual_seed(8))
    exact, flat = ExactIndex(g.half(), gallery_block=300), FaissFlatIndex(g.half(), add_block=700)
    for ex in (None, exclude):
        s, i = flat.search(q, 20, ex, query_block=16)
        ref_s, ref_i = exact.search(q, 20, ex)
        assert torch.equal(i, ref_i)
        torch.testing.assert_close(s, ref_s, rtol=0, atol=1e-6)


def test_missing_faiss_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        FaissFlatIndex(_unit(5, 4))
    # the exact path never needs it
    assert ExactIndex(_unit(5, 4)).search(_unit(2, 4), 2)[1].shape == (2, 2)


def test_clipped_ranks_give_the_full_ranks_recall():
    q, g = _unit(60, 8, seed=9), _unit(400, 8, seed=10)
    gen = torch.Generator().manual_seed(11)
    targets, exclude = torch.randint(0, 400, (60,), generator=gen), torch.zeros(60).long()
    targets[targets == 0] = 1
    k = 50
    ids = ExactIndex(g).search(q, k, exclude)[1]
    full = target_ranks(q, g, targets, exclude)
    assert torch.equal(ranks_from_topk(ids, targets), full.clamp(max=k))
    valid = [torch.randint(0, 400, (1 + i % 4,), generator=gen).tolist() for i in range(60)]
    valid = [[v for v in vs if v != 0] or [5] for vs in valid]
    full_valid = best_valid_ranks(q, g, valid, exclude)
    assert torch.equal(best_valid_ranks_from_topk(ids, valid), full_valid.clamp(max=k))
    assert (full > k).any() and (full < 10).any()  # both branches of the clipping occur


def _synthetic_split(n_gallery=120, n_queries=80, d=16, seed=12):
    gen = torch.Generator().manual_seed(seed)
    names = [f"img{i}" for i in range(n_gallery)]
    triplets, refs, tgts = [], [], []
    for i in range(n_queries):
        members = torch.randperm(n_gallery, generator=gen)[:6].tolist()
        ref, tgt = members[0], members[1]
        extra = torch.randint(0, n_gallery, (2,), generator=gen).tolist()
        triplets.append(
            Triplet(
                pair_id=i,
                reference=names[ref],
                captions=("c",),
                caption="c",
                target=names[tgt],
                subset=tuple(names[m] for m in members),
                valid_targets=tuple(names[v] for v in {tgt, *extra} - {ref}),
                meta={"edit_type": "abc"[i % 3]},
            )
        )
        refs.append(ref)
        tgts.append(tgt)
    split = CIRSplit("synthetic", triplets, names, {})
    images = torch.randn(n_gallery, d, generator=gen)
    features = SimpleNamespace(
        images=images, reference_index=torch.tensor(refs), target_index=torch.tensor(tgts)
    )
    # queries near their targets, so the recall numbers are far from both 0 and 100
    noise = torch.randn(n_queries, d, generator=gen)
    queries = F.normalize(images[features.target_index] + 1.5 * noise, dim=-1)
    return queries, features, split


@pytest.mark.parametrize("kind", ["exact", "faiss"])
def test_evaluate_with_an_index_equals_full_ranking(kind):
    if kind == "faiss":
        pytest.importorskip("faiss")
    queries, features, split = _synthetic_split()
    full = evaluate(queries, features, split)
    assert 0 < full["all"]["R@1"] < 100 and 0 < full["all"]["mR@10"] < 100
    assert evaluate(queries, features, split, index=kind) == full
    built = make_index(F.normalize(features.images, dim=-1), kind)
    assert evaluate(queries, features, split, index=built) == full
