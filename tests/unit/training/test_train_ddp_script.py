"""data_scripts/train_ddp.py: which profile, checkpoint and options each method's run uses, and
the errors for input it cannot run (the training itself is the recipes', tested with two ranks
in test_distributed_methods.py)."""

import pytest
from _repo_modules import import_script

from cirlib.config import resolve
from cirlib.methods import registered
from cirlib.methods.mapnet import PAPER_SETTINGS
from cirlib.registry import checkpoint_path

train_ddp = import_script("train_ddp")


@pytest.mark.parametrize("name", list(registered()))
def test_every_method_writes_its_chapters_checkpoint(name):
    cfg = resolve("smoke", seed=1, device="cpu")
    train_cfg, ckpt, options = train_ddp.run_plan(name, cfg, world_size=2)
    # the method's own budget under the profile: the profile's, except where the spec sets one
    # (the zero-shot methods train on images with their chapter's epochs and batch)
    assert train_cfg == registered()[name].budget(cfg) and options == {}
    if registered()[name].compared:  # the comparison's methods share the profile's budget
        assert train_cfg == cfg
    assert ckpt == checkpoint_path(cfg, name, 1)


def test_mapnet_paper_run_uses_the_readme_budget_and_checks_its_batch():
    cfg = resolve("paper", device="cpu")
    train_cfg, _, _ = train_ddp.run_plan("mapnet", cfg, world_size=4)
    assert train_cfg.batch_size == PAPER_SETTINGS["batch_size"]["cirr"] != cfg.batch_size
    assert train_cfg.epochs == PAPER_SETTINGS["epochs"]
    with pytest.raises(SystemExit, match=r"global batch of 32 .* 3 processes.*--nproc_per_node"):
        train_ddp.run_plan("mapnet", cfg, world_size=3)
    with pytest.raises(SystemExit, match="global batch of 4096"):
        train_ddp.run_plan("combiner", cfg, world_size=3)


def test_an_epochs_override_never_replaces_the_chapters_checkpoint():
    cfg = resolve("smoke", device="cpu")
    train_cfg, ckpt, options = train_ddp.run_plan("mgur", cfg, world_size=2, epochs=1)
    assert train_cfg.epochs == 1 and options == {"epochs": 1}
    assert ckpt != checkpoint_path(cfg, "mgur", 0)
    assert ckpt.name.startswith("mgur-ddp-e1-smoke-")
    # MAPNet's paper budget sets its own epochs: the override goes to the trainer directly
    _, _, options = train_ddp.run_plan("mapnet", resolve("paper", device="cpu"), 2, epochs=3)
    assert options == {"epochs": 3}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--method", "clip"], "invalid choice: 'clip'"),
        (["--profile", "huge"], "invalid choice: 'huge'"),
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--threads", "0"], "--threads must be at least 1"),
    ],
)
def test_bad_arguments_say_what_is_wrong(argv, message, capsys):
    with pytest.raises(SystemExit):
        train_ddp._parse(argv)
    assert message in capsys.readouterr().err


def test_every_method_is_accepted():
    for name in registered():
        assert train_ddp._parse(["--method", name]).method == name
