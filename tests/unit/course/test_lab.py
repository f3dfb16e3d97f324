"""The lab runs: the student copies' graded cells fail on the stub, naming the exercise, and pass
on an implementation written apart from the library; the copies give no answer away."""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _repo_modules import import_script

from cirlib.course import exercise_heading, grade

REPO = Path(__file__).resolve().parents[3]
script = import_script("make_student_copies")
CHAPTERS = script.toc_notebooks(REPO)
# the chapters whose losses the course page grades (book/course.md)
GRADED = {"02_tiny_clip", "03_combiner", "04_mgur", "05_cala", "06_mapnet", "07_dqe"}


def _tags(cell) -> list[str]:
    return list(cell.metadata.get("tags", []))


@pytest.fixture(scope="module")
def copies(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lab") / "copies"
    assert script.main(["--out", str(out)]) == 0
    return out


def _graded_exercises(rel: Path, copies: Path):
    """(number, stub sources, solution sources, grading source) of every graded exercise: a run
    of stub cells followed by a cell that calls ``grade(``."""
    original = nbformat.read(REPO / rel, as_version=4)
    copy = nbformat.read(copies / rel, as_version=4)
    found = []
    for i, cell in enumerate(copy.cells):
        if (
            cell.cell_type != "code"
            or "grade(" not in cell.source
            or "exercise-stub" in _tags(cell)
        ):
            continue
        first = i
        while first > 0 and "exercise-stub" in _tags(copy.cells[first - 1]):
            first -= 1
        assert first < i, f"{rel.stem} cell {i} grades, but no stub comes right before it"
        heading = exercise_heading(copy.cells[first - 1].source)
        assert heading is not None, f"{rel.stem} cell {i}: no exercise heading before its stubs"
        stubs = [c.source for c in copy.cells[first:i]]
        solutions = [c.source for c in original.cells[first:i]]
        assert all("solution" in _tags(c) for c in original.cells[first:i])
        found.append((heading[0], stubs, solutions, cell.source))
    return found


def _run(sources: list[str]) -> dict:
    # what the chapters import before their exercises
    namespace = {"torch": torch, "F": F, "math": math, "np": np, "grade": grade}
    for source in sources:
        exec(compile(source, "<cell>", "exec"), namespace)
    return namespace


def test_every_graded_chapter_has_graded_cells(copies):
    chapters = {rel.stem for rel in CHAPTERS if _graded_exercises(rel, copies)}
    assert chapters == GRADED


@pytest.mark.parametrize("rel", CHAPTERS, ids=lambda p: p.stem)
def test_graded_cells_fail_on_the_stub_and_pass_on_the_solution(rel, copies):
    for number, stubs, solutions, grading in _graded_exercises(rel, copies):
        # the stub: the grading cell fails, and says which exercise is not done
        with pytest.raises(AssertionError, match=rf"Exercise {number}\b.*not solved"):
            _run([*stubs, grading])
        # the chapter's solution is written apart from the library, and passes
        for source in solutions:
            assert "cirlib" not in source, f"{rel.stem} exercise {number} calls the library"
        _run([*solutions, grading])


def test_a_wrong_solution_fails_its_exercise(copies):
    """The grading cells really grade: a loss that sums instead of averaging is caught."""
    rel = next(r for r in CHAPTERS if r.stem == "03_combiner")
    number, _, solutions, grading = _graded_exercises(rel, copies)[0]
    summed = solutions[0].replace("return total / len(queries)", "return total")
    assert summed != solutions[0]
    with pytest.raises(AssertionError, match=rf"Exercise {number}\b"):
        _run([summed, grading])


def _defined_functions(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


@pytest.mark.parametrize("rel", CHAPTERS, ids=lambda p: p.stem)
def test_copies_hold_no_solution_no_output_and_no_answer(rel, copies):
    copy = nbformat.read(copies / rel, as_version=4)
    original = nbformat.read(REPO / rel, as_version=4)
    assert not any("solution" in _tags(c) for c in copy.cells)
    assert not any(c.get("outputs") for c in copy.cells if c.cell_type == "code")
    # what a solution defines is defined nowhere else in the copy but in its stub
    answers = set()
    for cell in original.cells:
        if "solution" in _tags(cell):
            answers |= _defined_functions(cell.source)
    for i, cell in enumerate(copy.cells):
        if cell.cell_type != "code" or "exercise-stub" in _tags(cell):
            continue
        defined = _defined_functions(cell.source)
        assert not defined & answers, f"{rel.stem} cell {i} defines {defined & answers}"
        # a student's answer is named my_*; only stubs may define one
        mine = {n for n in defined if re.fullmatch(r"my_\w+", n)}
        assert not mine, f"{rel.stem} cell {i}: {mine} is visible in the student copy"
