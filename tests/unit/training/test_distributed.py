"""Two CPU processes on gloo must train exactly like one process on the whole batch.

One spawn of two ranks (the expensive part, a few seconds) writes what each rank saw; the tests
compare it against a single-process run computed here.
"""

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from cirlib.distributed import (
    gather_with_grad,
    global_batch,
    init_distributed,
    is_distributed,
    rank_slice,
)
from cirlib.losses import batch_classification_loss
from cirlib.models.combiner import Combiner
from cirlib.train import fit

WORLD, B, D, N = 2, 12, 8, 48
SCALE = 10.0
FIT = dict(epochs=3, batch_size=16, lr=1e-2, seed=3)


def _data():
    g = torch.Generator().manual_seed(0)
    q, t = torch.randn(B, D, generator=g, dtype=torch.float64), torch.randn(B, D, generator=g)
    # float64 throughout: the two runs sum gradients in different orders, and Adam's
    # normalised step would turn float32 rounding (1 ulp) into visible parameter differences.
    img = torch.randn(N, D, generator=g, dtype=torch.float64)
    txt = torch.randn(N, D, generator=g, dtype=torch.float64)
    noise = torch.randn(N, D, generator=g, dtype=torch.float64)
    return q, t.double(), (img, txt, img + txt + 0.1 * noise)


def _bbc(q, t):
    return batch_classification_loss(F.normalize(q, dim=-1), F.normalize(t, dim=-1), SCALE)


def _combiner_loss(features):
    img, txt, tgt = features
    tgt = F.normalize(tgt, dim=-1)
    return lambda model, idx: global_batch(
        batch_classification_loss, model(img[idx], txt[idx]), tgt[idx], scale=SCALE
    )


def _model():
    torch.manual_seed(0)
    # Dropout masks are drawn per process, so they cannot match one process's masks: off here.
    return Combiner(D, dropout=0.0).double()


def _worker(rank, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        q_all, t_all, features = _data()
        q = rank_slice(q_all, rank, WORLD).clone().requires_grad_()
        t = rank_slice(t_all, rank, WORLD).clone().requires_grad_()
        gathered = gather_with_grad(q)
        loss = _bbc(gathered, gather_with_grad(t))
        loss.backward()
        res = fit(
            _model(),
            _combiner_loss(features),
            N,
            checkpoint=f"{out_dir}/ddp.pt",
            eval_fn=lambda m: {"evaluated_on_rank": rank},
            distributed=True,
            **FIT,
        )
        state = {k: v.clone() for k, v in res.model.state_dict().items()}
        torch.save(
            {
                "gathered": gathered.detach(),
                "loss": loss.detach(),
                "q_grad": q.grad,
                "t_grad": t.grad,
                "state": state,
                "history": res.history,
            },
            f"{out_dir}/rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(run_on_ranks):
    out, loaded = run_on_ranks(_worker, "ddp", WORLD)
    return out, loaded


def test_gather_returns_global_batch_in_order(ranks):
    q_all, _, _ = _data()
    for res in ranks[1]:
        assert torch.equal(res["gathered"], q_all)


def test_gathered_loss_and_gradients_equal_one_process(ranks):
    q_all, t_all, _ = _data()
    q, t = q_all.clone().requires_grad_(), t_all.clone().requires_grad_()
    loss = _bbc(q, t)
    loss.backward()
    for r, res in enumerate(ranks[1]):
        torch.testing.assert_close(res["loss"], loss.detach(), rtol=0, atol=1e-6)
        # Each rank receives the sum over ranks of its rows' gradient (W x dL/dx_r); DDP's
        # average over the W ranks then gives exactly the single-process gradient.
        for name, full in (("q_grad", q.grad), ("t_grad", t.grad)):
            mine = rank_slice(full, r, WORLD)
            assert mine.abs().max() > 1e-3  # a real gradient, not a vacuous zero
            torch.testing.assert_close(res[name] / WORLD, mine, rtol=0, atol=1e-6)


def test_distributed_fit_equals_single_process_fit(ranks):
    out, results = ranks
    _, _, features = _data()
    single = fit(_model(), _combiner_loss(features), N, **FIT)
    init = _model().state_dict()
    on_disk = torch.load(out / "ddp.pt", weights_only=False)
    for res in results:
        assert [h["loss"] for h in res["history"]] == pytest.approx(
            [h["loss"] for h in single.history], abs=1e-6
        )
        # eval_fn ran on rank 0 only and its record reached every rank
        assert [h["evaluated_on_rank"] for h in res["history"]] == [0] * FIT["epochs"]
    for name, value in single.model.state_dict().items():
        assert not torch.allclose(value, init[name])  # training moved the weights
        for res in results:
            torch.testing.assert_close(res["state"][name], value, rtol=0, atol=1e-6)
        # rank 0 wrote the checkpoint, with plain (unwrapped) parameter names
        torch.testing.assert_close(on_disk["model"][name], value, rtol=0, atol=1e-6)
    assert on_disk["epoch"] == FIT["epochs"]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no temp file


def test_without_process_group_everything_is_single_process():
    assert not is_distributed()
    x = torch.randn(4, 3)
    assert gather_with_grad(x) is x
    _, _, features = _data()
    plain = fit(_model(), _combiner_loss(features), N, **FIT)
    flagged = fit(_model(), _combiner_loss(features), N, distributed=True, **FIT)
    for a, b in zip(plain.model.state_dict().values(), flagged.model.state_dict().values()):
        assert torch.equal(a, b)


def test_rank_slice_refuses_uneven_batches():
    assert torch.equal(rank_slice(torch.arange(6), 1, 3), torch.tensor([2, 3]))
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        rank_slice(torch.arange(7), 0, 2)


def test_init_distributed_is_a_no_op_outside_torchrun(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx = init_distributed()
    assert (ctx.rank, ctx.world_size, ctx.is_main) == (0, 1, True)
    assert not dist.is_initialized()
