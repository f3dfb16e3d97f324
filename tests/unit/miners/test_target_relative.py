"""The target-relative miner: Δ-scores, the mid-zone against a brute-force loop and quantiles,
never a listed positive on toy data, and refreshes on the schedule inside the training loop."""

import math

import pytest
import torch
import torch.nn.functional as F

from cirlib.data.features import SplitFeatures
from cirlib.data.toy import generated_split
from cirlib.methods.dqe import (
    DQESettings,
    attribute_gates,
    build_miner,
    dqe_gallery,
    dqe_queries,
    listed_positives,
    train_dqe,
)
from cirlib.miners import TargetRelativeMiner, delta_scores, exclusion_mask, mid_zone, zone_bounds

BOUNDS = [(0.0, 1.0), (0.0, 0.05), (0.1, 0.4), (0.25, 0.26), (0.5, 1.0), (0.9, 1.0)]


def _brute_zone(delta_row, excluded_row, lower, upper):
    """The mid-zone of one row, written out with Python lists."""
    cand = [(float(d), c) for c, d in enumerate(delta_row) if not excluded_row[c]]
    cand.sort()
    n = len(cand)
    start = math.floor(lower * n + 1e-9)
    stop = max(start + 1, math.ceil(upper * n - 1e-9))
    start, stop = min(start, n), min(stop, n)
    return [c for _, c in cand[start:stop]]


def test_delta_scores_are_gaps_to_the_target():
    scores = torch.tensor([[0.5, 0.9, 0.1], [0.2, 0.3, 0.7]])
    delta = delta_scores(scores, torch.tensor([0, 2]))
    torch.testing.assert_close(delta, torch.tensor([[0.0, -0.4, 0.4], [0.5, 0.4, 0.0]]))


@pytest.mark.parametrize("lower, upper", BOUNDS)
def test_mid_zone_matches_brute_force_loop(lower, upper, device):
    g = torch.Generator().manual_seed(0)
    delta = torch.randn(7, 41, generator=g).to(device)
    excluded = torch.rand(7, 41, generator=g) < 0.2
    excluded[3] = True  # a row with no candidate at all
    excluded[3, :2] = False  # ... apart from two
    zone, length = mid_zone(delta, lower, upper, excluded.to(device))
    for i in range(7):
        want = _brute_zone(delta[i].cpu(), excluded[i], lower, upper)
        got = zone[i, : int(length[i])].cpu().tolist()
        assert got == want
        assert (zone[i, int(length[i]) :] == -1).all()


@pytest.mark.parametrize("lower, upper", BOUNDS)
def test_mid_zone_respects_the_quantile_bounds(lower, upper):
    g = torch.Generator().manual_seed(1)
    delta = torch.randn(5, 200, generator=g, dtype=torch.float64)
    zone, length = mid_zone(delta, lower, upper)
    for i in range(5):
        picked = delta[i, zone[i, : int(length[i])]]
        lo = torch.quantile(delta[i], lower, interpolation="lower")
        hi = torch.quantile(delta[i], upper, interpolation="higher")
        assert (picked >= lo).all() and (picked <= hi).all()
        # and it is the whole band: every candidate strictly inside is picked
        inside = ((delta[i] > lo) & (delta[i] < hi)).sum()
        assert int(length[i]) >= int(inside)
        assert int(length[i]) <= max(1, math.ceil(upper * 200) - math.floor(lower * 200))


def test_zone_bounds_limits():
    n = torch.tensor([0, 1, 10, 1000])
    start, stop = zone_bounds(n, 0.0, 1.0)
    assert start.tolist() == [0, 0, 0, 0] and stop.tolist() == [0, 1, 10, 1000]
    # a band narrower than one rank still holds one candidate (never empty when any exists)
    start, stop = zone_bounds(n, 0.3, 0.3001)
    assert (stop - start).tolist() == [0, 1, 1, 1]
    assert zone_bounds(torch.tensor([10]), 0.3, 0.6)[0].item() == 3  # 0.3*10 is not 4
    with pytest.raises(ValueError, match="lower < upper"):
        mid_zone(torch.zeros(2, 3), 0.5, 0.5)


def _toy_split(n_groups=25, seed=0):
    return generated_split("train", n_groups, seed)


def _features(split, dim=6, tokens=(3, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    n, q = len(split.gallery), len(split.triplets)
    return SplitFeatures(
        images=torch.randn(n, dim, generator=g),
        texts=torch.randn(q, dim, generator=g),
        reference_index=torch.tensor([split.index_of(t.reference) for t in split.triplets]),
        target_index=torch.tensor([split.index_of(t.target) for t in split.triplets]),
        image_tokens=torch.randn(n, *tokens, generator=g).half(),
    )


def test_miner_never_returns_a_listed_positive_on_toy_data():
    split = _toy_split()
    feats = _features(split)
    positives = listed_positives(split, feats)
    assert any(len(p) > 2 for p in positives), "the toy split should list extra valid targets"
    n = len(split.gallery)
    # adversarial embeddings: every listed positive scores *above* everything else, so a miner
    # that relied on the scores alone would put them in the hardest zone
    g = torch.Generator().manual_seed(1)
    gallery = F.normalize(torch.randn(n, 16, generator=g), dim=-1)
    queries = torch.stack([gallery[p].sum(0) for p in positives])
    for lower, upper in [(0.0, 0.02), (0.0, 1.0), (0.002, 0.05)]:
        for candidates in (None, n // 3):
            miner = TargetRelativeMiner(
                feats.target_index,
                positives,
                lower=lower,
                upper=upper,
                pool_size=1000,
                candidates=candidates,
            )
            miner.refresh(queries, gallery, epoch=0)
            for i, rows in enumerate(positives):
                pool = set(miner.pool[i, : int(miner.pool_length[i])].tolist())
                assert pool and not pool & set(rows)
                sampled = miner.sample(torch.full((50,), i), 4)
                assert not set(sampled.flatten().tolist()) & set(rows)


def test_miner_pools_respect_the_bounds_and_the_size_cap():
    split = _toy_split(seed=2)
    feats = _features(split, seed=2)
    positives = listed_positives(split, feats)
    g = torch.Generator().manual_seed(3)
    queries, gallery = (
        torch.randn(len(positives), 8, generator=g),
        torch.randn(len(split.gallery), 8, generator=g),
    )
    miner = TargetRelativeMiner(feats.target_index, positives, lower=0.1, upper=0.3, pool_size=5)
    miner.refresh(queries, gallery, epoch=0)
    delta = delta_scores(queries @ gallery.T, feats.target_index)
    excluded = exclusion_mask(positives, len(split.gallery))
    for i in range(len(positives)):
        zone = set(_brute_zone(delta[i], excluded[i], 0.1, 0.3))
        pool = miner.pool[i, : int(miner.pool_length[i])].tolist()
        assert len(pool) == min(5, len(zone)) and len(set(pool)) == len(pool)
        assert set(pool) <= zone


def test_listed_positives_and_gates_from_the_split():
    split = _toy_split()
    feats = _features(split)
    for i, t in enumerate(split.triplets):
        rows = set(listed_positives(split, feats)[i])
        assert rows == {split.index_of(n) for n in t.valid_targets} | {
            int(feats.reference_index[i]),
            int(feats.target_index[i]),
        }
        assert set(listed_positives(split, feats, include_valid=False)[i]) == {
            int(feats.reference_index[i]),
            int(feats.target_index[i]),
        }
    gates = attribute_gates(split)
    kinds = [t.meta["edit_type"] for t in split.triplets]
    assert gates[:, 0].tolist() == [float(k == "colour") for k in kinds]
    assert gates[:, 1].tolist() == [float(k == "shape") for k in kinds]


class _Profile:
    epochs, batch_size, lr, device, amp = 5, 16, 1e-3, "cpu", False


def _pool_log(miner, log):
    def on_epoch(model):
        log.append(miner.pool.clone())
        return {}

    return on_epoch


@pytest.mark.parametrize("every, expected", [(2, [0, 2, 4]), (1, [0, 1, 2, 3, 4]), (0, [0])])
def test_refresh_follows_the_schedule_inside_fit(every, expected):
    split = _toy_split(n_groups=12)
    feats = _features(split)
    settings = DQESettings(refresh_every=every, attribute_dim=2, candidates=None)
    miner = build_miner(feats, split, settings, seed=0)
    pools = []
    train_dqe(
        feats, _Profile, seed=0, split=split, settings=settings, miner=miner,
        eval_fn=_pool_log(miner, pools),
    )  # fmt: skip
    assert miner.refreshed_at == expected
    # between refreshes the pools stay fixed; a refresh re-mines with the trained model
    for epoch in range(1, 5):
        same = torch.equal(pools[epoch], pools[epoch - 1])
        assert same == (epoch not in expected), epoch


def test_resumed_run_refreshes_at_its_start_then_on_schedule(tmp_path):
    split = _toy_split(n_groups=12)
    feats = _features(split)
    settings = DQESettings(refresh_every=2, attribute_dim=2, candidates=None)
    ckpt = tmp_path / "dqe.pt"
    part = build_miner(feats, split, settings, seed=0)
    run = dict(seed=0, split=split, settings=settings, checkpoint=ckpt)
    train_dqe(feats, _Profile, miner=part, stop_after_epoch=3, **run)
    assert part.refreshed_at == [0, 2]
    # the pools are not in the checkpoint, so the resumed run mines once at its first epoch (3)
    # and then keeps the global schedule (4)
    resumed = build_miner(feats, split, settings, seed=0)
    res = train_dqe(feats, _Profile, miner=resumed, **run)
    assert resumed.refreshed_at == [3, 4] and res.trained_epochs == 2
    # a finished checkpoint is loaded: no training, no mining
    again = build_miner(feats, split, settings, seed=0)
    train_dqe(feats, _Profile, miner=again, **run)
    assert again.refreshed_at == [] and again.pool is None


def test_dqe_embeddings_rank_by_the_model_score_and_training_lowers_the_loss():
    split = _toy_split(n_groups=12)
    feats = _features(split)
    settings = DQESettings(attribute_dim=2, candidates=None)
    res = train_dqe(feats, _Profile, seed=0, split=split, settings=settings)
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    model = res.model
    q, gal = dqe_queries(model, feats), dqe_gallery(model, feats)
    with torch.no_grad():
        parts = model(feats.images[feats.reference_index], feats.texts,
                      feats.image_tokens[feats.reference_index].float())  # fmt: skip
        raw = (
            model.joint_query(parts)
            @ model.joint_gallery(model.embed_gallery(feats.images, feats.image_tokens.float())).T
        )
    # normalising the query rescales each row, so the ranking is the model's score ranking
    norms = model.joint_query(parts).norm(dim=-1, keepdim=True)
    torch.testing.assert_close(q @ gal.T, raw / norms)
