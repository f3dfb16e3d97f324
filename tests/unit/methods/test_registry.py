"""The method registry: every registered method trains and embeds through it, unknown names are
refused, its checkpoint names are the chapters' own, and its default options reproduce the
chapters' settings fingerprints (so the comparison loads the chapters' checkpoints instead of
retraining). Tests loop over the registry: a new method is tested by being registered."""

import re
from pathlib import Path

import nbformat
import pytest
import torch
from _random_features import random_features
from test_contract import feature_width  # same folder (pytest puts it on the path)

from cirlib.config import resolve
from cirlib.data.features import encoder_id
from cirlib.data.toy import generated_split
from cirlib.methods import compared, registered
from cirlib.methods.cala import train_cala
from cirlib.methods.combiner import train_combiner
from cirlib.methods.dqe import DQESettings, train_dqe
from cirlib.methods.mapnet import TOY_SETTINGS, train_mapnet
from cirlib.methods.mgur import train_mgur
from cirlib.registry import METHODS, checkpoint_path, get_method, profile_options

REPO = Path(__file__).resolve().parents[3]
# the chapters' own calls below are per chapter, hence per name
CHAPTER_METHODS = ["combiner", "mgur", "cala", "mapnet", "dqe"]


def _toy_split(n_groups=10, seed=0):
    return generated_split("train", n_groups, seed)


_features = random_features


@pytest.fixture(scope="module")
def data():
    split = _toy_split()
    return split, _features(split)


@pytest.fixture
def cfg():
    return resolve("smoke", epochs=1, batch_size=16, device="cpu")


def test_every_registered_method_names_its_chapter():
    for name, spec in registered().items():
        assert spec.name == name and (REPO / f"{spec.chapter}.ipynb").exists()
    # METHODS is the comparison's main table, in chapter order; the rest are registered too
    assert METHODS == compared() and list(METHODS) == CHAPTER_METHODS
    assert get_method("mgur_rp").title.startswith("MGUR + RP")
    assert [METHODS[n].needs_tokens for n in CHAPTER_METHODS] == [False, False, True, True, True]


@pytest.mark.parametrize("name", list(registered()))
def test_every_method_trains_one_epoch_and_embeds_unit_rows(name, data, cfg, tmp_path):
    split, feats = data
    spec = get_method(name)
    if feature_width(spec) != feats.images.shape[1]:
        feats = _features(split, dim=feature_width(spec))
    ckpt = tmp_path / f"{name}.pt"
    model = spec.train(feats, cfg, seed=0, split=split, checkpoint=ckpt)
    assert isinstance(model, torch.nn.Module) and ckpt.exists()
    # the run's length is the method's budget under the profile (the profile's own by default)
    assert torch.load(ckpt, weights_only=False)["epoch"] == spec.budget(cfg).epochs
    q = spec.embed_queries(model, feats, split)
    g = spec.gallery(model, feats) if spec.gallery is not None else feats.images
    assert q.shape[0] == len(split.triplets) and g.shape[0] == len(split.gallery)
    assert q.shape[1] == g.shape[1]
    assert torch.isfinite(q).all()
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(len(q)))
    if spec.gallery is not None:
        torch.testing.assert_close(g.norm(dim=-1), torch.ones(len(g)))
    # the chapters' own call with the same checkpoint loads it: same settings fingerprint
    again = spec.train(feats, cfg, seed=0, split=split, checkpoint=ckpt)
    torch.testing.assert_close(spec.embed_queries(again, feats, split), q)


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(ValueError, match="nope") as err:
        get_method("nope")
    for name in registered():
        assert name in str(err.value)


def test_options_override_defaults_and_change_the_fingerprint(data, cfg, tmp_path):
    split, feats = data
    ckpt = tmp_path / "mgur.pt"
    get_method("mgur").train(feats, cfg, seed=0, split=split, checkpoint=ckpt)
    with pytest.raises(ValueError, match="other settings"):
        get_method("mgur").train(feats, cfg, seed=0, split=split, checkpoint=ckpt, augmenter=None)


def test_dqe_refuses_to_train_without_its_split(data, cfg):
    with pytest.raises(ValueError, match="split"):
        get_method("dqe").train(data[1], cfg, seed=0, split=None)


# How each chapter calls its recipe for the main run (notebooks/0[3-7]_*.ipynb, toy profile).
def _chapter_call(name, feats, split, cfg, ckpt):
    if name == "combiner":
        return train_combiner(feats, cfg, seed=0, checkpoint=ckpt)
    if name == "mgur":
        return train_mgur(feats, cfg, seed=0, checkpoint=ckpt)
    if name == "cala":
        return train_cala(feats, cfg, seed=0, checkpoint=ckpt, branch_dim=64, compositor_layers=2)
    if name == "mapnet":
        return train_mapnet(feats, cfg, seed=0, checkpoint=ckpt, **dict(TOY_SETTINGS))
    return train_dqe(feats, cfg, seed=0, split=split, settings=DQESettings(), checkpoint=ckpt)


@pytest.mark.parametrize("name", CHAPTER_METHODS)
def test_registry_defaults_reproduce_the_chapters_fingerprint(name, data, cfg, tmp_path):
    """A checkpoint written by the chapter's call is loaded by the registry (no retraining:
    the file is untouched) and vice versa ``fit`` would refuse mismatched settings."""
    split, feats = data
    ckpt = tmp_path / f"{name}.pt"
    chapter = _chapter_call(name, feats, split, cfg, ckpt).model
    before = ckpt.stat().st_mtime_ns
    model = get_method(name).train(feats, cfg, seed=0, split=split, checkpoint=ckpt)
    assert ckpt.stat().st_mtime_ns == before
    spec = get_method(name)
    torch.testing.assert_close(spec.queries(model, feats), spec.queries(chapter, feats))


def test_paper_profile_options_follow_the_chapters():
    paper = resolve("paper", device="cpu")
    assert profile_options("cala", paper)["branch_dim"] is None  # the model's own width
    assert profile_options("cala", resolve("toy"))["branch_dim"] == 64
    assert profile_options("mapnet", paper)["n_schemas"] == 32
    assert profile_options("mapnet", resolve("toy")) == {**TOY_SETTINGS, "dropout": 0.5}


def test_rehearsal_keeps_mapnets_sizes_small_and_its_readme_rate():
    """A CPU rehearsal of the paper profile (chapter 6 does the same): toy schema sizes and the
    rehearsal's batch and epochs, only the README's learning rate."""
    from cirlib.methods.mapnet import PAPER_SETTINGS
    from cirlib.registry import training_profile

    rehearsal = resolve("paper", device="cpu", rehearsal=True)
    assert profile_options("mapnet", rehearsal) == profile_options("mapnet", resolve("toy"))
    trained = training_profile("mapnet", rehearsal)
    assert trained.lr == PAPER_SETTINGS["lr"]["cirr"]
    assert (trained.epochs, trained.batch_size) == (rehearsal.epochs, rehearsal.batch_size)
    paper = training_profile("mapnet", resolve("paper", device="cpu"))
    assert paper.epochs == PAPER_SETTINGS["epochs"]


# --- checkpoint names: evaluated from the chapters' own source code ----------------------


def _chapter_checkpoint_names(stem: str, method: str, cfg, seed: int) -> set[str]:
    """Evaluate every ``f"...-s{seed}.pt"`` checkpoint template of a chapter with that chapter's
    ``tag`` (a module-level ``tag = ...`` line, else DQE's "main" run tag) and ``name=method``;
    templates that need other variables (ablation keys) are skipped."""
    nb = nbformat.read(REPO / "notebooks" / f"{stem}.ipynb", as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    templates = re.findall(r'f"([^"\n]*-s\{seed\}\.pt)"', source)
    assert templates, f"no checkpoint name template found in {stem}"
    scope = {"cfg": cfg, "enc": encoder_id(cfg.encoder, cfg.encoder_pretrained), "seed": seed}
    tag_lines = re.findall(r"^tag = (.+)$", source, flags=re.M)
    scope["tag"] = eval(tag_lines[0], dict(scope)) if tag_lines else "main"
    names = set()
    for template in templates:
        try:
            names.add(eval(f'f"{template}"', {**scope, "name": method}))
        except NameError:
            continue
    return names


@pytest.mark.parametrize("profile", ["smoke", "toy", "paper"])
@pytest.mark.parametrize("name", CHAPTER_METHODS)
def test_checkpoint_names_are_the_chapters(name, profile):
    cfg = resolve(profile, device="cpu")
    stem = Path(METHODS[name].chapter).name
    expected = _chapter_checkpoint_names(stem, name, cfg, seed=2)
    path = checkpoint_path(cfg, name, 2)
    assert path.name in expected, (path.name, expected)
    assert path.parent.name == "checkpoints"


def test_tagged_runs_get_their_tag():
    cfg = resolve("toy", device="cpu")
    assert checkpoint_path(cfg, "mgur", 1, tag="blend-off").name.startswith("mgur-blend-off-toy-")
    assert checkpoint_path(cfg, "dqe", 1).name.startswith("dqe-main-toy-")
    assert checkpoint_path(cfg, "combiner", 0) != checkpoint_path(cfg, "combiner", 1)


def test_ablation_budget_is_a_quarter_of_the_epochs_and_at_least_one():
    from cirlib.registry import ablation_cfg, ablation_tag

    toy = resolve("toy")
    assert ablation_cfg(toy).epochs == toy.epochs // 4 and ablation_tag(toy) == "short-e10"
    one = resolve("smoke", epochs=3)
    assert ablation_cfg(one).epochs == 1 and ablation_tag(one) == "short-e1"
    # nothing else of the profile changes
    assert ablation_cfg(toy).batch_size == toy.batch_size and ablation_cfg(toy).lr == toy.lr


def test_short_combiner_is_one_checkpoint_trained_once(data):
    from cirlib.registry import ablation_cfg, short_combiner

    split, feats = data
    cfg = resolve("smoke", epochs=4, batch_size=16, device="cpu")
    first = short_combiner(feats, cfg, seed=0)
    assert first.trained_epochs == ablation_cfg(cfg).epochs == 1
    assert first.checkpoint == checkpoint_path(ablation_cfg(cfg), "combiner", 0, tag="short-e1")
    again = short_combiner(feats, cfg, seed=0)  # another chapter: loaded, not retrained
    assert again.trained_epochs == 0
    for a, b in zip(first.model.parameters(), again.model.parameters()):
        assert torch.equal(a, b)
