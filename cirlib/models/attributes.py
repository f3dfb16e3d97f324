r"""Text-conditioned attribute weights (DQE-CIR): colour and shape sub-queries beside the Combiner.

DQE-CIR adds attribute sub-queries for colour and shape to a BLIP-2 composed query and weighs
them with weights predicted from the modification text (Park, Park and Lee, 2026). We have no
Q-Former here, so each piece is rebuilt on the frozen encoder's features (every choice below is
ours):

* **Base query**: the Combiner, :math:`q^0 = \mathrm{Combiner}(x, y)`, against the frozen
  target feature :math:`t^0 = \mathrm{normalize}(x_{I_t})`.
* **Attribute embedding of an image** (target side): a learned per-token projection
  :math:`\xi_a: \mathbb{R}^W \to \mathbb{R}^d` (``project``) applied to every image token and
  flattened,
  :math:`t^a = \mathrm{normalize}([\xi_a(z_1); \dots; \xi_a(z_T)])`. Flattening keeps
  *where* an attribute is, which a pooled vector would lose.
* **Attribute sub-query** (query side): the same map of the *reference*, edited where the text
  says. Per token :math:`k`, a gate :math:`g_k \in (0,1)` and a new value :math:`v_k` are read
  from the text feature and the token,

  .. math::

      h_k = \mathrm{drop}\,\mathrm{ReLU}(W_y\, y + W_z z_k + p_k),\quad
      g_k = \sigma(w_g^\top h_k),\quad v_k = W_v h_k,

      q^a = \mathrm{normalize}\big([(1-g_k)\,\xi_a(z_k) + g_k v_k]_{k=1..T}\big).

* **Text-conditioned weights**: :math:`\pi = \mathrm{softmax}(\mathrm{MLP}(y)) \in \Delta^{A}`
  (``QueryParts.weights``; :math:`\pi_0` weighs the base query).
* **Score**: :math:`\mathrm{sim}(q, c) = \pi_0\, q^{0\top} t^0_c + \sum_a \pi_a\, q^{a\top} t^a_c`,
  which is the dot product of :math:`[\pi_0 q^0; \pi_1 q^1; \dots]` with :math:`[t^0; t^1; \dots]`,
  so retrieval stays one matrix product over stored gallery embeddings.

Introduced in chapter "DQE-CIR: attribute-weighted queries and target-relative negatives".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cirlib.models.combiner import Combiner
from cirlib.models.dropout import Dropout

ATTRIBUTES = ("colour", "shape")


@dataclass
class QueryParts:
    """The pieces of a composed query: ``base [B, D]``, ``attributes [B, A, E]`` (both
    L2-normalised) and the text-conditioned ``weights [B, 1 + A]`` (column 0: base)."""

    base: torch.Tensor
    attributes: torch.Tensor
    weights: torch.Tensor


@dataclass
class GalleryParts:
    """An image's pieces: ``base [N, D]`` and ``attributes [N, A, E]``, L2-normalised."""

    base: torch.Tensor
    attributes: torch.Tensor


class AttributeWeights(nn.Module):
    r"""Weights over {base, attribute 1..A} predicted from the modification text.

    .. math::

        \pi = \mathrm{softmax}\big(W_2\, \mathrm{drop}\,\mathrm{ReLU}(W_1 y)\big) \in \Delta^{A}

    The output layer starts at zero, so training starts from equal weights.

    Shapes: ``text_features [B, D]`` → ``[B, 1 + A]``. Introduced in chapter "DQE-CIR: attribute-weighted queries and target-relative negatives".
    """

    def __init__(self, dim: int, n_attributes: int, hidden_dim: int | None = None, dropout=0.1):
        super().__init__()
        h = hidden_dim or dim
        self.hidden = nn.Linear(dim, h)
        self.out = nn.Linear(h, 1 + n_attributes)
        self.dropout = Dropout(dropout)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, text_features: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.out(self.dropout(F.relu(self.hidden(text_features)))), dim=-1)


class AttributeSubQuery(nn.Module):
    r"""One attribute's map of an image and its text-edited version for a reference.

    ``embed(tokens)`` is :math:`t^a` (``[N, T, W]`` → ``[N, T·d]``) and ``forward(tokens,
    text)`` is :math:`q^a` (``[B, T, W]``, ``[B, D]`` → ``[B, T·d]``), both L2-normalised; see
    the module docstring for the formulas. The gate bias starts at -2 (:math:`g \approx 0.12`):
    an edit changes few tokens, so the sub-query starts close to the reference's own map.

    Introduced in chapter "DQE-CIR: attribute-weighted queries and target-relative negatives".
    """

    def __init__(
        self,
        dim: int,
        token_width: int,
        n_tokens: int,
        attribute_dim: int = 16,
        hidden_dim: int = 64,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.project = nn.Linear(token_width, attribute_dim)
        self.text_in = nn.Linear(dim, hidden_dim)
        self.token_in = nn.Linear(token_width, hidden_dim)
        self.position = nn.Parameter(torch.zeros(n_tokens, hidden_dim))
        self.gate = nn.Linear(hidden_dim, 1)
        self.value = nn.Linear(hidden_dim, attribute_dim)
        self.dropout = Dropout(dropout)
        nn.init.normal_(self.position, std=0.02)
        nn.init.constant_(self.gate.bias, -2.0)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.project(tokens).flatten(1), dim=-1)

    def forward(self, tokens: torch.Tensor, text_features: torch.Tensor, return_gate: bool = False):
        h = self.token_in(tokens) + self.text_in(text_features)[:, None, :] + self.position
        h = self.dropout(F.relu(h))
        gate = torch.sigmoid(self.gate(h))  # [B, T, 1]
        edited = (1 - gate) * self.project(tokens) + gate * self.value(h)
        q = F.normalize(edited.flatten(1), dim=-1)
        return (q, gate.squeeze(-1)) if return_gate else q


class AttributeWeightedCombiner(nn.Module):
    r"""DQE-CIR's query head: the Combiner plus text-weighted attribute sub-queries.

    ``forward(image_features [B, D], text_features [B, D], image_tokens [B, T, W])`` returns
    :class:`QueryParts`; ``embed_gallery(image_features [N, D], image_tokens [N, T, W])``
    returns :class:`GalleryParts`; :meth:`joint_query` and :meth:`joint_gallery` flatten them so
    that ``joint_query(q) @ joint_gallery(g).T`` is the score

    .. math:: \mathrm{sim}(q, c) = \pi_0\, q^{0\top} t^0_c + \sum_a \pi_a\, q^{a\top} t^a_c.

    With ``attributes=()`` the head *is* the Combiner (one weight, equal to 1). Token width
    ``W`` and count ``T`` come from the features, so the same head runs on the toy encoder
    (9 × 128) and on open_clip models.

    Introduced in chapter "DQE-CIR: attribute-weighted queries and target-relative negatives".
    """

    def __init__(
        self,
        dim: int,
        token_width: int,
        n_tokens: int,
        attributes: tuple[str, ...] = ATTRIBUTES,
        attribute_dim: int = 16,
        attribute_hidden_dim: int = 64,
        dropout: float = 0.5,
        attribute_dropout: float = 0.1,
    ):
        super().__init__()
        self.attributes = tuple(attributes)
        self.combiner = Combiner(dim, dropout=dropout)
        self.sub_queries = nn.ModuleList(
            AttributeSubQuery(
                dim, token_width, n_tokens, attribute_dim, attribute_hidden_dim, attribute_dropout
            )
            for _ in self.attributes
        )
        self.weights = AttributeWeights(dim, len(self.attributes), dropout=attribute_dropout)

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        image_tokens: torch.Tensor,
    ) -> QueryParts:
        base = self.combiner(image_features, text_features)
        tokens = image_tokens.to(base.dtype)
        attrs = [sq(tokens, text_features) for sq in self.sub_queries]
        if attrs:
            weights = self.weights(text_features)
            attributes = torch.stack(attrs, dim=1)
        else:
            weights = torch.ones(len(base), 1, dtype=base.dtype, device=base.device)
            attributes = base.new_zeros(len(base), 0, 0)
        return QueryParts(base, attributes, weights)

    def embed_gallery(self, image_features: torch.Tensor, image_tokens: torch.Tensor):
        base = F.normalize(image_features.float(), dim=-1)
        tokens = image_tokens.float()
        if self.sub_queries:
            attributes = torch.stack([sq.embed(tokens) for sq in self.sub_queries], dim=1)
        else:
            attributes = base.new_zeros(len(base), 0, 0)
        return GalleryParts(base, attributes)

    @staticmethod
    def joint_query(parts: QueryParts) -> torch.Tensor:
        r"""``[B, D + A·E]``: :math:`[\pi_0 q^0; \pi_1 q^1; \dots]`."""
        w = parts.weights
        pieces = [w[:, :1] * parts.base]
        pieces += [w[:, 1 + a, None] * parts.attributes[:, a] for a in range(w.shape[1] - 1)]
        return torch.cat(pieces, dim=-1)

    @staticmethod
    def joint_gallery(parts: GalleryParts) -> torch.Tensor:
        """``[N, D + A·E]``: :math:`[t^0; t^1; \\dots]` (norm :math:`\\sqrt{1 + A}`)."""
        return torch.cat([parts.base, parts.attributes.flatten(1)], dim=-1)
