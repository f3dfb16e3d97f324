r"""Multi-process training: the global batch split over ranks, gathered back for the loss.

With :math:`W` processes (ranks), each holding :math:`b = B / W` triplets of a global batch of
:math:`B`, a contrastive loss must still see all :math:`B` targets as negatives, or training
with :math:`W` GPUs would be a different (weaker) objective than with one. So every rank

1. computes its own :math:`b` query and target embeddings;
2. all-gathers them with :func:`gather_with_grad` into the global :math:`[B, D]` tensors, in rank
   order (rank 0's rows first), which is the single-process row order when each rank holds a
   contiguous slice of the batch (:func:`rank_slice`);
3. evaluates the *global* loss :math:`\mathcal{L}` (the same number on every rank).

The backward pass of the gather is its adjoint, a reduce-scatter: each rank receives the sum over
ranks of the gradient of its own rows,

.. math:: \frac{\partial}{\partial x_r} \sum_{r'=0}^{W-1} \mathcal{L}_{r'}
          = W \, \frac{\partial \mathcal{L}}{\partial x_r}
          \qquad (\mathcal{L}_{r'} = \mathcal{L} \text{ on every rank}),

and DistributedDataParallel (DDP) *averages* parameter gradients over ranks, dividing by
:math:`W`, so each optimiser step sees exactly the single-process gradient
:math:`\partial\mathcal{L}/\partial\theta`. :func:`cirlib.train.fit` with ``distributed=True``
does the splitting, the DDP wrapping and the rank-0-only checkpoint writes.

**Recipes.** Every recipe's ``loss_fn(model, idx)`` follows this pattern exactly when ``fit``
hands it a DDP-wrapped model (:func:`is_wrapped`), and is the unchanged one-process code
otherwise (without a process group, or with ``distributed=False``):

* everything that spans the batch is gathered: queries and targets (in-batch negatives), but
  also batch statistics (MGUR's spread :math:`u` of the jittered targets), kernels over the
  batch's targets (MAPNet's :math:`W`), every logit matrix's two sides (CaLa's branches) and
  per-query tensors whose loss is normalised over the batch (DQE-CIR's mined negatives, gates);
* random draws that belong to the global batch (MGUR's augmenter noise, DQE-CIR's choice of
  negatives) are made once, on rank 0, for all :math:`B` rows, and broadcast
  (:func:`broadcast`). Rank 0's random stream is the one-process stream (``fit`` re-seeds only
  the other ranks), so with dropout off these draws are the one-process draws; with dropout
  on, rank 0's dropout consumes a different amount of the stream, and the draws (like the
  dropout masks themselves) equal a one-process run's in distribution only;
* a recipe that calls several methods of its model (``encode_query`` and ``encode_target``, a
  branch module, ...) runs them inside one DDP forward pass with :func:`call_in_forward`: DDP
  arms its gradient all-reduce in ``forward``, and a method called on ``model.module`` would
  silently skip it.

Launch with ``torchrun --nproc_per_node=<W> script.py``; :func:`init_distributed` reads the
variables torchrun sets and is a no-op (rank 0 of 1) in a plain ``python`` run. Introduced in
the book page "Running the paper profile on a GPU".
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = [
    "DistributedContext",
    "barrier",
    "broadcast",
    "call_in_forward",
    "gather",
    "gather_with_grad",
    "global_batch",
    "init_distributed",
    "is_distributed",
    "is_wrapped",
    "rank_slice",
    "unwrap",
    "wrap_ddp",
]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits: ``rank`` in ``[0, world_size)``, its ``local_rank`` on the node
    (the GPU it should use) and the ``device`` chosen for it."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """True on the process that writes files and prints (rank 0)."""
        return self.rank == 0


def is_distributed() -> bool:
    """True when a process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init_distributed(backend: str | None = None) -> DistributedContext:
    """Join the process group described by torchrun's environment variables.

    torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
    without them (a plain ``python`` run) nothing is initialised and rank 0 of 1 is returned, so
    one script serves both. The backend defaults to NCCL on CUDA and gloo on CPU; each CUDA rank
    uses the GPU ``LOCAL_RANK``.

    Returns
    -------
    DistributedContext
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return DistributedContext(device=device)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        backend = backend or ("nccl" if device.type == "cuda" else "gloo")
        dist.init_process_group(backend=backend, init_method="env://")
    return DistributedContext(rank, world, local_rank, device)


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if is_distributed():
        dist.barrier()


def rank_slice(batch: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    r"""The contiguous part of a global batch that ``rank`` processes.

    .. math:: \text{batch}[\, r b : (r + 1) b \,], \qquad b = B / W

    Concatenating the slices in rank order (what :func:`gather_with_grad` does) gives the global
    batch back in its original order, so row :math:`i` of the gathered tensors is triplet
    :math:`i` of the single-process batch. (PyTorch's DistributedSampler instead deals indices
    round-robin, ``batch[r::W]``, which would permute the rows.)

    Parameters
    ----------
    batch : Tensor[B, ...]
        The global batch (the same on every rank).
    rank, world_size : int

    Raises
    ------
    ValueError
        If ``B`` is not a multiple of ``world_size`` (ranks would hold different numbers of
        rows, and the all-gather needs equal shapes).
    """
    if len(batch) % world_size:
        raise ValueError(
            f"a global batch of {len(batch)} cannot be split evenly over {world_size} ranks; "
            "choose a batch size that is a multiple of the number of processes"
        )
    size = len(batch) // world_size
    return batch[rank * size : (rank + 1) * size]


class _GatherWithGrad(torch.autograd.Function):
    """All-gather forward; reduce-scatter (sum, then own slice) backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        world = dist.get_world_size()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.rows = dist.get_rank(), x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        # Every rank's loss may depend on every rank's rows, so the gradient of rank r's rows is
        # the sum over ranks of that slice of the incoming gradient.
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    r"""Concatenate ``x`` from every rank, in rank order, keeping the autograd graph.

    .. math:: X = [x_0; x_1; \dots; x_{W-1}] \in \mathbb{R}^{W b \times D}, \qquad
              \frac{\partial}{\partial x_r} = \sum_{r'} \Big(\frac{\partial
              \mathcal{L}_{r'}}{\partial X}\Big)_{[rb:(r+1)b]}

    The backward pass is the adjoint of the gather (sum over ranks, then this rank's rows). When
    every rank computes the same global loss, DDP's gradient average over ranks turns this into
    exactly the single-process gradient (module docstring).

    Parameters
    ----------
    x : Tensor[b, ...]
        This rank's rows; ``b`` and the trailing shape must be equal on all ranks.

    Returns
    -------
    Tensor[W b, ...]
        ``x`` itself without a process group (one rank).
    """
    if not is_distributed():
        return x
    return _GatherWithGrad.apply(x)


def global_batch(loss, *tensors: torch.Tensor, **kwargs) -> torch.Tensor:
    """``loss(*gathered, **kwargs)`` over the tensors of all ranks (the global batch).

    For example ``global_batch(batch_classification_loss, queries, targets, scale=100.0)`` is
    the CLIP4Cir loss over all :math:`B` triplets, whichever rank evaluates it.
    """
    return loss(*(gather_with_grad(t) for t in tensors), **kwargs)


def wrap_ddp(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Wrap ``model`` in DistributedDataParallel (gradient average over ranks after backward).

    DDP broadcasts rank 0's parameters at construction, so every rank starts from the same
    weights even if their initialisations differed. The loss function must call the wrapped
    module's ``forward`` (DDP prepares its gradient hooks there).
    """
    from torch.nn.parallel import DistributedDataParallel

    device = torch.device(device)
    ids = [device.index if device.index is not None else 0] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def is_wrapped(model: torch.nn.Module) -> bool:
    """True when ``model`` is wrapped in DistributedDataParallel.

    ``fit(distributed=True)`` wraps the model exactly when a process group with several ranks
    exists, so a recipe's ``loss_fn`` gathers across ranks exactly when this is True and is the
    one-process code otherwise.
    """
    from torch.nn.parallel import DistributedDataParallel

    return isinstance(model, DistributedDataParallel)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DDP wrapper; ``model`` itself when it is not wrapped."""
    return model.module if is_wrapped(model) else model


def call_in_forward(model: torch.nn.Module, fn, *args, **kwargs):
    """``fn(module, *args, **kwargs)`` run as one forward pass of ``model``.

    A DDP wrapper has only ``forward``: a recipe that calls other methods of its model (MAPNet's
    ``encode_query`` and ``encode_target``, CaLa's branches, DQE-CIR's ``embed_gallery``) cannot
    call them on the wrapper, and calling them on ``model.module`` would compute the right loss
    but skip DDP's gradient all-reduce without any error (DDP arms it in ``forward``), so every
    rank would step with its own gradient. Here ``fn`` stands in for the wrapped module's
    ``forward`` for one call, so DDP sees one forward pass that uses every parameter ``fn``
    uses. Without DDP this is just ``fn(model, *args, **kwargs)``.
    """
    if not is_wrapped(model):
        return fn(model, *args, **kwargs)
    inner = model.module
    if "forward" in vars(inner):
        raise RuntimeError(
            "the module inside DDP has its own instance attribute 'forward'; call_in_forward "
            "would shadow it: give the model a plain forward method"
        )

    def forward(*a, **k):
        # nn.Module.__call__ has looked this up already: from here on ``inner(...)`` (which
        # ``fn`` may call) is the module's own forward again
        del inner.forward
        return fn(inner, *a, **k)

    inner.forward = forward  # an instance attribute shadows the class's forward
    try:
        return model(*args, **kwargs)
    finally:
        vars(inner).pop("forward", None)


def _collective_device(x: torch.Tensor) -> torch.device:
    """NCCL moves CUDA tensors only; gloo takes tensors where they are."""
    if dist.get_backend() == "nccl" and x.device.type != "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return x.device


def gather(x: torch.Tensor) -> torch.Tensor:
    """All ranks' ``x`` concatenated in rank order, without gradient (indices, frozen features,
    labels). ``x`` itself without a process group.

    Shapes: ``[b, ...]`` on every rank → ``[W b, ...]``, on ``x``'s device.
    """
    if not is_distributed():
        return x
    y = x.detach().to(_collective_device(x)).contiguous()
    parts = [torch.empty_like(y) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, y)
    return torch.cat(parts).to(x.device)


def broadcast(x: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Rank ``src``'s ``x`` on every rank (``x`` itself there and without a process group).

    The other ranks pass a tensor of the same shape and dtype (its values are ignored) and get a
    new tensor; no rank's input is modified. Without gradient: used for values drawn once for
    the global batch (random augmentations, sampled negatives, miner pools).
    """
    if not is_distributed():
        return x
    if x.requires_grad:
        raise ValueError(
            "broadcast carries values without gradient; gather tensors that need one with "
            "gather_with_grad"
        )
    device = _collective_device(x)
    if dist.get_rank() == src:
        dist.broadcast(x.to(device).contiguous(), src=src)
        return x
    y = torch.empty(x.shape, dtype=x.dtype, device=device)
    dist.broadcast(y, src=src)
    return y.to(x.device)


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s picklable ``obj`` on every rank (``obj`` itself without a process group);
    the other ranks' ``obj`` is ignored. For small state that has no fixed shape (a miner's
    pools, a record), sent once per refresh, never per step."""
    if not is_distributed():
        return obj
    box = [obj if dist.get_rank() == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]
