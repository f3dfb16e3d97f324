r"""The mapping network of zero-shot textual inversion: frozen image feature -> pseudo-word.

.. math:: \phi(x) = W_L\, \mathrm{act}(\dots \mathrm{act}(W_1 \hat x + b_1) \dots) + b_L,
          \qquad \hat x = x / \lVert x \rVert,

an MLP from the encoder's image feature :math:`x \in \mathbb{R}^{D}` to a vector of the text
tower's word-embedding space :math:`\mathbb{R}^{W}`, with activation :math:`\mathrm{act}` (ReLU, or
GELU as in SEARLE's released network) and dropout after every hidden layer. Pic2Word (Saito et al., 2023) trains it contrastively on images alone
(:mod:`cirlib.zeroshot.pic2word`); SEARLE (Baldrati et al., 2023) distils per-image optimised
pseudo-words into it (:mod:`cirlib.zeroshot.searle`). The input is L2-normalised first because
the cached features are not, and only their direction carries meaning for a CLIP encoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PseudoWordMapper"]


class PseudoWordMapper(nn.Module):
    """MLP ``[B, D] -> [B, W]`` with ``hidden_layers`` hidden layers of width ``hidden``.

    Parameters
    ----------
    feature_dim : int
        :math:`D`, the image feature size.
    word_dim : int
        :math:`W`, the width of the text tower's token embeddings.
    hidden : int or None
        Hidden width; ``4 * feature_dim`` when None.
    hidden_layers : int
        Number of hidden layers (at least 1).
    dropout : float
        Dropout after every hidden activation.
    activation : {"relu", "gelu"}
    """

    def __init__(
        self,
        feature_dim: int,
        word_dim: int,
        hidden: int | None = None,
        hidden_layers: int = 2,
        dropout: float = 0.1,
        activation: str = "relu",
    ):
        super().__init__()
        if hidden_layers < 1:
            raise ValueError(f"hidden_layers must be at least 1, got {hidden_layers}")
        acts = {"relu": nn.ReLU, "gelu": nn.GELU}
        if activation not in acts:
            raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(acts)}")
        hidden = 4 * feature_dim if hidden is None else hidden
        layers: list[nn.Module] = []
        width = feature_dim
        for _ in range(hidden_layers):
            layers += [nn.Linear(width, hidden), acts[activation](), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, word_dim))
        self.net = nn.Sequential(*layers)
        self.feature_dim, self.word_dim = feature_dim, word_dim

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        if image_features.shape[-1] != self.feature_dim:
            raise ValueError(
                f"image features have size {image_features.shape[-1]}, the mapper expects "
                f"{self.feature_dim}"
            )
        return self.net(F.normalize(image_features.float(), dim=-1))
