r"""CaLa's two training-only branches on token features, and the CaLa head that carries them.

CaLa {cite}`jiang2024cala` keeps the usual query–target matching (QTM) model for inference and
adds two *complementary associations* of a triplet (reference :math:`I_r`, text :math:`T`,
target :math:`I_t`) that are used at training time only:

* **text-bridged image alignment (TBIA)**, by a *hinge-based cross-attention*
  (:class:`HingeCrossAttention`): the reference attends to the target *through* the text tokens,
  and the resulting pseudo-target must match the composed query;
* **complementary text reasoning (CTR)**, by a *twin-attention visual compositor*
  (:class:`TwinAttentionCompositor`): reference and target attend to each other, and the fused
  vector must retrieve the text.

:class:`CaLa` is the Combiner of chapter "The Combiner baseline" plus these two branches; its
``forward`` *is* the Combiner, so inference is the baseline's, at the baseline's cost.

Where this code departs from the released implementation (Chiangsonw/CaLa; Jiang et al., 2024), on
purpose, each departure is documented where it happens:

1. the compositor's attention layers are **separate** modules (the code reuses one module four
   times per branch; the paper's figure 4 says the two branches do not share weights);
2. the compositor's summary token is a **learned** parameter (the CLIP variant of the code draws
   a fresh ``torch.randn`` vector every forward pass);
3. tokens are **spatial**: token ``k`` is grid cell / feature-map position ``k``
   (:func:`spatial_tokens`; the code's ``view`` of a channel-first map mixes channels and
   positions);
4. padded text tokens are **masked** out of the hinge (the code has no mask);
5. the pseudo-target is the **mean** over reference positions (the code keeps row 0, which for a
   real spatial grid would be the top-left cell only).

Introduced in chapter "CaLa: complementary association learning".
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cirlib.models.attention import multi_head_attention
from cirlib.models.combiner import Combiner
from cirlib.models.dropout import Dropout
from cirlib.models.short_softmax import attention_softmax


def spatial_tokens(feature_map: torch.Tensor) -> torch.Tensor:
    r"""Turn a channel-first feature map ``[B, C, h, w]`` into tokens ``[B, h*w, C]``.

    Token :math:`k = i\,w + j` is the channel vector at position :math:`(i, j)` (row-major), so
    each token is one place in the image. The released CaLa code instead calls
    ``feature_map.view(B, h*w, C)`` on the channel-first tensor: its "token" ``k`` is then the
    ``C`` consecutive numbers starting at flat index :math:`kC` of the ``[C, h, w]`` block, i.e.
    pieces of a few channels over many positions (CaLa's released CLIP variant). The toy encoder's ViT tokens
    are already one per grid cell; :func:`cirlib.models.backbone.image_tokens` applies this same
    reshape to ResNet maps.

    Introduced in chapter "CaLa: complementary association learning".
    """
    return feature_map.flatten(2).transpose(1, 2)


def _image_adapter(width: int, dim: int) -> nn.Sequential:
    # CaLa-CLIP maps the 2560-wide RN50x4 map to the 640-wide embedding with Linear + ReLU
    return nn.Sequential(nn.Linear(width, dim), nn.ReLU())


class HingeCrossAttention(nn.Module):
    r"""Two-hop attention reference → text → target: the text is the *hinge* between the images.

    With reference tokens :math:`R \in \mathbb{R}^{N \times W_I}`, target tokens
    :math:`G \in \mathbb{R}^{M \times W_I}`, text tokens :math:`T \in \mathbb{R}^{L \times W_T}`
    and the text mask :math:`m \in \{0,1\}^L`; :math:`\psi` (``image_adapter``) is a Linear + ReLU
    adapter to the width :math:`d`:

    .. math::

        Q = \psi(R) W_q,\quad H = \mathrm{diag}(m)\,T W_h,\quad K = \psi(G) W_k,\quad
        V = \psi(G) W_v

        A = \frac{Q H^\top}{\sqrt d} \in \mathbb{R}^{N\times L},\qquad
        B = \frac{H K^\top}{\sqrt d} \in \mathbb{R}^{L\times M}

        S = \mathrm{drop}\big(\mathrm{softmax}_{\text{row}}(A B)\big),\qquad
        P = S V,\qquad p = \frac1N \sum_{n} P_n

    Row :math:`n` of :math:`AB = \sum_l A_{:,l} B_{l,:}` scores target position :math:`m` for
    reference position :math:`n` as a sum over text tokens: token :math:`l` bridges :math:`n` and
    :math:`m` when both :math:`A_{nl}` and :math:`B_{lm}` are large. Zeroing the padded rows of
    :math:`H` removes padded tokens from that sum exactly (the released code has no mask).
    The code keeps :math:`P_0`; with spatial tokens that is the top-left cell only, so we average
    over reference positions.

    Shapes: ``reference [B, N, W_I]``, ``text [B, L, W_T]``, ``text_mask [B, L]`` (True on real
    tokens), ``target [B, M, W_I]``; :meth:`forward` returns the pseudo-target ``[B, d_v]``, where
    ``value_dim`` :math:`d_v` (default :math:`d`) is the width of the query it is compared with.

    Introduced in chapter "CaLa: complementary association learning".
    """

    def __init__(
        self,
        image_width: int,
        text_width: int,
        dim: int,
        dropout: float = 0.1,
        value_dim: int | None = None,
    ):
        super().__init__()
        self.dim = dim
        self.image_adapter = _image_adapter(image_width, dim)
        self.reference_query = nn.Linear(dim, dim)
        self.hinge = nn.Linear(text_width, dim)
        self.target_key = nn.Linear(dim, dim)
        self.target_value = nn.Linear(dim, value_dim or dim)
        self.dropout = Dropout(dropout)  # the released code's attention dropout, 0.1

    def maps(
        self,
        reference: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        target: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """The two hops and their product: ``reference_to_text`` :math:`A` ``[B, N, L]``,
        ``text_to_target`` :math:`B` ``[B, L, M]``, ``logits`` :math:`AB` ``[B, N, M]``,
        ``attention`` (row softmax of the logits, before dropout) and ``values`` :math:`V`."""
        g = self.image_adapter(target)
        q = self.reference_query(self.image_adapter(reference))
        h = self.hinge(text) * text_mask.unsqueeze(-1).to(text.dtype)
        k = self.target_key(g)
        scale = math.sqrt(self.dim)
        a = q @ h.transpose(1, 2) / scale
        b = h @ k.transpose(1, 2) / scale
        logits = a @ b
        return {
            "reference_to_text": a,
            "text_to_target": b,
            "logits": logits,
            "attention": attention_softmax(logits),
            "values": self.target_value(g),
        }

    def forward(
        self,
        reference: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        target: torch.Tensor,
    ) -> torch.Tensor:
        m = self.maps(reference, text, text_mask, target)
        pseudo = self.dropout(m["attention"]) @ m["values"]  # [B, N, d]
        return pseudo.mean(dim=1)


class TwinAttentionCompositor(nn.Module):
    r"""Fuse a reference and a target image with two chains of cross-attention.

    With :math:`\tilde R = [c; \psi(R)]` and :math:`\tilde G = [c; \psi(G)]` (a learned token
    :math:`c \in \mathbb{R}^d` in front of the adapted tokens) and single-head attention
    layers :math:`\mathrm{Att}^{r}_k, \mathrm{Att}^{g}_k` (no residual, no LayerNorm, no FFN,
    as in the released code):

    .. math::

        o^{r}_1 = \mathrm{Att}^{r}_1(\tilde R, \tilde G, \tilde G),\quad
        o^{r}_k = \mathrm{Att}^{r}_k(\tilde R, o^{r}_{k-1}, o^{r}_{k-1})\ (k = 2..K)

        o^{g}_1 = \mathrm{Att}^{g}_1(\tilde G, \tilde R, \tilde R),\quad
        o^{g}_k = \mathrm{Att}^{g}_k(\tilde G, o^{g}_{k-1}, o^{g}_{k-1})

        v = \tfrac12\big(o^{r}_{K}[0] + o^{g}_{K}[0]\big)

    (arguments: query, key, value). The reference branch asks "what of the target answers me",
    the target branch the reverse, and the token's two answers are averaged into the visual
    counterpart of the text. Departures from the released code: the :math:`2K` layers are
    separate modules (the code calls one module :math:`K` times per branch), and :math:`c` is a
    learned parameter initialised from :math:`\mathcal N(0, 1)` (the code's CLIP variant samples
    a new random :math:`c` on every pass, so position 0 carries no stable meaning).

    Shapes: ``reference [B, N, W_I]`` and ``target [B, M, W_I]``; returns ``[B, d]``.

    Introduced in chapter "CaLa: complementary association learning".
    """

    def __init__(self, image_width: int, dim: int, layers: int = 4):
        super().__init__()
        if layers < 1:
            raise ValueError(f"the compositor needs at least one attention layer, got {layers}")
        self.image_adapter = _image_adapter(image_width, dim)
        self.token = nn.Parameter(torch.randn(dim))
        self.reference_layers = nn.ModuleList(
            nn.MultiheadAttention(dim, 1, batch_first=True) for _ in range(layers)
        )
        self.target_layers = nn.ModuleList(
            nn.MultiheadAttention(dim, 1, batch_first=True) for _ in range(layers)
        )

    @staticmethod
    def _chain(layers: nn.ModuleList, queries: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        out = first
        for layer in layers[:-1]:
            out = multi_head_attention(layer, queries, out, out)[0]
        # only the token's row of the last layer is used, and attention rows are independent
        return multi_head_attention(layers[-1], queries[:, :1], out, out)[0][:, 0]

    def forward(self, reference: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        token = self.token.to(reference.dtype).expand(len(reference), 1, -1)
        r = torch.cat([token, self.image_adapter(reference)], dim=1)
        g = torch.cat([token, self.image_adapter(target)], dim=1)
        from_target = self._chain(self.reference_layers, r, g)
        from_reference = self._chain(self.target_layers, g, r)
        return (from_target + from_reference) / 2


class CaLa(nn.Module):
    r"""The Combiner plus CaLa's training-only branches.

    * ``combiner`` — :class:`cirlib.models.combiner.Combiner` on global features; :meth:`forward`
      calls it and nothing else, so queries (and their cost) are the baseline's. It is built
      first, so under the same seed it starts from the baseline's exact weights.
    * ``hinge`` — :class:`HingeCrossAttention` (TBIA).
    * ``compositor`` — :class:`TwinAttentionCompositor` (CTR).
    * ``text_head`` — a linear map from the Combiner's text projection
      :math:`p_T = \mathrm{ReLU}(W_T y) \in \mathbb{R}^P` to the compositor width, the text
      side of CTR (:meth:`complementary_text`). CaLa fine-tunes its text encoder, so CTR
      shapes the text features the query is built from; here the encoder is frozen and the
      Combiner's text projection is the trainable text representation in the query path.

    Parameters
    ----------
    dim : width :math:`D` of the global features.
    image_token_width, text_token_width : widths of the encoder's token features (128 and 128
        for the toy encoder; 2560 and 640 for RN50x4).
    branch_dim : width :math:`d` inside the branches; default :math:`D`, as in CaLa-CLIP. The
        hinge's values map to :math:`D` so the pseudo-target can be compared with the query.

    Introduced in chapter "CaLa: complementary association learning".
    """

    def __init__(
        self,
        dim: int,
        image_token_width: int,
        text_token_width: int,
        *,
        combiner_dropout: float = 0.5,
        hinge_dropout: float = 0.1,
        compositor_layers: int = 4,
        branch_dim: int | None = None,
    ):
        super().__init__()
        d = branch_dim or dim
        self.combiner = Combiner(dim, dropout=combiner_dropout)
        self.hinge = HingeCrossAttention(
            image_token_width, text_token_width, d, hinge_dropout, value_dim=dim
        )
        self.compositor = TwinAttentionCompositor(image_token_width, d, compositor_layers)
        self.text_head = nn.Linear(self.combiner.text_projection.out_features, d)

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """The composed query ``[B, D]``, L2-normalised: the Combiner alone."""
        return self.combiner(image_features, text_features)

    def complementary_text(self, text_features: torch.Tensor) -> torch.Tensor:
        r"""CTR's text side :math:`\zeta = W_\zeta\,\mathrm{ReLU}(W_T y)` ``[B, d]`` (un-normalised);
        :math:`W_T` is the Combiner's own text projection, without its dropout."""
        return self.text_head(F.relu(self.combiner.text_projection(text_features)))

    def training_only_modules(self) -> dict[str, nn.Module]:
        """The modules inference never runs."""
        return {"hinge": self.hinge, "compositor": self.compositor, "text_head": self.text_head}
