r"""Similarities between two sets of embeddings, the pluggable first step of a batch loss.

A similarity maps query rows ``[B, D]`` and target rows ``[M, D]`` to a score matrix
``[B, M]``. The losses of :mod:`cirlib.losses` take one as ``similarity=`` (or the finished
matrix as ``scores=``), so a reader can swap how queries and targets are compared without
editing a loss.

Introduced in chapter "The Combiner baseline".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_similarity(queries: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    r"""Cosines of every query–target pair, computed in at least float32.

    .. math:: S_{ij} = \frac{q_i^\top t_j}{\lVert q_i\rVert\,\lVert t_j\rVert}

    Shapes: ``[B, D]``, ``[M, D]`` → ``[B, M]``.

    Examples
    --------
    >>> import torch
    >>> cosine_similarity(torch.tensor([[3.0, 4.0]]), torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    tensor([[0.6000, 0.8000]])
    """
    q = F.normalize(queries.float(), dim=-1)
    t = F.normalize(targets.float(), dim=-1)
    return q @ t.T


def dot_similarity(queries: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    r"""Dot products of every query–target pair, :math:`S_{ij} = q_i^\top t_j` (cosines when
    the caller has L2-normalised both sides; MGUR keeps its jittered targets' norms in it).

    Shapes: ``[B, D]``, ``[M, D]`` → ``[B, M]``.

    Examples
    --------
    >>> import torch
    >>> dot_similarity(torch.tensor([[3.0, 4.0]]), torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    tensor([[3., 8.]])
    """
    return queries @ targets.T


def negative_squared_euclidean(queries: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    r""":math:`S_{ij} = -\lVert q_i - t_j\rVert^2`, a similarity that is not a cosine (the metric
    learning losses' other common choice).

    Shapes: ``[B, D]``, ``[M, D]`` → ``[B, M]``.

    Examples
    --------
    >>> import torch
    >>> negative_squared_euclidean(torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, 1.0], [0.0, 3.0]]))
    tensor([[-0., -5.]])
    """
    return -torch.cdist(queries.float(), targets.float()).pow(2)


REDUCTIONS = ("mean", "sum", "none")


def reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    """``values`` averaged (``"mean"``), summed (``"sum"``) or returned as they are
    (``"none"``); any other name is refused."""
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
