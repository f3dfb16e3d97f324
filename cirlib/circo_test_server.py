r"""A local stand-in for the CIRCO test server: score a prediction file against private targets.

CIRCO's test targets are not released (Baldrati, Agnolucci, Bertini and Del Bimbo, 2023); its
server scores a file and reports mAP@K. The toy world's CIRCO export keeps its test targets in
a private file (:mod:`cirlib.data.toy_circo`), so the loop scores -> file -> metrics can be run
here. The rules, from the benchmark's release:

* a file is one JSON object with one key per test query, the string form of its ``id``
  (the ids are 0, 1, ..., n - 1), and no other key;
* each value is a list of exactly 50 distinct integer image ids;
* with :math:`G_q` the query's ground truths and :math:`\mathrm{rel}_q(k)` whether the
  :math:`k`-th id is one of them,
  :math:`\mathrm{AP}_q@K = \frac{1}{\min(K, |G_q|)} \sum_{k \le K} P_q@k\ \mathrm{rel}_q(k)`
  and mAP@K is its mean over queries, for K = 5, 10, 25, 50.

Written on its own from these rules, with plain loops and without the book's evaluation code
(:mod:`cirlib.eval`), so that agreeing with it is a check of both.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["CIRCO_SERVER_KS", "CircoSubmissionRejected", "score_circo_submission"]

CIRCO_SERVER_KS = (5, 10, 25, 50)
LIST_LENGTH = 50


class CircoSubmissionRejected(ValueError):
    """The server would refuse the file; the message says which rule it breaks."""


def _average_precision(ranked: list[int], truths: set[int], k: int) -> float:
    hits, total = 0, 0.0
    for place, image in enumerate(ranked[:k], start=1):
        if image in truths:
            hits += 1
            total += hits / place
    return total / min(k, len(truths))


def score_circo_submission(
    targets_file: str | os.PathLike, submission: str | os.PathLike | dict
) -> dict[str, float]:
    """mAP@K (percent, K = 5, 10, 25, 50) of ``submission`` (a file or its parsed object).

    ``targets_file`` is a JSON list of ``{"id", "gt_img_ids"}`` (the toy export's
    ``private/circo/test.gt.json``).

    Raises
    ------
    CircoSubmissionRejected
        A query missing or unknown, a key that is not a query id, a list that is not 50
        distinct integers.
    """
    rows = json.loads(Path(targets_file).read_text(encoding="utf-8"))
    truths = {str(r["id"]): set(r["gt_img_ids"]) for r in rows}
    if not isinstance(submission, dict):
        try:
            submission = json.loads(Path(submission).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CircoSubmissionRejected(f"{submission}: not valid JSON ({err})") from None
    if not isinstance(submission, dict):
        raise CircoSubmissionRejected("the file must be one JSON object {query id: [ids]}")
    keys = set(submission)
    if keys != set(truths):
        missing, extra = sorted(set(truths) - keys, key=int), sorted(keys - set(truths))
        raise CircoSubmissionRejected(
            f"{len(missing)} test queries have no list (first: {missing[:3]}) and "
            f"{len(extra)} keys are not test query ids (first: {extra[:3]})"
        )
    sums = dict.fromkeys(CIRCO_SERVER_KS, 0.0)
    for qid, ranked in submission.items():
        if (
            not isinstance(ranked, list)
            or len(ranked) != LIST_LENGTH
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in ranked)
            or len(set(ranked)) != LIST_LENGTH
        ):
            raise CircoSubmissionRejected(
                f"query {qid}: the server takes a list of exactly {LIST_LENGTH} distinct "
                "integer image ids"
            )
        for k in CIRCO_SERVER_KS:
            sums[k] += _average_precision(ranked, truths[qid], k)
    return {f"mAP@{k}": 100.0 * sums[k] / len(truths) for k in CIRCO_SERVER_KS}
