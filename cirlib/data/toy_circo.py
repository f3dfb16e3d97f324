"""The toy world's test split exported in CIRCO's format, every valid target listed.

CIRCO (Baldrati, Agnolucci, Bertini and Del Bimbo, 2023) is the benchmark zero-shot composed
image retrieval reports on: queries over one gallery, each validation query listing all of its
valid targets. The toy world knows every valid target of every query, so its test split can be
written in exactly that format and installed with ``prepare_data.py circo``, as the real
release is, to rehearse chapter 8's CIRCO path on the CPU::

    <world>/circo_dataset/annotations/val.json, test.json
    <world>/circo_dataset/COCO2017_unlabeled/annotations/image_info_unlabeled2017.json
    <world>/circo_dataset/COCO2017_unlabeled/unlabeled2017/<12-digit id>.jpg
    <world>/private/circo/test.gt.json        [{"id", "target_img_id", "gt_img_ids"}], the
                                               test targets the real release keeps back
                                               (scored by cirlib.circo_test_server)
    <world>/private/circo/toy_names.json      {COCO-style id: toy image name}

The choices the release does not dictate:

* the gallery is the toy test split's gallery (references, edited versions, distractors), in
  its order; image ``i`` gets the id ``i + 1`` and the file ``{id:012d}.jpg`` (COCO's naming),
  the bytes of the FashionIQ export's JPEG of the same image;
* queries of even-numbered groups form ``val``, of odd-numbered groups ``test`` (CIRCO's two
  splits share one gallery and no query), each numbered from 0 in file order, as the server
  expects;
* ``relative_caption`` is the CIRR export's caption of the query; ``gt_img_ids`` holds the
  target first, then every other valid target in gallery order, never the reference (CIRCO
  lists none); ``shared_concept`` is empty (the toy has no annotator to write one) and
  ``semantic_aspects`` (val only, as in the release) holds the toy's edit type.

The export is written under a temporary name and renamed into place, so a finished
``circo_dataset/`` is complete; it is derived from the world's files and leaves them unchanged
(the world's fingerprint does not move).

Introduced in chapter "Zero-shot CIR".
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from cirlib.data.circo import CIRCO_IMAGE_DIR, CIRCO_IMAGE_INFO
from cirlib.data.records import DatasetError
from cirlib.data.toy import load_toy
from cirlib.io import atomic_write_json
from cirlib.toyworld.world import asin_of

__all__ = ["TOY_CIRCO_EXPORT", "export_toy_circo"]

TOY_CIRCO_EXPORT = "circo_dataset"


def _group(name: str) -> int:
    return int(name.split("-")[2])


def _link_or_copy(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:  # another file system, or links not allowed: a copy
        shutil.copyfile(source, dest)


def export_toy_circo(world: str | os.PathLike) -> Path:
    """Write (or reuse) ``<world>/circo_dataset/`` and the private test targets; returns the
    export folder, the one to give ``prepare_data.py circo``.

    Raises
    ------
    DatasetError
        ``world`` is not a finished toy world, or its FashionIQ export misses an image.
    """
    world = Path(world)
    out = world / TOY_CIRCO_EXPORT
    if out.is_dir():
        return out
    test = load_toy(world, "test")  # the CIRR export plus the private targets and labels
    ids = {name: i + 1 for i, name in enumerate(test.gallery)}
    entries = {"val": [], "test": []}
    private = []
    for t in test.triplets:
        split = "val" if _group(t.reference) % 2 == 0 else "test"
        others = sorted(set(t.valid_targets) - {t.target, t.reference}, key=ids.__getitem__)
        gts = [ids[t.target], *(ids[n] for n in others)]
        number = len(entries[split])
        if split == "val":  # the release's fields, in its order
            entry = {
                "reference_img_id": ids[t.reference],
                "target_img_id": gts[0],
                "relative_caption": t.caption,
                "shared_concept": "",
                "gt_img_ids": gts,
                "id": number,
                "semantic_aspects": [t.meta["edit_type"]],
            }
        else:
            entry = {
                "reference_img_id": ids[t.reference],
                "relative_caption": t.caption,
                "shared_concept": "",
                "id": number,
            }
            private.append({"id": number, "target_img_id": gts[0], "gt_img_ids": gts})
        entries[split].append(entry)
    if not entries["val"] or not entries["test"]:
        raise DatasetError(
            f"{world}: the toy test split has {len(test.triplets)} queries in "
            f"{len({_group(t.reference) for t in test.triplets})} group(s); CIRCO's export needs "
            "queries in at least two groups (one for val, one for test): build a larger world"
        )
    atomic_write_json(world / "private" / "circo" / "test.gt.json", private, indent=1)
    atomic_write_json(
        world / "private" / "circo" / "toy_names.json",
        {str(i): name for name, i in ids.items()},
        indent=1,
    )

    tmp = Path(tempfile.mkdtemp(dir=world, prefix=f".{TOY_CIRCO_EXPORT}-"))
    try:
        for split, rows in entries.items():
            atomic_write_json(tmp / "annotations" / f"{split}.json", rows, indent=1)
        jpegs = world / "fashionIQ_dataset" / "images"
        images = tmp / CIRCO_IMAGE_DIR
        images.mkdir(parents=True)
        info = []
        for name, i in ids.items():
            source = jpegs / f"{asin_of(name)}.jpg"
            if not source.is_file():
                raise DatasetError(
                    f"{source} (toy image {name}) is missing from the world's FashionIQ export; "
                    "delete the world folder and build it again with `python "
                    "data_scripts/make_toyworld.py`"
                )
            file_name = f"{i:012d}.jpg"
            _link_or_copy(source, images / file_name)
            info.append({"id": i, "file_name": file_name})
        atomic_write_json(tmp / CIRCO_IMAGE_INFO, {"images": info})
        tmp.rename(out)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not out.is_dir():  # another process finished the same export first: keep theirs
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
