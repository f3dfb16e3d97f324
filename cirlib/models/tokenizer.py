"""A word-level tokenizer for the toy world's closed vocabulary.

The toy encoder reads only words of the toy grammar, so a word-per-token vocabulary of about a
hundred entries replaces CLIP's 49k BPE merges and keeps the shipped checkpoint a few MB. It is a
drop-in for an open_clip tokenizer: ``tokenizer(["make the circle red"])`` returns a
``LongTensor[n, context_length]``. Unknown words become ``<unk>`` (and are counted, so a reader
typing free text in the explorer can be told which words the toy encoder cannot read).
"""

from __future__ import annotations

import re

import torch

from cirlib.toyworld.scene import CELLS, COLOURS, SHAPES, SIZES

PAD, UNK, SOT = "<pad>", "<unk>", "<sot>"
EOT = "<eot>"
GRAMMAR_WORDS = (
    # scene captions
    *SHAPES, *COLOURS, *SIZES, *CELLS, "at", ",", "object",
    # modification texts
    "a", "an", "the", "add", "put", "remove", "take", "away", "make", "paint", "turn", "into",
    "replace", "with", "enlarge", "shrink", "move", "shift", "to", "something",
    # common words readers may type
    "and", "of", "it", "is", "in", "on", "bigger", "smaller", "colour", "color", "shape", "size",
    "left", "right", "top", "bottom", "middle", "center", "square", "change", "delete",
)  # fmt: skip


class WordTokenizer:
    """Lower-cases, splits on white space (commas are words), maps words to ids.

    Ids: 0 pad, 1 unk, 2 sot, words from 3, and eot last, so the end of text is also the
    highest id (the convention of CLIP's own tokenizer).
    """

    def __init__(self, context_length: int = 32, words: tuple[str, ...] = GRAMMAR_WORDS):
        self.context_length = context_length
        vocab = [PAD, UNK, SOT, *dict.fromkeys(words), EOT]
        self.index = {w: i for i, w in enumerate(vocab)}
        self.vocab = vocab
        self.eot_id = len(vocab) - 1

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def words(self, text: str) -> list[str]:
        return re.sub(r",", " , ", text.lower()).split()

    def unknown_words(self, text: str) -> list[str]:
        return [w for w in self.words(text) if w not in self.index]

    def __call__(self, texts: str | list[str]) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for i, text in enumerate(texts):
            ids = [self.index.get(w, 1) for w in self.words(text)][: self.context_length - 2]
            ids = [self.index[SOT], *ids, self.eot_id]
            out[i, : len(ids)] = torch.tensor(ids)
        return out

    def decode(self, ids: torch.Tensor) -> str:
        return " ".join(self.vocab[i] for i in ids.tolist() if i not in (0, 2, self.eot_id))
