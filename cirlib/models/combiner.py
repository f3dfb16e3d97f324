"""The CLIP4Cir Combiner: the composition head every method in the book starts from."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cirlib.models.dropout import Dropout


class Combiner(nn.Module):
    r"""Fuse a reference-image feature and a text feature into one query feature.

    With :math:`x = x_{I_r}` and :math:`y = y_T` in :math:`\mathbb{R}^D`, the *un-normalised* CLIP
    features of the reference image and the text (Baldrati et al., 2023):

    .. math::

        p_T = \mathrm{drop}(\mathrm{ReLU}(W_T y)),\quad
        p_I = \mathrm{drop}(\mathrm{ReLU}(W_I x)),\quad c = [p_T; p_I] \in \mathbb{R}^{2P}

        h = \mathrm{drop}(\mathrm{ReLU}(W_c c)),\quad
        \lambda = \sigma\big(w_\lambda^\top \mathrm{drop}(\mathrm{ReLU}(W_\lambda c))\big)

        q = \mathrm{normalize}\big(W_o h + \lambda y + (1-\lambda) x\big)

    The learned residual mixes text and image; :math:`\lambda` decides, per query, how much of
    each raw feature to keep. CLIP4Cir uses :math:`P = 4D`, :math:`H = 8D` and dropout 0.5.

    Shapes: ``image_features`` and ``text_features`` are ``[B, D]``; returns ``[B, D]``,
    L2-normalised. Introduced in chapter "The Combiner baseline".
    """

    def __init__(
        self,
        dim: int,
        projection_dim: int | None = None,
        hidden_dim: int | None = None,
        dropout: float = 0.5,
    ):
        super().__init__()
        p = projection_dim or 4 * dim
        h = hidden_dim or 8 * dim
        self.text_projection = nn.Linear(dim, p)
        self.image_projection = nn.Linear(dim, p)
        self.combine = nn.Linear(2 * p, h)
        self.output = nn.Linear(h, dim)
        self.mix_hidden = nn.Linear(2 * p, h)
        self.mix_out = nn.Linear(h, 1)
        self.dropout = Dropout(dropout)

    def forward(
        self, image_features: torch.Tensor, text_features: torch.Tensor, return_mix: bool = False
    ):
        d = self.dropout
        p_t = d(F.relu(self.text_projection(text_features)))
        p_i = d(F.relu(self.image_projection(image_features)))
        c = torch.cat([p_t, p_i], dim=-1)
        h = d(F.relu(self.combine(c)))
        mix = torch.sigmoid(self.mix_out(d(F.relu(self.mix_hidden(c)))))
        out = self.output(h) + mix * text_features + (1 - mix) * image_features
        q = F.normalize(out, dim=-1)
        return (q, mix.squeeze(-1)) if return_mix else q
