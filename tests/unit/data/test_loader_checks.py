"""The two checks CIRR's and CIRCO's loaders share: a query id repeated in an annotation file, and
gallery images without a file, each refused with a message that names what and where."""

import os
import re
from pathlib import Path

import pytest

from cirlib.data.missing_images import require_image_files
from cirlib.data.records import DatasetError, Triplet, parse_unique_entries


def _triplet(index: int, entry: dict) -> Triplet:
    if "id" not in entry:
        raise DatasetError(f"entry {index} has no id")
    return Triplet(pair_id=entry["id"], reference=entry["ref"], captions=("c",), caption="c")


def test_entries_are_parsed_in_file_order():
    entries = [{"id": 7, "ref": "a"}, {"id": 3, "ref": "b"}, {"id": 9, "ref": "c"}]
    triplets = parse_unique_entries(Path("f.json"), entries, _triplet, "pairid", "fix it")
    assert [(t.pair_id, t.reference) for t in triplets] == [(7, "a"), (3, "b"), (9, "c")]


def test_the_first_repeated_id_is_named_with_both_entries():
    entries = [{"id": 7, "ref": "a"}, {"id": 3, "ref": "b"}, {"id": 7, "ref": "c"}]
    entries.append({"id": 3, "ref": "d"})  # also repeated, but after the first repeat
    with pytest.raises(DatasetError) as err:
        parse_unique_entries(Path("ann/f.json"), entries, _triplet, "pairid", "fix it")
    assert str(err.value) == (
        f"{Path('ann/f.json')}: entry 2 (pairid 7), field 'pairid': duplicates entry 0; fix it"
    )


def test_a_malformed_entry_raises_the_parsers_own_error():
    entries = [{"id": 1, "ref": "a"}, {"ref": "b"}]
    with pytest.raises(DatasetError, match="^entry 1 has no id$"):
        parse_unique_entries(Path("f.json"), entries, _triplet, "id", "fix it")


def _gallery(folder: Path, names: list[str], present: set[str]) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name in present:
        (folder / f"{name}.jpg").write_bytes(b"x")
    return {name: folder / f"{name}.jpg" for name in names}


def test_a_complete_gallery_passes(tmp_path):
    paths = _gallery(tmp_path / "img", ["a", "b"], {"a", "b"})
    require_image_files(paths, "gallery images", tmp_path / "img", "circo", "get them")


def test_missing_files_are_counted_and_the_first_five_named_in_gallery_order(tmp_path):
    names = [f"n{i}" for i in range(10)]
    paths = _gallery(tmp_path / "img", names, {"n0", "n2"})
    with pytest.raises(DatasetError) as err:
        require_image_files(paths, "toy gallery images", tmp_path / "img", "circo", "get them")
    assert str(err.value) == (
        f"8 of 10 toy gallery images are missing under {tmp_path / 'img'} (first: n1, n3, n4, "
        f"n5, n6; expected e.g. {tmp_path / 'img' / 'n1.jpg'}); get them"
    )


def test_a_link_to_a_moved_download_is_explained(tmp_path):
    download = tmp_path / "download"
    _gallery(download, ["a"], {"a"})
    os.symlink(download, tmp_path / "img")
    paths = {"a": tmp_path / "img" / "a.jpg"}
    require_image_files(paths, "gallery images", tmp_path / "img", "circo", "get them")
    download.rename(tmp_path / "renamed")
    with pytest.raises(DatasetError) as err:
        require_image_files(paths, "gallery images", tmp_path / "img", "circo", "get them")
    message = str(err.value)
    assert f"{tmp_path / 'img'} is a link to {download}, which no longer exists" in message
    assert re.search(r"prepare_data\.py circo <new folder> --force.*\. get them$", message)
