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

Chapters whose prerequisites have run execute side by side (``--jobs``; by default one per core,
at most 4, for the ``smoke`` and ``toy`` profiles, and one at a time for ``paper``, whose
chapters share one GPU). ``tests/notebooks/needs.json`` says what each chapter needs; a chapter
it does not list waits for every chapter before it. Of the chapters that may start, the one
heading the longest remaining chain of budgets starts first, so the long chains never wait at
the end. With more than one job every chapter's kernel gets the same fixed thread count, the
cores divided by the jobs (``$CIRLIB_THREADS``, unless it is already set): a run's thread count
changes its rounding and so its numbers, and it must not depend on which chapters happened to
be running beside it.

The run continues past failures, writes ``book/execution_report.md`` (into the stage only; the
source tree holds a placeholder) and ``run_report.json`` at the stage root, then exits 1 if any
chapter failed. Only the standard library, papermill, nbformat and PyYAML are used.
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import functools
import json
import multiprocessing
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import nbformat
import papermill as pm
import yaml

REPO = Path(__file__).resolve().parents[2]
BUDGETS_FILE = Path(__file__).with_name("budgets.json")
NEEDS_FILE = Path(__file__).with_name("needs.json")
PROFILES = ("smoke", "toy", "paper")
STAGED = ("_config.yml", "_toc.yml", "book", "notebooks")
REPORT_PAGE = Path("book/execution_report.md")
BATCH = "CIRLIB_BATCH"  # set for the kernels of a batch run (this script, CI's nbval stage)
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
    rel: Path,
    profile: str,
    seed: int,
    stage: Path,
    budgets: dict,
    repo: Path = REPO,
    dataset: str = "",
    budget_key: str | None = None,
) -> dict:
    """Execute one chapter into the stage; return its row of the run report.

    ``dataset`` (non-empty) is passed as the chapter's ``DATASET`` parameter; ``budget_key``
    picks the budget under another name than the profile (the paper rehearsal: ``"rehearsal"``).
    """
    chapter = rel.stem
    budget = budget_seconds(budgets, chapter, budget_key or profile)
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
    if dataset:
        parameters["DATASET"] = dataset
        row["dataset"] = dataset
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
            message=f"{seconds:.1f} s > {budget} s ({budget_key or profile} budget){hint}",
        )
    return row


def chapter_needs(chapters: list[Path], declared: dict, toc: list[Path] | None = None) -> dict:
    """Each chapter's prerequisites among ``chapters`` (file stems), from ``needs.json``.

    A chapter the file does not list needs every chapter before it in ``toc`` (the safe default
    for a new chapter). Names that are not chapters of the toc, and needs that come later in
    the toc (reading order is also build order), are refused. Prerequisites outside
    ``chapters`` (``--only``) are dropped: their outputs are either on disk or trained again.
    """
    toc = toc if toc is not None else chapters
    order = [c.stem for c in toc]
    declared = {k: v for k, v in declared.items() if not k.startswith("_")}
    for stem, wanted in declared.items():
        if stem not in order:
            raise ValueError(f"needs.json lists {stem!r}, which is not a chapter of _toc.yml")
        for need in wanted:
            if need not in order:
                raise ValueError(f"needs.json: {stem} needs {need!r}, not a chapter of _toc.yml")
            if order.index(need) >= order.index(stem):
                raise ValueError(
                    f"needs.json: {stem} needs {need}, which comes after it in _toc.yml; "
                    "a chapter may only need chapters before it"
                )
    running = {c.stem for c in chapters}
    return {
        c.stem: [n for n in declared.get(c.stem, order[: order.index(c.stem)]) if n in running]
        for c in chapters
    }


def chain_seconds(needs: dict, seconds: Callable[[str], float]) -> dict:
    """For each chapter, its own ``seconds`` plus the longest chain of chapters that need it:
    how long the build takes from its start at the least. The longest chain starts first."""
    chain: dict[str, float] = {}
    for stem in reversed(list(needs)):  # dependents come later in the toc
        after = [chain[t] for t, wanted in needs.items() if stem in wanted]
        chain[stem] = seconds(stem) + max(after, default=0.0)
    return chain


def run_all(
    chapters: list[Path],
    needs: dict,
    chain: dict,
    jobs: int,
    run: Callable[[Path], dict],
    pool: futures.Executor,
    log: Callable[[str], None] | None = None,
) -> list[dict]:
    """Execute ``chapters`` with ``run`` on ``pool``, at most ``jobs`` at a time, each once all
    of its ``needs`` have finished (whatever their status: a failed chapter's own row says so,
    and the chapters after it still run and report their own errors). Among the chapters that
    may start, the one with the longest ``chain`` goes first. Rows come back in toc order, each
    with ``started`` (seconds after the first start) and ``beside`` (how many chapters ran at
    its start, itself included)."""
    log = log or functools.partial(print, flush=True)
    order = {c.stem: i for i, c in enumerate(chapters)}
    by_stem = {c.stem: c for c in chapters}
    waiting, done, rows = list(by_stem), set(), {}
    running: dict[futures.Future, str] = {}
    t0 = time.monotonic()
    while waiting or running:
        ready = [s for s in waiting if all(n in done for n in needs[s])]
        ready.sort(key=lambda s: (-chain[s], order[s]))
        for stem in ready[: max(0, jobs - len(running))]:
            waiting.remove(stem)
            future = pool.submit(run, by_stem[stem])
            running[future] = stem
            rows[stem] = {"started": round(time.monotonic() - t0, 1), "beside": len(running)}
            log(f"[start] {by_stem[stem]} ({len(running)} running)")
        if not running:
            raise RuntimeError(f"chapters {waiting} wait for chapters that never run")
        finished, _ = futures.wait(running, return_when=futures.FIRST_COMPLETED)
        for future in finished:
            stem = running.pop(future)
            done.add(stem)
            try:
                result = future.result()
            except Exception as err:  # the worker process died (run_chapter catches the rest)
                result = {
                    "chapter": stem,
                    "notebook": by_stem[stem].as_posix(),
                    "seconds": None,
                    "budget": None,
                    "status": "error",
                    "message": f"{type(err).__name__}: {err}",
                }
            rows[stem] = {**result, **rows[stem]}
            row = rows[stem]
            budget = "no budget" if row["budget"] is None else f"budget {row['budget']} s"
            took = "" if row["seconds"] is None else f" in {row['seconds']:.1f} s ({budget})"
            log(
                f"[{len(done)}/{len(chapters)}] {by_stem[stem]}: {row['status']}{took} "
                f"{row['message']}"
            )
    return [rows[c.stem] for c in chapters]


def default_jobs(profile: str, cores: int | None = None) -> int:
    """One chapter per core, at most 4 (no more than 4 chapters are independent of each other);
    one at a time for ``paper``, whose chapters share a GPU."""
    cores = cores or os.cpu_count() or 1
    return 1 if profile == "paper" else max(1, min(4, cores))


def chapter_threads(jobs: int, cores: int | None = None) -> int:
    """The fixed thread count of every chapter when ``jobs`` run side by side."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // jobs)


def report_markdown(
    rows: list[dict],
    profile: str,
    seed: int,
    total: float,
    stage: Path,
    jobs: int = 1,
    threads: int | None = None,
) -> str:
    """The execution-report page: one table row per chapter."""
    together = (
        "one at a time"
        if jobs == 1
        else f"up to {jobs} at a time (`--jobs {jobs}`; *beside* counts the chapters running "
        "when it started, itself included)"
    )
    if threads:
        together += f", each on {threads} CPU thread(s) (`CIRLIB_THREADS={threads}`)"
    lines = [
        "# Execution report",
        "",
        "This page is written by `tests/notebooks/run_notebooks.py` each time the book is built:",
        f'every chapter below was executed with `PROFILE = "{profile}"` and `SEED = {seed}`',
        f"on {os.cpu_count()} CPU cores (Python {platform.python_version()}, {platform.system()}),",
        f"{together}. Budgets are in `tests/notebooks/budgets.json`; a chapter over its budget",
        "fails the build.",
        "",
        "| chapter | profile | started (s) | seconds | beside | status |",
        "|---|---|---:|---:|---:|---|",
    ]
    for row in rows:
        exists = (stage / row["notebook"]).exists()
        name = f"{{doc}}`../{row['notebook'].removesuffix('.ipynb')}`" if exists else row["chapter"]
        seconds = "" if row["seconds"] is None else f"{row['seconds']:.1f}"
        started = "" if row.get("started") is None else f"{row['started']:.1f}"
        lines.append(
            f"| {name} | {row.get('profile', profile)} | {started} | {seconds} | "
            f"{row.get('beside', 1)} | {row['status']} |"
        )
    chapter_total = sum(row["seconds"] or 0.0 for row in rows)
    lines += [
        "",
        f"Total execution time: {total:.1f} s (the chapters' own times add up to "
        f"{chapter_total:.1f} s).",
        "",
    ]
    return "\n".join(lines)


def _git_commit() -> str:
    """The short hash of the checked-out commit ("unknown" outside a git checkout)."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


class InlineExecutor(futures.Executor):
    """Run each task when it is submitted, in this process (``--jobs 1``: no worker processes;
    the chapters' kernels choose their threads as they would anywhere)."""

    def submit(self, fn, /, *args, **kwargs):
        future = futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:
            future.set_exception(err)
        return future


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=PROFILES, default="toy")
    parser.add_argument("--stage", type=Path, default=Path("_build/stage"))
    parser.add_argument("--only", metavar="NAME", help="run one chapter (file stem or toc path)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--dataset",
        default="",
        help="the chapters' DATASET parameter (chapters 2-9; default: the profile's own)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        help="chapters executed at once (default: one per core, at most 4; 1 for paper)",
    )
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

    jobs = args.jobs or default_jobs(args.profile)
    if jobs < 1:
        parser.error(f"--jobs {args.jobs}: give at least 1 (chapters executed at once)")
    from cirlib.notebook import THREADS, pinned_threads  # torch: only the parent needs it

    if jobs > 1 and not os.environ.get(THREADS, "").strip():
        os.environ[THREADS] = str(chapter_threads(jobs))  # every chapter's kernel inherits it
    # a batch run has no one to click a widget: chapter 10 does not build its explorer then
    # (nbclient can stall until the cell timeout on a widget's comm messages; the widget is
    # tested in tests/unit/viz/test_explorer.py)
    os.environ[BATCH] = "1"
    try:
        threads = pinned_threads()  # the kernels' own reading, so a bad value stops us here
    except ValueError as err:
        parser.error(str(err))

    budgets = json.loads(BUDGETS_FILE.read_text(encoding="utf-8"))
    declared = json.loads(NEEDS_FILE.read_text(encoding="utf-8"))
    try:
        needs = chapter_needs(chapters, declared, toc_notebooks())
    except ValueError as err:
        parser.error(f"{NEEDS_FILE.relative_to(REPO)}: {err}")
    chain = chain_seconds(needs, lambda s: budget_seconds(budgets, s, args.profile) or 1.0)

    # every refusal above comes before the stage is wiped
    stage = args.stage.resolve()
    make_stage(stage)
    print(f"Staged the book in {stage}; profile {args.profile}, seed {args.seed}", flush=True)
    run = functools.partial(
        run_chapter,
        profile=args.profile,
        seed=args.seed,
        stage=stage,
        budgets=budgets,
        dataset=args.dataset,
    )
    if jobs > 1:
        # spawn, not fork: a forked papermill worker would inherit this process's state
        pool = futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
    else:
        pool = InlineExecutor()
    start = time.monotonic()
    with pool:
        rows = run_all(chapters, needs, chain, jobs, run, pool)
    total = time.monotonic() - start

    failed = [row for row in rows if row["status"] != "ok"]
    page = stage / REPORT_PAGE
    page.parent.mkdir(parents=True, exist_ok=True)
    report_page = report_markdown(rows, args.profile, args.seed, total, stage, jobs, threads)
    page.write_text(report_page, encoding="utf-8")
    report = {
        "profile": args.profile,
        "seed": args.seed,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "code_version": _git_commit(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "jobs": jobs,
        "threads_per_chapter": threads,
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
