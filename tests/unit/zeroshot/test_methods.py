"""The zero-shot methods through the recipe contract: Pic2Word's registered loss is the library's
mapping loss, both train on images alone (texts and targets never read), the encoder stays as it
was and out of the checkpoint, SEARLE distils the inversion of its own seed (and inverts nothing
when a finished checkpoint loads), and a run on other images refuses the checkpoint."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from cirlib.config import resolve
from cirlib.data.features import SplitFeatures
from cirlib.data.toy import generated_split
from cirlib.methods import get, pic2word, searle
from cirlib.models.pseudo_tokens import placeholder_id
from cirlib.train import TrainingRun
from cirlib.zeroshot.pic2word import pseudo_word_contrastive_loss
from cirlib.zeroshot.pseudo_word_model import frozen_encoder
from cirlib.zeroshot.queries import mapper_queries

D = 128  # the toy encoder's embedding width


def _features(split, seed=0, images_only=False):
    g = torch.Generator().manual_seed(seed)
    n, q = len(split.gallery), len(split.triplets)
    return SplitFeatures(
        # a zero-shot method must not read the texts or the targets: poison them
        images=torch.randn(n, D, generator=g),
        texts=torch.full((q, D), float("nan")) if images_only else torch.randn(q, D, generator=g),
        reference_index=torch.tensor([split.index_of(t.reference) for t in split.triplets]),
        target_index=torch.full((q,), -1)
        if images_only
        else torch.tensor([split.index_of(t.target) for t in split.triplets]),
    )


@pytest.fixture(scope="module")
def split():
    return generated_split("train", 8, 0)


@pytest.fixture
def cfg():
    return resolve("smoke", device="cpu")


def test_the_registered_pic2word_loss_is_the_mapping_loss(split):
    feats = _features(split)
    spec = get("pic2word")
    settings = spec.complete(feats, spec.settings(images=20))
    model = spec.build(feats, settings).eval()
    loss_fn = spec.loss(feats, settings, TrainingRun(epochs=1, batches_per_epoch=1))
    idx = torch.tensor([3, 0, 7, 11])
    encoder, tokenizer = frozen_encoder(settings.encoder, settings.pretrained)
    x = feats.images[pic2word.training_images(feats, settings)][idx]
    want = pseudo_word_contrastive_loss(
        encoder,
        x,
        model.mapper(x),
        tokenizer([settings.image_template])[0],
        placeholder_id(tokenizer, "*"),
        float(encoder.logit_scale.exp()),
    )
    torch.testing.assert_close(loss_fn(model, idx), want)
    # the run's examples are images, the first `images` of a fixed permutation
    assert spec.samples(feats, settings) == 20
    assert spec.samples(feats, spec.settings()) == len(split.gallery)
    rows = pic2word.training_images(feats, settings)
    assert len(set(rows.tolist())) == 20 and torch.equal(
        rows, pic2word.training_images(feats, dataclasses.replace(settings, dropout=0.3))
    )


@pytest.mark.parametrize("name", ["pic2word", "searle"])
def test_trains_on_images_alone_and_leaves_the_encoder(name, split, cfg, tmp_path):
    feats = _features(split, images_only=True)
    spec = get(name)
    encoder = frozen_encoder(*dataclasses.astuple(spec.settings())[:2])[0]
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    model = spec.train(feats, cfg, seed=0, split=split, checkpoint=tmp_path / "run.pt")
    history = torch.load(tmp_path / "run.pt", weights_only=False)["history"]
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in history)
    assert len(history) == spec.budget(cfg).epochs
    for k, v in encoder.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(not p.requires_grad for p in encoder.parameters())
    # the checkpoint holds the mapping network alone, not a copy of the encoder
    saved = torch.load(tmp_path / "run.pt", weights_only=False)["model"]
    assert saved and all(k.startswith("mapper.") for k in saved)
    # queries: the query template holding the pseudo-word, then the modification text
    queries = spec.embed_queries(model, _features(split), split)
    want = mapper_queries(
        model.mapper, encoder, model.tokenizer, _features(split), split, model.query_template
    )
    torch.testing.assert_close(queries, want)
    with pytest.raises(ValueError, match="pass the evaluated split"):
        spec.embed_queries(model, feats)


def test_searle_distils_the_inversion_of_its_seed(split, cfg, tmp_path, monkeypatch):
    feats = _features(split)
    spec = get("searle")
    settings = spec.complete(feats, spec.settings_for(cfg))
    model = spec.build(feats, settings).eval()
    calls = []
    real_invert = searle.invert

    def counting_invert(*args, **kwargs):
        calls.append(args[2])
        return real_invert(*args, **kwargs)

    monkeypatch.setattr(searle, "invert", counting_invert)
    run = TrainingRun(epochs=1, batches_per_epoch=1, seed=5)
    loss_fn = spec.loss(feats, settings, run)
    assert calls == []  # nothing inverted before the first step
    idx = torch.arange(6)
    v = real_invert(feats, settings, 5)
    x = feats.images[searle.training_images(feats, settings)][idx]
    from cirlib.losses.nt_xent import nt_xent_loss

    torch.testing.assert_close(loss_fn(model, idx), nt_xent_loss(v[idx], model(x), 0.25))
    loss_fn(model, idx)
    assert calls == [5]  # once per run, with the run's seed
    # a finished checkpoint loads without inverting again
    spec.train(feats, cfg, seed=1, split=split, checkpoint=tmp_path / "s.pt")
    assert calls == [5, 1]
    spec.train(feats, cfg, seed=1, split=split, checkpoint=tmp_path / "s.pt")
    assert calls == [5, 1]
    # SEARLE's optimiser: AdamW with the settings' weight decay
    opt = spec.optimizer(settings, spec.budget(cfg))(model)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.param_groups[0]["weight_decay"] == settings.weight_decay


@pytest.mark.parametrize("name", ["pic2word", "searle"])
def test_other_images_refuse_the_checkpoint(name, split, cfg, tmp_path):
    spec = get(name)
    spec.train(_features(split, seed=0), cfg, seed=0, split=split, checkpoint=tmp_path / "a.pt")
    with pytest.raises(ValueError, match="other settings"):
        spec.train(_features(split, seed=1), cfg, seed=0, split=split, checkpoint=tmp_path / "a.pt")


def test_features_of_another_width_are_refused(split):
    g = torch.Generator().manual_seed(0)
    feats = dataclasses.replace(
        _features(split), images=torch.randn(len(split.gallery), 8, generator=g)
    )
    for name in ("pic2word", "searle"):
        with pytest.raises(ValueError, match="width 8 but toy-vit-tiny"):
            get(name).build(feats, get(name).settings())


def test_profiles_set_the_encoder_templates_and_budget():
    paper = resolve("paper", device="cpu")
    p = get("pic2word").settings_for(paper)
    assert p.encoder == paper.encoder and p.image_template == "a photo of *"
    assert p.query_template == "a photo of * , {}"
    toy = resolve("toy", device="cpu")
    assert get("searle").settings_for(toy).oti_images == searle.BUDGET["toy"]["oti_images"]
    assert get("pic2word").budget(toy).epochs == pic2word.BUDGET["toy"]["epochs"]
    assert not get("pic2word").compared and not get("searle").compared


def test_the_trainer_draws_batches_over_images_and_uses_the_specs_optimiser(split, cfg, tmp_path):
    from cirlib.train import train_method

    feats = _features(split)
    spec = get("pic2word")
    seen = []

    def recording_loss(features, settings, run):
        inner = pic2word.loss(features, settings, run)

        def loss_fn(model, idx):
            seen.extend(idx.tolist())
            return inner(model, idx)

        return loss_fn

    recording = dataclasses.replace(spec, loss=recording_loss)
    train_method(recording, feats, resolve("smoke", batch_size=16, device="cpu"), seed=0, epochs=1)
    n_images = len(split.gallery)
    assert n_images % 16 == 0 and n_images > len(split.triplets)  # triplets would fall short
    assert sorted(seen) == list(range(n_images))  # one epoch: every image once
    # SEARLE trains with its own AdamW (weight decay 0.01), not the trainer's Adam
    small = resolve("smoke", epochs=1, batch_size=16, device="cpu")
    get("searle").fit(
        feats, small, seed=0, checkpoint=tmp_path / "s.pt", oti_images=16, oti_steps=2
    )
    groups = torch.load(tmp_path / "s.pt", weights_only=False)["optimizer"]["param_groups"]
    assert groups[0]["weight_decay"] == get("searle").settings().weight_decay


@pytest.mark.parametrize("name", ["pic2word", "searle"])
def test_training_lowers_the_loss(name, split, tmp_path):
    # Pic2Word: the mapping loss from near chance (log 16 for a batch of 16); SEARLE: the
    # distillation loss towards its own inverted pseudo-words
    feats = _features(split)
    small = resolve("smoke", epochs=8, batch_size=16, lr=3e-3, device="cpu")
    options = {"oti_images": 32, "oti_steps": 20} if name == "searle" else {}
    get(name).fit(feats, small, seed=0, checkpoint=tmp_path / "run.pt", **options)
    history = [h["loss"] for h in torch.load(tmp_path / "run.pt", weights_only=False)["history"]]
    assert len(history) == 8
    assert history[-1] < 0.5 * history[0], history
