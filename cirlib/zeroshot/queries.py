r"""Composed queries of zero-shot textual inversion: the reference as a pseudo-word in a sentence.

For a reference image turned into a pseudo-word :math:`v` and a modification text :math:`m`, the
query is the text feature of a template holding both,

.. math:: q = \frac{E_T(\text{"}{*}\ ,\ m\text{"};\ {*} \mapsto v)}
               {\lVert E_T(\text{"}{*}\ ,\ m\text{"};\ {*} \mapsto v) \rVert},

scored against the frozen image features of the gallery: no (reference, text, target) triplet is
ever used. Pic2Word (Saito et al., 2023) writes ``"a photo of * , {text}"``; on the toy world the
text tower only knows the scene-caption grammar, whose phrases are joined by commas, so the
template is the pseudo-word standing for the whole scene, a comma, then the modification text.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from cirlib.models.pseudo_tokens import encode_text_with_pseudo_tokens, placeholder_id

__all__ = [
    "IMAGE_TEMPLATE",
    "PAPER_IMAGE_TEMPLATE",
    "PAPER_QUERY_TEMPLATE",
    "PLACEHOLDER",
    "QUERY_TEMPLATE",
    "mapper_queries",
    "pseudo_word_queries",
]

PLACEHOLDER = "*"
# Toy world: the caption grammar with the pseudo-word in place of the objects ...
IMAGE_TEMPLATE = "*"
# ... and, at query time, followed by the modification text.
QUERY_TEMPLATE = "* , {}"
# Real data (open_clip towers): Pic2Word's wording.
PAPER_IMAGE_TEMPLATE = "a photo of *"
PAPER_QUERY_TEMPLATE = "a photo of * , {}"


def pseudo_word_queries(
    encoder,
    tokenizer,
    pseudo_words: torch.Tensor,
    texts: Sequence[str],
    template: str = QUERY_TEMPLATE,
    *,
    placeholder: str = PLACEHOLDER,
    batch_size: int = 512,
) -> torch.Tensor:
    """L2-normalised query features ``[Q, D]``: ``template.format(text)`` with its placeholder
    embedded as that query's pseudo-word.

    Parameters
    ----------
    encoder : open_clip model (the toy encoder or a ``paper`` one), frozen
    tokenizer : its tokenizer
    pseudo_words : Tensor[Q, W]
    texts : Q modification texts
    template : str
        Holds the placeholder once and ``{}`` where the text goes.
    placeholder : str
        The placeholder word of ``template``.
    batch_size : int
    """
    if len(texts) != len(pseudo_words):
        raise ValueError(f"{len(texts)} texts for {len(pseudo_words)} pseudo-words")
    if "{}" not in template:
        raise ValueError(f"the query template {template!r} needs '{{}}' where the text goes")
    star = placeholder_id(tokenizer, placeholder)
    device = next(encoder.parameters()).device
    out = []
    with torch.no_grad():
        for s in range(0, len(texts), batch_size):
            tokens = tokenizer([template.format(t) for t in texts[s : s + batch_size]])
            v = pseudo_words[s : s + batch_size].to(device)
            out.append(encode_text_with_pseudo_tokens(encoder, tokens.to(device), v, star).float())
    return F.normalize(torch.cat(out).cpu(), dim=-1)


def mapper_queries(
    mapper, encoder, tokenizer, features, split, template: str = QUERY_TEMPLATE, **options
) -> torch.Tensor:
    """:func:`pseudo_word_queries` for every triplet of ``split``, the pseudo-word of each
    reference predicted by ``mapper`` from its frozen feature (``features`` of that split)."""
    mapper.eval()
    device = next(mapper.parameters()).device
    with torch.no_grad():
        refs = features.images[features.reference_index].to(device)
        pseudo = mapper(refs)
    texts = [t.caption for t in split.triplets]
    return pseudo_word_queries(encoder, tokenizer, pseudo, texts, template, **options)
