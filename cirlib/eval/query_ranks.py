r"""Per-query ranks kept beside an evaluation's percentages, and their compact JSON form.

A Recall@K is a mean over queries of a 0/1 hit, :math:`\mathrm{R@}K = \frac{100}{n} \sum_i
[r_i < K]`, so the 0-based ranks :math:`r_i` of one run hold every recall of that run and
everything a resampling test over queries needs. :func:`~cirlib.eval.evaluate.evaluate` keeps
them on request (``keep_ranks=True``) in a :class:`RankedEvaluation`: the same dict of
percentages as always, plus a ``ranks`` attribute ``{"R": Long[n], "Rs": Long[n], "mR":
Long[n]}`` (rank of the target; rank inside the image set; best rank over the valid targets,
each when the split supports it) and a ``groups`` attribute with each query's breakdown labels.

The results file stores the ranks with :func:`encode_ranks`: each array as little-endian int32,
zlib-compressed, base64 text. Toy ranks are mostly small numbers, so this is a few kilobytes
per run instead of a JSON list of thousands of integers.

Introduced in chapter "Comparing the methods".
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Mapping, Sequence

import numpy as np

RANK_FORMAT = "int32-le+zlib+base64"
RANK_KINDS = ("R", "Rs", "mR")

__all__ = [
    "RANK_FORMAT",
    "RANK_KINDS",
    "RankedEvaluation",
    "decode_array",
    "decode_groups",
    "decode_ranks",
    "encode_array",
    "encode_groups",
    "encode_ranks",
]


class RankedEvaluation(dict):
    """An :func:`~cirlib.eval.evaluate.evaluate` dict that also carries per-query data.

    It compares equal to the plain dict of percentages (the attributes are not items), so code
    that reads or compares metrics sees no difference.

    Attributes
    ----------
    ranks : ``{"R" | "Rs" | "mR": int64 ndarray [n]}``, 0-based, one entry per query in
        split order.
    groups : ``{meta key: list[str] [n]}`` each query's label for the breakdowns the dict
        reports (e.g. ``"edit_type"``), ``None`` where a query has no label.
    """

    def __init__(self, metrics: Mapping, ranks: Mapping, groups: Mapping | None = None):
        super().__init__(metrics)
        self.ranks = {k: np.asarray(v, dtype=np.int64) for k, v in ranks.items()}
        self.groups = {k: list(v) for k, v in (groups or {}).items()}


def encode_array(values) -> str:
    """Non-negative integers ``[n]`` as base64 text of zlib-compressed little-endian int32."""
    a = np.asarray(values)
    if a.ndim != 1 or (a.size and (not np.issubdtype(a.dtype, np.integer) or a.min() < 0)):
        raise ValueError(
            f"expected a 1-D array of non-negative integers (ranks or codes), got dtype "
            f"{a.dtype} and shape {a.shape}"
        )
    if a.size and a.max() > np.iinfo(np.int32).max:
        raise ValueError("a value exceeds int32; ranks that large cannot come from one gallery")
    raw = a.astype("<i4").tobytes()
    return base64.b64encode(zlib.compress(raw, 9)).decode("ascii")


def decode_array(text: str, n: int | None = None) -> np.ndarray:
    """Inverse of :func:`encode_array`; ``n`` checks the length."""
    try:
        raw = zlib.decompress(base64.b64decode(text.encode("ascii"), validate=True))
    except (ValueError, zlib.error) as err:
        raise ValueError(
            f"not an encoded rank array ({RANK_FORMAT}): {err}; was the results file edited?"
        ) from err
    a = np.frombuffer(raw, dtype="<i4").astype(np.int64)
    if n is not None and len(a) != n:
        raise ValueError(f"an encoded array holds {len(a)} values, the file says {n} queries")
    return a


def encode_ranks(ranks: Mapping[str, Sequence[int]]) -> dict[str, str]:
    """``{kind: ranks [n]}`` -> ``{kind: text}`` (:func:`encode_array` for each kind)."""
    unknown = set(ranks) - set(RANK_KINDS)
    if unknown:
        raise ValueError(f"unknown rank kinds {sorted(unknown)}; expected some of {RANK_KINDS}")
    return {k: encode_array(v) for k, v in ranks.items()}


def decode_ranks(encoded: Mapping[str, str], n: int | None = None) -> dict[str, np.ndarray]:
    """Inverse of :func:`encode_ranks`."""
    return {k: decode_array(v, n) for k, v in encoded.items()}


def encode_groups(groups: Mapping[str, Sequence[str | None]]) -> dict[str, dict]:
    """Per-query labels ``{key: [label or None] * n}`` -> ``{key: {"labels": [...], "codes":
    text}}`` with sorted distinct labels and code ``len(labels)`` for a missing label."""
    out = {}
    for key, values in groups.items():
        labels = sorted({v for v in values if v is not None})
        code = {v: i for i, v in enumerate(labels)}
        out[key] = {
            "labels": labels,
            "codes": encode_array(np.array([code.get(v, len(labels)) for v in values])),
        }
    return out


def decode_groups(encoded: Mapping[str, Mapping], n: int | None = None) -> dict[str, list]:
    """Inverse of :func:`encode_groups`."""
    out = {}
    for key, entry in encoded.items():
        labels = list(entry["labels"])
        codes = decode_array(entry["codes"], n)
        out[key] = [labels[c] if c < len(labels) else None for c in codes]
    return out
