r"""CaLa's objective, in the paper's additive form and in the released code's convex form.

Three ``[B, B]`` logit matrices, each with the matching pairs on the diagonal:

* :math:`S_{QTM}` — composed query :math:`i` against target :math:`j` (the main task);
* :math:`S_{TBIA}` — hinge pseudo-target :math:`i` against composed query :math:`j`;
* :math:`S_{CTR}` — text :math:`i` against the fused (reference, target) pair :math:`j`.

With :math:`\mathrm{CE}(S) = \frac1B \sum_i -\log \mathrm{softmax}(S_{i,:})_i`:

* paper (default): :math:`\mathcal L = \mathrm{CE}(S_{QTM}) + w_{TBIA}\,\mathrm{CE}(S_{TBIA})
  + w_{CTR}\,\mathrm{CE}(S_{CTR})` (the paper's :math:`\alpha`, :math:`\beta`; the arguments
  ``alpha``, ``beta``);
* released code: :math:`\mathcal L = w_h\,\mathrm{CE}(S_{TBIA}) + (1-w_h)\,
  \mathrm{CE}\big(w_t S_{CTR} + (1-w_t) S_{QTM}\big)` — CTR's logits are mixed into the main
  logits *before* the softmax (Jiang et al., 2024, released code ``src/blip_fine_tune.py``;
  README values :math:`w_t = 0.45, w_h = 0.1`).

Introduced in chapter "CaLa: complementary association learning".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_logits(rows: torch.Tensor, columns: torch.Tensor, scale: float) -> torch.Tensor:
    r"""``[B, B]`` logits :math:`s\,\hat a_i^\top \hat b_j` of L2-normalised rows of ``rows``
    ``[B, d]`` and ``columns`` ``[B, d]``.

    The released code scores its auxiliary branches with :math:`s = 10` on *raw* features; we
    normalise both sides so that :math:`s` means a temperature on cosines, as in the main term,
    and a branch cannot lower its loss by inflating norms.

    Introduced in chapter "CaLa: complementary association learning".
    """
    return scale * F.normalize(rows.float(), dim=-1) @ F.normalize(columns.float(), dim=-1).T


def diagonal_cross_entropy(logits: torch.Tensor) -> torch.Tensor:
    r""":math:`\frac1B \sum_i -\log \frac{\exp S_{ii}}{\sum_j \exp S_{ij}}` for ``logits``
    ``[B, B]``: row :math:`i`'s class is column :math:`i`.

    Introduced in chapter "CaLa: complementary association learning".
    """
    labels = torch.arange(len(logits), device=logits.device)
    return F.cross_entropy(logits.float(), labels)


def _check(name: str, weight: float, logits: torch.Tensor | None) -> None:
    if weight != 0 and logits is None:
        raise ValueError(f"{name} has weight {weight} but no logits were given")


def additive_cala_loss(
    qtm_logits: torch.Tensor,
    tbia_logits: torch.Tensor | None = None,
    ctr_logits: torch.Tensor | None = None,
    *,
    alpha: float,
    beta: float,
) -> torch.Tensor:
    r"""The paper's objective (Jiang et al., 2024)
    :math:`\mathcal L = \mathrm{CE}(S_{QTM}) + w_{TBIA}\,\mathrm{CE}(S_{TBIA}) + w_{CTR}\,\mathrm{CE}(S_{CTR})`.

    Parameters
    ----------
    qtm_logits, tbia_logits, ctr_logits : ``[B, B]``, diagonal = matching pairs. A branch
        left out (``None``) must have weight 0.
    alpha, beta : :math:`w_{TBIA}` and :math:`w_{CTR}`, the weights of TBIA and CTR (the paper
        writes them :math:`\alpha`, :math:`\beta`; its values are unknown to us).

    Examples
    --------
    With the branches weighted 0 it is the main term alone, the cross-entropy of the diagonal:

    >>> import torch
    >>> s = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    >>> round(float(additive_cala_loss(s, alpha=0.0, beta=0.0)), 4)  # log(1 + e^-2)
    0.1269
    >>> round(float(additive_cala_loss(s, s, s, alpha=0.5, beta=0.5)), 4)  # (1 + 0.5 + 0.5) x
    0.2539

    Introduced in chapter "CaLa: complementary association learning".
    """
    _check("TBIA", alpha, tbia_logits)
    _check("CTR", beta, ctr_logits)
    loss = diagonal_cross_entropy(qtm_logits)
    if alpha != 0:
        loss = loss + alpha * diagonal_cross_entropy(tbia_logits)
    if beta != 0:
        loss = loss + beta * diagonal_cross_entropy(ctr_logits)
    return loss


def convex_cala_loss(
    qtm_logits: torch.Tensor,
    tbia_logits: torch.Tensor | None = None,
    ctr_logits: torch.Tensor | None = None,
    *,
    tac_weight: float,
    hca_weight: float,
) -> torch.Tensor:
    r"""The released code's objective (Jiang et al., 2024, ``src/blip_fine_tune.py``)
    :math:`\mathcal L = w_h\,\mathrm{CE}(S_{TBIA}) + (1-w_h)\,\mathrm{CE}(w_t S_{CTR} + (1-w_t) S_{QTM})`.

    ``tac_weight`` :math:`w_t` and ``hca_weight`` :math:`w_h` lie in :math:`[0, 1]`; with both
    0 this is the plain :math:`\mathrm{CE}(S_{QTM})`. Note that :math:`S_{CTR}` row :math:`i` is
    a *text*, :math:`S_{QTM}` row :math:`i` a *query*: the mixture asks one softmax over the
    batch to be right for both.

    Examples
    --------
    >>> import torch
    >>> s = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    >>> round(float(convex_cala_loss(s, tac_weight=0.0, hca_weight=0.0)), 4)
    0.1269
    >>> round(float(convex_cala_loss(s, s, torch.zeros(2, 2), tac_weight=0.5, hca_weight=0.0)), 4)
    0.3133

    Introduced in chapter "CaLa: complementary association learning".
    """
    for name, w in (("tac_weight", tac_weight), ("hca_weight", hca_weight)):
        if not 0 <= w <= 1:
            raise ValueError(f"{name} must lie in [0, 1] (a convex weight), got {w}")
    _check("TBIA", hca_weight, tbia_logits)
    _check("CTR", tac_weight, ctr_logits)
    mixed = qtm_logits.float()
    if tac_weight != 0:
        mixed = tac_weight * ctr_logits.float() + (1 - tac_weight) * mixed
    loss = diagonal_cross_entropy(mixed)
    if hca_weight != 0:
        loss = hca_weight * diagonal_cross_entropy(tbia_logits) + (1 - hca_weight) * loss
    return loss
