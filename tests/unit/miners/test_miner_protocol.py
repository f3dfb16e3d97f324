"""The Miner protocol: DQE-CIR's recipe reads only ``due``, ``refresh``, ``sample`` and the state,
so a miner written from scratch plugs in, and a miner's state carries its negatives whole."""

import torch
from test_target_relative import _features, _Profile  # same folder (pytest puts it on the path)

from cirlib.data.toy import generated_split
from cirlib.methods.dqe import DQESettings, build_miner, train_dqe
from cirlib.miners import Miner


class HardestOfFixedCandidates:
    """A miner with none of TargetRelativeMiner's internals: every query's negatives are the
    ``width`` gallery rows it scores highest, excluding its target, rebuilt every epoch."""

    def __init__(self, target_index, width=3):
        self.target_index, self.width = target_index, width
        self.rows, self.log = None, []

    def due(self, epoch):
        return True if self.rows is None else epoch not in self.log

    def refresh(self, queries, gallery, epoch):
        scores = queries.float() @ gallery.float().T
        scores[torch.arange(len(scores)), self.target_index] = float("-inf")
        self.rows = scores.topk(self.width, dim=1).indices.cpu()
        self.log.append(epoch)

    def sample(self, idx, k, generator=None):
        pick = torch.randint(self.width, (len(idx), k), generator=generator)
        return self.rows[idx.long().cpu()].gather(1, pick)

    def state_dict(self):
        return {"rows": self.rows, "log": list(self.log)}

    def load_state_dict(self, state):
        self.rows, self.log = state["rows"], list(state["log"])


def test_both_miners_follow_the_protocol():
    split = generated_split("train", 8, 0)
    feats = _features(split)
    assert isinstance(build_miner(feats, split, DQESettings(), seed=0), Miner)
    assert isinstance(HardestOfFixedCandidates(feats.target_index), Miner)
    assert not isinstance(object(), Miner)


def test_a_miner_written_from_scratch_trains_dqe():
    split = generated_split("train", 12, 0)
    feats = _features(split)
    miner = HardestOfFixedCandidates(feats.target_index)
    settings = DQESettings(attribute_dim=2, candidates=None)
    res = train_dqe(feats, _Profile, seed=0, split=split, settings=settings, miner=miner)
    assert miner.log == list(range(_Profile.epochs))  # refreshed when it said it was due
    assert res.history[-1]["loss"] < res.history[0]["loss"]


def test_a_loaded_state_draws_the_same_negatives():
    split = generated_split("train", 12, 0)
    feats = _features(split)
    settings = DQESettings(candidates=None, refresh_every=2)
    mined = build_miner(feats, split, settings, seed=0)
    g = torch.Generator().manual_seed(0)
    mined.refresh(
        torch.randn(len(feats.texts), 6, generator=g),
        torch.randn(len(feats.images), 6, generator=g),
        0,
    )
    fresh = build_miner(feats, split, settings, seed=0)
    assert fresh.due(0) and not mined.due(0)
    fresh.load_state_dict(mined.state_dict())
    assert not fresh.due(0) and fresh.due(2) and not fresh.due(1)
    idx = torch.arange(len(feats.texts))
    a = mined.sample(idx, 4, torch.Generator().manual_seed(5))
    b = fresh.sample(idx, 4, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
