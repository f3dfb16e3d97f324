"""What a rendered chapter shows: no bookkeeping code on the page, no stray return values.

    python tests/notebooks/presentation.py _build/stage/notebooks/01_task_data_metrics.ipynb ...

Reads executed notebooks (a stage folder after the papermill run) and lists, per chapter,

* **bookkeeping on the page**: a visible code cell that only stores numbers for the text
  (``glue``), times something, or writes and reads checkpoints; such a cell should be tagged
  ``remove-input`` (its output, if any, stays);
* **glue on the page**: a visible code cell that calls ``glue`` at all, even next to teaching
  code; the glue lines belong in a ``remove-input`` cell right after it (at most
  ``MAX_VISIBLE_GLUE`` visible glue calls per chapter, none today);
* **stray return values**: a cell whose output is shown (visible, or ``remove-input``: its
  output still renders) and is an ``execute_result`` that is plain
  text only (``7.05``, ``'toy'``, ``Text(0.5, 1.0, '...')``): the cell's last line returned a
  value nobody meant to show (a ``remove-input`` cell ending in ``glue(...)`` shows the glued
  value; end it with ``;``). Tables (HTML) and figures are results, not strays.

* **wide tables**: a shown table with more than ``MAX_TABLE_COLUMNS`` data columns (a reader
  cannot read it; make it a figure or split it);
* **figures without a caption**: a figure shown as a cell's output; a figure belongs in a
  ``glue(name, fig, display=False)`` and a ```{glue:figure}``` with ``:name:`` and a caption.

The last two hold for the chapters of ``FIGURES_CHECKED`` (every chapter). A cell is visible unless tagged ``remove-input``, ``remove-cell``, ``hide-input`` or
``hide-cell``. Exits with status 1 when it finds a problem, naming the chapter, the cell and why.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import nbformat

HIDDEN = {"remove-input", "remove-cell", "hide-input", "hide-cell"}
# calls that only serve the page's bookkeeping: gluing numbers, timing, checkpoints
BOOKKEEPING = re.compile(
    r"^(glue\w*|time|perf_counter|monotonic|process_time|\w*checkpoint\w*|\w*run_time\w*)$"
)
# what a glue cell does besides gluing: turn a number or a table entry into the value it stores
CONVERSIONS = {
    "float", "int", "round", "len", "max", "min", "sum", "abs", "str", "bool", "item", "mean",
    "std", "format", "join", "get",
}  # fmt: skip
# chapters held to this: every chapter of the toc
CHECKED = tuple(f"{i:02d}_" for i in range(1, 11))
# cells whose output never renders
NO_OUTPUT = {"remove-cell", "remove-output"}
# glue calls a chapter may show (a visible glue call is bookkeeping next to teaching code)
MAX_VISIBLE_GLUE = 0
GLUE_CALL = re.compile(r"^glue\w*$")
MAX_TABLE_COLUMNS = 8
# chapters whose every figure is a captioned glue:figure and whose tables fit: all of them
FIGURES_CHECKED = CHECKED
FIGURE_TYPES = ("image/png", "image/svg+xml", "image/jpeg")


def _call_names(node: ast.AST) -> list[str]:
    names = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            f = sub.func
            names.append(f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "?"))
    return names


def is_bookkeeping(source: str) -> bool:
    """True when ``source`` calls at least one bookkeeping helper and nothing else but the
    conversions that prepare a value for it (``float``, ``round``, ``.item()``, ...); imports
    and plain assignments are allowed. A cell of plain assignments is not flagged."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    helpers = 0
    for statement in tree.body:
        if isinstance(statement, ast.Import | ast.ImportFrom):
            continue
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            return False  # a cell that defines something teaches or serves what follows
        names = _call_names(statement)
        if not all(BOOKKEEPING.match(n) or n in CONVERSIONS for n in names):
            return False
        helpers += sum(bool(BOOKKEEPING.match(n)) for n in names)
    return helpers > 0


def visible_glue_calls(source: str) -> int:
    """How many ``glue``-like calls ``source`` makes (0 when it is not Python)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return 0
    return sum(bool(GLUE_CALL.match(n)) for n in _call_names(tree))


def table_columns(html: str) -> int:
    """Data columns of the widest row of an HTML table (``<td>`` cells: index cells are
    ``<th>``), 0 when ``html`` holds no table."""
    rows = re.findall(r"<tr\b.*?</tr>", html, flags=re.S)
    return max((len(re.findall(r"<td\b", row)) for row in rows), default=0)


def shown_problems(outputs: list) -> list[str]:
    """Why the shown outputs of one cell are unreadable: a wide table, a figure with no caption."""
    problems = []
    for out in outputs:
        data = out.get("data", {})
        if "text/html" in data:
            html = data["text/html"]
            n = table_columns(html if isinstance(html, str) else "".join(html))
            if n > MAX_TABLE_COLUMNS:
                problems.append(
                    f"a table with {n} columns is shown (at most {MAX_TABLE_COLUMNS}); "
                    "make it a figure or split it"
                )
        if any(kind in data for kind in FIGURE_TYPES):
            problems.append(
                "a figure is shown without a number or caption; glue it with display=False "
                "and show it with a glue:figure (:name: and a caption)"
            )
    return problems


def is_stray(outputs: list) -> bool:
    """True when an output is a returned value shown as plain text only."""
    for out in outputs:
        if out.get("output_type") == "execute_result" and set(out.get("data", {})) == {
            "text/plain"
        }:
            return True
    return False


def presentation_problems(path: Path) -> list[str]:
    """Every problem of one executed notebook, as ``"<chapter> cell <i>: <why>"``."""
    nb = nbformat.read(path, as_version=4)
    problems = []
    glued = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        tags = set(cell.metadata.get("tags", []))
        if not NO_OUTPUT & tags and is_stray(cell.get("outputs", [])):
            value = next(
                o["data"]["text/plain"]
                for o in cell.outputs
                if o.get("output_type") == "execute_result"
            )
            problems.append(
                f"{path.stem} cell {i}: a stray return value is shown ({str(value)[:40]!r}); "
                "end the cell with a statement or assign the value"
            )
        if not NO_OUTPUT & tags and path.name.startswith(FIGURES_CHECKED):
            problems += [f"{path.stem} cell {i}: {why}" for why in shown_problems(cell.outputs)]
        if HIDDEN & tags:
            continue
        if is_bookkeeping(cell.source):
            problems.append(
                f"{path.stem} cell {i}: only bookkeeping (glue/timing/checkpoints) is visible; "
                "tag it remove-input"
            )
        elif visible_glue_calls(cell.source):
            glued.append(i)
    n_glue = sum(visible_glue_calls(nb.cells[i].source) for i in glued)
    if n_glue > MAX_VISIBLE_GLUE:
        problems.append(
            f"{path.stem} cells {glued}: {n_glue} glue calls are visible (at most "
            f"{MAX_VISIBLE_GLUE}); move them into a remove-input cell after the one that computes"
        )
    return problems


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv if Path(a).name.startswith(CHECKED)]
    problems = [p for path in paths for p in presentation_problems(path)]
    for p in problems:
        print(p, file=sys.stderr)
    print(f"presentation: {len(paths)} chapters checked, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
