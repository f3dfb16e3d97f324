"""Zero-shot composed retrieval by textual inversion: no (reference, text, target) triplet is used.

The reference image becomes a pseudo-word of the frozen text tower
(:mod:`cirlib.models.pseudo_tokens`), predicted by a mapping network trained on images alone
(:mod:`cirlib.zeroshot.pic2word`, Pic2Word) or by per-image optimisation distilled into a
network (:mod:`cirlib.zeroshot.oti`, :mod:`cirlib.zeroshot.searle`, SEARLE); the query is a
template holding the pseudo-word followed by the modification text
(:mod:`cirlib.zeroshot.queries`).
"""

from cirlib.zeroshot.mapping_network import PseudoWordMapper
from cirlib.zeroshot.oti import inversion_loss, invert_images
from cirlib.zeroshot.pic2word import pseudo_word_contrastive_loss
from cirlib.zeroshot.queries import (
    IMAGE_TEMPLATE,
    PAPER_IMAGE_TEMPLATE,
    PAPER_QUERY_TEMPLATE,
    PLACEHOLDER,
    QUERY_TEMPLATE,
    mapper_queries,
    pseudo_word_queries,
)
from cirlib.zeroshot.searle import SEARLE_TEMPERATURE

__all__ = [
    "IMAGE_TEMPLATE",
    "PAPER_IMAGE_TEMPLATE",
    "PAPER_QUERY_TEMPLATE",
    "PLACEHOLDER",
    "QUERY_TEMPLATE",
    "SEARLE_TEMPERATURE",
    "PseudoWordMapper",
    "inversion_loss",
    "invert_images",
    "mapper_queries",
    "pseudo_word_contrastive_loss",
    "pseudo_word_queries",
]
