"""A damaged checkpoint is named with the call that removes it, and the advice after a NaN loss
is true: following it word for word trains again."""

import re
import shlex
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cirlib.losses import batch_classification_loss
from cirlib.models.combiner import Combiner
from cirlib.train import (
    DamagedCheckpointError,
    NonFiniteLossError,
    checkpoint_epoch,
    fit,
    trained_with,
)

D, N = 8, 96


@pytest.fixture
def features():
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(N, D, generator=g), torch.randn(N, D, generator=g)
    return img, txt, img + txt


def _loss(features, nan_after=None):
    img, txt, tgt = features
    calls = {"n": 0}

    def loss_fn(model, idx):
        calls["n"] += 1
        loss = batch_classification_loss(
            model(img[idx], txt[idx]), F.normalize(tgt[idx], dim=-1), scale=10.0
        )
        return loss * float("nan") if nan_after is not None and calls["n"] > nan_after else loss

    return loss_fn


def _fit(features, ckpt, nan_after=None, **kw):
    torch.manual_seed(0)
    args = dict(epochs=4, batch_size=32, lr=1e-3, seed=0, checkpoint=ckpt)
    args.update(kw)
    return fit(Combiner(D), _loss(features, nan_after), N, **args)


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    damaged = {
        "truncated": data[: len(data) // 2],
        "tail-cut": data[:-100],
        "empty": b"",
        "garbage": b"\x80x",
    }
    path.write_bytes(damaged[how])


@pytest.mark.parametrize("how", ["truncated", "tail-cut", "empty", "garbage"])
def test_a_damaged_checkpoint_is_named_with_its_removal(features, tmp_path, how):
    ckpt = tmp_path / "run.pt"
    _fit(features, ckpt, stop_after_epoch=2)
    _damage(ckpt, how)
    for call in (
        lambda: _fit(features, ckpt),
        lambda: checkpoint_epoch(ckpt),
        lambda: trained_with(ckpt),
    ):
        with pytest.raises(DamagedCheckpointError) as err:
            call()
        message = str(err.value)
        assert f"checkpoint {ckpt} is damaged" in message
        assert (
            f"rm {shlex.quote(str(ckpt))}" in message and f"Path({str(ckpt)!r}).unlink()" in message
        )
    assert ckpt.exists()  # a training result is never deleted behind the reader's back
    # the advice works: remove, run again, train from the first epoch
    exec(re.search(r"`(Path\(.*?\)\.unlink\(\))`", message).group(1), {"Path": Path})
    again = _fit(features, ckpt)
    assert again.trained_epochs == 4 and checkpoint_epoch(ckpt) == 4


def test_a_damaged_pretraining_checkpoint_is_named(tmp_path):
    from cirlib.models.backbone import load_backbone
    from cirlib.models.pretrain import pretrain_or_load

    ckpt = tmp_path / "clip.pt"
    ckpt.write_bytes(b"PK\x03\x04 half a zip")
    model, _, tokenizer = load_backbone("toy-vit-tiny", pretrained=None)
    with pytest.raises(DamagedCheckpointError, match=f"checkpoint {ckpt} is damaged"):
        pretrain_or_load(model, tokenizer, ckpt, steps=1)


def test_nan_in_the_first_epoch_says_no_checkpoint_was_written(features, tmp_path):
    ckpt = tmp_path / "first.pt"
    with pytest.raises(NonFiniteLossError) as err:
        _fit(features, ckpt, nan_after=1)
    message = str(err.value)
    assert not ckpt.exists()
    assert "is kept" not in message and "last good checkpoint" not in message
    assert f"No checkpoint was written ({ckpt} does not exist)" in message
    assert "lr=0.0001" in message
    # the advice works as written: the same path at the advised rate trains
    assert _fit(features, ckpt, lr=1e-4).trained_epochs == 4


def test_nan_without_a_checkpoint_path_says_so(features):
    with pytest.raises(NonFiniteLossError, match="keeps no checkpoint: run it again with a lower"):
        _fit(features, None, nan_after=4)


def test_nan_advice_to_lower_the_rate_says_what_to_delete_and_that_works(features, tmp_path):
    ckpt = tmp_path / "later.pt"
    with pytest.raises(NonFiniteLossError) as err:
        _fit(features, ckpt, nan_after=6)  # 3 batches per epoch: epochs 1-2 saved
    message = str(err.value)
    assert checkpoint_epoch(ckpt) == 2
    assert f"The last good checkpoint, {ckpt}, holds epoch 2 at lr=0.001" in message
    assert "amp=False" not in message  # no mixed precision: nothing to turn off
    # resuming at the lower rate without deleting is refused, as the message says ...
    with pytest.raises(ValueError, match="other settings"):
        _fit(features, ckpt, lr=1e-4)
    # ... and deleting it as advised, then running at the lower rate, trains from epoch 1
    exec(re.search(r"`(Path\(.*?\)\.unlink\(\))`", message).group(1), {"Path": Path})
    assert _fit(features, ckpt, lr=1e-4).trained_epochs == 4


def test_nan_under_mixed_precision_advice_to_resume_without_it_is_true(features, tmp_path):
    ckpt = tmp_path / "amp.pt"
    with pytest.raises(NonFiniteLossError, match=r"amp=False\), which resumes from epoch 2"):
        _fit(features, ckpt, nan_after=6, amp=True)
    resumed = _fit(features, ckpt, amp=False)
    assert resumed.trained_epochs == 2 and checkpoint_epoch(ckpt) == 4
