"""Score CIRR test-server prediction files locally, as the server would, against toy test1 targets.

    python data_scripts/score_cirr_submission.py --world <toy world> submission_recall.json \
        submission_recall_subset.json
    python data_scripts/score_cirr_submission.py --captions cap.rc2.test1.json \
        --targets cap.rc2.test1.targets.json [--image-split split.rc2.test1.json] FILE [FILE]

The real CIRR test1 targets are not released, so real submissions go to the server
(cirr.cecs.anu.edu.au); the toy world keeps its test1 targets in ``<world>/private/`` and this
command plays the server's part for them (``cirlib.cirr_test_server``). Each FILE's
``"metric"`` says whether it is the recall or the recall_subset file. Prints the metrics as JSON;
exit status 1 when a file breaks a rule of the server (the message says which).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cirlib.cirr_test_server import SubmissionRejected, score_submission


def _metric_of(path: Path) -> str | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return doc.get("metric") if isinstance(doc, dict) else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("files", type=Path, nargs="+", help="the recall and/or recall_subset file")
    ap.add_argument("--world", type=Path, help="a toy world folder (sets the three files below)")
    ap.add_argument("--captions", type=Path, help="the public cap.rc2.test1.json")
    ap.add_argument("--targets", type=Path, help="the private test1 targets file")
    ap.add_argument("--image-split", type=Path, help="split.rc2.test1.json (names are checked)")
    args = ap.parse_args(argv)
    if args.world is not None:
        ann = args.world / "cirr_dataset" / "cirr"
        args.captions = args.captions or ann / "captions" / "cap.rc2.test1.json"
        args.targets = (
            args.targets or args.world / "private" / "cirr" / "cap.rc2.test1.targets.json"
        )
        args.image_split = args.image_split or ann / "image_splits" / "split.rc2.test1.json"
    if args.captions is None or args.targets is None:
        ap.error("give --world, or both --captions and --targets")
    for path in (args.captions, args.targets, args.image_split, *args.files):
        if path is not None and not path.is_file():
            print(f"error: {path} does not exist", file=sys.stderr)
            return 1
    by_metric: dict[str, Path] = {}
    for path in args.files:
        metric = _metric_of(path)
        if metric not in ("recall", "recall_subset") or metric in by_metric:
            print(
                f"error: {path}: its 'metric' is {metric!r}; give one 'recall' and/or one "
                f"'recall_subset' file",
                file=sys.stderr,
            )
            return 1
        by_metric[metric] = path
    try:
        scores = score_submission(
            args.captions,
            args.targets,
            by_metric.get("recall"),
            by_metric.get("recall_subset"),
            image_split_file=args.image_split,
        )
    except SubmissionRejected as err:
        print(f"rejected: {err}", file=sys.stderr)
        return 1
    print(json.dumps({k: round(v, 4) for k, v in scores.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
