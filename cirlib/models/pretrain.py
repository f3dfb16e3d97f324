"""Pretraining the toy CLIP on (rendered scene, scene caption) pairs.

The real CLIP saw 400M web pairs; the toy world's encoder sees freshly generated scenes with
their full captions ("large red circle at top-left , small blue rectangle at middle-center").
The objects' order in a caption is shuffled at every step, so the text tower cannot rely on it.
Introduced in chapter "A tiny CLIP for a tiny world"; the shipped checkpoint comes from
``data_scripts/pretrain_toy_clip.py``, which calls :func:`pretrain_toy_clip`.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch

from cirlib.losses.clip_contrastive import clip_contrastive_loss
from cirlib.models.backbone import TOY_MEAN, TOY_STD
from cirlib.progress import progress
from cirlib.toyworld.render import render_array
from cirlib.toyworld.scene import random_scene, scene_caption

HELD_OUT_SEED_OFFSET = 10_000  # held-out scenes come from a different random stream


def scene_corpus(n: int, seed: int, min_objects: int = 1, max_objects: int = 5):
    rng = random.Random(seed)
    return [random_scene(rng, min_objects, max_objects) for _ in range(n)]


def render_uint8(scenes, size: int) -> torch.Tensor:
    """``[N, 3, size, size]`` uint8 images (compact: 30k scenes at 48 px is about 200 MB)."""
    arr = np.stack([render_array(s, size) for s in scenes])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def to_model_input(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, 3, H, W]`` → the normalised float input of the toy preprocessing."""
    x = images_uint8.float() / 255.0
    mean = torch.tensor(TOY_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(TOY_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def pretrain_toy_clip(
    model,
    tokenizer,
    *,
    steps: int,
    batch_size: int = 256,
    n_scenes: int = 30000,
    seed: int = 0,
    lr: float = 1e-3,
    weight_decay: float = 0.1,
    warmup: float = 0.05,
    device: str = "cpu",
    image_size: int = 48,
    stop_after: int | None = None,
) -> list[dict]:
    """Train ``model`` in place with the symmetric contrastive loss; returns the loss history.

    AdamW with linear warm-up then cosine decay to zero over ``steps``. ``stop_after`` ends the
    run after that many steps of the same schedule (the first part of a ``steps``-long run, as
    the chapter "A tiny CLIP for a tiny world" shows by default).
    """
    if stop_after is not None and not 0 < stop_after <= steps:
        raise ValueError(f"stop_after must be in [1, steps={steps}], got {stop_after}")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    scenes = scene_corpus(n_scenes, seed)
    images = render_uint8(scenes, image_size)
    model.to(device).train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [
        p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)
    ]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0}],
        lr=lr,
    )
    n_warm = max(1, int(warmup * steps))

    def lr_at(step: int) -> float:
        if step < n_warm:
            return (step + 1) / n_warm
        return 0.5 * (1 + math.cos(math.pi * (step - n_warm) / max(1, steps - n_warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    history = []
    for step in progress(range(stop_after or steps), desc="pretrain toy CLIP"):
        idx = rng.sample(range(len(scenes)), batch_size)
        x = to_model_input(images[idx]).to(device)
        texts = tokenizer([scene_caption(scenes[i], rng) for i in idx]).to(device)
        loss = clip_contrastive_loss(
            model.encode_image(x), model.encode_text(texts), model.logit_scale.exp()
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        history.append(
            {"step": step, "loss": loss.detach().item(), "lr": float(sched.get_last_lr()[0])}
        )
    model.eval()
    return history


@torch.no_grad()
def image_to_caption_recall(
    model, tokenizer, n: int = 1000, seed: int = 0, image_size: int = 48, ks=(1, 5)
) -> dict[str, float]:
    """Held-out image→caption Recall@K over ``n`` fresh scenes (fractions in [0, 1]).

    The scenes come from a random stream the pretraining never sees; the captions list objects
    in cell order.
    """
    scenes = scene_corpus(n, seed + HELD_OUT_SEED_OFFSET)
    x = to_model_input(render_uint8(scenes, image_size))
    img = torch.cat([model.encode_image(b, normalize=True) for b in x.split(256)])
    txt = torch.cat(
        [
            model.encode_text(tokenizer(chunk), normalize=True)
            for chunk in np.array_split(np.array([scene_caption(s) for s in scenes]), 4)
            if len(chunk)
        ]
    )
    sims = img @ txt.T
    correct = sims.diag()[:, None]
    rank = (sims > correct).sum(1)  # ties count in the query's favour only on exact equality
    return {f"i2t_R@{k}": float((rank < k).float().mean()) for k in ks}


def pretrain_or_load(model, tokenizer, checkpoint, **kwargs) -> list[dict]:
    """Load ``checkpoint`` into ``model`` when it exists (returning its loss history); otherwise
    run :func:`pretrain_toy_clip` with ``kwargs`` and save model and history atomically.

    The chapter run twice at once pretrains once: the second run waits on the checkpoint's
    lock (:func:`cirlib.io.exclusive`), then loads what the first saved."""
    from pathlib import Path

    from cirlib.io import atomic_torch_save, exclusive
    from cirlib.train import load_checkpoint

    path = Path(checkpoint)
    with exclusive(path):
        if path.exists():
            state = load_checkpoint(path, weights_only=True)  # a damaged file is named
            if state.get("kwargs") == kwargs:
                model.load_state_dict(state["state_dict"])
                model.eval()
                return state["history"]
        history = pretrain_toy_clip(model, tokenizer, **kwargs)
        atomic_torch_save(
            path, {"state_dict": model.state_dict(), "history": history, "kwargs": kwargs}
        )
    return history
