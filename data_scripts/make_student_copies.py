"""Write student copies of the book's chapters: solutions replaced by stubs, outputs cleared.

    python data_scripts/make_student_copies.py --out student_copies

The chapters are the notebooks named in ``_toc.yml`` (read with the same function the notebook
runner uses, never a glob). Each is written to ``<out>/<its path in the repo>`` with every cell
tagged ``solution`` replaced by a stub (see :func:`cirlib.course.student_copy`), and
``<out>/exercises.md`` and ``<out>/exercises.json`` index the exercises (chapter, number, title).
The folder is built next to ``<out>`` and renamed into place only when every chapter succeeded,
so ``<out>`` is either the previous complete set or the new one. Exits with status 1 and a
message naming the chapter and cell when a solution cell has no "Exercise N: …" heading before it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat

from cirlib.course import Exercise, ExerciseError, student_copy

REPO = Path(__file__).resolve().parents[1]
RUNNER = REPO / "tests" / "notebooks" / "run_notebooks.py"


def toc_notebooks(repo: Path) -> list[Path]:
    """The chapters of ``repo``'s ``_toc.yml``, through the notebook runner's own reader (one
    definition of "a chapter of the book")."""
    spec = importlib.util.spec_from_file_location("run_notebooks", RUNNER)
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    return runner.toc_notebooks(repo)


def index_markdown(exercises: list[Exercise]) -> str:
    """The exercise index as a Markdown table, in reading order."""
    lines = [
        "# Exercises",
        "",
        "| chapter | exercise | title |",
        "|---|---:|---|",
    ]
    lines += [f"| {e.chapter} | {e.number} | {e.title} |" for e in exercises]
    return "\n".join(lines) + "\n"


def write_student_copies(repo: Path, out: Path) -> list[Exercise]:
    """Write the student copies of ``repo``'s chapters to ``out`` atomically; return the index.

    Raises ``ExerciseError`` (and leaves ``out`` untouched) if a chapter breaks the exercise
    convention, ``FileNotFoundError`` if a chapter of the toc is missing.
    """
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        exercises: list[Exercise] = []
        for rel in toc_notebooks(repo):
            nb = nbformat.read(repo / rel, as_version=4)
            copy, found = student_copy(nb, rel.stem)
            nbformat.validate(copy)
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(copy, target)
            exercises += found
        (staging / "exercises.md").write_text(index_markdown(exercises), encoding="utf-8")
        rows = [vars(e) for e in exercises]
        (staging / "exercises.json").write_text(json.dumps(rows, indent=2) + "\n", "utf-8")
        # swap: the old folder is moved aside first, so a crash never leaves a half-written one
        previous = out.with_name(f".{out.name}.previous")
        if previous.exists():
            shutil.rmtree(previous)
        if out.exists():
            out.rename(previous)
        staging.rename(out)
        if previous.exists():
            shutil.rmtree(previous)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return exercises


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("student_copies"))
    parser.add_argument("--repo", type=Path, default=REPO, help="book sources (default: this repo)")
    args = parser.parse_args(argv)
    try:
        exercises = write_student_copies(args.repo.resolve(), args.out)
    except (ExerciseError, FileNotFoundError) as err:
        print(f"make_student_copies: {err}", file=sys.stderr)
        return 1
    chapters = sorted({e.chapter for e in exercises})
    print(
        f"Wrote student copies to {args.out}: {len(exercises)} exercises in {len(chapters)} chapters"
    )
    print(index_markdown(exercises))
    return 0


if __name__ == "__main__":
    sys.exit(main())
