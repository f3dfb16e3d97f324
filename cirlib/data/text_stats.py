"""What modification texts talk about: length and attribute words.

DQE-CIR's premise is that people name specific attributes (a colour, a shape) and that a model
should weigh them; these counts check how often they do. The word lists are our choice (plain
English colour and shape/cut words), not from any paper. Introduced in chapter "The task, the
data and the metrics".
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import pandas as pd

COLOUR_WORDS = frozenset(
    "red blue green yellow black white gray grey brown purple pink orange beige navy cyan "
    "teal maroon gold silver tan cream violet turquoise khaki olive burgundy colour color "
    "colored coloured darker lighter".split()
)
SHAPE_WORDS = frozenset(
    "shape round square rectangle rectangular circle circular triangle triangular oval long "
    "short sleeve sleeves sleeveless collar neck neckline length fitted loose tight strap "
    "strapless bigger smaller larger large small".split()
)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def text_statistics(texts: Iterable[str], source: str) -> pd.DataFrame:
    """One row per text: source, number of words, and whether it names a colour / a shape."""
    rows = []
    for t in texts:
        w = _words(t)
        rows.append(
            {
                "source": source,
                "words": len(w),
                "names a colour": any(x in COLOUR_WORDS for x in w),
                "names a shape or cut": any(x in SHAPE_WORDS for x in w),
            }
        )
    return pd.DataFrame(rows)
