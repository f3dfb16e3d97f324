"""The token-branch control is MAPNet with both of its own terms off, and nothing else."""

import dataclasses

import pytest
import torch
from test_contract import _features  # same folder (pytest puts it on the path)

from cirlib.config import resolve
from cirlib.data.toy import generated_split
from cirlib.methods import get, mapnet


@pytest.fixture(scope="module")
def data():
    split = generated_split("train", 12, 0)
    return split, _features(split)


def test_the_control_is_mapnet_without_msi_and_rp(data):
    split, feats = data
    cfg = resolve("smoke", epochs=2, batch_size=16, device="cpu")
    control = get("combiner_tokens").fit(feats, cfg, seed=4).model
    plain = get("mapnet").fit(feats, cfg, seed=4, msi_weight=0.0, rp_weight=0.0).model
    for (k, a), b in zip(control.state_dict().items(), plain.state_dict().values()):
        assert torch.equal(a, b), k
    # and it is not MAPNet itself: the two terms change the weights
    full = get("mapnet").fit(feats, cfg, seed=4).model
    assert not torch.equal(full.combiner.combine.weight, control.combiner.combine.weight)


def test_the_control_has_mapnets_sizes_and_its_own_checkpoint_record():
    spec = get("combiner_tokens")
    sizes = dataclasses.asdict(spec.settings())
    assert {k: sizes[k] for k in mapnet.MODEL_OPTIONS} == {
        k: mapnet.TOY_SETTINGS[k] for k in mapnet.MODEL_OPTIONS
    }
    assert spec.record(spec.settings())["method"] == "combiner_tokens"
    assert not spec.compared and spec.needs_tokens
