import pytest
import torch
import torch.nn.functional as F

from cirlib.losses import batch_classification_loss
from cirlib.models.combiner import Combiner
from cirlib.train import NonFiniteLossError, fit

D, N = 8, 96


@pytest.fixture
def features():
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(N, D, generator=g), torch.randn(N, D, generator=g)
    tgt = img + txt + 0.1 * torch.randn(N, D, generator=g)  # a learnable composition
    return img, txt, tgt


def _loss(features):
    img, txt, tgt = features
    return lambda model, idx: batch_classification_loss(
        model(img[idx], txt[idx]), F.normalize(tgt[idx], dim=-1), scale=10.0
    )


def _run(features, tmp_path=None, name="ckpt.pt", **kw):
    torch.manual_seed(0)
    model = Combiner(D)
    args = dict(epochs=4, batch_size=32, lr=1e-3, seed=0)
    args.update(kw)
    ckpt = tmp_path / name if tmp_path is not None else None
    return fit(model, _loss(features), N, checkpoint=ckpt, **args)


def test_loss_decreases(features):
    res = _run(features, epochs=8)
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    assert not res.model.training


def test_resume_equals_uninterrupted_run(features, tmp_path):
    full = _run(features, tmp_path, "full.pt")
    first = _run(features, tmp_path, "part.pt", stop_after_epoch=2)
    assert first.trained_epochs == 2
    rest = _run(features, tmp_path, "part.pt")
    assert rest.trained_epochs == 2
    assert [h["loss"] for h in rest.history] == pytest.approx([h["loss"] for h in full.history])
    for a, b in zip(full.model.state_dict().values(), rest.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


def test_finished_checkpoint_is_loaded_not_retrained(features, tmp_path):
    first = _run(features, tmp_path)
    again = _run(features, tmp_path)
    assert again.trained_epochs == 0
    assert again.history == first.history


def test_checkpoint_from_other_settings_is_refused(features, tmp_path):
    _run(features, tmp_path)
    with pytest.raises(ValueError, match="other settings"):
        _run(features, tmp_path, lr=1e-2)


def test_nan_guard_stops_and_keeps_last_good_checkpoint(features, tmp_path):
    img, txt, tgt = features
    calls = {"n": 0}
    good = _loss(features)

    def loss_fn(model, idx):
        calls["n"] += 1
        loss = good(model, idx)
        return loss * float("nan") if calls["n"] > 6 else loss  # 3 batches per epoch

    torch.manual_seed(0)
    model = Combiner(D)
    ckpt = tmp_path / "nan.pt"
    with pytest.raises(NonFiniteLossError, match="epoch 3.*last good checkpoint.*epoch 2"):
        fit(model, loss_fn, N, epochs=5, batch_size=32, lr=1e-3, checkpoint=ckpt)
    state = torch.load(ckpt, weights_only=False)
    assert state["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_mixed_precision_path_runs_on_cpu(features):
    """bfloat16 autocast on CPU exercises the code path CUDA takes with float16."""
    seen = set()

    torch.manual_seed(0)
    model = Combiner(D)
    model.combine.register_forward_hook(lambda mod, inp, out: seen.add(out.dtype))
    res = fit(
        model,
        _loss(features),
        N,
        epochs=2,
        batch_size=32,
        lr=1e-3,
        amp=True,
        amp_dtype=torch.bfloat16,
    )
    assert seen == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in res.model.parameters())
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in res.history)


def test_eval_fn_joins_history(features):
    res = _run(features, epochs=2, eval_fn=lambda m: {"val": 1.5})
    assert [h["val"] for h in res.history] == [1.5, 1.5]


def test_default_optimiser_is_fused_adam_with_the_loop_adam_result(features):
    """fit's default Adam uses the fused kernel; it computes the same update as the per-tensor
    loop (to float32 rounding), so switching kernels changes no result beyond rounding."""
    fused = _run(features, epochs=3)
    loop = _run(
        features,
        epochs=3,
        optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=1e-3, fused=False),
    )
    for (name, a), b in zip(fused.model.state_dict().items(), loop.model.state_dict().values()):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4, msg=name)
    assert [h["loss"] for h in fused.history] == pytest.approx(
        [h["loss"] for h in loop.history], rel=1e-4
    )


def test_fused_adam_only_where_every_parameter_supports_it():
    from cirlib.train import _fused_adam_ok

    assert _fused_adam_ok(Combiner(4))
    frozen = Combiner(4).requires_grad_(False)
    assert not _fused_adam_ok(frozen)  # nothing to optimise: no fused kernel to ask for


def test_seconds_per_step_times_real_training_steps():
    from cirlib.train import seconds_per_step

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    calls = []

    def loss_fn(m, idx):
        calls.append(len(idx))
        return ((m(x[idx]) - y[idx]) ** 2).mean()

    before = model.weight.detach().clone()
    batches = [torch.arange(8), torch.arange(8, 16), torch.arange(16, 24)]
    seconds = seconds_per_step(model, loss_fn, batches, lr=0.1, rounds=2)
    assert 0 < seconds < 10
    assert calls == [8] * (1 + 2 * 3)  # one warm-up step, then every batch once per round
    assert not torch.equal(model.weight, before)  # the steps trained the model
    with pytest.raises(ValueError, match="at least one batch"):
        seconds_per_step(model, loss_fn, [])


def test_checkpoint_records_how_each_part_was_trained(features, tmp_path):
    """torch version, device and thread count per fit call; a resumed run keeps the first
    part's record and adds its own, a loaded one adds nothing."""
    from cirlib.train import trained_with

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _run(features, tmp_path, "part.pt", stop_after_epoch=1)
        torch.set_num_threads(2)
        _run(features, tmp_path, "part.pt")
        _run(features, tmp_path, "part.pt")  # finished: loaded, not a new part
    finally:
        torch.set_num_threads(threads)
    record = trained_with(tmp_path / "part.pt")
    assert record == [
        {"from_epoch": 1, "torch": torch.__version__, "device": "cpu", "threads": 1},
        {"from_epoch": 2, "torch": torch.__version__, "device": "cpu", "threads": 2},
    ]
