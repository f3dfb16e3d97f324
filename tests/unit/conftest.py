"""Shared test settings: the device and dtypes come from the environment (the same tests run on a
GPU with TEST_DEVICE=cuda), and a fresh data folder per test session."""

import os

import pytest
import torch
from _repo_modules import import_script

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


@pytest.fixture(scope="session")
def load_script():
    """``load_script("prepare_data")``: a script of ``data_scripts/`` imported as a module (the
    scripts are not a package; ``_repo_modules`` for imports at module level)."""
    return import_script
