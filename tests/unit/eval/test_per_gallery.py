"""FashionIQ evaluation with one gallery per category: brute-force loops, hand-ranked cases, the
per-category function of cirlib.eval.recall, and the toy export loaded as the chapters load it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cirlib.data.fashioniq_splits import load_fashioniq_splits, merge_category_splits
from cirlib.data.features import SplitFeatures
from cirlib.data.records import CIRSplit, Triplet
from cirlib.data.toyworld import make_toyworld
from cirlib.eval.evaluate import evaluate
from cirlib.eval.recall import fashioniq_category_recall, fashioniq_summary


def _part(category: str, names: list[str], pairs: list[tuple[str, str]]) -> CIRSplit:
    triplets = [
        Triplet(pair_id=i, reference=r, captions=("c",), caption="c", target=t)
        for i, (r, t) in enumerate(pairs)
    ]
    paths = {n: Path(f"/img/{n}.jpg") for n in names}
    return CIRSplit(f"fashioniq/{category}/val/x", triplets, names, paths)


def _split(reference_in_gallery: bool) -> CIRSplit:
    parts = {
        "dress": _part("dress", ["a", "b", "c", "s"], [("a", "b"), ("c", "a")]),
        # "s" is listed by two categories, as 3,302 real images are (shirt and toptee)
        "shirt": _part("shirt", ["s", "d", "e"], [("d", "e"), ("s", "d"), ("e", "s")]),
    }
    return merge_category_splits(parts, "merged", reference_in_gallery=reference_in_gallery)


def _features(split: CIRSplit, d: int = 6, seed: int = 0) -> SplitFeatures:
    g = torch.Generator().manual_seed(seed)
    return SplitFeatures(
        images=torch.randn(len(split.gallery), d, generator=g),
        texts=torch.randn(len(split), d, generator=g),
        reference_index=torch.tensor([split.index_of(t.reference) for t in split.triplets]),
        target_index=torch.tensor([split.index_of(t.target) for t in split.triplets]),
    )


def _brute_force(q, feats, split, k):
    """Loops: per category, count the category's images scored above the target."""
    gal = F.normalize(feats.images, dim=-1)
    per = {}
    for cat, names in split.galleries.items():
        hits = n = 0
        for i, t in enumerate(split.triplets):
            if t.meta["gallery"] != cat:
                continue
            s_t = float(q[i] @ gal[split.index_of(t.target)])
            above = 0
            for pos, name in enumerate(names):
                if name == t.target or (name == t.reference and not split.reference_in_gallery):
                    continue
                s = float(q[i] @ gal[split.index_of(name)])
                before = pos < names.index(t.target)
                above += s > s_t or (s == s_t and before)
            hits += above < k
            n += 1
        per[cat] = 100.0 * hits / n
    return per


def test_merge_keeps_each_category_gallery():
    split = _split(True)
    assert split.gallery == ["a", "b", "c", "s", "d", "e"]  # union, "s" once
    assert split.galleries == {"dress": ["a", "b", "c", "s"], "shirt": ["s", "d", "e"]}
    assert [t.pair_id for t in split.triplets] == [0, 1, 2, 3, 4]
    assert [t.meta["gallery"] for t in split.triplets] == ["dress"] * 2 + ["shirt"] * 3


@pytest.mark.parametrize("kept", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_brute_force_loops(kept, seed):
    split = _split(kept)
    feats = _features(split, seed=seed)
    q = F.normalize(feats.texts, dim=-1)
    out = evaluate(q, feats, split, ks=(1, 2))
    for k in (1, 2):
        expect = _brute_force(q, feats, split, k)
        for cat, value in expect.items():
            assert out["gallery"][cat][f"R@{k}"] == pytest.approx(value)
        assert out["all"][f"R@{k}"] == pytest.approx(sum(expect.values()) / 2)  # not per query
    assert out["all"]["n"] == 5 and out["gallery"]["shirt"]["n"] == 3
    assert ("kept in" if kept else "removed from") in out["protocol"]


def test_hand_ranked_reference_first():
    """Dress gallery a, b, c, s. Query 0 (reference a, target b) scores a > b: with the
    reference kept the target is second (miss at R@1), removed it is first (hit)."""
    split = _split(True)
    e = torch.eye(4)
    images = torch.stack([e[0], e[1], e[2], e[3], e[2], e[3]])  # a b c s d e
    texts = torch.stack(
        [
            F.normalize(e[0] * 2 + e[1], dim=0),  # 0 (a -> b): a first, then b
            e[0],  # 1 (c -> a): a first, hit
            e[3],  # 2 (d -> e): s and e tie, s is before e in the shirt gallery: miss
            e[2],  # 3 (s -> d): d first, hit
            e[3],  # 4 (e -> s): s and e tie, s first: hit
        ]
    )
    feats = SplitFeatures(
        images=images,
        texts=texts,
        reference_index=torch.tensor([split.index_of(t.reference) for t in split.triplets]),
        target_index=torch.tensor([split.index_of(t.target) for t in split.triplets]),
    )
    kept = evaluate(texts, feats, split, ks=(1,))
    assert kept["gallery"]["dress"]["R@1"] == pytest.approx(50.0)
    assert kept["gallery"]["shirt"]["R@1"] == pytest.approx(200 / 3)
    removed = evaluate(texts, feats, _split(False), ks=(1,))
    assert removed["gallery"]["dress"]["R@1"] == pytest.approx(100.0)


def test_toy_export_as_the_chapters_load_it(tmp_path):
    world = make_toyworld(tmp_path / "w", {"train": 8, "val": 4, "test": 4}, seed=3, image_size=24)
    splits = load_fashioniq_splits(world / "fashionIQ_dataset", protocol="clip4cir")
    val = splits["val"]
    assert splits["test"] is val and val.reference_in_gallery
    assert set(val.galleries) == {"dress", "shirt", "toptee"}
    assert all(t.target is not None for t in splits["train"].triplets)
    feats = _features(val, seed=4)
    q = F.normalize(feats.texts, dim=-1)
    out = evaluate(q, feats, val)
    gal = F.normalize(feats.images, dim=-1)
    per = {}
    for cat, names in val.galleries.items():
        rows = [i for i, t in enumerate(val.triplets) if t.meta["gallery"] == cat]
        cols = [val.index_of(n) for n in names]
        tgt = torch.tensor([names.index(val.triplets[i].target) for i in rows])
        per[cat] = fashioniq_category_recall(q[rows], gal[cols], tgt, protocol="clip4cir")
        for k in ("R@10", "R@50"):
            assert out["gallery"][cat][k] == pytest.approx(per[cat][k])
    summary = fashioniq_summary(per)
    assert out["all"]["R@10"] == pytest.approx(summary["Avg R@10"])
    assert out["all"]["R@50"] == pytest.approx(summary["Avg R@50"])
