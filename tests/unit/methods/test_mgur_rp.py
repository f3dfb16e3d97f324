"""MGUR + relaxed proximity (the comparison chapter's new combination): the loss is MGUR's plus
RP on the same queries (checked with a brute-force RP loop), RP weight 0 is MGUR exactly."""

import math

import torch
import torch.nn.functional as F

from cirlib.config import resolve
from cirlib.data.features import SplitFeatures
from cirlib.methods.mgur import mgur_loss, train_mgur
from cirlib.methods.mgur_rp import MGUR_RP, mgur_rp_loss, train_mgur_rp
from cirlib.models.combiner import Combiner


def _features(n_images=30, n_queries=48, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    ref = torch.randint(0, n_images, (n_queries,), generator=g)
    tgt = (ref + 1 + torch.randint(0, n_images - 1, (n_queries,), generator=g)) % n_images
    images = torch.randn(n_images, dim, generator=g)
    texts = images[tgt] - images[ref] + 0.1 * torch.randn(n_queries, dim, generator=g)
    return SplitFeatures(images=images, texts=texts, reference_index=ref, target_index=tgt)


def _rp_by_hand(q, t, sigma, gamma):
    """MAPNet's RPLoss written out over pairs (methods.md §4.4, reading B)."""
    q, t = F.normalize(q.double(), dim=-1), F.normalize(t.double(), dim=-1)
    n, total = len(q), 0.0
    for i in range(n):
        for j in range(n):
            w = 0.0 if i == j else 1 - math.exp(-float((t[i] - t[j]).pow(2).sum()) / (2 * sigma**2))
            c = 0.5 * (1 + float(q[i] @ t[j]))
            total += w * c**2 + max(gamma - w, 0.0) * (1 - c) ** 2
    return total / n**2


def test_loss_is_mgur_plus_relaxed_proximity_on_the_same_queries():
    feats = _features()
    torch.manual_seed(0)
    model = Combiner(8).eval()  # no dropout: two forward passes give the same queries
    idx = torch.arange(16)
    kwargs = dict(epochs=4, batches_per_epoch=2, start_epoch=1)
    torch.manual_seed(5)  # the augmenter draws from the global generator
    combined = mgur_rp_loss(feats, sigma=0.6, gamma=0.5, rp_weight=0.7, **kwargs)(model, idx)
    torch.manual_seed(5)
    mgur = mgur_loss(feats, **kwargs)(model, idx)
    with torch.no_grad():
        q = model(feats.images[feats.reference_index[idx]], feats.texts[idx])
    rp = _rp_by_hand(q, feats.images[feats.target_index[idx]], 0.6, 0.5)
    torch.testing.assert_close(combined.double(), mgur.double() + 0.7 * rp, rtol=1e-5, atol=1e-6)


def test_rp_weight_zero_trains_exactly_like_mgur():
    feats = _features()
    cfg = resolve("smoke", epochs=2, batch_size=16, device="cpu")
    a = train_mgur(feats, cfg, seed=3)
    b = train_mgur_rp(feats, cfg, seed=3, rp_weight=0.0)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)


def test_rp_changes_training_and_spec_embeds_unit_rows(tmp_path):
    feats = _features()
    cfg = resolve("smoke", epochs=2, batch_size=16, device="cpu")
    mgur = train_mgur(feats, cfg, seed=3).history[-1]["loss"]
    model = MGUR_RP.train(feats, cfg, seed=3, split=None, checkpoint=tmp_path / "c.pt")
    combined = torch.load(tmp_path / "c.pt", weights_only=False)["history"][-1]["loss"]
    assert combined != mgur
    q = MGUR_RP.queries(model, feats)
    assert q.shape == (48, 8)
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(48))
