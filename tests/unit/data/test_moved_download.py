"""An installed dataset whose images are links into a download that was then moved or renamed:
every message says so and how to fix it, and no loader takes it for an annotation-only copy."""

import os
import shutil

import pytest

from cirlib.config import resolve
from cirlib.data.cirr import load_cirr
from cirlib.data.fashioniq import load_fashioniq
from cirlib.data.image_digest import image_content_digest
from cirlib.data.records import DatasetError, dangling_link
from cirlib.data.toy import prepare_toyworld

GROUPS = {"train": 4, "val": 3, "test": 3}
MOVED = (
    r"is a link to .*which no longer exists: the downloaded folder was probably moved or renamed"
)


@pytest.fixture(scope="module")
def world():
    return prepare_toyworld(resolve("smoke", world_groups=GROUPS))


def _install(world, tmp_path, per_file: bool):
    """A download (a copy of the world's CIRR and FashionIQ exports) and an install that links
    its image folders (or each image), as prepare_data.py does without --copy; then the
    download is renamed."""
    download = tmp_path / "download"
    shutil.copytree(world / "cirr_dataset", download / "cirr_dataset")
    shutil.copytree(world / "fashionIQ_dataset", download / "fashionIQ_dataset")
    dest = tmp_path / "installed"
    shutil.copytree(world / "cirr_dataset" / "cirr", dest / "cirr")
    for part in ("captions", "image_splits"):
        shutil.copytree(world / "fashionIQ_dataset" / part, dest / "fashioniq" / part)
    linked = [download / "cirr_dataset" / "dev", download / "fashionIQ_dataset" / "images"]
    for folder, name in zip(linked, ("dev", "images")):
        if per_file:
            (dest / name).mkdir()
            for f in folder.iterdir():
                os.symlink(f, dest / name / f.name)
        else:
            os.symlink(folder, dest / name)
    download.rename(tmp_path / "download-renamed")
    return dest


def test_dangling_link_finds_the_link_on_the_way(tmp_path):
    os.symlink(tmp_path / "gone", tmp_path / "link")
    assert dangling_link(tmp_path / "link" / "a" / "b.png") == tmp_path / "link"
    assert dangling_link(tmp_path / "nothing.png") is None


def test_cirr_with_a_linked_image_folder_says_the_download_moved(world, tmp_path):
    dest = _install(world, tmp_path, per_file=False)
    with pytest.raises(DatasetError, match=MOVED + r".*prepare_data.py cirr <new folder> --force"):
        load_cirr(dest / "cirr", "val", image_root=dest, check_images=True)
    split = load_cirr(dest / "cirr", "val", image_root=dest)
    with pytest.raises(DatasetError, match=f"{dest / 'dev'} {MOVED}"):
        split.load_image(split.gallery[0])
    with pytest.raises(DatasetError, match=MOVED):
        image_content_digest(split)


@pytest.mark.parametrize("per_file", [False, True])
def test_fashioniq_layout_with_dangling_links_is_never_read_as_annotations_only(
    world, tmp_path, per_file
):
    dest = _install(world, tmp_path, per_file=per_file)
    for mode in ("auto", "error", "skip"):
        with pytest.raises(DatasetError, match=MOVED):
            load_fashioniq(
                dest / "fashioniq", "dress", "val", image_dir=dest / "images", missing_images=mode
            )


def test_an_intact_install_still_loads(world, tmp_path):
    download = tmp_path / "download"
    shutil.copytree(world / "fashionIQ_dataset" / "images", download / "images")
    os.symlink(download / "images", tmp_path / "images")
    split = load_fashioniq(
        world / "fashionIQ_dataset", "dress", "val", image_dir=tmp_path / "images"
    )
    assert split.load_image(split.gallery[0]).size[0] > 0
