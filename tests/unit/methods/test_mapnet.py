"""The MAPNet recipe on random token features: embeddings, the score they define, the loss
closure's terms, the in-batch false-negative count, and one short training run."""

import math

import pytest
import torch
import torch.nn.functional as F

from cirlib.config import resolve
from cirlib.data.features import SplitFeatures
from cirlib.data.records import CIRSplit, Triplet
from cirlib.losses import batch_classification_loss
from cirlib.losses.multi_schema_interaction import multi_schema_interaction_loss
from cirlib.losses.relaxed_proximity import negative_confidence, relaxed_proximity_loss
from cirlib.methods.mapnet import (
    build_mapnet,
    in_batch_false_negatives,
    mapnet_gallery,
    mapnet_loss,
    mapnet_queries,
    mapnet_schemas,
    pooled_schemas,
    train_mapnet,
)

SIZES = dict(n_schemas=4, schema_width=16, schema_dim=8, schema_layers=1, schema_heads=2)


def _features(n_images=10, n_queries=12, dim=6, tokens=5, width=7, text_width=9, length=8):
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(2, length - 2, (n_queries,), generator=g)
    return SplitFeatures(
        images=torch.randn(n_images, dim, generator=g),
        texts=torch.randn(n_queries, dim, generator=g),
        reference_index=torch.randint(0, n_images, (n_queries,), generator=g),
        target_index=torch.randint(0, n_images, (n_queries,), generator=g),
        image_tokens=torch.randn(n_images, tokens, width, generator=g).half(),
        text_tokens=torch.randn(n_queries, length, text_width, generator=g).half(),
        text_mask=torch.arange(length)[None, :] <= lengths[:, None],
    )


def test_embeddings_are_unit_vectors_and_score_is_the_mean_of_two_cosines():
    torch.manual_seed(0)
    f = _features()
    model = build_mapnet(f, **SIZES).eval()
    q, g = mapnet_queries(model, f), mapnet_gallery(model, f)
    assert q.shape == (12, 6 + 8) and g.shape == (10, 6 + 8)
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(12))
    torch.testing.assert_close(g.norm(dim=-1), torch.ones(10))
    # e_q . e_t = (q_comb . x_t + fbar_q . fbar_t) / 2
    with torch.no_grad():
        q_comb = model.combiner(f.images[f.reference_index], f.texts)
        s = mapnet_schemas(model, f, torch.arange(12))
        fq, ft_all = (
            pooled_schemas(s["query"]),
            pooled_schemas(model.schemas(f.image_tokens.float())),
        )
    expected = 0.5 * (q_comb @ F.normalize(f.images, dim=-1).T + fq @ ft_all.T)
    torch.testing.assert_close(q @ g.T, expected, atol=1e-5, rtol=1e-5)
    assert s["target_attention"].shape == (12, 4, 5)


def test_cutting_padded_text_positions_changes_nothing():
    torch.manual_seed(1)
    f = _features()
    model = build_mapnet(f, **SIZES).eval()
    longest = int(f.text_mask.sum(1).max())
    with torch.no_grad():
        full, _ = model.encode_query(
            f.images[f.reference_index],
            f.texts,
            f.image_tokens[f.reference_index].float(),
            f.text_tokens.float(),
            f.text_mask,
        )
    assert longest < f.text_tokens.shape[1]
    torch.testing.assert_close(mapnet_queries(model, f), full, atol=1e-6, rtol=1e-5)


def test_loss_closure_is_the_weighted_sum_of_its_terms():
    torch.manual_seed(2)
    f = _features()
    model = build_mapnet(f, **SIZES).eval()  # eval: no dropout, so terms can be recomputed
    idx = torch.tensor([0, 3, 5, 7, 11])
    record = {}
    loss = mapnet_loss(
        f, tau=0.2, gamma=0.4, sigma=0.7, msi_weight=0.5, rp_weight=2.0, record=record
    )(model, idx)
    r, t = f.reference_index[idx], f.target_index[idx]
    with torch.no_grad():
        e_q, f_q = model.encode_query(
            f.images[r],
            f.texts[idx],
            f.image_tokens[r].float(),
            f.text_tokens[idx].float(),
            f.text_mask[idx],
        )
        e_t, f_t = model.encode_target(f.images[t], f.image_tokens[t].float())
    bbc = batch_classification_loss(e_q, e_t, 100.0)
    msi = multi_schema_interaction_loss(f_q, f_t, tau=0.2)
    rp = relaxed_proximity_loss(e_q, e_t, negative_confidence(f.images[t], 0.7), 0.4)
    assert loss.item() == pytest.approx((bbc + 0.5 * msi + 2.0 * rp).item(), rel=1e-5)
    assert record["msi"][0] == pytest.approx(msi.item(), rel=1e-5)
    only_bbc = mapnet_loss(f, msi_weight=0.0, rp_weight=0.0, record=(rec := {}))(model, idx)
    assert only_bbc.item() == pytest.approx(bbc.item(), rel=1e-5) and set(rec) == {"bbc"}


def test_gradients_reach_every_part_of_the_model():
    torch.manual_seed(3)
    f = _features()
    model = build_mapnet(f, **SIZES)
    mapnet_loss(f)(model, torch.arange(8)).backward()
    for name in ("combiner.output.weight", "schemas.queries", "schemas.text_in.0.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_refuses_features_without_tokens():
    f = _features()
    f.image_tokens = None
    with pytest.raises(ValueError, match="tokens=True"):
        build_mapnet(f)


def _split_with_valid_targets():
    gallery = [f"img{k}" for k in range(6)]
    triplets = [
        Triplet(0, "img0", ("a",), "a", "img1", valid_targets=("img1", "img2")),
        Triplet(1, "img3", ("b",), "b", "img2", valid_targets=("img2",)),
        Triplet(2, "img4", ("c",), "c", "img5", valid_targets=("img5", "img1")),
        Triplet(3, "img0", ("d",), "d", "img1", valid_targets=("img1",)),
    ]
    split = CIRSplit("fake", triplets, gallery, {})
    feats = SplitFeatures(
        images=torch.zeros(6, 2),
        texts=torch.zeros(4, 2),
        reference_index=torch.tensor([split.index_of(t.reference) for t in triplets]),
        target_index=torch.tensor([split.index_of(t.target) for t in triplets]),
    )
    return split, feats


def test_in_batch_false_negatives_by_hand():
    split, feats = _split_with_valid_targets()
    mask = in_batch_false_negatives(split, feats, torch.arange(4))
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[0, 1] = True  # query 0 accepts img2, the target of triplet 1
    expected[0, 3] = True  # ... and img1, the target of triplet 3 (the same image as its own)
    expected[2, 0] = expected[2, 3] = True  # query 2 accepts img1
    expected[3, 0] = True  # query 3's target img1 is triplet 0's target too
    assert torch.equal(mask, expected)
    sub = in_batch_false_negatives(split, feats, torch.tensor([2, 1]))
    assert not sub.any()


def test_in_batch_false_negatives_needs_valid_targets():
    split, feats = _split_with_valid_targets()
    split.triplets[0] = Triplet(0, "img0", ("a",), "a", "img1")
    with pytest.raises(ValueError, match="valid targets"):
        in_batch_false_negatives(split, feats, torch.arange(4))


def test_short_training_run_lowers_the_loss(tmp_path):
    f = _features(n_images=40, n_queries=64)
    cfg = resolve("smoke", epochs=6, batch_size=16, lr=3e-3, device="cpu")
    record = {}
    result = train_mapnet(f, cfg, seed=0, checkpoint=tmp_path / "m.pt", record=record, **SIZES)
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 6 and all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0]
    assert set(record) == {"bbc", "msi", "rp"} and len(record["msi"]) == 6 * 4
    again = train_mapnet(f, cfg, seed=0, checkpoint=tmp_path / "m.pt", **SIZES)
    assert again.trained_epochs == 0  # the finished checkpoint is loaded, not retrained
    with pytest.raises(ValueError, match="unknown MAPNet option"):
        train_mapnet(f, cfg, seed=0, n_schema=3)


def test_schema_self_similarity_by_hand_and_limits():
    from cirlib.methods.mapnet import schema_self_similarity

    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 4, 3, generator=g)
    got = schema_self_similarity(x)
    for b in range(2):
        pairs = [
            F.cosine_similarity(x[b, k], x[b, m], dim=0)
            for k in range(4)
            for m in range(4)
            if k != m
        ]
        assert got[b].item() == pytest.approx(sum(pairs).item() / 12, abs=1e-6)
    same = torch.randn(1, 1, 5).expand(1, 6, 5)  # collapsed: every schema the same vector
    assert schema_self_similarity(same).item() == pytest.approx(1.0, abs=1e-6)
    assert schema_self_similarity(torch.eye(4)[None]).item() == pytest.approx(0.0, abs=1e-7)
