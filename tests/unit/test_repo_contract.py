"""The repository's contract with CI and with chapter authors.

CI runs the README's test command; every chapter listed in ``_toc.yml`` exists, is committed
without outputs, and has exactly one papermill parameters cell declaring PROFILE and SEED; CI
pins are exact and the library's own requirements are not. The notebook tests are parametrised
over ``_toc.yml``, so a chapter listed but not written fails here, by name.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import papermill as pm
import pytest
import tomllib
import yaml
from _repo_modules import import_repo_module

REPO = Path(__file__).resolve().parents[2]

runner = import_repo_module("tests/notebooks/run_notebooks.py")
TOC_NOTEBOOKS = runner.toc_notebooks(REPO)


def _command_lines(text: str) -> list[str]:
    """Lines of a shell script that do something (no shebang, comments, blanks)."""
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _readme_code_lines() -> set[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", readme, flags=re.M | re.S)
    return {line.strip() for block in blocks for line in block.splitlines() if line.strip()}


def test_ci_runs_the_readme_test_command():
    script = _command_lines((REPO / ".ci" / "run").read_text(encoding="utf-8"))
    assert "set -euo pipefail" in script
    command = script[-1]
    assert command == "bash tests/check.sh"
    assert command in _readme_code_lines(), "the README must show the command .ci/run runs"


def test_readme_shows_the_build_command():
    assert "bash data_scripts/build_book.sh" in _readme_code_lines()


def test_toc_lists_chapters():
    assert TOC_NOTEBOOKS, "_toc.yml lists no notebooks"
    assert all(nb.parts[0] == "notebooks" for nb in TOC_NOTEBOOKS)


def test_every_toc_page_exists():
    toc = yaml.safe_load((REPO / "_toc.yml").read_text(encoding="utf-8"))
    missing = [
        entry
        for entry in runner.toc_files(toc)
        if not any((REPO / f"{entry}{ext}").exists() for ext in ("", ".md", ".ipynb"))
    ]
    assert not missing, f"_toc.yml entries without a file: {missing}"


DATASET_CHAPTERS = {"02", "03", "04", "05", "06", "07", "09"}


def test_readme_names_the_check_stages_in_order():
    """The README's account of tests/check.sh lists the script's stages: the book, the
    rehearsal, and last the rerun of two chapters from empty data folders."""
    script = (REPO / "tests" / "check.sh").read_text(encoding="utf-8")
    stages = re.search(r"^all_stages=\(([^)]*)\)", script, re.M).group(1).split()
    assert stages[-3:] == ["book", "rehearsal", "rerun"]
    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    assert "the book build with warnings as errors; the rehearsal of the `paper` profile" in readme
    assert "each chapter's time); last, the rerun: chapters 1 and 3" in readme
    assert f"Stages: {', '.join(stages)}." in script


@pytest.mark.parametrize("rel", TOC_NOTEBOOKS, ids=[nb.stem for nb in TOC_NOTEBOOKS])
def test_chapter_is_committed_stripped_with_one_parameters_cell(rel: Path):
    path = REPO / rel
    assert path.exists(), f"{rel} is listed in _toc.yml but does not exist"
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{rel}: {len(tagged)} cells tagged 'parameters', expected 1"
    declared = pm.inspect_notebook(str(path))
    assert {"PROFILE", "SEED"} <= set(declared), f"{rel} declares only {sorted(declared)}"
    if rel.stem[:2] in DATASET_CHAPTERS:  # the dataset is a parameter: "" = the profile's own
        assert "DATASET" in declared, f'{rel} must declare DATASET: str = ""'
        assert declared["DATASET"]["default"] in ('""', "''"), f'{rel}: DATASET defaults to ""'
    with_outputs = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.outputs or c.execution_count is not None)
    ]
    assert not with_outputs, f"{rel}: cells {with_outputs} have outputs; run nbstripout"


def test_ci_pins_are_exact():
    lines = (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines()
    pins = {line.split("#")[0].strip() for line in lines}
    for pin in ("torch==2.14.1", "torchvision==0.29.1", "jupyter-book==1.0.4.post1"):
        assert pin in pins, f"requirements.txt must pin {pin}"
    assert "-e ." in pins, "requirements.txt must install cirlib itself"


def test_library_requirements_are_lower_bounds_only():
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    pinned = [r for r in requirements if "==" in r]
    assert not pinned, f"pyproject.toml must not pin exactly (Colab): {pinned}"


# The runner's own rules, on small notebooks written here.


def _notebook(path: Path, parameters_source: str | None, tags=("parameters",)) -> Path:
    cells = [nbformat.v4.new_markdown_cell("# title")]
    if parameters_source is not None:
        cells.append(nbformat.v4.new_code_cell(parameters_source, metadata={"tags": list(tags)}))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


def test_runner_rejects_unknown_and_missing_parameters(tmp_path: Path):
    good = _notebook(tmp_path / "good.ipynb", 'PROFILE: str = "toy"\nSEED: int = 0')
    assert runner.parameters_problem(good, {"PROFILE": "smoke", "SEED": 1}) is None
    problem = runner.parameters_problem(good, {"PROFILE": "smoke", "EPOCHS": 3})
    assert problem and "EPOCHS" in problem
    untagged = _notebook(tmp_path / "untagged.ipynb", 'PROFILE: str = "toy"', tags=())
    assert "found 0" in runner.parameters_problem(untagged, {"PROFILE": "smoke"})


def test_runner_budgets_default_and_override():
    budgets = {"default": {"smoke": 120, "toy": 1800}, "notebooks": {"02_x": {"toy": 2400}}}
    assert runner.budget_seconds(budgets, "01_y", "smoke") == 120
    assert runner.budget_seconds(budgets, "02_x", "toy") == 2400
    assert runner.budget_seconds(budgets, "02_x", "smoke") == 120
    assert runner.budget_seconds(budgets, "01_y", "paper") is None
    shipped = json.loads((REPO / "tests" / "notebooks" / "budgets.json").read_text())
    # the paper profile has no budget (a GPU elsewhere); its CPU rehearsal has one
    assert shipped["default"] == {"smoke": 120, "toy": 1800, "rehearsal": 240}


def test_the_docs_state_the_shipped_toy_budgets():
    """README and the setup page list every chapter's own toy budget, as budgets.json has it."""
    shipped = json.loads((REPO / "tests" / "notebooks" / "budgets.json").read_text())
    overrides = sorted(
        (int(stem[:2]), b["toy"]) for stem, b in shipped["notebooks"].items() if "toy" in b
    )
    listed = ", ".join(f"chapter {n}: {seconds} s" for n, seconds in overrides)
    for doc in ("README.md", "book/setup.md"):
        text = " ".join((REPO / doc).read_text(encoding="utf-8").split())  # lines joined
        assert listed in text, f"{doc} should list the toy budgets of budgets.json: {listed}"
        assert f"{shipped['default']['toy']} s on 2 CPU cores" in text


def test_runner_reads_nested_toc_entries():
    toc = {
        "root": "book/intro",
        "parts": [{"chapters": [{"file": "a", "sections": [{"file": "b"}, {"url": "x"}]}]}],
    }
    assert runner.toc_files(toc) == ["book/intro", "a", "b"]


def test_sanitizer_pairs_all_parse():
    from nbval.plugin import get_sanitize_patterns

    text = (REPO / "tests" / "notebooks" / "nbval_sanitize.cfg").read_text(encoding="utf-8")
    n_rules = sum(line.startswith("regex: ") for line in text.splitlines())
    assert len(get_sanitize_patterns(text)) == n_rules
