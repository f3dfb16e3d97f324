"""The one way the unit tests import a script of this repository (``data_scripts/*.py``,
``tests/notebooks/*.py``): those folders are not packages, so each file is loaded from its path.

A test module imports it by name (``from _repo_modules import import_repo_module``): pytest puts
``tests/unit`` on ``sys.path`` when it loads ``tests/unit/conftest.py``. ``conftest`` itself is no
such name, because every ``conftest.py`` without an ``__init__.py`` is loaded as ``conftest`` and
the last one loaded wins.
"""

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def import_repo_module(relative_path: str):
    """The file ``REPO / relative_path`` executed as a fresh module named after its stem.

    The module is registered in ``sys.modules`` under that name before it runs: ``dataclasses``
    and ``pickle`` look a class's module up there. Each call executes the file again, so a test
    that patches the module does not change another test's copy.
    """
    path = REPO / relative_path
    if not path.is_file():
        raise FileNotFoundError(
            f"{relative_path} is not a file under {REPO}: give a path relative to the repository "
            "root, e.g. 'data_scripts/prepare_data.py' or 'tests/notebooks/run_notebooks.py'"
        )
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[spec.name]  # as a failed import does: no half-run module left behind
        raise
    return module


def import_script(name: str):
    """``data_scripts/<name>.py`` as a module (``import_script("prepare_data")``)."""
    return import_repo_module(f"data_scripts/{name}.py")
