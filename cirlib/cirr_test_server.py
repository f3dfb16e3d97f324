"""A local stand-in for the CIRR test server: score two prediction files against test1 targets.

The real server (cirr.cecs.anu.edu.au; the dataset's ``Test-split_server.md``) holds the test1
targets, which are not released. The toy world keeps its test1 targets in a private file, so the
whole loop (scores -> files -> metrics) can be run here. The rules, from the server's page and
the CIRR paper (Liu et al., 2021):

* a file is one JSON object with ``"version": "rc2"``, ``"metric"``: ``"recall"`` or
  ``"recall_subset"``, and one key per test1 query, the string form of its ``pairid``;
* every test1 query has a list: 50 distinct image names for ``recall`` (the reference removed),
  3 distinct names for ``recall_subset``, taken from the query's ``img_set.members`` other than
  the reference;
* a file is at most 5 MB;
* Recall@K (K = 1, 5, 10, 50) is the percentage of queries whose target is among the first K
  names of their list; Recall_subset@K (K = 1, 2, 3) the same on the subset lists.

Written on its own, from these rules, without the book's evaluation code (:mod:`cirlib.eval`),
so that agreeing with it is a check of both. Command line:
``data_scripts/score_cirr_submission.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["RECALL_KS", "SUBSET_KS", "SubmissionRejected", "score_submission"]

VERSION = "rc2"
LIST_LENGTH = {"recall": 50, "recall_subset": 3}
MAX_BYTES = 5_000_000  # "Maximum 5MB", read strictly
RECALL_KS = (1, 5, 10, 50)
SUBSET_KS = (1, 2, 3)


class SubmissionRejected(ValueError):
    """The server would refuse the file; the message says which rule it breaks."""


def _read(path: Path) -> object:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SubmissionRejected(f"{path}: cannot be read as JSON ({err})") from None


def _queries(captions_file: Path) -> dict[str, tuple[str, list[str]]]:
    """pairid (string) -> (reference, members), from the public test1 captions file."""
    entries = _read(captions_file)
    if not isinstance(entries, list) or not entries:
        raise SubmissionRejected(f"{captions_file}: expected the list of test1 caption entries")
    return {str(e["pairid"]): (e["reference"], list(e["img_set"]["members"])) for e in entries}


def _targets(targets_file: Path) -> dict[str, str]:
    """pairid (string) -> target, from a list of ``{"pairid", "target_hard"}`` entries."""
    rows = _read(targets_file)
    if not isinstance(rows, list):
        raise SubmissionRejected(f"{targets_file}: expected a list of {{pairid, target_hard}}")
    return {str(r["pairid"]): r["target_hard"] for r in rows}


def _predictions(path: Path, metric: str, queries, gallery: set[str] | None) -> dict[str, list]:
    if path.stat().st_size > MAX_BYTES:
        raise SubmissionRejected(f"{path}: {path.stat().st_size} bytes, over the 5 MB limit")
    doc = _read(path)
    if not isinstance(doc, dict):
        raise SubmissionRejected(f"{path}: the file must hold one JSON object")
    if doc.get("version") != VERSION:
        raise SubmissionRejected(
            f"{path}: 'version' must be {VERSION!r}, got {doc.get('version')!r}"
        )
    if doc.get("metric") != metric:
        raise SubmissionRejected(f"{path}: 'metric' must be {metric!r}, got {doc.get('metric')!r}")
    lists = {k: v for k, v in doc.items() if k not in ("version", "metric")}
    missing = [k for k in queries if k not in lists]
    unknown = [k for k in lists if k not in queries]
    if missing or unknown:
        raise SubmissionRejected(
            f"{path}: {len(missing)} test1 queries have no list (first: {missing[:3]}) and "
            f"{len(unknown)} keys are not test1 pair ids (first: {unknown[:3]})"
        )
    want = LIST_LENGTH[metric]
    for key, names in lists.items():
        reference, members = queries[key]
        if not isinstance(names, list) or len(names) != want:
            raise SubmissionRejected(f"{path}: query {key}: needs a list of {want} image names")
        if len(set(names)) != want or not all(isinstance(n, str) for n in names):
            raise SubmissionRejected(f"{path}: query {key}: names must be distinct strings")
        if reference in names:
            raise SubmissionRejected(f"{path}: query {key}: lists its reference {reference!r}")
        if gallery is not None and not set(names) <= gallery:
            raise SubmissionRejected(f"{path}: query {key}: names an image outside test1")
        if metric == "recall_subset" and not set(names) <= set(members):
            raise SubmissionRejected(f"{path}: query {key}: names an image outside its img_set")
    return lists


def score_submission(
    captions_file: str | os.PathLike,
    targets_file: str | os.PathLike,
    recall_file: str | os.PathLike | None = None,
    subset_file: str | os.PathLike | None = None,
    *,
    image_split_file: str | os.PathLike | None = None,
) -> dict[str, float]:
    """The server's numbers for one or both prediction files, in percent.

    Parameters
    ----------
    captions_file : the public ``cap.rc2.test1.json`` (references and ``img_set.members``).
    targets_file : the private targets, a JSON list of ``{"pairid": int, "target_hard": str}``.
    recall_file, subset_file : the ``recall`` and ``recall_subset`` files (at least one).
    image_split_file : ``split.rc2.test1.json``; when given, names outside it are refused.

    Returns
    -------
    ``{"R@1", "R@5", "R@10", "R@50"}`` for the recall file, ``{"Rs@1", "Rs@2", "Rs@3"}`` for the
    subset file, and ``"Avg"`` = (R@5 + Rs@1) / 2 when both are given.

    Raises
    ------
    SubmissionRejected
        When a file breaks one of the rules of the module docstring.
    """
    if recall_file is None and subset_file is None:
        raise SubmissionRejected("give a recall file, a recall_subset file, or both")
    queries = _queries(Path(captions_file))
    targets = _targets(Path(targets_file))
    if set(targets) != set(queries):
        raise SubmissionRejected(
            f"{targets_file}: its pair ids are not those of {captions_file}; wrong targets file"
        )
    gallery = None
    if image_split_file is not None:
        gallery = set(_read(Path(image_split_file)))
    scores: dict[str, float] = {}
    for path, metric, ks, prefix in (
        (recall_file, "recall", RECALL_KS, "R"),
        (subset_file, "recall_subset", SUBSET_KS, "Rs"),
    ):
        if path is None:
            continue
        lists = _predictions(Path(path), metric, queries, gallery)
        for k in ks:
            hits = sum(targets[key] in names[:k] for key, names in lists.items())
            scores[f"{prefix}@{k}"] = 100.0 * hits / len(lists)
    if "R@5" in scores and "Rs@1" in scores:
        scores["Avg"] = (scores["R@5"] + scores["Rs@1"]) / 2
    return scores
