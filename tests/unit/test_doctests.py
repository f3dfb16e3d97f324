"""Every ``>>>`` example in cirlib runs and prints what its docstring says (the unit stage runs
them), every public loss, solver and metric has one, and no docstring cites the project's
internal notes (``methods.md``), which readers of the library do not have."""

import doctest
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import cirlib
from cirlib import eval as cir_eval
from cirlib import losses, ot

MODULES = sorted(info.name for info in pkgutil.walk_packages(cirlib.__path__, prefix="cirlib."))
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name, monkeypatch, tmp_path):
    monkeypatch.setenv("CIRLIB_DATA_DIR", str(tmp_path))
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in finder.find(module, name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def _public_functions():
    metrics = [
        "recall_at_k",
        "cirr_metrics",
        "multi_target_recall",
        "fashioniq_category_recall",
        "fashioniq_summary",
        "target_ranks",
        "best_valid_ranks",
        "subset_ranks",
        "topk",
        "evaluation_ranks",
        "evaluate",
    ]
    out = [(f"cirlib.losses.{n}", getattr(losses, n)) for n in losses.__all__]
    out += [(f"cirlib.ot.{n}", getattr(ot, n)) for n in ot.__all__]
    out += [(f"cirlib.eval.{n}", getattr(cir_eval, n)) for n in metrics]
    return [(name, fn) for name, fn in out if inspect.isfunction(fn)]


PUBLIC = dict(_public_functions())


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_every_public_loss_solver_and_metric_has_an_example(name):
    fn = PUBLIC[name]
    assert ">>>" in (fn.__doc__ or ""), f"{name} has no example in its docstring"


def test_no_docstring_cites_the_internal_notes():
    root = Path(cirlib.__file__).parent
    citing = [str(p.relative_to(root)) for p in root.rglob("*.py") if "methods.md" in p.read_text()]
    assert not citing, f"these modules cite methods.md: {citing}"
