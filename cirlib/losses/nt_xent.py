r"""The normalised-temperature cross-entropy (NT-Xent) between two aligned sets of vectors.

With :math:`a_i, b_i` (:math:`i = 1..B`) L2-normalised and stacked into
:math:`z = (a_1, \dots, a_B, b_1, \dots, b_B)`, each vector's positive is its partner
:math:`p(k)` (:math:`a_i \leftrightarrow b_i`) and its negatives are *all* other :math:`2B - 2`
vectors, of both sets:

.. math:: \mathcal{L} = \frac{1}{2B} \sum_{k=1}^{2B}
          -\log \frac{\exp(z_k^\top z_{p(k)} / \tau)}{\sum_{l \ne k} \exp(z_k^\top z_l / \tau)} .

Unlike CLIP's loss the negatives include same-set pairs (:math:`a_i` vs :math:`a_j`). Chen,
Kornblith, Norouzi and Hinton (2020, SimCLR) introduced it; SEARLE (Baldrati et al., 2023) uses it
with :math:`\tau = 0.25` to distil per-image optimised pseudo-words into a network
(:mod:`cirlib.zeroshot.searle`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["nt_xent_loss"]


def nt_xent_loss(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    r""":math:`\mathcal{L}` above for ``a, b`` of shape ``[B, W]`` (normalised here), ``B >= 2``."""
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"a and b must both be [B, W]; got {tuple(a.shape)} and {tuple(b.shape)}")
    if len(a) < 2:
        raise ValueError("NT-Xent needs at least two pairs (one pair has no negatives)")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    z = F.normalize(torch.cat([a, b]).float(), dim=-1)
    logits = z @ z.T / temperature
    n = len(a)
    # A vector is never its own negative.
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, partner)
