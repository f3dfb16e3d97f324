r"""MAPNet's Multi-Schema Interaction (MSI) loss (Shi et al., 2025): match query schemas to
target schemas by entropic optimal transport, then pull each target schema's match towards it.

This is a reading of the loss, not a transcription. The paper's method section was not
available; the formula comes from a summary of the paper, which indexes the plan and its
marginals by :math:`N_B` and :math:`N_Q`, :math:`N_B` being the symbol its Relaxed Proximity
loss uses for the batch size, and writes the constraints as

.. math::

    P\mathbb{1}_{N_B} = \tfrac{1}{N_B}\mathbb{1}_{N_B}, \qquad
    P^\top\mathbb{1}_{N_Q} = \tfrac{1}{N_Q}\mathbb{1}_{N_Q},

which only fit together for a square plan (:math:`N_B = N_Q`). Read literally, the plan would
run across the batch. The library reads it per triplet: for each of the :math:`B` triplets, one
plan between its :math:`N_t` target schemas (rows) and its :math:`N_q` query schemas
(columns), with uniform marginals :math:`1/N_t` and :math:`1/N_q`, the loss averaged over the
target schemas and the triplets. This is what the loss's name and the figure caption reported
in the summary (an interaction between one composed query and its target image) describe.

Introduced in chapter "MAPNet: multi-schema interaction and relaxed proximity".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cirlib.ot import plan_assignment, sinkhorn


def schema_similarity(
    target_schemas: torch.Tensor, query_schemas: torch.Tensor, kappa: float = 1.0
) -> torch.Tensor:
    r"""Strictly positive schema similarity :math:`C_{ik} = \exp\big((\cos(F^t_i, F^q_k) - 1)/\kappa\big)`.

    The summary of the paper writes the transport cost as :math:`-\log C`, so :math:`C` must be
    positive; the mapping from a cosine to :math:`(0, 1]` is not published. This one makes the cost exactly
    the cosine distance, :math:`-\log C_{ik} = (1 - \cos_{ik})/\kappa \in [0, 2/\kappa]`,
    defined for negative cosines too. Only :math:`\kappa\tau` enters the plan, so the book keeps
    :math:`\kappa = 1` and lets :math:`\tau` be the one temperature.

    Shapes: ``target_schemas`` ``[B, N_t, D]``, ``query_schemas`` ``[B, N_q, D]`` (any norm)
    → ``[B, N_t, N_q]`` (rows: target schemas, columns: query schemas).

    Introduced in chapter "MAPNet: multi-schema interaction and relaxed proximity".
    """
    t = F.normalize(target_schemas.float(), dim=-1)
    q = F.normalize(query_schemas.float(), dim=-1)
    return torch.exp((t @ q.transpose(1, 2) - 1.0) / kappa)


def schema_assignment(
    target_schemas: torch.Tensor,
    query_schemas: torch.Tensor,
    tau: float = 0.1,
    kappa: float = 1.0,
    max_iters: int = 100,
    tol: float = 1e-4,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The entropic plan between target and query schemas and its row-argmax assignment.

    .. math::

        P^\star = \arg\min_{P\in U(\alpha,\beta)} \langle P, -\log C\rangle
            + \tau\,\mathrm{KL}(P\,\|\,\alpha\beta^\top),\quad
        \alpha = \tfrac{1}{N_t}\mathbb{1},\ \beta = \tfrac{1}{N_q}\mathbb{1},\qquad
        p_i = \arg\max_k P^\star_{ik}

    Computed without gradient: only the argmax is used. ``tol`` is the marginal error Sinkhorn
    stops at; the argmax settles long before the marginals are exact.

    Returns ``plan`` ``[B, N_t, N_q]`` and ``assignment`` ``[B, N_t]`` (long).

    Examples
    --------
    >>> import torch
    >>> t = torch.eye(3)[None]
    >>> plan, assignment = schema_assignment(t, t[:, [2, 0, 1]], tau=0.1)
    >>> assignment.tolist()                          # target schema k -> query schema
    [[1, 2, 0]]

    Introduced in chapter "MAPNet: multi-schema interaction and relaxed proximity".
    """
    with torch.no_grad():
        cost = -torch.log(schema_similarity(target_schemas, query_schemas, kappa))
        plan = sinkhorn(cost, tau, max_iters=max_iters, tol=tol)
    return plan, plan_assignment(plan)


def multi_schema_interaction_loss(
    query_schemas: torch.Tensor,
    target_schemas: torch.Tensor,
    tau: float = 0.1,
    kappa: float = 1.0,
    max_iters: int = 100,
    tol: float = 1e-4,
    return_assignment: bool = False,
):
    r"""Multi-Schema Interaction loss (MAPNet; the per-triplet reading of the module docstring).

    For each triplet, with :math:`p_i` the query schema that the optimal-transport plan sends
    target schema :math:`i` to (:func:`schema_assignment`),

    .. math::

        \mathcal{L}_{MSI} = \frac{1}{B}\sum_{b=1}^{B}\frac{1}{N_t}\sum_{i=1}^{N_t}
            D\big(F^q_{b,p_i},\ \mathrm{sg}(F^t_{b,i})\big),\qquad
        D(x, y) = 1 - \cos(x, y),

    where :math:`\mathrm{sg}` stops the gradient, so only the query side moves. :math:`D` is
    not published; the cosine distance matches the OT cost (:func:`schema_similarity`) and
    equals half the squared distance of the normalised vectors.

    Parameters
    ----------
    query_schemas : ``[B, N_q, D]`` from (reference image, text).
    target_schemas : ``[B, N_t, D]`` from the target image.
    tau : entropic regularisation (MAPNet README: 0.1).
    kappa : temperature of :math:`C` (see :func:`schema_similarity`).

    Returns the scalar loss, and with ``return_assignment=True`` also ``(plan, assignment)``.

    Examples
    --------
    Query schemas that are the target schemas in another order: the transport finds the
    permutation, so there is nothing left to pull.

    >>> import torch
    >>> t = torch.eye(3)[None]                      # [B=1, N_s=3, D_s=3]
    >>> q = t[:, [2, 0, 1]]
    >>> round(float(multi_schema_interaction_loss(q, t, tau=0.1)), 4)
    0.0

    Introduced in chapter "MAPNet: multi-schema interaction and relaxed proximity".
    """
    plan, assignment = schema_assignment(
        target_schemas, query_schemas, tau, kappa, max_iters=max_iters, tol=tol
    )
    q = F.normalize(query_schemas.float(), dim=-1)
    t = F.normalize(target_schemas.float(), dim=-1).detach()
    index = assignment[..., None].expand(-1, -1, q.shape[-1])
    matched = torch.gather(q, 1, index)  # [B, N_t, D]: the query schema each target one gets
    loss = (1.0 - (matched * t).sum(-1)).mean()
    return (loss, plan, assignment) if return_assignment else loss
