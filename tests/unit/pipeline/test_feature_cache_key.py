"""The feature cache's key covers everything the cache stores (targets included) and the images'
bytes; a damaged cache file is encoded again."""

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch

from cirlib.config import resolve
from cirlib.data.features import FORMAT_VERSION, cached_features
from cirlib.data.image_digest import file_sha256, image_content_digest
from cirlib.data.records import CIRSplit, DatasetError
from cirlib.data.toy import load_toy, prepare_toyworld
from cirlib.models.backbone import load_backbone

GROUPS = {"train": 12, "val": 6, "test": 10}


@pytest.fixture(scope="module")
def setup():
    world = prepare_toyworld(resolve("smoke", world_groups=GROUPS))
    torch.manual_seed(0)
    model, preprocess, tokenizer = load_backbone("toy-vit-tiny", pretrained=None)
    return world, model, preprocess, tokenizer


def _copied(split: CIRSplit, folder) -> CIRSplit:
    """The split with its images copied into ``folder`` (so a test may change them)."""
    folder.mkdir()
    paths = {}
    for name, path in split.image_paths.items():
        paths[name] = folder / f"{name}.png"
        shutil.copyfile(path, paths[name])
    return CIRSplit(split.name, list(split.triplets), list(split.gallery), paths)


def _features(split, setup, cache_dir, **kw):
    _, model, preprocess, tokenizer = setup
    return cached_features(
        split, model, preprocess, tokenizer, encoder="m", cache_dir=cache_dir, **kw
    )


def test_the_format_version_moved_past_the_keys_without_targets():
    assert FORMAT_VERSION >= 2


def test_a_changed_target_is_a_new_cache_entry(setup, tmp_path):
    split = load_toy(setup[0], "test")
    first = _features(split, setup, tmp_path)
    # same names, same references and captions; only one query's target differs
    t0 = split.triplets[0]
    other = next(n for n in split.gallery if n not in (t0.target, t0.reference))
    changed = CIRSplit(
        split.name,
        [dataclasses.replace(t0, target=other), *split.triplets[1:]],
        list(split.gallery),
        dict(split.image_paths),
    )
    second = _features(changed, setup, tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 2
    assert int(second.target_index[0]) == split.index_of(other)
    assert int(first.target_index[0]) == split.index_of(t0.target)
    assert torch.equal(second.target_index[1:], first.target_index[1:])


def test_changed_image_bytes_give_fresh_features(setup, tmp_path):
    split = _copied(load_toy(setup[0], "test"), tmp_path / "images")
    cache = tmp_path / "cache"
    first = _features(split, setup, cache)
    # the same file name now holds another picture (a re-rendered world, another export)
    a, b = split.gallery[0], split.gallery[1]
    shutil.copyfile(split.image_paths[b], split.image_paths[a])
    second = _features(split, setup, cache)
    assert len(list(cache.glob("*.pt"))) == 2
    assert torch.equal(second.images[0], first.images[1])
    assert not torch.equal(second.images[0], first.images[0])
    assert torch.equal(second.images[2:], first.images[2:])


def test_the_image_digest_hashes_bytes_not_paths(setup, tmp_path):
    split = load_toy(setup[0], "test")
    moved = _copied(split, tmp_path / "moved")
    assert image_content_digest(split) == image_content_digest(moved)  # a moved folder: same
    shutil.copyfile(moved.image_paths[moved.gallery[1]], moved.image_paths[moved.gallery[0]])
    assert image_content_digest(split) != image_content_digest(moved)


def test_the_digest_memo_sees_a_rewritten_file(setup, tmp_path):
    split = _copied(load_toy(setup[0], "test"), tmp_path / "images")
    memo = tmp_path / "memo.json"
    before = image_content_digest(split, memo)
    assert memo.exists() and image_content_digest(split, memo) == before  # from the memo
    path = split.image_paths[split.gallery[0]]
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # same size, other bytes
    path.write_bytes(bytes(data))
    import os

    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with the old mtime
    after = image_content_digest(split, memo)
    assert after != before
    assert after == image_content_digest(split)  # the memo agrees with hashing every file


def test_file_sha256_is_the_hash_of_the_bytes(tmp_path):
    import hashlib

    f = tmp_path / "x.bin"
    f.write_bytes(b"abc" * (1 << 19))  # more than one read chunk
    assert file_sha256(f) == hashlib.sha256(b"abc" * (1 << 19)).hexdigest()


def test_a_missing_image_file_is_named(setup, tmp_path):
    split = _copied(load_toy(setup[0], "test"), tmp_path / "images")
    gone = split.image_paths[split.gallery[3]]
    gone.unlink()
    with pytest.raises(DatasetError, match=str(gone)):
        image_content_digest(split)


@pytest.mark.parametrize("damage", ["truncated", "tail-cut", "empty", "garbage"])
def test_a_damaged_cache_file_is_encoded_again(setup, tmp_path, damage):
    split = load_toy(setup[0], "test")
    good = _features(split, setup, tmp_path)
    (path,) = tmp_path.glob("*.pt")
    data = path.read_bytes()
    damaged = {
        "truncated": data[: len(data) // 2],
        "tail-cut": data[:-100],
        "empty": b"",
        "garbage": b"\x80junk",
    }
    path.write_bytes(damaged[damage])
    with pytest.warns(UserWarning, match=f"feature cache {path} is damaged"):
        again = _features(split, setup, tmp_path)
    assert torch.equal(again.images, good.images) and torch.equal(
        again.target_index, good.target_index
    )
    assert path.read_bytes() == data  # rebuilt on disk
    third = _features(split, setup, tmp_path)  # and now read without a warning
    assert torch.equal(third.images, good.images)


def test_a_cache_file_of_another_split_size_is_encoded_again(setup, tmp_path):
    split = load_toy(setup[0], "test")
    _features(split, setup, tmp_path)
    (path,) = tmp_path.glob("*.pt")
    state = torch.load(path, weights_only=True)
    state["images"] = state["images"][:-1]
    torch.save(state, path)
    with pytest.warns(UserWarning, match="image rows"):
        again = _features(split, setup, tmp_path)
    assert again.images.shape[0] == len(split.gallery)


def test_two_runs_at_once_encode_a_missing_entry_once(setup, tmp_path, monkeypatch):
    """A chapter executed twice side by side: the second waits for the first's file."""
    import threading
    import time

    import cirlib.data.features as features

    split = load_toy(setup[0], "test")
    encoded = []
    real = features.encode_split

    def slow_encode(*args, **kwargs):
        encoded.append(threading.get_ident())
        time.sleep(0.5)  # long enough for the other run to arrive while this one encodes
        return real(*args, **kwargs)

    monkeypatch.setattr(features, "encode_split", slow_encode)
    results = [None, None]

    def run(i):
        results[i] = _features(split, setup, tmp_path)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(encoded) == 1
    assert torch.equal(results[0].images, results[1].images)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_while_writing_the_cache_ends_in_one_sentence(setup, tmp_path, monkeypatch):
    """The cache's temporary file is written to /dev/full (every write fails with ENOSPC); the
    small digest memo before it still fits."""
    import builtins

    from cirlib.io import DiskFullError

    real_open = builtins.open

    def full_disk_open(file, mode="r", *args, **kwargs):
        if str(file).endswith(".part") and ".pt." in str(file) and "w" in mode:
            return real_open("/dev/full", mode, *args, **kwargs)
        return real_open(file, mode, *args, **kwargs)

    split = load_toy(setup[0], "test")
    monkeypatch.setattr("cirlib.io.open", full_disk_open, raising=False)
    with pytest.raises(DiskFullError, match=r"the disk is full: .*\.pt could not be written"):
        _features(split, setup, tmp_path)
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.rglob("*.part"))
    monkeypatch.undo()  # space freed: the next run encodes and writes the entry
    _features(split, setup, tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 1
