"""Batch-based classification loss (CLIP4Cir), the core every method in the book builds on."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def batch_classification_loss(
    queries: torch.Tensor, targets: torch.Tensor, scale: float = 100.0
) -> torch.Tensor:
    r"""Cross-entropy of each query against the batch's targets, its own target being the class.

    .. math::

        \mathcal{L}_{BBC} = \frac{1}{B}\sum_{i=1}^{B}
            -\log \frac{\exp(s\, q_i^\top t_i)}{\sum_{j=1}^{B} \exp(s\, q_i^\top t_j)}

    Only the query→target direction, as in CLIP4Cir, CaLa, SPRC and MGUR (methods.md §1).

    Parameters
    ----------
    queries, targets : ``[B, D]``, L2-normalised by the caller (so ``q·t`` is a cosine).
    scale : the logit scale ``s`` (CLIP4Cir fixes it to 100).

    Introduced in chapter "The Combiner baseline".
    """
    logits = scale * queries @ targets.T
    labels = torch.arange(len(queries), device=queries.device)
    return F.cross_entropy(logits.float(), labels)
