"""Execute the book's chapters with papermill into a staged copy of the book.

    python tests/notebooks/run_notebooks.py --profile smoke --stage _build/stage
    python tests/notebooks/run_notebooks.py --profile toy --only 02_tiny_clip

The chapters are the notebooks named in ``_toc.yml`` (never a glob, so an orphan notebook is not
run and a listed but missing one is a failure). The stage is a fresh copy of ``_config.yml``,
``_toc.yml``, ``book/`` and ``notebooks/``; each chapter is executed from the source tree into
its staged path, so the stage ends up as an executed book that ``jb build`` renders as is and
nbval re-runs. A chapter fails when

* its parameters cell is missing, duplicated, or does not declare a parameter we pass
  (papermill itself only warns about unknown parameters),
* any cell raises (papermill writes the notebook with an error banner; it stays in the stage),
* it takes longer than its budget in ``tests/notebooks/budgets.json``.

The run continues past failures, writes ``book/execution_report.md`` (into the stage only; the
source tree holds a placeholder) and ``run_report.json`` at the stage root, then exits 1 if any
chapter failed. Only the standard library, papermill, nbformat and PyYAML are used.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import nbformat
import papermill as pm
import yaml

REPO = Path(__file__).resolve().parents[2]
BUDGETS_FILE = Path(__file__).with_name("budgets.json")
PROFILES = ("smoke", "toy", "paper")
STAGED = ("_config.yml", "_toc.yml", "book", "notebooks")
REPORT_PAGE = Path("book/execution_report.md")
CELL_TIMEOUT = (
    600  # seconds per cell when a chapter has no budget: a hung cell must not run forever
)


def toc_files(toc: dict) -> list[str]:
    """Every ``file:`` entry of a jb-book ``_toc.yml`` in reading order, the root first."""
    files = [toc["root"]]

    def walk(entries: list[dict] | None) -> None:
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))

    for part in toc.get("parts") or []:
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return files


def toc_notebooks(repo: Path = REPO) -> list[Path]:
    """The notebooks ``_toc.yml`` names, relative to ``repo``, including ones that do not exist.

    An entry is a notebook if it ends in ``.ipynb``, if ``<entry>.ipynb`` exists, or if it lives
    under ``notebooks/`` (so that a chapter listed before it is written counts as missing).
    """
    toc = yaml.safe_load((repo / "_toc.yml").read_text(encoding="utf-8"))
    notebooks = []
    for entry in toc_files(toc):
        if entry.endswith(".ipynb"):
            notebooks.append(Path(entry))
        elif entry.endswith(".md"):
            continue
        elif (repo / f"{entry}.ipynb").exists() or entry.startswith("notebooks/"):
            notebooks.append(Path(f"{entry}.ipynb"))
    return notebooks


def parameters_problem(path: Path, requested: dict) -> str | None:
    """Why ``requested`` cannot be injected into the notebook at ``path``, or None if it can."""
    nb = nbformat.read(path, as_version=4)
    tagged = sum("parameters" in cell.metadata.get("tags", []) for cell in nb.cells)
    if tagged != 1:
        return f"expected exactly one cell tagged 'parameters', found {tagged}"
    declared = pm.inspect_notebook(str(path))
    unknown = sorted(set(requested) - set(declared))
    if unknown:
        return f"unknown parameter(s) {unknown}; the parameters cell declares {sorted(declared)}"
    return None


def budget_seconds(budgets: dict, chapter: str, profile: str) -> float | None:
    """The chapter's budget for ``profile``: its override if any, else the default (None: none)."""
    override = budgets.get("notebooks", {}).get(chapter, {})
    return override.get(profile, budgets.get("default", {}).get(profile))


def make_stage(stage: Path, repo: Path = REPO) -> None:
    """Replace ``stage`` with a fresh copy of the book sources."""
    if (
        stage == repo
        or stage in repo.parents
        or any(stage.is_relative_to(repo / name) for name in STAGED)
    ):
        raise SystemExit(f"refusing to use {stage} as the stage: it would overwrite sources")
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    for name in STAGED:
        src = repo / name
        if src.is_dir():
            ignore = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__")
            shutil.copytree(src, stage / name, ignore=ignore)
        elif src.exists():
            shutil.copy2(src, stage / name)
    # Only chapters of the toc are staged: nbval runs every notebook in the stage folder, and a
    # draft chapter not yet in _toc.yml must not be executed (or built) by accident.
    chapters = {(stage / p).resolve() for p in toc_notebooks(repo)}
    for nb in (stage / "notebooks").rglob("*.ipynb"):
        if nb.resolve() not in chapters:
            nb.unlink()


def tag_injected_cell(nb: nbformat.NotebookNode) -> None:
    """Hide papermill's injected-parameters cell from the rendered book."""
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")


def slowest_cell(nb: nbformat.NotebookNode) -> tuple[int, float] | None:
    """(index, seconds) of the slowest executed cell, from papermill's per-cell metadata."""
    timed = [
        (i, cell.metadata.get("papermill", {}).get("duration"))
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
    ]
    timed = [(i, d) for i, d in timed if d is not None]
    return max(timed, key=lambda t: t[1]) if timed else None


def run_chapter(
    rel: Path, profile: str, seed: int, stage: Path, budgets: dict, repo: Path = REPO
) -> dict:
    """Execute one chapter into the stage; return its row of the run report."""
    chapter = rel.stem
    budget = budget_seconds(budgets, chapter, profile)
    row = {
        "chapter": chapter,
        "notebook": rel.as_posix(),
        "profile": profile,
        "seed": seed,
        "seconds": None,
        "budget": budget,
        "status": "ok",
        "message": "",
    }
    src, out = repo / rel, (stage / rel).resolve()
    if not src.exists():
        row.update(status="missing", message=f"{rel} is listed in _toc.yml but does not exist")
        return row
    parameters = {"PROFILE": profile, "SEED": seed}
    problem = parameters_problem(src, parameters)
    if problem:
        row.update(status="bad parameters", message=problem)
        return row

    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    try:
        pm.execute_notebook(
            str(src),
            str(out),  # absolute: with cwd set, papermill resolves a relative output against it
            parameters=parameters,
            kernel_name="python3",
            cwd=str(out.parent),
            # no single cell may outlast the whole chapter's budget
            execution_timeout=int(budget) if budget is not None else CELL_TIMEOUT,
            progress_bar=False,
        )
    except pm.PapermillExecutionError as err:
        print(err, file=sys.stderr)
        row.update(status="error", message=f"cell {err.cell_index}: {err.ename}: {err.evalue}")
    except Exception as err:  # kernel death, cell timeout, bad notebook JSON, ...
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        row.update(status="error", message=f"{type(err).__name__}: {err}")
    wall = time.monotonic() - start

    seconds = wall
    if out.exists():
        nb = nbformat.read(out, as_version=4)
        tag_injected_cell(nb)
        nbformat.write(nb, out)
        seconds = nb.metadata.get("papermill", {}).get("duration") or wall
        slow = slowest_cell(nb)
        if slow:
            row["slowest_cell"] = {"index": slow[0], "seconds": round(slow[1], 1)}
    row["seconds"] = round(seconds, 1)
    if row["status"] == "ok" and budget is not None and seconds > budget:
        slow = row.get("slowest_cell")
        hint = f"; slowest cell {slow['index']} took {slow['seconds']} s" if slow else ""
        row.update(
            status="over budget",
            message=f"{seconds:.1f} s > {budget} s ({profile} budget){hint}",
        )
    return row


def report_markdown(rows: list[dict], profile: str, seed: int, total: float, stage: Path) -> str:
    """The execution-report page: one table row per chapter."""
    lines = [
        "# Execution report",
        "",
        "This page is written by `tests/notebooks/run_notebooks.py` each time the book is built:",
        f'every chapter below was executed with `PROFILE = "{profile}"` and `SEED = {seed}`',
        f"on {os.cpu_count()} CPU cores (Python {platform.python_version()}, {platform.system()}).",
        "Budgets are in `tests/notebooks/budgets.json`; a chapter over its budget fails the build.",
        "",
        "| chapter | profile | seconds | status |",
        "|---|---|---:|---|",
    ]
    for row in rows:
        exists = (stage / row["notebook"]).exists()
        name = f"{{doc}}`../{row['notebook'].removesuffix('.ipynb')}`" if exists else row["chapter"]
        seconds = "" if row["seconds"] is None else f"{row['seconds']:.1f}"
        lines.append(f"| {name} | {row['profile']} | {seconds} | {row['status']} |")
    lines += ["", f"Total execution time: {total:.1f} s.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=PROFILES, default="toy")
    parser.add_argument("--stage", type=Path, default=Path("_build/stage"))
    parser.add_argument("--only", metavar="NAME", help="run one chapter (file stem or toc path)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    chapters = toc_notebooks()
    if not chapters:
        parser.error("_toc.yml lists no notebooks")
    if args.only:
        wanted = args.only.removesuffix(".ipynb")
        chapters = [c for c in chapters if wanted in (c.stem, c.with_suffix("").as_posix())]
        if not chapters:
            names = ", ".join(c.stem for c in toc_notebooks())
            parser.error(f"--only {args.only}: not a chapter of _toc.yml ({names})")

    stage = args.stage.resolve()
    budgets = json.loads(BUDGETS_FILE.read_text(encoding="utf-8"))
    make_stage(stage)
    print(f"Staged the book in {stage}; profile {args.profile}, seed {args.seed}", flush=True)

    rows = []
    start = time.monotonic()
    for i, rel in enumerate(chapters, 1):
        print(f"[{i}/{len(chapters)}] {rel} ...", flush=True)
        row = run_chapter(rel, args.profile, args.seed, stage, budgets)
        rows.append(row)
        budget = "no budget" if row["budget"] is None else f"budget {row['budget']} s"
        took = "" if row["seconds"] is None else f" in {row['seconds']:.1f} s ({budget})"
        print(f"[{i}/{len(chapters)}] {rel}: {row['status']}{took} {row['message']}", flush=True)
    total = time.monotonic() - start

    failed = [row for row in rows if row["status"] != "ok"]
    page = stage / REPORT_PAGE
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(report_markdown(rows, args.profile, args.seed, total, stage), encoding="utf-8")
    report = {
        "profile": args.profile,
        "seed": args.seed,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "total_seconds": round(total, 1),
        "notebooks": rows,
        "failed": [row["notebook"] for row in failed],
    }
    (stage / "run_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    print(f"{len(rows) - len(failed)}/{len(rows)} chapters passed in {total:.1f} s")
    if failed:
        print("FAILED:", file=sys.stderr)
        for row in failed:
            print(f"  {row['notebook']}: {row['status']}: {row['message']}", file=sys.stderr)
        print(f"Executed notebooks (with error cells) are kept in {stage}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
