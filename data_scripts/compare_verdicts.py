"""How many of a reference's verdicts a build reproduces: "k of n verdicts agree".

Reads two results files written by the comparison chapter (``cirlib.harness.write_results``).
The reference must list its verdicts (``"verdicts"``: ``cirlib.verdict.Verdict.to_dict()``
records). The build's verdicts are its own list when it has one; with ``--rejudge`` (or when it
has none) every reference claim is judged again on the build's per-query ranks with the
reference's settings (``cirlib.verdict.rejudge``), and on the reference's own ranks too
(``cirlib.verdict.rejudge_record``), so that both sides are judged by this code's rule even when
the reference was written by an earlier one. The claims judged on the hard gallery
(``"hard_gallery"``: its ``"verdicts"`` and the per-query ranks they were judged on) are compared
the same way, in a second table. Prints the two side by side and the count, with each reference
verdict's chance to hold in a rebuild (``holds``, from its own interval:
``cirlib.verdict.rebuild_agreement``; known when the reference is judged by this rule, as with
``--rejudge``) and whether that chance is below ``cirlib.verdict.FRAGILE_BELOW``
(``fragile``). Exits with status 1 when a verdict that is not fragile differs (any verdict, when
the chance is unknown), so a build script can stop on it; a fragile verdict that changed is
listed, since the reference's own interval said a rebuild could change it. ``--error-rate`` also
prints the rule's false-positive rate measured on the build (two disjoint seed sets of each
method, ``cirlib.verdict.false_positive_rate``). Both galleries are compared by
``cirlib.verdict.gallery_agreements``, as chapter 9 does; ``--methods a,b`` keeps only the
reference's claims that name no other method, for a build that trained only those again
(``record_verdicts.py --methods ... --train``).

    python data_scripts/compare_verdicts.py _build/stage/book/results_toy.json \\
        book/data/results_toy_reference.json --error-rate
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from cirlib.verdict import false_positive_rate, gallery_agreements


def _load(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        sys.exit(f"error: {p} does not exist; pass a results file written by chapter 9")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as err:
        sys.exit(f"error: {p} is not JSON ({err}); is it a results file?")


def _print(title: str, agreement) -> None:
    print(f"== {title}")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(agreement.table.to_string(index=False, float_format=lambda x: f"{x:+.2f}"))
    print(agreement)
    t = agreement.table
    if len(t):
        for r in t[~t["agree"] & t["fragile"]].itertuples():
            print(
                f"changed, as its interval allowed: {r.claim} on {r.metric} ({r.group}): "
                f"{r.reference} -> {r.build}; a rebuild held it with probability {r.holds:.2f}"
            )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("build", help="results file of the build to check")
    parser.add_argument("reference", help="results file holding the reference verdicts")
    parser.add_argument(
        "--rejudge", action="store_true", help="judge the reference's claims on the build's ranks"
    )
    parser.add_argument("--error-rate", action="store_true", help="print the false-positive rate")
    parser.add_argument(
        "--methods",
        help="comma-separated names: compare only the reference's claims that name no other "
        "method (a build that trained some methods again: record_verdicts.py --methods)",
    )
    args = parser.parse_args(argv)
    build, reference = _load(args.build), _load(args.reference)
    if "verdicts" not in reference:
        sys.exit(f"error: {args.reference} lists no verdicts; it cannot serve as a reference")
    try:
        found = gallery_agreements(
            build,
            reference,
            rejudge_claims=args.rejudge,
            methods=args.methods.split(",") if args.methods else None,
        )
    except ValueError as err:
        sys.exit(f"error: {args.build}: {err}")
    agreed = True
    for title, agreement in found.items():
        _print(title, agreement)
        agreed = agreed and agreement.settled_agree == agreement.settled_total
    if args.error_rate:
        try:
            rate = false_positive_rate(build)
        except ValueError as err:
            print(f"error rate not measured: {err}")
        else:
            print(
                f"false positives: {rate.flagged} of {rate.total} self-comparisons "
                f"({100 * rate.rate:.1f}%), {rate.seeds_per_side} seeds per side"
            )
    return 0 if agreed else 1


if __name__ == "__main__":
    sys.exit(main())
