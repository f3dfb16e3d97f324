r"""A mapping network bound to the frozen encoder it writes pseudo-words for.

A zero-shot method trains only its mapping network :math:`\phi`; the encoder whose text tower
reads the pseudo-words stays frozen. :class:`PseudoWordModel` is what such a method's ``build``
returns (:mod:`cirlib.methods.pic2word`, :mod:`cirlib.methods.searle`): a module whose only
parameters are :math:`\phi`'s, so its checkpoint holds :math:`\phi` alone (not a copy of the
encoder, which is 1.7 GB for a ViT-L), while ``to(device)`` still moves the encoder along.
The encoder is loaded once per (name, weights) in a process (:func:`frozen_encoder`) and shared
by every model built on it.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from cirlib.zeroshot.mapping_network import PseudoWordMapper

__all__ = ["PseudoWordModel", "frozen_encoder"]


@lru_cache(maxsize=2)
def frozen_encoder(name: str, pretrained: str):
    """``(encoder, tokenizer)`` of :func:`cirlib.models.backbone.load_backbone`, on the CPU, in
    eval mode, every parameter with ``requires_grad=False``; one object per process and
    (name, weights)."""
    from cirlib.models.backbone import load_backbone

    encoder, _, tokenizer = load_backbone(name, pretrained)
    encoder.eval().requires_grad_(False)
    return encoder, tokenizer


class PseudoWordModel(nn.Module):
    """``forward(image_features [B, D]) -> pseudo-words [B, W]`` through :attr:`mapper`.

    Attributes
    ----------
    mapper : PseudoWordMapper
        The trained part (its parameters are the module's).
    encoder, tokenizer
        The frozen encoder and its tokenizer, held outside the module tree: not in
        ``state_dict()`` nor ``parameters()``, never put in train mode by ``model.train()``.
    image_template, query_template : str
        The training template holding the placeholder, and the query template (``{}`` where
        the modification text goes).
    """

    def __init__(
        self, mapper: PseudoWordMapper, encoder, tokenizer, image_template: str, query_template: str
    ):
        super().__init__()
        self.mapper = mapper
        # plain attributes: nn.Module.__setattr__ would register the encoder as a submodule
        self.__dict__["encoder"] = encoder
        self.__dict__["tokenizer"] = tokenizer
        self.image_template, self.query_template = image_template, query_template

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        return self.mapper(image_features)

    def _apply(self, fn, recurse=True):
        # to(), cuda(), half() ... reach the encoder too, so the text tower runs where phi does
        self.encoder._apply(fn)
        return super()._apply(fn, recurse)
