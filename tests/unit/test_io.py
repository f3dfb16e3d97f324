"""Atomic writes keep a normal write's file mode, clean up after killed writers (never a live
writer's file), and end a full disk in one sentence with nothing half-written."""

import errno
import os
import stat
import subprocess
import sys
import time

import pytest
import torch

from cirlib.io import (
    DiskFullError,
    atomic_torch_save,
    atomic_write,
    atomic_write_json,
    remove_stale_parts,
)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_new_file_gets_the_mode_a_plain_write_gives(tmp_path, umask, mask, expected):
    umask(mask)
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    atomic_torch_save(tmp_path / "a.pt", {"x": torch.ones(2)})
    with open(tmp_path / "plain", "w") as f:
        f.write("x")
    assert _mode(tmp_path / "plain") == expected
    assert _mode(tmp_path / "a.json") == expected and _mode(tmp_path / "a.pt") == expected


def test_an_overwrite_keeps_the_old_files_mode(tmp_path, umask):
    target = tmp_path / "shared.json"
    atomic_write_json(target, [1])
    os.chmod(target, 0o640)
    atomic_write_json(target, [2])
    assert _mode(target) == 0o640 and target.read_text() == "[2]"


def _leftover(target, age):
    part = target.parent / f".{target.name}.dead{age}.part"
    part.write_bytes(b"half")
    old = time.time() - age
    os.utime(part, (old, old))
    return part


def test_a_killed_writers_part_file_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "cache[1].pt"  # glob characters in the name are taken literally
    stale = _leftover(target, 600)
    other = _leftover(tmp_path / "other.pt", 600)  # another target's file is left alone
    atomic_torch_save(target, {"x": torch.zeros(1)})
    assert not stale.exists() and other.exists()
    assert {p.name for p in tmp_path.iterdir()} == {"cache[1].pt", other.name}


def test_a_fresh_part_file_is_kept_it_may_be_a_writer_starting(tmp_path):
    target = tmp_path / "c.pt"
    young = _leftover(target, 5)
    atomic_write_json(target, {})
    assert young.exists()


def test_a_live_writers_part_file_is_never_removed(tmp_path):
    """Another process holds the lock of its temporary file (as atomic_path does while it
    writes): however old the file looks, it stays."""
    target = tmp_path / "c.pt"
    part = _leftover(target, 600)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(part)!r}, os.O_RDONLY)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert remove_stale_parts(target) == []
        atomic_write_json(target, {})
        assert part.exists()
    finally:
        holder.kill()
        holder.wait()
    assert remove_stale_parts(target) == [part]  # its writer is gone now


def test_a_write_in_progress_holds_its_lock(tmp_path):
    target = tmp_path / "c.json"
    seen = []

    def write(tmp):
        os.utime(tmp, (0, 0))  # looks ancient, but its writer is alive
        seen.append(remove_stale_parts(target))
        tmp.write_text("{}")

    atomic_write(target, write)
    assert seen == [[]] and target.read_text() == "{}"


def _full_disk_open(monkeypatch):
    """Writes to temporary files go to /dev/full, which fails every write with ENOSPC."""
    import builtins

    real_open = builtins.open

    def fake_open(file, mode="r", *args, **kwargs):
        if str(file).endswith(".part") and "w" in mode:
            return real_open("/dev/full", mode, *args, **kwargs)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("cirlib.io.open", fake_open, raising=False)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("writer", ["torch", "json"])
def test_a_full_disk_ends_in_one_sentence_and_keeps_the_old_file(tmp_path, monkeypatch, writer):
    target = tmp_path / f"out.{writer}"
    target.write_bytes(b"old")
    _full_disk_open(monkeypatch)
    with pytest.raises(DiskFullError, match=f"the disk is full: {target} could not be written"):
        if writer == "torch":
            atomic_torch_save(target, {"x": torch.zeros(100_000)})
        else:
            atomic_write_json(target, list(range(100_000)))
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_other_os_errors_pass_through_unchanged(tmp_path):
    def write(tmp):
        raise OSError(errno.EIO, "input/output error")

    with pytest.raises(OSError) as err:
        atomic_write(tmp_path / "x", write)
    assert not isinstance(err.value, DiskFullError) and err.value.errno == errno.EIO
    assert list(tmp_path.iterdir()) == []
