r"""Schemas: a few learnable query tokens that read token features by cross-attention.

A small Q-Former (BLIP-2's querying transformer, as SPRC and MAPNet use it; Li et al., 2023,
§4.2). :math:`N_s` learned vectors attend to the tokens of the frozen encoder and come out as
:math:`N_s` "schemas", each free to specialise on one part of the input (an object, an
attribute, a word of the edit). MAPNet runs the same module twice:

* query side: the schemas read the reference image's patch tokens **and** the text tokens,
  :math:`F^q = \mathrm{Schemas}([Z_r; Y_T])`;
* target side: the schemas read the target image's patch tokens only,
  :math:`F^t = \mathrm{Schemas}(Z_t)`.

Introduced in chapter "MAPNet: multi-schema interaction and relaxed proximity".
"""

from __future__ import annotations

import torch
from torch import nn

from cirlib.models.attention import multi_head_attention, shared_self_attention
from cirlib.models.dropout import Dropout


class SchemaLayer(nn.Module):
    r"""One pre-LayerNorm block: schemas self-attend, cross-attend to the tokens, then an MLP.

    .. math::

        x \leftarrow x + \mathrm{SA}(\mathrm{LN}(x)),\quad
        x \leftarrow x + \mathrm{CA}(\mathrm{LN}(x), m),\quad
        x \leftarrow x + \mathrm{MLP}(\mathrm{LN}(x))

    Shapes: ``x`` ``[B, N_s, W]``, or ``[N_s, W]`` for a sequence that is the same in every row
    (its self-attention is then computed once, :func:`~cirlib.models.attention.shared_self_attention`),
    ``memory`` ``[B, T, W]``, ``memory_padding`` ``[B, T]`` (True where a token is padding);
    returns ``x`` ``[B, N_s, W]``. Introduced in chapter "MAPNet: multi-schema interaction
    and relaxed proximity".
    """

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.1):
        super().__init__()
        self.norm_self = nn.LayerNorm(width)
        self.self_attention = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.norm_cross = nn.LayerNorm(width)
        self.cross_attention = nn.MultiheadAttention(
            width, heads, dropout=dropout, batch_first=True
        )
        self.norm_mlp = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(width, hidden), nn.GELU(), Dropout(dropout), nn.Linear(hidden, width)
        )
        self.dropout = Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        memory_padding: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.norm_self(x)
        if x.dim() == 2:  # [N_s, W]: the learned queries, the same in every row of the batch
            attended = shared_self_attention(self.self_attention, h, len(memory))
        else:
            attended = multi_head_attention(self.self_attention, h, h, h)[0]
        x = x + self.dropout(attended)
        h = self.norm_cross(x)
        attended, weights = multi_head_attention(
            self.cross_attention, h, memory, memory,
            key_padding_mask=memory_padding, need_weights=need_weights,
        )  # fmt: skip
        x = x + self.dropout(attended)
        x = x + self.dropout(self.mlp(self.norm_mlp(x)))
        return x, weights


class SchemaEncoder(nn.Module):
    r"""A small Q-Former: :math:`N_s` learnable queries cross-attending to token features.

    The image tokens :math:`Z \in \mathbb{R}^{T\times W_I}` and (optionally) text tokens
    :math:`Y \in \mathbb{R}^{L\times W_T}` are each projected to the module's width and
    layer-normalised; a separate projection per modality also tells the schemas which tokens
    are words. The memory is :math:`m = [\mathrm{LN}(Z A_I);\ \mathrm{LN}(Y A_T)]`, and

    .. math::

        x^{(0)} = Q \in \mathbb{R}^{N_s\times W},\qquad
        x^{(l)} = \mathrm{SchemaLayer}_l(x^{(l-1)}, m),\qquad
        F = \mathrm{LN}(x^{(L)})\, A_{out} \in \mathbb{R}^{N_s\times D_s}.

    Token widths are read from the arguments (the toy encoder has 128-wide tokens, 9 image
    tokens; open_clip towers have others), never assumed.

    Parameters
    ----------
    image_token_dim, text_token_dim : widths :math:`W_I, W_T` of the encoder's tokens.
    n_schemas : :math:`N_s` (MAPNet: 32, from BLIP-2's Q-Former).
    width : the module's internal width :math:`W`.
    out_dim : :math:`D_s`, the width of each schema.
    layers, heads, dropout : transformer sizes.

    Shapes: ``forward(image_tokens [B, T, W_I], text_tokens [B, L, W_T] | None,
    text_mask [B, L] | None)`` → ``[B, N_s, D_s]`` (not normalised), plus, with
    ``return_attention=True``, the last layer's cross-attention ``[B, N_s, T (+ L)]``
    averaged over heads.

    Introduced in chapter "MAPNet: multi-schema interaction and relaxed proximity".
    """

    def __init__(
        self,
        image_token_dim: int,
        text_token_dim: int,
        n_schemas: int = 8,
        width: int = 128,
        out_dim: int = 128,
        layers: int = 2,
        heads: int = 4,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.n_schemas = n_schemas
        # Unit-scale queries. BLIP-2 draws its queries with std 0.02, but its BERT blocks are
        # post-LayerNorm, so they enter the first layer normalised. In this pre-LayerNorm stack
        # the raw queries are the residual stream: at 0.02 the first attention output drowns
        # them, every schema starts as the same token average, and they stay identical.
        self.queries = nn.Parameter(torch.randn(n_schemas, width))
        self.image_in = nn.Sequential(nn.Linear(image_token_dim, width), nn.LayerNorm(width))
        self.text_in = nn.Sequential(nn.Linear(text_token_dim, width), nn.LayerNorm(width))
        self.layers = nn.ModuleList(
            SchemaLayer(width, heads, dropout=dropout) for _ in range(layers)
        )
        self.norm_out = nn.LayerNorm(width)
        self.out = nn.Linear(width, out_dim)

    def forward(
        self,
        image_tokens: torch.Tensor,
        text_tokens: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        return_attention: bool = False,
    ):
        memory = self.image_in(image_tokens)
        padding = None
        if text_tokens is not None:
            memory = torch.cat([memory, self.text_in(text_tokens)], dim=1)
            if text_mask is not None:
                image_kept = torch.zeros(
                    image_tokens.shape[:2], dtype=torch.bool, device=text_mask.device
                )
                padding = torch.cat([image_kept, ~text_mask.bool()], dim=1)
        # the queries enter un-expanded: the first layer self-attends over them once for the
        # whole batch (shared_self_attention); its cross-attention makes the rows differ
        x = self.queries
        attention = None
        for k, layer in enumerate(self.layers):
            last = return_attention and k == len(self.layers) - 1
            x, attention = layer(x, memory, padding, need_weights=last)
        schemas = self.out(self.norm_out(x))
        return (schemas, attention) if return_attention else schemas
