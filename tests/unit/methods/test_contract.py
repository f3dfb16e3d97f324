"""The recipe contract: every registered method declares frozen settings, trains through the one
generic trainer, refuses unknown options, and its default path gives the numbers it gave before
the trainer was shared.

``BEFORE`` holds the final training loss of short runs (3 epochs, batch 16, seed 1, one thread)
measured with the per-method training functions that the generic trainer replaced (commit
da6f3b6), on the same synthetic features; on that machine the refactored runs gave identical
parameters. Another machine or thread count rounds differently, hence the tolerance.
"""

import dataclasses
import json

import pytest
import torch
from _random_features import random_features

from cirlib.config import resolve
from cirlib.data.toy import generated_split
from cirlib.methods import combiner, compared, dqe, get, registered
from cirlib.methods.spec import MethodSpec
from cirlib.train import train_method

BEFORE = {
    ("combiner", ()): 56.70571747,
    ("mgur", ()): 55.97708969,
    ("mgur", (("augmenter", None), ("blend", "constant"))): 32.28101845,
    ("mgur_rp", ()): 56.2270668,
    ("mgur_rp", (("rp_weight", 0.0),)): 55.97708969,
    ("cala", ()): 61.25526581,
    ("cala", (("branches", ("tbia",)), ("combination", "convex"))): 51.65721893,
    ("mapnet", ()): 28.86313019,
    ("mapnet", (("n_schemas", 4), ("rp_weight", 0.0))): 28.38408775,
    ("dqe", ()): 39.32460251,
    ("dqe", (("refresh_every", 1), ("zone", (0.0, 0.5)))): 33.31749496,
}


_features = random_features


def feature_width(spec, default=8) -> int:
    """The width of the synthetic features a method trains on in these tests: any width for a
    head sized from its features, the frozen encoder's own for a zero-shot method (its mapping
    network writes pseudo-words for that encoder, whose text features must meet the images)."""
    fields = {f.name for f in dataclasses.fields(spec.settings)}
    if "encoder" not in fields:
        return default
    from cirlib.zeroshot.pseudo_word_model import frozen_encoder

    settings = spec.settings()
    return int(frozen_encoder(settings.encoder, settings.pretrained)[0].visual.output_dim)


@pytest.fixture(scope="module")
def data():
    split = generated_split("train", 20, 0)
    return split, _features(split)


@pytest.mark.parametrize(("name", "options"), list(BEFORE), ids=lambda v: str(v))
def test_the_default_path_gives_the_numbers_it_gave_before(name, options, data):
    split, feats = data
    cfg = resolve("smoke", epochs=3, batch_size=16, device="cpu")
    result = get(name).fit(feats, cfg, seed=1, split=split, **dict(options))
    assert result.history[-1]["loss"] == pytest.approx(BEFORE[name, options], rel=1e-4)


def test_every_method_that_predates_the_contract_has_a_reference_run():
    assert {name for name, _ in BEFORE} >= set(compared()) | {"mgur_rp"}


@pytest.mark.parametrize("name", list(registered()))
def test_every_spec_keeps_the_contract(name, data):
    split, feats = data
    spec = get(name)
    assert isinstance(spec, MethodSpec) and spec.name == name
    settings = spec.settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(settings, dataclasses.fields(settings)[0].name, None)
    # what the checkpoint records can be written, and names the method
    record = spec.record(settings)
    assert record["method"] == name and json.loads(json.dumps(record, default=str))
    cfg = resolve("smoke", epochs=1, batch_size=16, device="cpu")
    with pytest.raises(ValueError, match=r"unknown .* option\(s\) \['no_such_option'\]; known"):
        spec.fit(feats, cfg, seed=0, split=split, no_such_option=1)


def test_the_chapters_trainers_are_the_generic_one(data):
    split, feats = data
    cfg = resolve("smoke", epochs=1, batch_size=16, device="cpu")
    a = combiner.train_combiner(feats, cfg, seed=2).model
    b = train_method(combiner.SPEC, feats, cfg, seed=2).model
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), k
    with pytest.raises(ValueError, match="split"):
        dqe.train_dqe(feats, cfg, seed=0)


def test_settings_are_checked_when_made():
    from cirlib.methods import cala, mgur

    with pytest.raises(ValueError, match="augmenter"):
        mgur.Settings(augmenter="gauss")
    with pytest.raises(ValueError, match="branch"):
        cala.Settings(branches=("tbia", "hinge"))


def test_a_head_trained_on_one_dataset_is_refused_for_another_in_the_same_folder(data, tmp_path):
    """Checkpoint names carry the profile and the encoder, not the dataset: without the dataset
    in the record, a CIRR head would be loaded silently for FashionIQ from the same data folder."""
    split, feats = data
    smoke = resolve("smoke", epochs=1, batch_size=16, device="cpu")
    cirr = dataclasses.replace(smoke, dataset="cirr")
    fashioniq = dataclasses.replace(smoke, dataset="fashioniq")
    ckpt = tmp_path / "combiner.pt"
    train_method(combiner.SPEC, feats, cirr, seed=0, checkpoint=ckpt)
    assert train_method(combiner.SPEC, feats, cirr, seed=0, checkpoint=ckpt).trained_epochs == 0
    with pytest.raises(ValueError, match="written with other settings"):
        train_method(combiner.SPEC, feats, fashioniq, seed=0, checkpoint=ckpt)
    # the toy world's record is the one it always was (its checkpoints keep loading)
    toy = tmp_path / "toy.pt"
    train_method(combiner.SPEC, feats, smoke, seed=0, checkpoint=toy)
    assert "dataset" not in torch.load(toy, weights_only=False)["settings"]
