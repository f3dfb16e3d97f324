"""Every registered method trains on two CPU processes through its spec, exactly as the chapters
and ``data_scripts/train_ddp.py`` call it: ``spec.train(..., distributed=True)``.

A method that joins the registry is tested here by being registered. Dropout is switched off
through each method's own settings (every field named ``*dropout``); where no dropout is left
in the model, the two-process run must give the one-process weights (the recipes gather the
global batch, and batch-level draws are made on rank 0); where some is left (MAPNet's schema
encoder), the two ranks must still hold the same weights, and training must have moved them.
"""

import dataclasses

import pytest
import torch
import torch.distributed as dist
from torch import nn

from cirlib.config import resolve
from cirlib.data.features import SplitFeatures
from cirlib.data.toy import generated_split
from cirlib.methods import registered

WORLD = 2


def _width(spec) -> int:
    """8 for a head sized from its features; a zero-shot method's frozen encoder's own width."""
    if "encoder" not in {f.name for f in dataclasses.fields(spec.settings)}:
        return 8
    from cirlib.zeroshot.pseudo_word_model import frozen_encoder

    settings = spec.settings()
    return int(frozen_encoder(settings.encoder, settings.pretrained)[0].visual.output_dim)


def _data(dim=8):
    split = generated_split("train", 10, 0)
    g = torch.Generator().manual_seed(0)
    n, q = len(split.gallery), len(split.triplets)
    lengths = torch.randint(2, 8, (q,), generator=g)
    feats = SplitFeatures(
        images=torch.randn(n, dim, generator=g),
        texts=torch.randn(q, dim, generator=g),
        reference_index=torch.tensor([split.index_of(t.reference) for t in split.triplets]),
        target_index=torch.tensor([split.index_of(t.target) for t in split.triplets]),
        image_tokens=torch.randn(n, 4, 6, generator=g).half(),
        text_tokens=torch.randn(q, 10, 5, generator=g).half(),
        text_mask=torch.arange(10)[None, :] < lengths[:, None],
    )
    return split, feats


def _cfg():
    return resolve("smoke", epochs=2, batch_size=16, lr=1e-2, device="cpu")


def _no_dropout(spec) -> dict:
    return {f.name: 0.0 for f in dataclasses.fields(spec.settings) if f.name.endswith("dropout")}


def _train(spec, distributed):
    split, feats = _data(_width(spec))
    model = spec.train(
        feats, _cfg(), seed=0, split=split, distributed=distributed, **_no_dropout(spec)
    )
    gallery = spec.gallery(model, feats) if spec.gallery is not None else feats.images
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "queries": spec.embed_queries(model, feats, split),
        "gallery": gallery,
    }


def _dropout_left(spec) -> bool:
    split, feats = _data(_width(spec))
    settings = dataclasses.replace(spec.settings_for(_cfg()), **_no_dropout(spec))
    model = spec.build(feats, settings)
    for m in model.modules():
        if isinstance(m, nn.MultiheadAttention) and m.dropout > 0:
            return True
        if "Dropout" in type(m).__name__ and getattr(m, "p", 0) > 0:
            return True
    return False


def _worker(rank, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        out = {name: _train(spec, distributed=True) for name, spec in registered().items()}
        torch.save(out, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(run_on_ranks):
    return run_on_ranks(_worker, "ddp-registry", WORLD)[1]


def test_the_registry_holds_mgur_rp():
    assert "mgur_rp" in registered()


def _initial_state(spec):
    split, feats = _data(_width(spec))
    settings = spec.settings_for(_cfg())
    if spec.complete is not None:
        settings = spec.complete(feats, settings)
    torch.manual_seed(0)
    return spec.build(feats, settings).state_dict()


@pytest.mark.parametrize("name", list(registered()))
def test_every_method_trains_on_two_processes_through_its_spec(name, ranks):
    spec = registered()[name]
    init = _initial_state(spec)
    first, second = ranks[0][name], ranks[1][name]
    assert first["state"].keys() == init.keys()
    for key in init:
        assert torch.equal(first["state"][key], second["state"][key]), f"ranks disagree: {key}"
    assert any(not torch.equal(first["state"][k], v) for k, v in init.items()), "nothing trained"
    if not _dropout_left(spec):
        # the embeddings, not every weight: a parameter the loss cannot see (an attention key's
        # bias, which softmax ignores) gets a gradient of rounding noise, which Adam turns into
        # steps of size lr whatever its sign, on one process and on two alike
        one = _train(spec, distributed=False)
        for part in ("queries", "gallery"):
            torch.testing.assert_close(first[part], one[part], rtol=0, atol=1e-4, msg=part)
