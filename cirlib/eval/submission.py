"""CIRR test-server prediction files: write them, and check a file before uploading it.

The server (cirr.cecs.anu.edu.au, see the dataset's ``Test-split_server.md``) takes two JSON
dicts, keyed by the string form of ``pairid``::

    {"version": "rc2", "metric": "recall",        "12063": [50 image names], ...}
    {"version": "rc2", "metric": "recall_subset", "12063": [3 image names], ...}

The recall list is the top 50 with the reference removed; the subset list is the top 3 subset
members other than the reference. Files are limited to 5 MB.

:func:`cirr_submission_from_scores` builds both lists from the query and gallery features of the
test1 split, with the book's ranking order (descending score, ties to the lower gallery index)
and no target; :func:`write_cirr_submission` checks and writes them. ``cirlib.cirr_test_server``
scores the files as the server does, for the toy world's private test1 targets.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from cirlib.data.records import CIRSplit
from cirlib.eval.ranking import target_ranks, topk
from cirlib.io import atomic_write_json

__all__ = [
    "CIRR_VERSION",
    "CIRRSubmission",
    "MAX_SUBMISSION_BYTES",
    "SUBMISSION_LENGTHS",
    "cirr_submission_from_scores",
    "read_cirr_submission",
    "write_cirr_submission",
]

CIRR_VERSION = "rc2"
SUBMISSION_LENGTHS = {"recall": 50, "recall_subset": 3}
# The server says "Maximum 5MB"; 5e6 bytes is the stricter reading (the official demo is 4.19e6).
MAX_SUBMISSION_BYTES = 5_000_000
TEST_SPLIT_NAME = "cirr/test1"  # the only split the server scores


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
    where: str,
    names,
    metric: str,
    reference: str | None,
    members: Sequence[str] | None,
    gallery: Mapping[str, int] | None = None,
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
    if gallery is not None:
        outside = [n for n in names if n not in gallery]
        if outside:
            raise ValueError(
                f"{where}: image {outside[0]!r} is not in the test1 gallery ({len(gallery)} "
                f"images of the split file); rank the split's own gallery"
            )
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


def _build(metric: str, keys: list[str], lists, references, members, gallery) -> dict[str, object]:
    if len(lists) != len(keys):
        raise ValueError(f"{len(keys)} pair ids but {len(lists)} {metric} lists")
    doc: dict[str, object] = {"version": CIRR_VERSION, "metric": metric}
    for i, key in enumerate(keys):
        where = f"pair {key}"
        subset = None if members is None else members[i]
        doc[key] = _check_names(where, lists[i], metric, references[i], subset, gallery)
    return doc


def _check_split(split: CIRSplit) -> None:
    if not isinstance(split, CIRSplit):
        raise ValueError(f"split must be the loaded CIRR test1 split (a CIRSplit), got {split!r}")
    if split.name != TEST_SPLIT_NAME:
        raise ValueError(
            f"submission files are for CIRR's test1 split only (split {TEST_SPLIT_NAME!r}, as "
            f"load_cirr(root, 'test1') names it), got {split.name!r}; evaluate the other splits "
            f"with cirlib.eval.evaluate"
        )


def _check_query_set(keys: list[str], split: CIRSplit) -> None:
    """The pair ids must be exactly the split's: the server scores every test1 query."""
    wanted = [str(t.pair_id) for t in split.triplets]
    missing = sorted(set(wanted) - set(keys), key=int)
    extra = sorted(set(keys) - set(wanted), key=int)
    if missing or extra:
        parts = []
        if missing:
            parts.append(
                f"{len(missing)} of its queries are missing (first: {', '.join(missing[:3])})"
            )
        if extra:
            parts.append(f"{len(extra)} pair ids are not in it (first: {', '.join(extra[:3])})")
        raise ValueError(
            f"the predictions do not cover exactly the {len(wanted)} queries of {split.name}: "
            f"{'; '.join(parts)}; predict every query of the full test1 split, not a slice"
        )


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
    split: CIRSplit,
) -> tuple[Path, Path]:
    """Validate and write the two CIRR test-server files atomically.

    Parameters
    ----------
    pair_ids : n ints
        CIRR ``pairid`` of each query (unique); written as string keys. Must be exactly the pair
        ids of ``split``, in any order.
    top50_names : n lists of 50 image names
        Global ranking, reference already removed, best first.
    subset_top3_names : n lists of 3 image names
        Subset ranking (members other than the reference), best first.
    out_dir : path
        Created if missing.
    stem : str
        Files are ``{stem}_recall.json`` and ``{stem}_recall_subset.json``.
    split : CIRSplit
        The test1 split as :func:`~cirlib.data.cirr.load_cirr` loads it (named ``cirr/test1``):
        its queries give each pair id's reference and ``img_set.members``, its gallery the names
        allowed in the lists.

    Returns
    -------
    (Path, Path)
        The recall file and the recall_subset file.

    Raises
    ------
    ValueError
        On a split other than test1, pair ids that are not exactly the split's (a missing query,
        an unknown one, a duplicate), a length mismatch, a list that is not exactly 50 (3)
        distinct names, a name outside the test1 gallery, a reference in a list, a top-3 name
        that is not a subset member, or a file over the 5 MB limit. Nothing is written then.
    """
    _check_split(split)
    keys = [_pair_key(p) for p in pair_ids]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"pair id {dup} appears more than once")
    _check_query_set(keys, split)
    by_id = {str(t.pair_id): t for t in split.triplets}
    references = [by_id[k].reference for k in keys]
    members = [by_id[k].subset for k in keys]
    gallery = {n: i for i, n in enumerate(split.gallery)}
    recall = _build("recall", keys, top50_names, references, None, gallery)
    subset = _build("recall_subset", keys, subset_top3_names, references, members, gallery)
    # Check both before writing either, so a failure never leaves a mismatched pair on disk.
    _check_size(recall, "recall")
    _check_size(subset, "recall_subset")
    out_dir = Path(out_dir)
    recall_path = atomic_write_json(out_dir / f"{stem}_recall.json", recall)
    subset_path = atomic_write_json(out_dir / f"{stem}_recall_subset.json", subset)
    return recall_path, subset_path


def cirr_submission_from_scores(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    split: CIRSplit,
    out_dir: str | os.PathLike,
    stem: str = "submission",
) -> tuple[Path, Path]:
    r"""Rank the test1 gallery for every query and write the two server files.

    With :math:`s_{ij} = \langle q_i, \hat g_j \rangle` (:math:`\hat g_j = g_j / \lVert g_j
    \rVert`, as :func:`~cirlib.eval.evaluate.evaluate` scores), query :math:`i`'s ranking is
    descending :math:`s_{ij}`, ties to the lower gallery index, its reference :math:`e_i`
    removed (:mod:`cirlib.eval.ranking`). The recall list is the first 50 of that ranking; the
    subset list is the first 3 of the members :math:`U_i \setminus \{e_i\}` in the same order
    (Liu et al., 2021, CIRR; no separate scoring of the subset). No target is needed, so the
    R@K and Rs@K the server computes from these files are those ``evaluate`` gives with the
    targets.

    Parameters
    ----------
    queries : Tensor[n, d]
        One row per ``split.triplets`` entry (L2-normalised, as for ``evaluate``).
    gallery : Tensor[m, d]
        One row per ``split.gallery`` image (normalised here).
    split : CIRSplit
        The full test1 split, ``load_cirr(root, "test1")``.
    out_dir, stem
        As in :func:`write_cirr_submission`.

    Returns
    -------
    (Path, Path)
        The recall file and the recall_subset file.
    """
    _check_split(split)
    n, m = len(split.triplets), len(split.gallery)
    if queries.ndim != 2 or queries.shape[0] != n:
        raise ValueError(
            f"queries must have one row per query of {split.name} ({n}), got shape "
            f"{tuple(queries.shape)}"
        )
    if gallery.ndim != 2 or gallery.shape[0] != m:
        raise ValueError(
            f"gallery must have one row per image of {split.name} ({m}), got shape "
            f"{tuple(gallery.shape)}"
        )
    q = queries.float()
    g = F.normalize(gallery.float(), dim=-1)
    ref = torch.tensor([split.index_of(t.reference) for t in split.triplets])
    k = SUBMISSION_LENGTHS["recall"]
    if m - 1 < k:
        raise ValueError(f"the gallery of {split.name} has {m} images; the server needs top {k}")
    top = topk(q, g, k, exclude=ref)[1]
    # The subset order is the global one: rank every other member in the full ranking.
    others = [[split.index_of(x) for x in t.subset if x != t.reference] for t in split.triplets]
    if any(len(o) != len(others[0]) for o in others):
        raise ValueError(f"{split.name}: every img_set must hold the reference once")
    members = torch.tensor(others)
    positions = torch.stack(
        [target_ranks(q, g, members[:, j], exclude=ref) for j in range(members.shape[1])], dim=1
    )
    order = positions.argsort(dim=1)[:, : SUBMISSION_LENGTHS["recall_subset"]]
    best = members.gather(1, order)
    names = split.gallery
    return write_cirr_submission(
        [t.pair_id for t in split.triplets],
        [[names[j] for j in row] for row in top.tolist()],
        [[names[j] for j in row] for row in best.tolist()],
        out_dir,
        stem,
        split=split,
    )


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
