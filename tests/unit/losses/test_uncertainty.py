import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from cirlib.losses import (
    aleatoric_loss,
    batch_classification_loss,
    blend_losses,
    feature_spread,
    uncertainty_regularisation_loss,
)
from cirlib.methods.mgur import mgur_loss
from cirlib.models.combiner import Combiner
from cirlib.schedules import EpochClock, coarse_to_fine_weight, mean_coarse_to_fine_weight
from cirlib.train import checkpoint_epoch, fit


def _brute_bbc(q, t, s):
    """Cross-entropy by loops; targets are used as given (no normalisation)."""
    total = 0.0
    for i in range(len(q)):
        logits = [s * float(q[i] @ t[j]) for j in range(len(t))]
        m = max(logits)
        total += m + math.log(sum(math.exp(x - m) for x in logits)) - logits[i]
    return total / len(q)


def _brute_std(x):
    vals = [float(v) for v in x.reshape(-1)]
    mean = sum(vals) / len(vals)
    return math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))


# --- the aleatoric form ------------------------------------------------------------------------


def test_aleatoric_loss_formula_and_optimum():
    for loss, s in [(2.0, 0.0), (2.0, 1.3), (0.1, -0.5), (50.0, 3.0)]:
        got = aleatoric_loss(torch.tensor(loss, dtype=torch.float64), s).item()
        assert got == pytest.approx(0.5 * (math.exp(-s) * loss + s), rel=1e-12)
    # s = 0 halves the loss; the best s for a fixed loss is log(loss)
    assert aleatoric_loss(torch.tensor(3.0), 0.0).item() == pytest.approx(1.5)
    s = torch.tensor(math.log(4.0), requires_grad=True)
    aleatoric_loss(torch.tensor(4.0), s).backward()
    assert abs(s.grad.item()) < 1e-6


def test_feature_spread_is_the_std_of_all_entries(dtype):
    x = torch.randn(5, 7, generator=torch.Generator().manual_seed(0)).to(dtype)
    assert feature_spread(x).item() == pytest.approx(_brute_std(x), rel=1e-5)


def test_uncertainty_regularisation_matches_brute_force(dtype, device):
    g = torch.Generator().manual_seed(1)
    q = F.normalize(torch.randn(6, 5, generator=g), dim=-1).to(dtype).to(device)
    t_hat = (3 * torch.randn(6, 5, generator=g) + 0.5).to(dtype).to(device)  # not normalised
    for scale in (1.0, 4.0, 25.0):
        got = uncertainty_regularisation_loss(q, t_hat, scale).item()
        s = _brute_std(t_hat.cpu())
        want = 0.5 * (math.exp(-s) * _brute_bbc(q.cpu(), t_hat.cpu(), scale) + s)
        assert got == pytest.approx(want, rel=1e-5, abs=1e-5)


# --- the blend and its schedule ----------------------------------------------------------------


def test_blend_end_points_and_mix():
    fine, coarse = torch.tensor(2.0), torch.tensor(5.0)
    assert blend_losses(coarse, fine, 0.0) is fine
    assert blend_losses(coarse, fine, 1.0) is coarse
    assert blend_losses(coarse, fine, 0.25).item() == pytest.approx(0.25 * 5 + 0.75 * 2)
    # weight 0 never touches the coarse term, so an infinite one cannot turn into 0 * inf = nan
    assert blend_losses(torch.tensor(float("inf")), fine, 0.0).item() == 2.0
    assert blend_losses(None, fine, 0.0).item() == 2.0
    with pytest.raises(ValueError):
        blend_losses(coarse, fine, 1.5)
    with pytest.raises(ValueError):
        blend_losses(None, fine, 0.5)


def test_schedule_end_points():
    assert coarse_to_fine_weight(0, 60) == 1.0
    assert coarse_to_fine_weight(59, 60) == pytest.approx(math.exp(-59 / 60))
    assert coarse_to_fine_weight(59, 60) == pytest.approx(0.3741, abs=1e-4)  # MGUR's last epoch
    assert coarse_to_fine_weight(60, 60, gamma_scale=2.0) == pytest.approx(math.exp(-2))
    assert coarse_to_fine_weight(30, 60, gamma_scale=0.0) == 1.0
    ws = [coarse_to_fine_weight(e, 10) for e in range(10)]
    assert all(a > b for a, b in zip(ws, ws[1:]))
    # the mean weight is a geometric series: (1 - e^-g) / (E (1 - e^(-g/E)))
    for e_total, g in [(1, 1.0), (10, 1.0), (60, 1.0), (40, 3.0)]:
        closed = (1 - math.exp(-g)) / (e_total * (1 - math.exp(-g / e_total)))
        assert mean_coarse_to_fine_weight(e_total, g) == pytest.approx(closed, rel=1e-12)
    with pytest.raises(ValueError):
        coarse_to_fine_weight(-1, 10)


def test_epoch_clock_counts_batches():
    clock = EpochClock(batches_per_epoch=3)
    assert [clock.tick() for _ in range(7)] == [0, 0, 0, 1, 1, 1, 2]
    resumed = EpochClock(batches_per_epoch=3, start_epoch=4)
    assert resumed.epoch == 4 and resumed.tick() == 4
    with pytest.raises(ValueError):
        EpochClock(0)


# --- MGUR's full loss --------------------------------------------------------------------------


def _features(n_images=40, n_queries=24, dim=16, centred=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n_images, dim, generator=g)
    if centred:  # zero row mean: then the augmenter without noise is the identity on directions
        images = images - images.mean(-1, keepdim=True)
    return SimpleNamespace(
        images=images,
        texts=torch.randn(n_queries, dim, generator=g),
        reference_index=torch.randint(0, n_images, (n_queries,), generator=g),
        target_index=torch.randint(0, n_images, (n_queries,), generator=g),
    )


def _head(dim=16):
    torch.manual_seed(0)
    return Combiner(dim, dropout=0.0).eval()


def test_mgur_reduces_to_bbc_without_noise_and_with_blend_weight_zero():
    feats = _features(centred=True)
    model = _head()
    idx = torch.arange(8)
    q = model(feats.images[feats.reference_index[idx]], feats.texts[idx])
    t = F.normalize(feats.images[feats.target_index[idx]], dim=-1)
    bbc = batch_classification_loss(q, t, 100.0)
    # a huge gamma scale makes the weight exactly 0 from epoch 1 on (exp underflows)
    loss_fn = mgur_loss(
        feats, epochs=4, batches_per_epoch=1, augmenter="paper", gamma_scale=1e6, scale=100.0
    )
    first = loss_fn(model, idx)  # epoch 0: weight 1, the coarse term alone
    assert loss_fn.weight(1) == 0.0
    for _ in range(3):
        assert loss_fn(model, idx).item() == pytest.approx(bbc.item(), rel=1e-6)
    assert first.item() != pytest.approx(bbc.item(), rel=1e-3)
    # no noise, norm-preserving augmenter, centred targets: the jittered target is the clean one,
    # so the coarse term is the aleatoric form of the very same BBC, whatever the feature norm
    for r in (1.0, 4.0):
        loss_fn = mgur_loss(
            feats,
            epochs=4,
            batches_per_epoch=1,
            augmenter="norm_preserving",
            noise_scale=0.0,
            feature_norm=r,
        )
        s = feature_spread(r * t)
        want = aleatoric_loss(bbc, s)
        assert loss_fn(model, idx).item() == pytest.approx(want.item(), rel=1e-5)
    # and without the aleatoric wrapper the blend of two equal losses is the BBC at every epoch
    loss_fn = mgur_loss(
        feats, epochs=4, batches_per_epoch=1, augmenter="norm_preserving", noise_scale=0.0,
        regulariser=False,
    )  # fmt: skip
    for _ in range(4):
        assert loss_fn(model, idx).item() == pytest.approx(bbc.item(), rel=1e-5)


def test_mgur_coarse_term_uses_the_augmented_norm():
    """The paper-form targets are ~sqrt(D)/r times longer, so their logits are that much sharper:
    the coarse term must equal the brute-force aleatoric loss on those exact targets."""
    feats = _features(dim=64, seed=3)
    model = _head(64)
    idx = torch.arange(8)
    q = model(feats.images[feats.reference_index[idx]], feats.texts[idx])
    t = F.normalize(feats.images[feats.target_index[idx]], dim=-1)
    loss_fn = mgur_loss(feats, epochs=5, batches_per_epoch=1, scale=16.0, feature_norm=4.0)
    torch.manual_seed(11)
    got = loss_fn(model, idx)  # epoch 0: weight 1
    from cirlib.models.augmenter import gaussian_feature_augment

    torch.manual_seed(11)
    t_hat = gaussian_feature_augment(4.0 * t)
    s = _brute_std(t_hat.detach())
    # MGUR's code: logits f_s . f_hat with f_s = 4 q; here (16 / 4) q . f_hat, the same thing
    want = 0.5 * (math.exp(-s) * _brute_bbc((4 * q).detach(), t_hat.detach(), 1.0) + s)
    assert got.item() == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("augmenter", ["paper", "norm_preserving", None])
@pytest.mark.parametrize("regulariser", [True, False])
def test_mgur_gradients_are_finite(augmenter, regulariser):
    feats = _features(seed=5)
    torch.manual_seed(0)
    model = Combiner(16, dropout=0.5).train()
    loss_fn = mgur_loss(
        feats, epochs=3, batches_per_epoch=2, augmenter=augmenter, regulariser=regulariser
    )
    for _ in range(6):  # every epoch of the schedule
        model.zero_grad()
        loss = loss_fn(model, torch.arange(12))
        loss.backward()
        assert torch.isfinite(loss)
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        assert sum(float(g.abs().sum()) for g in grads) > 0


def test_mgur_resumed_run_continues_the_schedule(tmp_path):
    """Interrupted after epoch 1 and resumed, the clock must start at epoch 1 again: the result
    equals an uninterrupted run (a clock restarting at 0 would give the coarse term more weight)."""
    feats = _features(n_queries=32, seed=6)
    run = dict(epochs=3, batch_size=8, lr=1e-2, seed=0)

    def train(checkpoint, stop=None):
        torch.manual_seed(0)
        model = Combiner(16, dropout=0.0)
        loss_fn = mgur_loss(
            feats, epochs=3, batches_per_epoch=4, start_epoch=checkpoint_epoch(checkpoint)
        )
        return fit(model, loss_fn, 32, checkpoint=checkpoint, stop_after_epoch=stop, **run)

    whole = train(tmp_path / "whole.pt")
    train(tmp_path / "split.pt", stop=1)
    assert checkpoint_epoch(tmp_path / "split.pt") == 1
    resumed = train(tmp_path / "split.pt")
    assert resumed.trained_epochs == 2
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert checkpoint_epoch(None) == 0
