"""The rendered-page checker (tests/notebooks/presentation.py) flags what it should, and only
that; with CIRBOOK_STAGE set to a stage folder it checks that folder's executed chapters."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from _repo_modules import import_repo_module

presentation = import_repo_module("tests/notebooks/presentation.py")


@pytest.mark.parametrize(
    "source",
    [
        'glue("n", 3)',
        'from cirlib.notebook import glue\n\nglue("r1", float(x.mean()))\n_ = glue("r5", 2)',
        "start = time.perf_counter()\nrun_time = time.perf_counter() - start",
        "for k in keys:\n    glue(f'abl_{k}', float(r1[k]))",
        "_ = glue_run_time()",
        "save_checkpoint(model, path)",
    ],
)
def test_bookkeeping_cells_are_flagged(source):
    assert presentation.is_bookkeeping(source)


@pytest.mark.parametrize(
    "source",
    [
        "x = 1",  # nothing called
        'glue("r1", evaluate(model)["R@1"])',  # computes a result: teaching code
        "display(table)\nglue('n', len(table))",
        "def f():\n    glue('x', 1)",  # defines something
        "%timeit f()",  # not Python: left alone
    ],
)
def test_teaching_cells_are_not_flagged(source):
    assert not presentation.is_bookkeeping(source)


def _executed(cells) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    for source, tags, outputs in cells:
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["tags"] = tags
        cell.outputs = outputs
        nb.cells.append(cell)
    return nb


def test_problems_of_an_executed_notebook(tmp_path):
    plain = nbformat.v4.new_output("execute_result", {"text/plain": "7.050092764378476"})
    table = nbformat.v4.new_output("execute_result", {"text/plain": "df", "text/html": "<table>"})
    nb = _executed(
        [
            ('glue("n", 3)', [], []),  # 0: bookkeeping in view
            ('glue("n", 3)', ["remove-input"], []),  # hidden: fine
            ("x.mean()", [], [plain]),  # 2: stray value
            ("x.mean()", ["remove-cell"], [plain]),  # hidden: fine
            ("table", [], [table]),  # a table is a result
        ]
    )
    path = tmp_path / "01_demo.ipynb"
    nbformat.write(nb, path)
    problems = presentation.presentation_problems(path)
    assert [p.split(":")[0] for p in problems] == ["01_demo cell 0", "01_demo cell 2"]
    assert "remove-input" in problems[0] and "7.0500927" in problems[1]
    assert presentation.main([str(path)]) == 1
    clean = tmp_path / "02_clean.ipynb"
    nbformat.write(_executed([("table", [], [table])]), clean)
    assert presentation.main([str(clean)]) == 0


STAGE = os.environ.get("CIRBOOK_STAGE")


@pytest.mark.skipif(not STAGE, reason="set CIRBOOK_STAGE to a stage folder of executed chapters")
def test_executed_chapters_show_no_bookkeeping_and_no_strays():
    paths = sorted(Path(STAGE, "notebooks").glob("*.ipynb"))
    checked = [p for p in paths if p.name.startswith(presentation.CHECKED)]
    assert checked, f"no chapter of {presentation.CHECKED} in {STAGE}/notebooks"
    problems = [p for path in checked for p in presentation.presentation_problems(path)]
    assert not problems, "\n".join(problems)


def test_glue_beside_teaching_code_and_strays_under_remove_input(tmp_path):
    """A glue call is bookkeeping even in a cell that also computes; a remove-input cell that
    ends in ``glue(...)`` renders the glued value, so it is a stray too."""
    plain = nbformat.v4.new_output("execute_result", {"text/plain": "48.451327"})
    teaching = 'r1 = evaluate(model)["R@1"]\nglue("r1", r1)'
    path = tmp_path / "04_demo.ipynb"
    nbformat.write(
        _executed(
            [
                (teaching, [], []),  # 0: glue beside teaching code
                ('glue("r1", r1)', ["remove-input"], [plain]),  # 1: hidden input, shown value
                ('glue("r1", r1);', ["remove-input"], []),  # hidden and silent: fine
                ('glue("r1", r1)', ["remove-cell"], [plain]),  # never rendered: fine
            ]
        ),
        path,
    )
    problems = presentation.presentation_problems(path)
    assert len(problems) == 2, problems
    assert any("04_demo cell 1: a stray" in p and "48.45" in p for p in problems)
    assert any("04_demo cells [0]: 1 glue calls are visible" in p for p in problems)
    split = tmp_path / "05_demo.ipynb"
    nbformat.write(
        _executed(
            [('r1 = evaluate(model)["R@1"]', [], []), ('glue("r1", r1);', ["remove-input"], [])]
        ),
        split,
    )
    assert presentation.presentation_problems(split) == []


def test_every_chapter_of_the_toc_is_checked():
    assert all(f"{i:02d}_" in presentation.CHECKED for i in range(1, 11))


def _html_table(n_columns: int) -> str:
    head = "".join(f"<th>c{j}</th>" for j in range(n_columns))
    body = "".join(f"<td>{j}</td>" for j in range(n_columns))
    return f"<table><thead><tr><th></th>{head}</tr></thead><tbody><tr><th>row</th>{body}</tr></tbody></table>"


def test_table_columns_counts_data_cells_not_the_index():
    assert presentation.table_columns(_html_table(8)) == 8
    assert presentation.table_columns(_html_table(18)) == 18
    assert presentation.table_columns("<p>no table</p>") == 0


def test_wide_tables_and_uncaptioned_figures_are_flagged(tmp_path):
    def html(n):
        return nbformat.v4.new_output(
            "display_data", {"text/html": _html_table(n), "text/plain": "t"}
        )

    figure = nbformat.v4.new_output(
        "display_data", {"image/png": "iVBOR", "text/plain": "<Figure>"}
    )
    nb = _executed(
        [
            ("display(t)", [], [html(18)]),  # 0: too wide
            ("display(t)", [], [html(8)]),  # fits
            ("fig", [], [figure]),  # 2: a figure with no caption
            ("fig", ["remove-input"], [figure]),  # 3: its input hidden, the figure still shows
            ("fig", ["remove-output"], [figure]),  # never shown: fine
        ]
    )
    path = tmp_path / "07_demo.ipynb"
    nbformat.write(nb, path)
    problems = presentation.presentation_problems(path)
    assert [p.split(":")[0] for p in problems] == [
        "07_demo cell 0",
        "07_demo cell 2",
        "07_demo cell 3",
    ], problems
    assert "18 columns" in problems[0] and "caption" in problems[1]
    # a notebook outside the book's chapters is not checked by main()
    other = tmp_path / "appendix_demo.ipynb"
    nbformat.write(nb, other)
    assert presentation.main([str(other)]) == 0
