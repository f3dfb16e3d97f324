"""CLIP4Cir stage 1 on the toy encoder: one step, gradients, and gradient checkpointing."""

import copy

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cirlib.config import resolve
from cirlib.data.records import CIRSplit, Triplet
from cirlib.losses import batch_classification_loss
from cirlib.methods.clip_finetune import Stage1Model, set_grad_checkpointing, train_stage1
from cirlib.models.backbone import load_backbone

CAPTIONS = ["make the circle red", "add a small square", "remove the cube", "paint it blue"]


@pytest.fixture(scope="module")
def toy():
    return load_backbone("toy-vit-tiny", "shipped")


def _batch(seed=0, size=48, n=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.randn(n, 3, size, size, generator=g)


def _count_calls(module):
    """Count entries into ``module.forward`` (a pre-hook: checkpoint recomputation stops early,
    as soon as the saved tensors it needs exist, so a post-forward hook may never fire)."""
    calls = {"n": 0}

    def hook(*_):
        calls["n"] += 1

    module.register_forward_pre_hook(hook)
    return calls


def _step(clip, tokens, checkpointing, encoder="both"):
    model = Stage1Model(copy.deepcopy(clip), encoder=encoder, grad_checkpointing=checkpointing)
    model.train()
    ref, tgt = _batch()
    image_block = _count_calls(model.clip.visual.transformer.resblocks[0])
    text_block = _count_calls(model.clip.transformer.resblocks[0])
    q, t = model(ref, tokens, tgt)
    loss = batch_classification_loss(q, t, 100.0)
    loss.backward()
    grads = {n: p.grad for n, p in model.clip.named_parameters()}
    return model, loss.detach(), grads, (image_block["n"], text_block["n"])


def test_one_step_with_and_without_checkpointing(toy):
    clip, _, tokenizer = toy
    tokens = tokenizer(CAPTIONS)
    plain, loss, grads, calls = _step(clip, tokens, checkpointing=False)
    ckpt, loss_ckpt, grads_ckpt, calls_ckpt = _step(clip, tokens, checkpointing=True)
    assert torch.isfinite(loss) and loss > 0
    torch.testing.assert_close(loss_ckpt, loss, rtol=0, atol=1e-6)
    # both towers learn; the fixed logit scale does not
    assert grads["visual.conv1.weight"].abs().sum() > 0
    assert grads["token_embedding.weight"].abs().sum() > 0
    assert grads["logit_scale"] is None
    for name, g in grads.items():
        if g is not None:
            torch.testing.assert_close(grads_ckpt[name], g, rtol=1e-5, atol=1e-6)
    # checkpointing really recomputes: each block runs again during the backward pass
    assert calls == (1, 1) and calls_ckpt == (2, 2)
    # CLIP4Cir never puts CLIP in train mode
    assert plain.training and not plain.clip.training and not plain.clip.visual.training


def test_text_only_fine_tuning_freezes_the_image_tower(toy):
    clip, _, tokenizer = toy
    _, loss, grads, _ = _step(clip, tokenizer(CAPTIONS), checkpointing=True, encoder="text")
    assert torch.isfinite(loss)
    assert all(g is None for n, g in grads.items() if n.startswith("visual."))
    assert grads["transformer.resblocks.0.attn.in_proj_weight"].abs().sum() > 0
    with pytest.raises(ValueError, match="encoder must be"):
        Stage1Model(copy.deepcopy(clip), encoder="vision")


def test_resnet_stages_are_checkpointed_without_renaming_parameters():
    # A tiny open_clip CLIP with a ModifiedResNet image tower (the RN50x4 family), for which
    # open_clip's own set_grad_checkpointing does nothing.
    torch.manual_seed(0)
    clip = open_clip.model.CLIP(
        embed_dim=16,
        vision_cfg=open_clip.model.CLIPVisionCfg(layers=(1, 1, 1, 1), width=8, image_size=32),
        text_cfg=open_clip.model.CLIPTextCfg(
            context_length=8, vocab_size=50, width=16, heads=2, layers=1
        ),
    ).eval()
    names = list(clip.state_dict())
    images = torch.randn(3, 3, 32, 32)

    def run(enable):
        model = copy.deepcopy(clip)
        set_grad_checkpointing(model, enable)
        calls = _count_calls(model.visual.layer2[0])
        out = model.encode_image(images)
        out.square().sum().backward()
        return out.detach(), model.visual.conv1.weight.grad, calls["n"], model

    out, grad, calls, _ = run(False)
    out_ckpt, grad_ckpt, calls_ckpt, model = run(True)
    torch.testing.assert_close(out_ckpt, out, rtol=0, atol=1e-6)
    torch.testing.assert_close(grad_ckpt, grad, rtol=1e-5, atol=1e-6)
    assert (calls, calls_ckpt) == (1, 2)
    assert list(model.state_dict()) == names
    set_grad_checkpointing(model, False)
    assert "forward" not in vars(model.visual.layer2)


def test_train_stage1_takes_an_adamw_step_on_image_files(toy, tmp_path):
    clip, preprocess, tokenizer = toy
    rng = np.random.default_rng(0)
    names = [f"img{i}" for i in range(6)]
    paths = {}
    for n in names:
        paths[n] = tmp_path / f"{n}.png"
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(paths[n])
    triplets = [Triplet(i, names[i], (c,), c, target=names[i + 1]) for i, c in enumerate(CAPTIONS)]
    split = CIRSplit("tiny-train", triplets, names, paths)
    before = copy.deepcopy(clip.state_dict())
    cfg = resolve("smoke", device="cpu")
    result = train_stage1(
        split, copy.deepcopy(clip), preprocess, tokenizer, cfg, seed=0, epochs=1, batch_size=4,
        lr=1e-4, grad_checkpointing=True,
    )  # fmt: skip
    assert len(result.history) == 1 and np.isfinite(result.history[0]["loss"])
    after = result.model.clip.state_dict()
    assert not torch.equal(after["visual.conv1.weight"], before["visual.conv1.weight"])
    assert not torch.equal(after["token_embedding.weight"], before["token_embedding.weight"])
    assert torch.equal(after["logit_scale"], before["logit_scale"])
    # the fine-tuned encoder is a plain open_clip model again: unit features, same shapes
    feats = F.normalize(result.model.clip.encode_image(torch.randn(2, 3, 48, 48)), dim=-1)
    assert feats.shape == (2, 128)
