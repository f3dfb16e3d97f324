"""The controls of CaLa and DQE-CIR: each is its method with the method's own terms off, and
nothing else; CaLa's, whose retrieval path reads no tokens, is the plain Combiner exactly."""

import dataclasses

import pytest
import torch
from test_contract import _features  # same folder (pytest puts it on the path)

from cirlib.config import resolve
from cirlib.data.toy import generated_split
from cirlib.methods import cala, compared, dqe, get


@pytest.fixture(scope="module")
def data():
    split = generated_split("train", 12, 0)
    return split, _features(split)


CFG = dict(epochs=2, batch_size=16, device="cpu")


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_cala_control_trains_to_the_plain_combiners_weights(data):
    _, feats = data
    cfg = resolve("smoke", **CFG)
    control = get("cala_tokens").fit(feats, cfg, seed=3).model
    plain = get("combiner").fit(feats, cfg, seed=3).model
    assert _same(control.combiner, plain)
    # and CaLa itself moves away from it: its branch terms change the Combiner's weights
    full = get("cala").fit(feats, cfg, seed=3).model
    assert not _same(full.combiner, plain)
    # the branches are there (CaLa's parameters), with CaLa's initial weights, never trained
    torch.manual_seed(3)
    untrained = get("cala").build(feats, get("cala").settings())
    assert _same(control.compositor, untrained.compositor)
    assert not _same(full.compositor, untrained.compositor)
    assert sum(p.numel() for p in control.parameters()) == sum(p.numel() for p in full.parameters())


def test_cala_control_has_calas_sizes_under_each_profile():
    spec = get("cala_tokens")
    for profile in ("toy", "paper"):
        cfg = resolve(profile, device="cpu")
        mine = dataclasses.asdict(spec.settings_for(cfg))
        theirs = dataclasses.asdict(cala.SPEC.settings_for(cfg))
        assert mine == {k: theirs[k] for k in mine}
    assert spec.record(spec.settings())["method"] == "cala_tokens"
    assert not spec.compared and spec.needs_tokens and "cala_tokens" not in compared()


def test_dqe_control_is_dqe_without_its_four_mined_terms(data):
    split, feats = data
    cfg = resolve("smoke", **CFG)
    control = get("dqe_tokens").fit(feats, cfg, seed=4).model
    off = dict(pairwise_weight=0.0, kl_weight=0.0, ranking_weight=0.0, attribute_weight=0.0)
    plain = get("dqe").fit(feats, cfg, seed=4, split=split, **off).model
    assert _same(control, plain)
    full = get("dqe").fit(feats, cfg, seed=4, split=split).model
    assert not _same(control, full)
    # it reads the image tokens: its queries change when only the tokens change
    spec = get("dqe_tokens")
    other = dataclasses.replace(feats, image_tokens=(feats.image_tokens.float() + 1).half())
    assert not torch.allclose(spec.queries(control, feats), spec.queries(control, other))


def test_dqe_control_has_dqes_sizes_and_needs_no_split():
    spec = get("dqe_tokens")
    mine = dataclasses.asdict(spec.settings())
    theirs = dataclasses.asdict(dqe.DQESettings())
    assert mine == {k: theirs[k] for k in mine}
    assert not spec.needs_split and not spec.compared and spec.needs_tokens
    assert spec.record(spec.settings())["method"] == "dqe_tokens"
