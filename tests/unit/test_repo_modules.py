"""The tests' one importer of repository scripts: a fresh, registered module per call; a clear
error for a wrong path; nothing left in ``sys.modules`` when a script fails to run."""

import sys

import pytest
from _repo_modules import REPO, import_repo_module, import_script


def test_each_call_runs_the_script_again_and_registers_it_by_its_stem():
    first = import_script("prepare_data")
    assert sys.modules["prepare_data"] is first
    second = import_repo_module("data_scripts/prepare_data.py")
    assert second is not first and sys.modules["prepare_data"] is second
    assert first.__file__ == str(REPO / "data_scripts" / "prepare_data.py")


def test_a_path_that_is_not_a_file_of_the_repository_is_refused():
    with pytest.raises(FileNotFoundError, match="relative to the repository root"):
        import_repo_module("data_scripts/no_such_script.py")


def test_a_script_that_fails_to_run_leaves_no_module_behind(tmp_path, monkeypatch):
    import _repo_modules

    (tmp_path / "broken_for_test.py").write_text("raise RuntimeError('broken on purpose')\n")
    monkeypatch.setattr(_repo_modules, "REPO", tmp_path)
    with pytest.raises(RuntimeError, match="broken on purpose"):
        import_repo_module("broken_for_test.py")
    assert "broken_for_test" not in sys.modules
