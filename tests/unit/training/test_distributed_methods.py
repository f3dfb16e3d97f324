"""The method recipes on two CPU processes (gloo) must train like one process on the whole batch.

For MGUR, MGUR + RP, CaLa, MAPNet and DQE-CIR, one spawn of two ranks runs each recipe's own
``loss_fn`` on a DDP-wrapped model, each rank on its half of a global batch, and writes the loss
and the parameter gradients after DDP's average; the tests compare them with one process computing the
same ``loss_fn`` on the whole batch. Dropout is off (masks are drawn per process). Random draws
that belong to the batch (MGUR's augmenter noise, DQE-CIR's negatives) are made on rank 0, whose
random stream is the one-process stream, so they are compared exactly too.
"""

import pytest
import torch
import torch.distributed as dist
from torch import nn

from cirlib.config import resolve
from cirlib.data.features import SplitFeatures
from cirlib.distributed import broadcast, call_in_forward, gather, rank_slice, wrap_ddp
from cirlib.methods.cala import build_cala, cala_loss, train_cala
from cirlib.methods.dqe import DQESettings, build_model, dqe_loss
from cirlib.methods.mapnet import build_mapnet, mapnet_loss
from cirlib.methods.mgur import mgur_loss
from cirlib.methods.mgur_rp import mgur_rp_loss
from cirlib.miners import TargetRelativeMiner
from cirlib.models.combiner import Combiner
from cirlib.train import fit

WORLD, N_IMG, Q, D, T, WI, L, WT = 2, 24, 32, 8, 4, 6, 7, 5
BATCH = torch.arange(Q).flip(0)[:16]  # one global batch of 16 (8 per rank), not in row order
SEED, STEP_SEED = 0, 7
FIT = dict(epochs=2, batch_size=16, lr=1e-2, seed=3)
MAPNET_SIZES = dict(n_schemas=3, schema_width=8, schema_dim=4, schema_layers=1, schema_heads=2)
DQE = DQESettings(attribute_dim=3, attribute_hidden_dim=8, n_negatives=2, dropout=0.0)


def _features(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    ref = torch.randint(0, N_IMG, (Q,), generator=g)
    tgt = (ref + 1 + torch.randint(0, N_IMG - 1, (Q,), generator=g)) % N_IMG
    images = torch.randn(N_IMG, D, generator=g, dtype=torch.float64)
    lengths = torch.randint(2, L, (Q,), generator=g)
    return SplitFeatures(
        images=images.to(dtype),
        texts=(images[tgt] - images[ref] + 0.3 * torch.randn(Q, D, generator=g)).to(dtype),
        reference_index=ref,
        target_index=tgt,
        image_tokens=torch.randn(N_IMG, T, WI, generator=g).half(),
        text_tokens=torch.randn(Q, L, WT, generator=g).half(),
        text_mask=torch.arange(L)[None, :] < lengths[:, None],
    )


def _no_dropout(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
        elif isinstance(m, nn.MultiheadAttention):
            m.dropout = 0.0
    return model


def _miner(features):
    # candidates=None: every gallery row is scored; exclude each query's reference
    return TargetRelativeMiner(
        target_index=features.target_index,
        exclude=[[int(r)] for r in features.reference_index],
        lower=0.0,
        upper=0.5,
        refresh_every=1,
        pool_size=6,
        seed=1,
    )


def _gates():
    return (torch.arange(2 * Q).view(Q, 2) % 3 == 0).float()  # some rows with no open gate


# name -> (model, loss_fn, dtype). MGUR runs in float64 (its recipe keeps the features' dtype);
# the token recipes cast tokens to float32 themselves, so they run in float32.
def _case(name):
    if name.startswith("mgur"):
        f = _features(torch.float64)
        noise = 0.0 if name == "mgur-no-noise" else 1.0
        model = Combiner(D, dropout=0.0).double()
        # start_epoch 2 of 4: blend weight exp(-1/2), so both the coarse and the fine term count
        schedule = dict(epochs=4, batches_per_epoch=1, start_epoch=2)
        if name == "mgur-rp":  # sigma 1.2 on these random targets: some pairs pulled, some pushed
            return model, mgur_rp_loss(f, **schedule, sigma=1.2)
        return model, mgur_loss(f, **schedule, noise_scale=noise)
    f = _features()
    if name.startswith("cala"):
        combination = name.split("-")[1]
        model = build_cala(f, branch_dim=8, compositor_layers=2, combiner_dropout=0.0)
        return _no_dropout(model), cala_loss(f, combination=combination)
    if name == "mapnet":
        return _no_dropout(build_mapnet(f, dropout=0.0, **MAPNET_SIZES)), mapnet_loss(f)
    if name == "dqe":
        model = _no_dropout(build_model(f, DQE))
        return model, dqe_loss(f, _miner(f), DQE, gates=_gates(), batches_per_epoch=1)
    raise ValueError(name)


CASES = ["mgur", "mgur-no-noise", "mgur-rp", "cala-additive", "cala-convex", "mapnet", "dqe"]
FIT_CASES = ["mgur", "dqe"]  # whole runs: the epoch clock, the miner's refreshes, Adam


def _step(name, idx, wrap):
    """Loss and parameter gradients of one step of ``name``'s recipe on the rows ``idx``."""
    torch.manual_seed(SEED)
    model, loss_fn = _case(name)
    model.train()
    train_model = wrap_ddp(model, torch.device("cpu")) if wrap else model
    torch.manual_seed(STEP_SEED)
    loss = loss_fn(train_model, idx)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    # call_in_forward left the module's own forward in place
    return {"loss": loss.detach(), "grads": grads, "clean": "forward" not in vars(model)}


def _fit(name, distributed):
    torch.manual_seed(SEED)
    model, loss_fn = _case(name)
    if name == "dqe":  # refreshed every epoch: rebuild the closure with the fit's batch count
        f = _features()
        loss_fn = dqe_loss(f, _miner(f), DQE, gates=_gates(), batches_per_epoch=Q // 16)
    result = fit(model, loss_fn, Q, distributed=distributed, **FIT)
    return {"history": result.history, "state": dict(result.model.state_dict())}


def _worker(rank, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        out = {name: _step(name, rank_slice(BATCH, rank, WORLD), wrap=True) for name in CASES}
        out["fit"] = {name: _fit(name, distributed=True) for name in FIT_CASES}
        torch.save(out, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(run_on_ranks):
    out, loaded = run_on_ranks(_worker, "ddp-methods", WORLD)
    return loaded


@pytest.fixture(scope="module")
def single():
    return {name: _step(name, BATCH, wrap=False) for name in CASES}


@pytest.mark.parametrize("name", CASES)
def test_distributed_loss_and_gradients_equal_one_process(name, ranks, single):
    want = single[name]
    atol = 1e-6 if name.startswith("mgur") else 1e-5  # float64 / float32 recipes
    assert len(want["grads"]) > 0
    for res in ranks:
        torch.testing.assert_close(res[name]["loss"], want["loss"], rtol=0, atol=1e-6)
        # DDP averaged each rank's gradient (W x its rows' share of dL/dtheta, via the gathers'
        # backward) over the ranks: the one-process gradient of the whole batch
        assert res[name]["clean"]
        assert res[name]["grads"].keys() == want["grads"].keys()
        for param, grad in want["grads"].items():
            torch.testing.assert_close(res[name]["grads"][param], grad, rtol=1e-4, atol=atol)
    # a real gradient in every module, not a vacuous zero
    assert max(g.abs().max() for g in want["grads"].values()) > 1e-3


def test_every_parameter_gets_a_gradient(single):
    """DDP (find_unused_parameters=False) needs every parameter in the loss of every step."""
    for name in CASES:
        torch.manual_seed(SEED)
        model, _ = _case(name)
        assert single[name]["grads"].keys() == {n for n, _ in model.named_parameters()}, name


def test_a_rank_alone_would_see_another_loss(single):
    """The gathers matter: the loss of one rank's rows alone is not the whole batch's."""
    for name in CASES:
        alone = _step(name, rank_slice(BATCH, 0, WORLD), wrap=False)["loss"]
        assert abs(float(alone) - float(single[name]["loss"])) > 1e-3, name


@pytest.mark.parametrize("name", FIT_CASES)
def test_distributed_fit_equals_one_process_fit(name, ranks):
    want = _fit(name, distributed=False)
    torch.manual_seed(SEED)
    init = _case(name)[0].state_dict()
    for res in ranks:
        got = res["fit"][name]
        assert [h["loss"] for h in got["history"]] == pytest.approx(
            [h["loss"] for h in want["history"]], abs=1e-5
        )
        for param, value in want["state"].items():
            assert not torch.equal(value, init[param]), f"{param} did not train"
            torch.testing.assert_close(got["state"][param], value, rtol=0, atol=1e-5)


def test_unused_branches_are_frozen_for_ddp_only(tmp_path):
    f = _features()
    cfg = resolve("smoke", epochs=1, batch_size=16, device="cpu")
    options = dict(branches=("tbia",), branch_dim=8, compositor_layers=2)
    one = train_cala(f, cfg, seed=0, **options).model
    assert all(p.requires_grad for p in one.parameters())
    ddp = train_cala(f, cfg, seed=0, distributed=True, **options).model
    frozen = {n for n, p in ddp.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(("compositor.", "text_head.")) for n in frozen)
    # without a process group distributed=True trains exactly like one process
    for (n, a), b in zip(one.state_dict().items(), ddp.state_dict().values()):
        assert torch.equal(a, b), n


def test_without_process_group_the_helpers_are_one_process():
    x = torch.randn(3, 2)
    assert gather(x) is x and broadcast(x) is x
    model = nn.Linear(2, 2)
    assert call_in_forward(model, lambda m, a: (m, a), 5) == (model, 5)
