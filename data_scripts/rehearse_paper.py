"""Rehearse the paper profile on the CPU before spending GPU hours: the same code, tiny sizes.

    python data_scripts/rehearse_paper.py                       # CIRR, FashionIQ and CIRCO
    python data_scripts/rehearse_paper.py --datasets cirr --jobs 1
    python data_scripts/rehearse_paper.py --datasets circo      # chapter 8 on CIRCO only

What it does, with ``CIRLIB_REHEARSAL=1`` (``cirlib.rehearsal``: only sizes change):

1. builds the ``smoke`` toy world and installs its CIRR and FashionIQ exports (and, for
   ``circo``, its CIRCO export, ``cirlib.data.toy_circo``) with ``prepare_data.py``, exactly as
   the real downloads are installed;
2. writes the rehearsal encoder's weights (``RN50x4-rehearsal``, a seeded random initialisation
   of RN50x4's open_clip architecture shrunk in width, depth and input size);
3. executes the chapters in ``PROFILE="paper"`` with ``DATASET`` set: chapters 2-9 on CIRR and
   on FashionIQ, chapter 8 alone on CIRCO (it has no training triplets; ``--chapters`` to
   change), at most ``--jobs`` at a time, each within the ``rehearsal`` budget of
   ``tests/notebooks/budgets.json``;
4. scores the CIRR test1 upload files that chapters 3 and 9 wrote with the local stand-in for
   the CIRR server (``score_cirr_submission.py``, the toy world's private targets), and the
   CIRCO test files that chapter 8 wrote with the stand-in for CIRCO's
   (``cirlib.circo_test_server``); on CIRCO it also records chapter 8's glued mAP@K;
5. checks each dataset's ``results_paper.json`` (written by chapter 9): a rehearsal, the open_clip
   architecture and the installed dataset's manifest, and writes ``rehearsal_report.json``.

Each dataset gets its own data folder (``<data>/rehearsal-<dataset>``): the chapters name their
checkpoints by profile and encoder, not by dataset. Exit status 0 when everything passed.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from concurrent import futures
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# every chapter with a DATASET parameter (1 and 10 always read the toy world)
_CHAPTERS = ["02_tiny_clip", "03_combiner", "04_mgur", "05_cala", "06_mapnet", "07_dqe"]
_CHAPTERS += ["08_zero_shot", "09_comparison"]
CHAPTERS = {"cirr": list(_CHAPTERS), "fashioniq": list(_CHAPTERS), "circo": ["08_zero_shot"]}
EXPORTS = {"cirr": "cirr_dataset", "fashioniq": "fashionIQ_dataset", "circo": "circo_dataset"}
DEFAULT_DATASETS = ["cirr", "fashioniq", "circo"]
# chapter 8's rows on CIRCO and the metric CIRCO reports
CIRCO_ROWS = ("sum", "pic2word", "searle")
CIRCO_MAP_KS = (5, 10, 25, 50)


def _runner():
    """tests/notebooks/run_notebooks.py, imported by name so that spawned workers find it (they
    receive this process's sys.path)."""
    sys.path.insert(0, str(REPO / "tests" / "notebooks"))
    import run_notebooks

    return run_notebooks


def _log(text: str) -> None:
    print(text, flush=True)


def prepare(dataset: str, data_dir: Path) -> tuple[Path, Path]:
    """Toy world, installed export and rehearsal weights under ``data_dir``; returns the world
    folder and the weights file. Runs in a child process so ``CIRLIB_DATA_DIR`` is its own."""
    env = {**os.environ, "CIRLIB_DATA_DIR": str(data_dir)}
    code = (
        "from cirlib.config import resolve\n"
        "from cirlib.data.toy import prepare_toyworld\n"
        "from cirlib.models.rehearsal_encoder import write_rehearsal_weights\n"
        "from cirlib.rehearsal import rehearsal_weights_path\n"
        "print(prepare_toyworld(resolve('smoke')))\n"
        "print(write_rehearsal_weights(rehearsal_weights_path()))\n"
    )
    if dataset == "circo":  # written on request, from the finished world
        code += (
            "from cirlib.data.toy_circo import export_toy_circo\n"
            "export_toy_circo(prepare_toyworld(resolve('smoke')))\n"
        )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    )
    world, weights = (Path(line) for line in out.stdout.split()[-2:])
    subprocess.run(
        [
            sys.executable,
            str(REPO / "data_scripts" / "prepare_data.py"),
            dataset,
            str(world / EXPORTS[dataset]),
            "--force",
        ],
        env=env,
        check=True,
    )
    return world, weights


def run_dataset(dataset, chapters, stage, data_dir, jobs, runner) -> list[dict]:
    """Execute ``chapters`` on ``dataset`` into ``stage``, ``jobs`` at a time."""
    os.environ["CIRLIB_DATA_DIR"] = str(data_dir)  # inherited by the kernels
    toc = runner.toc_notebooks()
    by_stem = {c.stem: c for c in toc}
    unknown = [c for c in chapters if c not in by_stem]
    if unknown:
        raise SystemExit(f"--chapters: {unknown} are not chapters of _toc.yml")
    selected = [by_stem[c] for c in chapters]
    budgets = json.loads(runner.BUDGETS_FILE.read_text(encoding="utf-8"))
    declared = json.loads(runner.NEEDS_FILE.read_text(encoding="utf-8"))
    needs = runner.chapter_needs(selected, declared, toc)
    chain = runner.chain_seconds(
        needs, lambda s: runner.budget_seconds(budgets, s, "rehearsal") or 1.0
    )
    runner.make_stage(stage)
    run = functools.partial(
        runner.run_chapter,
        profile="paper",
        seed=0,
        stage=stage,
        budgets=budgets,
        dataset=dataset,
        budget_key="rehearsal",
    )
    if jobs > 1:
        pool = futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
    else:
        pool = runner.InlineExecutor()
    with pool:
        return runner.run_all(selected, needs, chain, jobs, run, pool, log=_log)


def score_submissions(world: Path, data_dir: Path) -> dict:
    """The stand-in server's numbers for every pair of upload files the chapters wrote."""
    folder = data_dir / "submissions"
    scores = {}
    for recall in sorted(folder.glob("*_recall.json")) if folder.is_dir() else []:
        subset = recall.with_name(recall.name.replace("_recall.json", "_recall_subset.json"))
        out = subprocess.run(
            [
                sys.executable,
                str(REPO / "data_scripts" / "score_cirr_submission.py"),
                "--world",
                str(world),
                str(recall),
                str(subset),
            ],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            scores[recall.name] = {"rejected": (out.stdout + out.stderr).strip()}
        else:
            scores[recall.name] = json.loads(out.stdout)
    return scores


def score_circo_files(world: Path, data_dir: Path) -> dict:
    """The CIRCO stand-in server's mAP@K for every test file chapter 8 wrote."""
    from cirlib.circo_test_server import CircoSubmissionRejected, score_circo_submission

    folder = data_dir / "submissions"
    targets = world / "private" / "circo" / "test.gt.json"
    scores = {}
    for path in sorted(folder.glob("*_circo_test.json")) if folder.is_dir() else []:
        try:
            scores[path.name] = score_circo_submission(targets, path)
        except CircoSubmissionRejected as err:
            scores[path.name] = {"rejected": str(err)}
    return scores


def glued_values(notebook: Path) -> dict[str, str]:
    """``{glue name: its text}`` of an executed chapter (``rerun_chapter.glued_values``)."""
    spec = importlib.util.spec_from_file_location(
        "rerun_chapter", REPO / "data_scripts" / "rerun_chapter.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.glued_values(notebook)


def circo_map(notebook: Path) -> tuple[dict, list[str]]:
    """Chapter 8's glued mAP@K on CIRCO per row (``{row: {"mAP@K": value}}``) and problems."""
    if not notebook.is_file():
        return {}, [f"{notebook} was not written (chapter 8 did not run)"]
    glued = glued_values(notebook)
    table, problems = {}, []
    for row in CIRCO_ROWS:
        for k in CIRCO_MAP_KS:
            name = f"{row}_map{k}"
            try:
                value = float(glued[name])
            except (KeyError, ValueError):
                problems.append(f"chapter 8 glued no number {name!r} on CIRCO")
                continue
            table.setdefault(row, {})[f"mAP@{k}"] = value
    return table, problems


def check_results(path: Path, dataset: str, weights: Path) -> list[str]:
    """Problems with chapter 9's results file (empty: it proves the paper path ran)."""
    if not path.is_file():
        return [f"{path} was not written (chapter 9 did not finish)"]
    record = json.loads(path.read_text())
    problems = []
    if record.get("profile") != "paper" or record.get("rehearsal") is not True:
        problems.append("the results file is not marked as a paper-profile rehearsal")
    arch = record.get("encoder_architecture") or {}
    if arch.get("name") != "RN50x4-rehearsal" or "vision_cfg" not in arch.get(
        "open_clip_config", {}
    ):
        problems.append("the results file does not name the open_clip architecture")
    manifest = record.get("dataset_manifest") or {}
    if manifest.get("dataset") != dataset:
        problems.append(f"the results file does not carry the installed {dataset} manifest")
    if record.get("dataset") != dataset:
        problems.append(f"the results file's dataset is {record.get('dataset')!r}")
    if not str(record.get("encoder", "")).startswith("RN50x4-rehearsal:"):
        problems.append(f"the results file's encoder is {record.get('encoder')!r}")
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--datasets",
        nargs="+",
        choices=sorted(CHAPTERS),
        default=DEFAULT_DATASETS,
        help=f"default: {' '.join(DEFAULT_DATASETS)}",
    )
    ap.add_argument("--chapters", nargs="+", help="file stems (default: per dataset, above)")
    ap.add_argument("--stage", type=Path, default=REPO / "_build" / "rehearsal")
    ap.add_argument(
        "--data", type=Path, help="data folder (default: $CIRLIB_DATA_DIR or _build/data)"
    )
    ap.add_argument("--jobs", type=int, default=2, help="chapters executed at once (default 2)")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error("--jobs: give at least 1")

    os.environ["CIRLIB_REHEARSAL"] = "1"
    os.environ["CIRLIB_OFFLINE"] = "1"  # a rehearsal never downloads weights
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("CIRLIB_THREADS", str(max(1, (os.cpu_count() or 1) // args.jobs)))
    data = (
        args.data or Path(os.environ.get("CIRLIB_DATA_DIR", REPO / "_build" / "data"))
    ).resolve()
    stage = args.stage.resolve()
    runner = _runner()
    report = {"datasets": {}, "jobs": args.jobs, "cpu_count": os.cpu_count()}
    failed = False
    start = time.monotonic()
    for dataset in args.datasets:
        t0 = time.monotonic()
        data_dir = data / f"rehearsal-{dataset}"
        world, weights = prepare(dataset, data_dir)
        prepared = time.monotonic() - t0
        _log(f"{dataset}: toy export installed, rehearsal weights {weights} ({prepared:.0f} s)")
        rows = run_dataset(
            dataset,
            args.chapters or CHAPTERS[dataset],
            stage / dataset,
            data_dir,
            args.jobs,
            runner,
        )
        results = stage / dataset / "book" / "results_paper.json"
        problems = [
            f"{r['chapter']}: {r['status']} {r['message']}" for r in rows if r["status"] != "ok"
        ]
        if "09_comparison" in (args.chapters or CHAPTERS[dataset]):
            problems += check_results(results, dataset, weights)
        scores = score_submissions(world, data_dir) if dataset == "cirr" else {}
        problems += [f"{name}: {s['rejected']}" for name, s in scores.items() if "rejected" in s]
        if dataset == "cirr" and not scores:
            problems.append("no CIRR test1 upload files were written")
        map_at_k = {}
        if dataset == "circo":
            scores = score_circo_files(world, data_dir)
            problems += [f"{n}: {s['rejected']}" for n, s in scores.items() if "rejected" in s]
            written = {name.split("-paper-")[0] for name in scores}
            if "08_zero_shot" in (args.chapters or CHAPTERS[dataset]):
                if written != set(CIRCO_ROWS):
                    problems.append(f"CIRCO test files written for {sorted(written)}")
                notebook = stage / dataset / "notebooks" / "08_zero_shot.ipynb"
                map_at_k, more = circo_map(notebook)
                problems += more
        if (stage / dataset / "book" / "results_paper.json").is_file():
            shutil.copy2(results, stage / f"results_paper_{dataset}.json")
        report["datasets"][dataset] = {
            "chapters": rows,
            "submission_scores": scores,
            "map_at_k": map_at_k,
            "problems": problems,
            "seconds": round(time.monotonic() - t0, 1),
            "prepare_seconds": round(prepared, 1),
        }
        failed = failed or bool(problems)
        for p in problems:
            _log(f"PROBLEM {dataset}: {p}")
    report["seconds"] = round(time.monotonic() - start, 1)
    stage.mkdir(parents=True, exist_ok=True)
    (stage / "rehearsal_report.json").write_text(json.dumps(report, indent=1) + "\n")
    verdict = "FAILED" if failed else "passed"
    _log(
        f"rehearsal {verdict} in {report['seconds']:.0f} s; report {stage / 'rehearsal_report.json'}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
