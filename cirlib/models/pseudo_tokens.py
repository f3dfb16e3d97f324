r"""Encode a text in which a placeholder word stands for a given vector (a pseudo-word).

Zero-shot composed retrieval by textual inversion writes the reference image *into the sentence*:
the image becomes a vector :math:`v \in \mathbb{R}^{W}` in the text tower's word-embedding space,
and a template such as ``"a photo of * , make it red"`` is encoded with the embedding of the
placeholder ``*`` replaced by :math:`v`. With :math:`E` the token-embedding table, :math:`t_l` the
ids of the text and :math:`p` the placeholder id, the tower's input sequence becomes

.. math:: x_l = \begin{cases} v_{(l)} & t_l = p \\ E[t_l] & \text{otherwise} \end{cases}
          \;+\; \mathrm{pos}_l ,

where :math:`v_{(l)}` is the pseudo-word for that occurrence; everything after the embedding
(transformer, final norm, pooling at the end-of-text token, projection) is the tower's own code.
Pic2Word (Saito et al., 2023) learns a network that maps an image feature to :math:`v`; SEARLE
(Baldrati et al., 2023) optimises :math:`v` per image and then distils a network.

The replacement is a forward hook on the tower's token-embedding layer, active only for the
duration of one call, so it works unchanged for the toy encoder (an open_clip ``CLIP`` with our
word-level tokenizer) and for every open_clip model whose text tower embeds tokens with an
``nn.Embedding`` (``CLIP`` and ``CustomTextCLIP`` with open_clip's ``TextTransformer``).
Gradients flow into :math:`v` and not into the frozen table.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["encode_text_with_pseudo_tokens", "placeholder_id", "token_embedding_layer"]


def token_embedding_layer(model: nn.Module) -> nn.Embedding:
    """The ``nn.Embedding`` that maps token ids to word embeddings in ``model``'s text tower.

    ``model.token_embedding`` for open_clip's ``CLIP`` (the toy encoder included),
    ``model.text.token_embedding`` for ``CustomTextCLIP`` with a ``TextTransformer`` tower.
    """
    for owner in (model, getattr(model, "text", None)):
        layer = getattr(owner, "token_embedding", None)
        if isinstance(layer, nn.Embedding):
            return layer
    raise TypeError(
        f"{type(model).__name__} has no token-embedding table (model.token_embedding or "
        "model.text.token_embedding): pseudo-words need an open_clip text tower that embeds token "
        "ids with nn.Embedding (Hugging Face text towers are not supported)"
    )


def placeholder_id(tokenizer, word: str = "*") -> int:
    """The single token id that ``tokenizer`` gives ``word`` (the placeholder of a template).

    Works for open_clip's tokenizers and for :class:`cirlib.models.tokenizer.WordTokenizer`,
    whose start token comes first and end-of-text token right after a one-token word. The toy
    tokenizer maps every word outside its vocabulary to ``<unk>``, so ``"*"`` is ``<unk>`` there:
    a template must then hold no other unknown word, which
    :func:`encode_text_with_pseudo_tokens` checks by counting placeholders.
    """
    ids = tokenizer([word])[0].tolist()
    body = [i for i in ids[1:] if i != 0]
    # body = [word's ids..., end-of-text]
    if len(body) != 2:
        raise ValueError(
            f"the tokenizer splits {word!r} into {len(body) - 1} tokens; a placeholder must be "
            "exactly one token (use a single symbol such as '*' or '$')"
        )
    return int(body[0])


def encode_text_with_pseudo_tokens(
    model: nn.Module,
    tokens: torch.Tensor,
    pseudo: torch.Tensor,
    placeholder: int,
    normalize: bool = False,
) -> torch.Tensor:
    """``model.encode_text(tokens)`` with every ``placeholder`` token embedded as ``pseudo``.

    Parameters
    ----------
    model : open_clip ``CLIP`` or ``CustomTextCLIP`` (the toy encoder is a ``CLIP``)
    tokens : Long[B, L]
        Tokenised templates, from the model's own tokenizer.
    pseudo : Tensor[B, W] or Tensor[B, P, W]
        One pseudo-word per text (each text must then hold the placeholder exactly once), or
        ``P`` per text, filling its ``P`` placeholders left to right. ``W`` is the tower's width.
    placeholder : int
        Token id of the placeholder (:func:`placeholder_id`).
    normalize : bool
        L2-normalise the output, as ``encode_text(..., normalize=True)``.

    Returns
    -------
    Tensor[B, D]
        The text features; differentiable with respect to ``pseudo``.
    """
    layer = token_embedding_layer(model)
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [B, L], got shape {tuple(tokens.shape)}")
    if pseudo.ndim == 2:
        pseudo = pseudo[:, None, :]
    if pseudo.ndim != 3 or pseudo.shape[0] != tokens.shape[0]:
        raise ValueError(
            f"pseudo must be [B, W] or [B, P, W] with B = {tokens.shape[0]} texts, got shape "
            f"{tuple(pseudo.shape)}"
        )
    if pseudo.shape[-1] != layer.embedding_dim:
        raise ValueError(
            f"pseudo-words have width {pseudo.shape[-1]}, the text tower's word embeddings "
            f"{layer.embedding_dim}"
        )
    where = tokens == placeholder
    counts = where.sum(dim=1)
    wrong = (counts != pseudo.shape[1]).nonzero()
    if len(wrong):
        i = int(wrong[0, 0])
        raise ValueError(
            f"text {i} holds the placeholder (id {placeholder}) {int(counts[i])} times, but "
            f"{pseudo.shape[1]} pseudo-word(s) per text were given; every template needs exactly "
            "that many (with the toy tokenizer an unknown word also becomes the placeholder "
            "'<unk>')"
        )
    # Row-major order of the mask is each text's placeholders left to right.
    values = pseudo.reshape(-1, pseudo.shape[-1])

    def replace(module, inputs, output):
        out = output.clone()
        out[where] = values.to(out.dtype)
        return out

    handle = layer.register_forward_hook(replace)
    try:
        return model.encode_text(tokens, normalize=normalize)
    finally:
        handle.remove()
