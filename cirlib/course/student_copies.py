"""Turn a chapter into its student copy: solution cells become stubs, outputs go.

A chapter's exercise is a markdown cell holding "Exercise N: title" followed by one or more code
cells tagged ``solution``. ``data_scripts/make_student_copies.py`` applies :func:`student_copy`
to every chapter of ``_toc.yml``.

Introduced in the page "Teaching with this book".
"""

from __future__ import annotations

import ast
import copy
import re
from dataclasses import dataclass

import nbformat

SOLUTION_TAG = "solution"
STUB_TAG = "exercise-stub"
STUB_COMMENT = "# Your solution here"
# "**Exercise 2: the best uncertainty.** For a fixed ..." -> (2, "the best uncertainty")
_BOLD_HEADING = re.compile(r"\*\*Exercise\s+(\d+)\s*:\s*(.+?)\*\*", re.DOTALL)
_PLAIN_HEADING = re.compile(r"Exercise\s+(\d+)\s*:\s*([^\n]+)")


class ExerciseError(ValueError):
    """A chapter's exercises do not follow the book's convention."""


@dataclass(frozen=True)
class Exercise:
    """One exercise of a chapter: its number, title and the index of its first solution cell."""

    chapter: str
    number: int
    title: str
    cell: int


def exercise_heading(markdown: str) -> tuple[int, str] | None:
    """The last "Exercise N: title" of a markdown cell as ``(N, title)``, or None.

    The last one, because a cell may open with other text ("## Exercises", a summary) before
    the exercise it introduces. A bold heading ends at the closing ``**``; a plain one at the end
    of its line. The title loses a trailing full stop.
    """
    matches = list(_BOLD_HEADING.finditer(markdown)) or list(_PLAIN_HEADING.finditer(markdown))
    if not matches:
        return None
    number, title = matches[-1].groups()
    return int(number), " ".join(title.split()).rstrip(".")


def _stub_function(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """``node``'s signature (and docstring, if any) with a body that raises NotImplementedError."""
    stub = copy.deepcopy(node)
    stub.decorator_list = []
    body: list[ast.stmt] = []
    docstring = ast.get_docstring(node, clean=False)
    if docstring is not None:
        body.append(ast.Expr(ast.Constant(docstring)))
    body.append(ast.Raise(exc=ast.Name("NotImplementedError", ast.Load()), cause=None))
    stub.body = body
    return ast.unparse(ast.fix_missing_locations(stub))


def solution_stub(source: str) -> str:
    """The stub that replaces a solution cell's ``source``.

    "# Your solution here", then each function the solution defines at top level, reduced to
    its signature raising ``NotImplementedError`` so that later cells calling it fail loudly
    instead of with a ``NameError``. A solution that does not parse (e.g. IPython magics) gets the
    comment only.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return STUB_COMMENT + "\n"
    functions = [
        _stub_function(node)
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]
    return "\n\n\n".join([STUB_COMMENT, *functions]) + "\n"


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def student_copy(
    nb: nbformat.NotebookNode, chapter: str
) -> tuple[nbformat.NotebookNode, list[Exercise]]:
    """The student copy of notebook ``nb`` and the list of its exercises.

    Every cell tagged ``solution`` is replaced, in place, by a code cell holding
    :func:`solution_stub` of its source, tagged ``exercise-stub`` (the solution's other tags are
    kept except ``hide-cell``, so that the stub is in plain view); every code cell loses its
    outputs and execution count. The number and order of cells do not change.

    A run of consecutive solution cells belongs to one exercise, whose heading must be in the
    markdown cell just before the run.

    Raises
    ------
    ExerciseError
        If a run of solution cells does not follow a markdown cell holding "Exercise N: …".
    """
    out = copy.deepcopy(nb)
    exercises: list[Exercise] = []
    for i, cell in enumerate(out.cells):
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        if SOLUTION_TAG not in _tags(cell):
            continue
        continues_run = i > 0 and SOLUTION_TAG in _tags(nb.cells[i - 1])
        if not continues_run:
            previous = nb.cells[i - 1] if i > 0 else None
            heading = (
                exercise_heading(previous.source)
                if previous is not None and previous.cell_type == "markdown"
                else None
            )
            if heading is None:
                raise ExerciseError(
                    f"{chapter}: cell {i} is tagged '{SOLUTION_TAG}' but the cell before it is "
                    "not a markdown cell with an 'Exercise N: title' heading"
                )
            exercises.append(Exercise(chapter, heading[0], heading[1], i))
        tags = [t for t in _tags(cell) if t not in (SOLUTION_TAG, "hide-cell")]
        stub = nbformat.v4.new_code_cell(solution_stub(cell.source))
        stub.metadata = copy.deepcopy(cell.get("metadata", {}))
        stub.metadata["tags"] = [*tags, STUB_TAG]
        if "id" in cell:
            stub["id"] = cell["id"]
        out.cells[i] = stub
    return out, exercises
