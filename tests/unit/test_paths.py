"""A data folder that cannot be used ends in a message naming CIRLIB_DATA_DIR and the fix."""

import errno
import tempfile

import pytest

import cirlib.paths as paths
from cirlib.paths import DataDirError, data_root, subdir

FIX = "Set CIRLIB_DATA_DIR to a folder you can write"


@pytest.fixture
def data_dir(monkeypatch, tmp_path):
    def use(path):
        monkeypatch.setenv("CIRLIB_DATA_DIR", str(path))
        return path

    monkeypatch.setattr(paths, "_USABLE", set())
    return use


def test_a_regular_file_as_data_dir_is_named(data_dir, tmp_path):
    f = data_dir(tmp_path / "notes.txt")
    f.write_text("x")
    with pytest.raises(DataDirError, match=f"CIRLIB_DATA_DIR={f} cannot.*is a file, not a folder"):
        subdir("checkpoints")
    with pytest.raises(DataDirError, match=FIX):
        data_root()


def test_a_data_dir_below_a_regular_file_names_the_file(data_dir, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    data_dir(tmp_path / "notes.txt" / "cirlib")
    with pytest.raises(DataDirError, match=f"{tmp_path / 'notes.txt'} is a file, not a folder"):
        data_root()


@pytest.mark.parametrize(
    "code, why",
    [
        (errno.EACCES, "permission denied"),
        (errno.EROFS, "read-only file system"),
        (errno.ENOSPC, "the disk is full"),
    ],
)
def test_a_data_dir_that_refuses_writes_is_named(data_dir, tmp_path, monkeypatch, code, why):
    """Tests run as root, which ignores file modes: the refusal is simulated at the probe write."""
    d = data_dir(tmp_path / "readonly")
    d.mkdir()

    def refuse(*args, **kwargs):
        raise OSError(code, "refused")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    with pytest.raises(DataDirError, match=f"CIRLIB_DATA_DIR={d} cannot.*{why}.*{FIX}"):
        subdir("features")


def test_an_uncreatable_data_dir_is_named(data_dir, tmp_path, monkeypatch):
    data_dir(tmp_path / "new")

    def refuse(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(paths.Path, "mkdir", refuse)
    with pytest.raises(DataDirError, match="CIRLIB_DATA_DIR=.*permission denied"):
        data_root()


def test_the_default_folder_is_named_when_the_variable_is_unset(monkeypatch, tmp_path):
    monkeypatch.delenv("CIRLIB_DATA_DIR", raising=False)
    monkeypatch.setattr(paths, "_USABLE", set())
    monkeypatch.setattr(paths, "_default_root", lambda: tmp_path / "file")
    (tmp_path / "file").write_text("x")
    with pytest.raises(
        DataDirError, match=r"the default data folder .* \(CIRLIB_DATA_DIR is not set\)"
    ):
        data_root()


def test_a_usable_folder_is_created_and_recreated(data_dir, tmp_path):
    d = data_dir(tmp_path / "fresh")
    sub = subdir("checkpoints")
    assert sub == d / "checkpoints" and sub.is_dir()
    sub.rmdir()
    assert subdir("checkpoints").is_dir()  # removed between two calls: made again
    assert list(d.iterdir()) == [sub]  # the write probe left nothing behind


def test_a_tilde_in_the_variable_is_the_home_folder(data_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    data_dir("~/cirlib-data")
    assert data_root() == tmp_path / "home" / "cirlib-data"
    assert (tmp_path / "home" / "cirlib-data").is_dir()


def test_a_relative_data_dir_is_refused_with_the_absolute_one_to_use(
    data_dir, monkeypatch, tmp_path
):
    monkeypatch.chdir(tmp_path)
    data_dir("data")
    with pytest.raises(
        DataDirError,
        match=f"CIRLIB_DATA_DIR=data is a relative path.*CIRLIB_DATA_DIR={tmp_path / 'data'}",
    ):
        data_root()
    assert not (tmp_path / "data").exists()
