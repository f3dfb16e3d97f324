"""Execute chapters twice, each time from an empty data folder, and compare every glued number.

    python data_scripts/rerun_chapter.py --only 03_combiner [--profile smoke] [--work DIR]

Each run executes the chapters with ``tests/notebooks/run_notebooks.py`` under its own fresh
``CIRLIB_DATA_DIR`` (so nothing, not even the toy world, is loaded from the other run) and its
own stage folder; then the values the chapters glue (what the book's prose prints) are read
from the executed notebooks and compared exactly. Glued run times differ by nature and are
listed apart (``--timing``). Exits with 1 when any other glued value differs. Give several
chapters comma-separated, in order (chapters 4-7 need 03_combiner run first).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TIMING = ("run_time",)


def glued_values(notebook: Path) -> dict[str, str]:
    """``{glue name: its text}`` (Markdown, else plain text) from an executed notebook."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    out = {}
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            scrap = output.get("metadata", {}).get("scrapbook")
            if not scrap:
                continue
            prefix = scrap.get("mime_prefix", "")
            data = {k[len(prefix) :]: v for k, v in output.get("data", {}).items()}
            text = data.get("text/markdown", data.get("text/plain", ""))  # Markdown: its text
            out[scrap["name"]] = "".join(text) if isinstance(text, list) else text
    return out


def run_once(chapters: list[str], profile: str, work: Path, label: str) -> dict[str, dict]:
    # absolute: the chapters run from their own folder, and cirlib refuses a relative data folder
    work = Path(work).resolve()
    data, stage = work / f"data-{label}", work / f"stage-{label}"
    for path in (data, stage):
        shutil.rmtree(path, ignore_errors=True)
    data.mkdir(parents=True)
    env = dict(os.environ, CIRLIB_DATA_DIR=str(data))
    glued = {}
    for chapter in chapters:
        cmd = [
            sys.executable,
            str(REPO / "tests" / "notebooks" / "run_notebooks.py"),
            "--profile",
            profile,
            "--only",
            chapter,
            "--stage",
            str(stage),
            "--jobs",
            "1",
        ]
        print(f"[{label}] {chapter} ...", flush=True)
        subprocess.run(cmd, cwd=REPO, env=env, check=True)
        glued[chapter] = glued_values(stage / "notebooks" / f"{chapter}.ipynb")
    return glued


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", required=True, help="chapter file stems, comma-separated, in order")
    ap.add_argument("--profile", default="smoke", choices=["smoke", "toy"])
    ap.add_argument("--work", type=Path, help="folder for the two runs (default: a temporary one)")
    ap.add_argument(
        "--timing", default=",".join(TIMING), help="glue names that measure time (not compared)"
    )
    args = ap.parse_args(argv)
    chapters = [c.strip() for c in args.only.split(",") if c.strip()]
    timing = set(filter(None, args.timing.split(",")))
    work = args.work or Path(tempfile.mkdtemp(prefix="rerun-"))
    a = run_once(chapters, args.profile, work, "a")
    b = run_once(chapters, args.profile, work, "b")
    differ = 0
    for chapter in chapters:
        names = sorted(set(a[chapter]) | set(b[chapter]))
        compared = [n for n in names if n not in timing]
        bad = [n for n in compared if a[chapter].get(n) != b[chapter].get(n)]
        print(f"{chapter}: {len(compared)} glued values compared, {len(bad)} differ")
        for n in bad:
            print(f"  {n}: {a[chapter].get(n)!r} vs {b[chapter].get(n)!r}")
        for n in sorted(timing & set(names)):
            print(f"  (timing) {n}: {a[chapter].get(n)!r} vs {b[chapter].get(n)!r}")
        differ += len(bad)
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
