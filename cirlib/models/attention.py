r"""Multi-head attention written out with batched matrix products, on the weights of an
``nn.MultiheadAttention``.

CaLa's compositor and MAPNet's schema blocks attend over a handful of tokens (10 image tokens,
8 schemas, 21 memory tokens in the toy world). At those lengths ``nn.MultiheadAttention`` spends
most of its time outside the arithmetic: it packs and unpacks the key/value projections with
copies, and the CPU's fused attention kernel is built for long sequences (measured on the book's
2-core machine: 2.3 ms for a batch of 256 single-head 10-token attentions, whose products are
13 MFLOP). :func:`multi_head_attention` computes the same function of the same parameters,

.. math::

    \mathrm{head}_j = \mathrm{drop}\Big(\mathrm{softmax}\big(\tfrac{(X_q W^q_j)(X_k W^k_j)^\top}
        {\sqrt{d_h}} + \mathrm{mask}\big)\Big)\, X_v W^v_j,\qquad
    \mathrm{out} = [\mathrm{head}_1, \dots, \mathrm{head}_h]\, W^o + b^o

(biases on every projection, as ``nn.MultiheadAttention`` has them), with one ``F.linear`` per
projection and two ``matmul`` calls, so a module keeps its state dict and its checkpoints. Only
the rounding differs from ``nn.MultiheadAttention``'s; ``tests/unit/models/test_attention.py``
checks the outputs, the returned weights and the gradients against it. The dropout on the
attention weights is :func:`cirlib.models.dropout.dropout` (same law as the module's, a different
random stream).

Introduced in chapter "CaLa: complementary association learning" (and used by MAPNet's schemas).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cirlib.models.dropout import dropout
from cirlib.models.short_softmax import attention_softmax


def multi_head_attention(
    module: nn.MultiheadAttention,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    key_padding_mask: torch.Tensor | None = None,
    need_weights: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``module(query, key, value, key_padding_mask=..., need_weights=...)`` for a
    ``batch_first`` module with one embedding width (``kdim == vdim == embed_dim``).

    Shapes: ``query [B, Lq, E]``, ``key`` / ``value [B, Lk, E]``, ``key_padding_mask [B, Lk]``
    (True where a key is padding). Returns ``(out [B, Lq, E], weights [B, Lq, Lk] | None)``,
    the weights averaged over heads and taken before dropout, as the module returns them.
    """
    if not module.batch_first or not module._qkv_same_embed_dim or module.bias_k is not None:
        raise ValueError(
            "multi_head_attention expects nn.MultiheadAttention(embed_dim, heads, "
            "batch_first=True) without kdim/vdim or add_bias_kv"
        )
    e, h = module.embed_dim, module.num_heads
    w, b = module.in_proj_weight, module.in_proj_bias
    if b is None:
        raise ValueError("multi_head_attention expects the projections to have biases")
    if key is value:  # one product for keys and values (the common case here)
        k, v = F.linear(key, w[e:], b[e:]).chunk(2, dim=-1)
    else:
        k = F.linear(key, w[e : 2 * e], b[e : 2 * e])
        v = F.linear(value, w[2 * e :], b[2 * e :])
    q = F.linear(query, w[:e], b[:e])
    batch, lq, lk, dh = query.shape[0], query.shape[1], key.shape[1], e // h
    if h > 1:  # [B, L, E] -> [B, h, L, d_h]
        q = q.view(batch, lq, h, dh).transpose(1, 2)
        k = k.view(batch, lk, h, dh).transpose(1, 2)
        v = v.view(batch, lk, h, dh).transpose(1, 2)
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(dh))
    if key_padding_mask is not None:
        mask = key_padding_mask.bool()
        mask = mask[:, None, None, :] if h > 1 else mask[:, None, :]
        scores = scores.masked_fill(mask, float("-inf"))
    weights = attention_softmax(scores)  # short rows: cheaper than torch.softmax on a CPU
    out = dropout(weights, module.dropout, module.training) @ v
    if h > 1:
        out = out.transpose(1, 2).reshape(batch, lq, e)
    out = F.linear(out, module.out_proj.weight, module.out_proj.bias)
    if not need_weights:
        return out, None
    return out, weights.mean(dim=1) if h > 1 else weights


def shared_self_attention(
    module: nn.MultiheadAttention, x: torch.Tensor, batch: int
) -> torch.Tensor:
    r"""``multi_head_attention(module, X, X, X)`` for a batch whose every row is the same
    sequence ``x``, without computing the batch-independent parts ``batch`` times.

    A Q-Former's first layer self-attends over its learned queries, which are the same for every
    row: the projections :math:`X W^{q,k,v}_j`, the scores and their softmax are computed once
    (``[h, L, L]``), and only what differs between rows is per row: the dropout on the attention
    weights (one mask per row, drawn as :func:`multi_head_attention` draws it) and, after it,
    the product with the values and the output projection. In eval mode (no dropout) the
    output is computed once and broadcast. Same function as :func:`multi_head_attention` on
    ``x.expand(batch, -1, -1)``, up to rounding (the gradients of the shared parts are summed
    over the batch inside a product instead of by the expansion's backward).

    Shapes: ``x [L, E]`` → ``[batch, L, E]`` (in eval mode a broadcast view of ``[L, E]``).
    Introduced in chapter "MAPNet: multi-schema interaction and relaxed proximity".
    """
    if not module.batch_first or not module._qkv_same_embed_dim or module.bias_k is not None:
        raise ValueError(
            "shared_self_attention expects nn.MultiheadAttention(embed_dim, heads, "
            "batch_first=True) without kdim/vdim or add_bias_kv"
        )
    e, h = module.embed_dim, module.num_heads
    w, b = module.in_proj_weight, module.in_proj_bias
    if b is None:
        raise ValueError("shared_self_attention expects the projections to have biases")
    length, dh = x.shape[0], e // h
    k, v = F.linear(x, w[e:], b[e:]).chunk(2, dim=-1)
    q = F.linear(x, w[:e], b[:e])
    q, k, v = (t.reshape(length, h, dh).transpose(0, 1) for t in (q, k, v))  # [h, L, d_h]
    weights = attention_softmax((q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(dh)))
    if module.training and module.dropout > 0:
        # one mask per row, as multi_head_attention draws it for the expanded batch
        kept = dropout(weights.expand(batch, h, length, length), module.dropout)
        out = kept.transpose(0, 1).reshape(h, batch * length, length) @ v  # [h, B*L, d_h]
        out = out.view(h, batch, length, dh).permute(1, 2, 0, 3).reshape(batch, length, e)
        return F.linear(out, module.out_proj.weight, module.out_proj.bias)
    out = (weights @ v).transpose(0, 1).reshape(length, e)
    out = F.linear(out, module.out_proj.weight, module.out_proj.bias)
    return out.expand(batch, length, e)
