"""The course page's table of toy-profile lab times, written from the run report of a toy build.

    bash data_scripts/build_book.sh                  # a toy build writes _build/stage/run_report.json
    python data_scripts/lab_times.py _build/stage/run_report.json --commit
    python data_scripts/lab_times.py --check         # the committed table matches its report

A report may carry ``"conditions"`` (added by hand: what else ran, other kernels), which the
table's first paragraph repeats. ``--commit`` copies the report to
``book/data/toy_run_report.json`` and writes the table it implies to
``book/data/toy_lab_times.md``, which ``book/course.md`` includes. Without ``--commit`` the table
is printed. ``--check`` regenerates the table from the committed report and exits 1 when the
committed table differs, so the page can never show times its report does not hold.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "book" / "data" / "toy_run_report.json"
TABLE = REPO / "book" / "data" / "toy_lab_times.md"


def chapter_title(notebook: str) -> str:
    """The chapter's title: the first ``# `` heading of its notebook (its file stem if none)."""
    path = REPO / notebook
    if path.is_file():
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] == "markdown":
                for line in "".join(cell["source"]).splitlines():
                    if line.startswith("# "):
                        return line[2:].strip()
    return Path(notebook).stem


def lab_times_markdown(report: dict) -> str:
    """The table (one row per chapter, in the book's order) and the sentence saying how it was
    measured."""
    if report.get("profile") != "toy":
        raise ValueError(
            f"this run report is of the {report.get('profile')!r} profile; the course page "
            "gives toy times: pass the run_report.json of `bash data_scripts/build_book.sh`"
        )
    rows = sorted(report["notebooks"], key=lambda r: Path(r["notebook"]).stem)
    missing = [k for k in ("date", "code_version") if k not in report]
    if missing:
        raise ValueError(
            f"this run report has no {' or '.join(missing)} (written before run_notebooks.py "
            "recorded them): time a build with the current run_notebooks.py"
        )
    bad = [r["notebook"] for r in rows if r["status"] != "ok" or r["seconds"] is None]
    if bad:
        raise ValueError(f"chapters {bad} did not finish in this build; time a complete build")
    work = sum(r["seconds"] for r in rows)
    lines = [
        f"Measured in one toy build ({report['date']}, commit `{report['code_version']}`) on {report['cpu_count']} CPU cores, "
        f"{report['jobs']} chapters at a time, {report['threads_per_chapter']} thread(s) each; "
        f"the whole build took {report['total_seconds'] / 60:.0f} minutes. A chapter after the "
        "third reuses chapter 3's Combiner runs (and chapters 8 and 9 every method chapter's) "
        "when they are on disk; run alone in an empty data folder it trains them first."
        # what the machine was doing besides, when the report says (a loaded build is slower)
        + (f" Conditions of this build: {report['conditions']}" if report.get("conditions") else "")
        # the floor that scheduling alone cannot break: the work divided among the slots
        + f" The chapters' times add up to {work / 60:.0f} minutes: running {report['jobs']} at "
        f"a time, they cannot all finish in less than {work / report['jobs'] / 60:.0f} minutes, "
        "whatever their order; only faster chapters make the build faster.",
        "",
        "| chapter | minutes | chapters running beside it at its start |",
        "|---|---:|---:|",
    ]
    for i, row in enumerate(rows, start=1):
        lines.append(
            f"| {i} {chapter_title(row['notebook'])} | {row['seconds'] / 60:.1f} | "
            f"{row.get('beside', 1) - 1} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("report", nargs="?", type=Path, help="run_report.json of a toy build")
    ap.add_argument("--commit", action="store_true", help=f"write {REPORT.name} and {TABLE.name}")
    ap.add_argument("--check", action="store_true", help="the committed table matches its report")
    args = ap.parse_args(argv)
    if args.check:
        want = lab_times_markdown(json.loads(REPORT.read_text(encoding="utf-8")))
        if not TABLE.is_file() or TABLE.read_text(encoding="utf-8") != want:
            print(f"{TABLE} does not match {REPORT}; run `python {Path(__file__).name} "
                  f"{REPORT.relative_to(REPO)} --commit` again")  # fmt: skip
            return 1
        print(f"{TABLE.name} matches {REPORT.name}")
        return 0
    if args.report is None or not args.report.is_file():
        ap.error(f"give the run_report.json of a toy build (not found: {args.report})")
    report = json.loads(args.report.read_text(encoding="utf-8"))
    table = lab_times_markdown(report)  # refuses an unfinished or non-toy build before writing
    if not args.commit:
        print(table, end="")
        return 0
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    TABLE.write_text(lab_times_markdown(report), encoding="utf-8")
    print(f"wrote {REPORT.relative_to(REPO)} and {TABLE.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
