"""CIRR test-server prediction files: write them, and check a file before uploading it.

The server (cirr.cecs.anu.edu.au, see the dataset's ``Test-split_server.md``) takes two JSON
dicts, keyed by the string form of ``pairid``::

    {"version": "rc2", "metric": "recall",        "12063": [50 image names], ...}
    {"version": "rc2", "metric": "recall_subset", "12063": [3 image names], ...}

The recall list is the top 50 with the reference removed; the subset list is the top 3 subset
members other than the reference. Files are limited to 5 MB.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cirlib.io import atomic_write_json

__all__ = [
    "CIRR_VERSION",
    "CIRRSubmission",
    "MAX_SUBMISSION_BYTES",
    "SUBMISSION_LENGTHS",
    "read_cirr_submission",
    "write_cirr_submission",
]

CIRR_VERSION = "rc2"
SUBMISSION_LENGTHS = {"recall": 50, "recall_subset": 3}
# The server says "Maximum 5MB"; 5e6 bytes is the stricter reading (the official demo is 4.19e6).
MAX_SUBMISSION_BYTES = 5_000_000


@dataclass(frozen=True)
class CIRRSubmission:
    """A parsed prediction file: ``predictions[pair_id]`` is the ranked list of image names."""

    version: str
    metric: str
    predictions: dict[int, tuple[str, ...]]


def _pair_key(pid) -> str:
    if isinstance(pid, bool):
        raise ValueError(f"pair id {pid!r} is not an integer")
    try:
        value = int(pid)
    except (TypeError, ValueError):
        raise ValueError(f"pair id {pid!r} is not an integer") from None
    if value != pid and str(value) != str(pid).strip():
        raise ValueError(f"pair id {pid!r} is not an integer")
    if value < 0:
        raise ValueError(f"pair id {pid!r} is negative")
    return str(value)


def _check_names(
    where: str, names, metric: str, reference: str | None, members: Sequence[str] | None
) -> list[str]:
    want = SUBMISSION_LENGTHS[metric]
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise ValueError(f"{where}: predictions must be a list of image names, got {names!r}")
    names = list(names)
    if len(names) != want:
        raise ValueError(f"{where}: {metric} needs exactly {want} names, got {len(names)}")
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        raise ValueError(f"{where}: image names must be non-empty strings, got {bad[0]!r}")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"{where}: image {dup!r} appears more than once")
    if reference is not None and reference in names:
        raise ValueError(
            f"{where}: the reference image {reference!r} is in the {metric} list; CIRR removes "
            f"the reference from the ranking before taking the top {want}"
        )
    if members is not None:
        outside = [n for n in names if n not in members]
        if outside:
            raise ValueError(f"{where}: {outside[0]!r} is not one of the query's subset members")
    return names


def _build(metric: str, keys: list[str], lists, references, members) -> dict[str, object]:
    if len(lists) != len(keys):
        raise ValueError(f"{len(keys)} pair ids but {len(lists)} {metric} lists")
    doc: dict[str, object] = {"version": CIRR_VERSION, "metric": metric}
    for i, key in enumerate(keys):
        where = f"pair {key}"
        subset = None if members is None else members[i]
        doc[key] = _check_names(where, lists[i], metric, references[i], subset)
    return doc


def _check_size(doc: Mapping[str, object], metric: str) -> None:
    size = len(json.dumps(doc).encode("utf-8"))
    if size > MAX_SUBMISSION_BYTES:
        raise ValueError(
            f"the {metric} file would be {size} bytes, over the server's limit of "
            f"{MAX_SUBMISSION_BYTES}"
        )


def write_cirr_submission(
    pair_ids: Sequence[int],
    top50_names: Sequence[Sequence[str]],
    subset_top3_names: Sequence[Sequence[str]],
    out_dir: str | os.PathLike,
    stem: str = "submission",
    *,
    references: Sequence[str],
    subset_members: Sequence[Sequence[str]] | None = None,
) -> tuple[Path, Path]:
    """Validate and write the two CIRR test-server files atomically.

    Parameters
    ----------
    pair_ids : n ints
        CIRR ``pairid`` of each query (unique); written as string keys.
    top50_names : n lists of 50 image names
        Global ranking, reference already removed, best first.
    subset_top3_names : n lists of 3 image names
        Subset ranking (members other than the reference), best first.
    out_dir : path
        Created if missing.
    stem : str
        Files are ``{stem}_recall.json`` and ``{stem}_recall_subset.json``.
    references : n image names
        Each query's reference; it must appear in neither list.
    subset_members : n lists of image names, optional
        ``img_set.members``; when given, the top-3 names must all be members.

    Returns
    -------
    (Path, Path)
        The recall file and the recall_subset file.

    Raises
    ------
    ValueError
        On a length mismatch, a list that is not exactly 50 (3) distinct names, a reference in a
        list, a duplicate pair id, or a file over the 5 MB limit. Nothing is written then.
    """
    keys = [_pair_key(p) for p in pair_ids]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"pair id {dup} appears more than once")
    if len(references) != len(keys):
        raise ValueError(f"{len(keys)} pair ids but {len(references)} references")
    if subset_members is not None and len(subset_members) != len(keys):
        raise ValueError(f"{len(keys)} pair ids but {len(subset_members)} subset member lists")
    recall = _build("recall", keys, top50_names, references, None)
    subset = _build("recall_subset", keys, subset_top3_names, references, subset_members)
    # Check both before writing either, so a failure never leaves a mismatched pair on disk.
    _check_size(recall, "recall")
    _check_size(subset, "recall_subset")
    out_dir = Path(out_dir)
    recall_path = atomic_write_json(out_dir / f"{stem}_recall.json", recall)
    subset_path = atomic_write_json(out_dir / f"{stem}_recall_subset.json", subset)
    return recall_path, subset_path


def read_cirr_submission(
    path: str | os.PathLike, *, references: Mapping[int, str] | None = None
) -> CIRRSubmission:
    """Read a CIRR prediction file and check that the server would accept its format.

    Parameters
    ----------
    path : path
        A ``recall`` or ``recall_subset`` JSON file.
    references : mapping pair_id -> reference name, optional
        When given, also check that no list holds its query's reference.

    Returns
    -------
    CIRRSubmission

    Raises
    ------
    ValueError
        If the file is not JSON, over 5 MB, lacks ``version``/``metric``, has a non-integer
        key, or a list of the wrong length, with duplicates or with the reference.
    """
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_SUBMISSION_BYTES:
        raise ValueError(f"{path}: {size} bytes, over the server's limit of {MAX_SUBMISSION_BYTES}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: the top level must be a JSON object (dict)")
    version, metric = doc.get("version"), doc.get("metric")
    if version != CIRR_VERSION:
        raise ValueError(f"{path}: 'version' must be {CIRR_VERSION!r}, got {version!r}")
    if metric not in SUBMISSION_LENGTHS:
        allowed = list(SUBMISSION_LENGTHS)
        raise ValueError(f"{path}: 'metric' must be one of {allowed}, got {metric!r}")
    predictions: dict[int, tuple[str, ...]] = {}
    for key, names in doc.items():
        if key in ("version", "metric"):
            continue
        if not (key.isascii() and key.isdigit()):
            raise ValueError(f"{path}: key {key!r} is not a pair id (string of digits)")
        pid = int(key)
        ref = None if references is None else references.get(pid)
        predictions[pid] = tuple(_check_names(f"{path}: pair {key}", names, metric, ref, None))
    if not predictions:
        raise ValueError(f"{path}: no predictions besides 'version' and 'metric'")
    return CIRRSubmission(version=version, metric=metric, predictions=predictions)
