"""Student copies: stubs instead of solutions, nothing else changed, an index of every exercise,
written atomically; a solution without its exercise heading stops the script."""

import ast
import json
import re
from pathlib import Path

import nbformat
import pytest
from _repo_modules import import_script

from cirlib.course import ExerciseError, exercise_heading, solution_stub, student_copy

REPO = Path(__file__).resolve().parents[3]
script = import_script("make_student_copies")


def test_exercise_heading():
    text = "## Exercises\n\n**Exercise 1: the other Δ.** Implement reading (b), ..."
    assert exercise_heading(text) == (1, "the other Δ")
    # the last heading of a cell wins; a bold title may wrap across lines
    assert exercise_heading("**Exercise 1: a.** x\n\n**Exercise 2: two\nlines.** y") == (
        2,
        "two lines",
    )
    assert exercise_heading("Exercise 3: plain title\nmore text") == (3, "plain title")
    assert exercise_heading("## Summary\nNo exercise here.") is None


def test_solution_stub_keeps_signatures_only():
    source = '''import torch


@torch.no_grad()
def kernel(cost: torch.Tensor, tau, iters=500, *, eps=1e-9) -> torch.Tensor:
    """Sinkhorn without logs."""
    k = torch.exp(-cost / tau)
    return k


async def later(x):
    return x + 1


print(kernel(torch.ones(2, 2), 0.5))
'''
    stub = solution_stub(source)
    assert stub.startswith("# Your solution here\n")
    tree = ast.parse(stub)
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    assert [f.name for f in functions] == ["kernel", "later"]
    assert ast.unparse(functions[0].args) == "cost: torch.Tensor, tau, iters=500, *, eps=1e-09"
    assert ast.unparse(functions[0].returns) == "torch.Tensor"
    assert ast.get_docstring(functions[0]) == "Sinkhorn without logs."
    for line in ("torch.exp", "return k", "return x + 1", "print(", "no_grad"):
        assert line not in stub
    namespace = {"torch": __import__("torch")}
    exec(compile(stub, "stub", "exec"), namespace)
    with pytest.raises(NotImplementedError):
        namespace["kernel"](None, 0.5)
    assert solution_stub("x = 1\nprint(x)") == "# Your solution here\n"
    assert solution_stub("%timeit f()") == "# Your solution here\n"


def _notebook(cells):
    nb = nbformat.v4.new_notebook()
    for kind, source, tags in cells:
        make = nbformat.v4.new_markdown_cell if kind == "md" else nbformat.v4.new_code_cell
        cell = make(source)
        cell.metadata["tags"] = tags
        nb.cells.append(cell)
    return nb


def test_student_copy_of_a_small_notebook():
    nb = _notebook(
        [
            ("code", "x = 1", ["parameters"]),
            ("md", "**Exercise 1: first.** Do it.", []),
            ("code", "def f(a, b=2):\n    return a + b", ["solution", "hide-cell"]),
            ("code", "assert f(1) == 3", ["solution", "hide-cell"]),  # same exercise
            ("md", "Exercise 2: second", []),
            ("code", "y = 2", ["solution"]),
        ]
    )
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", text="hi")]
    nb.cells[0].execution_count = 4
    copy, exercises = student_copy(nb, "00_demo")
    nbformat.validate(copy)
    assert [(e.number, e.title, e.cell) for e in exercises] == [(1, "first", 2), (2, "second", 5)]
    assert len(copy.cells) == len(nb.cells)
    assert copy.cells[0].outputs == [] and copy.cells[0].execution_count is None
    assert (
        copy.cells[2].source
        == "# Your solution here\n\n\ndef f(a, b=2):\n    raise NotImplementedError\n"
    )
    assert copy.cells[2].metadata["tags"] == ["exercise-stub"]
    assert [c.id for c in copy.cells] == [c.id for c in nb.cells]
    assert nb.cells[2].source.startswith("def f")  # the input is not modified


@pytest.mark.parametrize(
    "before",
    [
        [("md", "Some text without the word.", [])],
        [("code", "z = 3", [])],
        [],
    ],
)
def test_solution_without_heading_is_an_error(before):
    nb = _notebook([*before, ("code", "y = 2", ["solution"])])
    with pytest.raises(ExerciseError, match=r"00_demo: cell \d+ is tagged 'solution'"):
        student_copy(nb, "00_demo")


def _solution_runs(nb):
    """(first cell index, markdown heading) of each run of solution cells, found independently."""
    runs = []
    for i, cell in enumerate(nb.cells):
        tagged = "solution" in cell.metadata.get("tags", [])
        if tagged and (i == 0 or "solution" not in nb.cells[i - 1].metadata.get("tags", [])):
            runs.append((i, nb.cells[i - 1].source))
    return runs


def test_real_chapters(tmp_path):
    out = tmp_path / "copies"
    exercises = script.write_student_copies(REPO, out)
    chapters = script.toc_notebooks(REPO)
    assert chapters and all(rel.suffix == ".ipynb" for rel in chapters)
    expected_index = []
    for rel in chapters:
        original = nbformat.read(REPO / rel, as_version=4)
        copy = nbformat.read(out / rel, as_version=4)
        nbformat.validate(copy)
        assert len(copy.cells) == len(original.cells)
        assert all("solution" not in c.metadata.get("tags", []) for c in copy.cells)
        assert all(not c.get("outputs") for c in copy.cells if c.cell_type == "code")
        # every line a solution adds to the chapter is gone (def lines stay in the stubs)
        solution_lines, other_lines = set(), set()
        for cell in original.cells:
            lines = {line.strip() for line in cell.source.splitlines() if len(line.strip()) > 12}
            target = solution_lines if "solution" in cell.metadata.get("tags", []) else other_lines
            target |= lines
        copy_lines = {line.strip() for c in copy.cells for line in c.source.splitlines()}
        leaked = {
            line
            for line in (solution_lines - other_lines) & copy_lines
            if not line.startswith(("def ", "async def "))
        }
        assert not leaked, f"{rel}: solution lines left in the student copy: {sorted(leaked)[:3]}"
        for i, heading in _solution_runs(original):
            number, title = re.findall(r"\*\*Exercise (\d+): (.+?)\.?\*\*", heading, re.S)[-1]
            expected_index.append((rel.stem, int(number), " ".join(title.split()), i))
    assert [(e.chapter, e.number, e.title, e.cell) for e in exercises] == expected_index
    assert len(expected_index) >= 10  # chapters 4-7 hold 3-4 exercises each
    index_md = (out / "exercises.md").read_text()
    for chapter, number, title, _ in expected_index:
        assert f"| {chapter} | {number} | {title} |" in index_md
    rows = json.loads((out / "exercises.json").read_text())
    assert [(r["chapter"], r["number"]) for r in rows] == [(c, n) for c, n, _, _ in expected_index]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copies"]  # no staging folder left


def _fake_repo(root: Path, cells) -> Path:
    (root / "notebooks").mkdir(parents=True)
    (root / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nchapters:\n  - file: notebooks/01_bad\n"
    )
    nbformat.write(_notebook(cells), root / "notebooks" / "01_bad.ipynb")
    return root


def test_bad_chapter_exits_nonzero_and_keeps_the_old_copies(tmp_path, capsys):
    repo = _fake_repo(tmp_path / "repo", [("md", "Intro", []), ("code", "y = 2", ["solution"])])
    out = tmp_path / "copies"
    out.mkdir()
    (out / "keep.txt").write_text("previous run")
    assert script.main(["--repo", str(repo), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "01_bad: cell 1 is tagged 'solution'" in err and "Exercise N" in err
    assert (out / "keep.txt").read_text() == "previous run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copies", "repo"]


def test_rerun_replaces_the_previous_copies(tmp_path):
    good = [("md", "**Exercise 1: a.**", []), ("code", "y = 2", ["solution"])]
    repo = _fake_repo(tmp_path / "repo", good)
    out = tmp_path / "copies"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    assert script.main(["--repo", str(repo), "--out", str(out)]) == 0
    assert not (out / "stale.txt").exists()
    assert (out / "notebooks" / "01_bad.ipynb").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copies", "repo"]
