"""Estimate the GPU memory and arithmetic of the paper profile's training steps, without a GPU.

The models are built on PyTorch's ``meta`` device (shapes only, no weights, no arithmetic), and
a forward pass records every tensor autograd saves for the backward pass. From that:

* weights, gradients and AdamW's two moments: 4 + 4 + 8 = 16 bytes per trainable parameter
  (fp32 master weights; 4 bytes per frozen parameter);
* activations: the bytes saved for backward per sample, times the batch; with gradient
  checkpointing, only each checkpointed block's input is kept, plus one block's saved tensors
  while it is recomputed.

These are **estimates, not measurements**: they leave out the CUDA context (several hundred MB),
the caching allocator's fragmentation, cuDNN workspaces and temporary buffers, and count
activations in float32 (under fp16 autocast most are stored in half precision, so the real
activation figure is lower, down to about half). The attention matrices are counted as the
plain ("math") attention stores them; fused GPU attention kernels store less.

Arithmetic: forward FLOPs are counted by ``torch.utils.flop_counter`` on the same meta models
(2 per multiply-add); a training step costs about 3x the forward pass (backward ~2x), about 4x
with gradient checkpointing (one more forward of the checkpointed blocks). Time per epoch is
these FLOPs divided by the rate your GPU sustains, which only a run on that GPU can tell.

    python data_scripts/estimate_memory.py                      # RN50x4 and ViT-L-14
    python data_scripts/estimate_memory.py --models RN50x4 --batch 128 512
"""

from __future__ import annotations

import argparse
import logging

import open_clip
import torch
from open_clip.modified_resnet import ModifiedResNet
from torch.utils.flop_counter import FlopCounterMode

from cirlib.models.combiner import Combiner

GB = 1e9


class SavedBytes:
    """Bytes autograd saves for backward, counted once per storage, and per block."""

    def __init__(self):
        self.total = 0
        self.seen: set[int] = set()
        self.keep: list[torch.Tensor] = []  # holds references so storage ids are not reused

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        key = storage._cdata
        if key not in self.seen:
            self.seen.add(key)
            self.keep.append(tensor)
            self.total += storage.nbytes()
        return tensor


def _blocks(model) -> list[torch.nn.Module]:
    """The units gradient checkpointing recomputes (cirlib.methods.clip_finetune)."""
    blocks = list(model.transformer.resblocks)
    if isinstance(model.visual, ModifiedResNet):
        for name in ("layer1", "layer2", "layer3", "layer4"):
            blocks += list(getattr(model.visual, name))
    else:
        blocks += list(model.visual.transformer.resblocks)
    return blocks


def activation_bytes(model, image_size: int, context: int, batch: int = 2) -> dict[str, float]:
    """Saved-for-backward bytes per sample of CLIP4Cir's stage-1 step: two images (reference
    and target) and one caption; without and with block checkpointing."""
    counter = SavedBytes()
    per_block: list[tuple[int, int]] = []  # (saved inside, input bytes)

    def pre(module, args):
        module._saved_before = counter.total
        module._input_bytes = args[0].numel() * args[0].element_size()

    def post(module, args, out):
        per_block.append((counter.total - module._saved_before, module._input_bytes))

    hooks = []
    for block in _blocks(model):
        hooks.append(block.register_forward_pre_hook(pre))
        hooks.append(block.register_forward_hook(post))
    images = torch.empty(2 * batch, 3, image_size, image_size, device="meta")
    tokens = torch.zeros(batch, context, dtype=torch.long, device="meta")
    with torch.autograd.graph.saved_tensors_hooks(counter.pack, lambda t: t):
        model.encode_image(images)
        model.encode_text(tokens)
    for h in hooks:
        h.remove()
    inside = sum(s for s, _ in per_block)
    kept_inputs = sum(i for _, i in per_block)
    largest = max(s for s, _ in per_block)
    return {
        "plain": counter.total / batch,
        "checkpointed": (counter.total - inside + kept_inputs) / batch,
        "recompute_peak": largest / batch,  # the largest block, recomputed one at a time
    }


def forward_flops(fn, *args) -> float:
    """FLOPs of ``fn(*args)`` counted on meta tensors (no arithmetic is run)."""
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return float(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["RN50x4", "ViT-L-14"])
    parser.add_argument("--batch", nargs="+", type=int, default=[128], help="stage-1 batch sizes")
    parser.add_argument("--combiner-batch", type=int, default=4096)
    parser.add_argument(
        "--triplets", type=int, default=28225, help="training triplets per epoch (CIRR: 28,225)"
    )
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.ERROR)

    for name in args.models:
        # eval mode: CLIP4Cir never switches CLIP to train mode (frozen BatchNorm statistics)
        model = open_clip.create_model(name, pretrained=None, device="meta").eval()
        size = model.visual.image_size
        size = size[0] if isinstance(size, tuple) else size
        params = sum(p.numel() for p in model.parameters())
        visual = sum(p.numel() for p in model.visual.parameters())
        dim = model.text_projection.shape[1]
        act = activation_bytes(model, size, model.context_length)
        print(f"== {name}: image {size}px, embedding {dim}, {params / 1e6:.1f} M parameters "
              f"({visual / 1e6:.1f} M image tower)")  # fmt: skip
        print(f"  feature extraction (no grad, fp16 weights): {2 * params / GB:.2f} GB weights")
        states = 16 * params
        print(f"  stage 1, both towers: weights + grads + AdamW = {states / GB:.2f} GB")
        print(
            f"  activations saved for backward per triplet (fp32): {act['plain'] / 1e6:.0f} MB "
            f"plain, {act['checkpointed'] / 1e6:.0f} MB with gradient checkpointing"
        )
        for b in args.batch:
            plain = states + b * act["plain"]
            ckpt = states + b * (act["checkpointed"] + act["recompute_peak"])
            print(
                f"  stage 1 at batch {b}: ~{plain / GB:.1f} GB plain, "
                f"~{ckpt / GB:.1f} GB with checkpointing (estimate, fp32 activations)"
            )
        with torch.device("meta"):
            meta_head = Combiner(dim)
        head_params = sum(p.numel() for p in meta_head.parameters())
        counter = SavedBytes()
        x = torch.empty(args.combiner_batch, dim, device="meta")
        with torch.autograd.graph.saved_tensors_hooks(counter.pack, lambda t: t):
            meta_head(x, x)
        print(
            f"  Combiner head on cached features (P=4D, H=8D): {head_params / 1e6:.1f} M "
            f"parameters, {16 * head_params / GB:.2f} GB with Adam; activations at batch "
            f"{args.combiner_batch}: {counter.total / GB:.2f} GB"
        )
        image = forward_flops(model.encode_image, torch.empty(1, 3, size, size, device="meta"))
        text = forward_flops(
            model.encode_text, torch.zeros(1, model.context_length, dtype=torch.long, device="meta")
        )
        x1 = torch.empty(1, dim, device="meta")
        head_step = 3 * forward_flops(meta_head, x1, x1)
        triplet = 2 * image + text
        n = args.triplets
        print(f"  forward FLOPs: {image / 1e9:.1f} G per image, {text / 1e9:.1f} G per caption")
        print(
            f"  per epoch of {n:,} triplets: stage 1 ~{3 * triplet * n / 1e15:.1f} PFLOP "
            f"(~{4 * triplet * n / 1e15:.1f} with checkpointing); Combiner head "
            f"~{head_step * n / 1e12:.1f} TFLOP; encoding the train images once for the "
            f"feature cache ~{(image + text) * n / 1e15:.2f} PFLOP (upper bound: one image per "
            "triplet; the real count is the number of distinct images)"
        )


if __name__ == "__main__":
    main()
