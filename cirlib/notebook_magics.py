"""``%%toy_only``: a chapter cell that needs the toy world's labels runs only on the toy world.

The toy world knows every query's edit type, coarse/fine granularity, valid targets and scene;
the real datasets (and the paper profile's rehearsal on their formats) do not. A chapter marks
each cell of such an analysis with ``%%toy_only`` on its first line: on the toy world the cell
runs as if the line were not there (its last expression is displayed as usual); on any other
dataset it prints that it was skipped and why, and runs nothing. :func:`cirlib.notebook.setup_notebook`
registers the magic for the chapter's profile.
"""

from __future__ import annotations

import ast

_state = {"dataset": "toy"}

SKIP_NOTE = (
    "Skipped on {dataset}: this cell needs the toy world's labels (edit types, granularity, "
    "valid targets or scenes), which {dataset} does not have."
)


def run_cell_body(cell: str, namespace: dict):
    """Execute ``cell`` in ``namespace``; return the value of a final bare expression (None if
    the cell does not end with one, or ends with ``;`` as a notebook hides it)."""
    tree = ast.parse(cell)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr) and not cell.rstrip().endswith(";"):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, "<toy_only cell>", "exec"), namespace)
    if last is not None:
        return eval(compile(last, "<toy_only cell>", "eval"), namespace)
    return None


def toy_only(line: str, cell: str):
    """The cell magic (see the module docstring)."""
    from IPython import get_ipython

    if _state["dataset"] != "toy":
        print(SKIP_NOTE.format(dataset=_state["dataset"]))
        return None
    return run_cell_body(cell, get_ipython().user_ns)


def register_toy_only(dataset: str) -> None:
    """Register ``%%toy_only`` in the running IPython kernel for a chapter on ``dataset``
    (a no-op outside IPython)."""
    _state["dataset"] = dataset
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        shell.register_magic_function(toy_only, magic_kind="cell", magic_name="toy_only")
