"""Shared test settings: the device and dtypes come from the environment (the same tests run on a
GPU with TEST_DEVICE=cuda), and a fresh data folder per test session."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]

TEST_DEVICE = os.environ.get("TEST_DEVICE", "cpu")
TEST_DTYPES = [
    getattr(torch, d) for d in os.environ.get("TEST_DTYPES", "float32,float64").split(",")
]


@pytest.fixture(autouse=True, scope="session")
def _isolated_data_dir(tmp_path_factory):
    old = os.environ.get("CIRLIB_DATA_DIR")
    os.environ["CIRLIB_DATA_DIR"] = str(tmp_path_factory.mktemp("cirlib-data"))
    yield
    if old is None:
        os.environ.pop("CIRLIB_DATA_DIR", None)
    else:
        os.environ["CIRLIB_DATA_DIR"] = old


@pytest.fixture(params=TEST_DTYPES, ids=lambda d: str(d).replace("torch.", ""))
def dtype(request):
    return request.param


@pytest.fixture
def device():
    return torch.device(TEST_DEVICE)


def _import_script(name: str):
    path = REPO / "data_scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look the module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_script():
    """``load_script("prepare_data")``: a script of ``data_scripts/`` imported as a module (the
    scripts are not a package)."""
    return _import_script
