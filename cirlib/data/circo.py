"""Loader for CIRCO (Composed Image Retrieval on Common Objects in context).

CIRCO (Baldrati, Agnolucci, Bertini and Del Bimbo, 2023) is a zero-shot benchmark: a validation
split of 220 queries and a test split of 800, no training split, over a gallery of the 123k
images of COCO 2017's unlabeled set. Each validation query lists *every* valid target
(``gt_img_ids``), so it is evaluated with mAP@K (:mod:`cirlib.eval.average_precision`); the
test split's targets are private, scored by the authors' server from a file of each query's
first 50 results (:mod:`cirlib.eval.circo_submission`), as CIRR's test1 is.

On-disk layout (the release's)::

    <root>/
      annotations/val.json, annotations/test.json      JSON list, one entry per query
      COCO2017_unlabeled/annotations/image_info_unlabeled2017.json   {"images": [{"id", "file_name"}, ...]}
      COCO2017_unlabeled/unlabeled2017/<file_name>      the images

A query entry has ``id``, ``reference_img_id``, ``relative_caption``, ``shared_concept`` and, in
the validation split only, ``target_img_id`` and ``gt_img_ids`` (the target first). Image names
in the book are the COCO ids written as strings. The text the model reads is the relative
caption; the shared concept (what reference and targets have in common, written to resolve
ambiguities) is kept in ``meta``.

Introduced in chapter "Zero-shot CIR".
"""

from __future__ import annotations

import os
from pathlib import Path

from cirlib.data.missing_images import require_image_files
from cirlib.data.records import (
    CIRSplit,
    DatasetError,
    Triplet,
    parse_unique_entries,
    read_entry_list,
    read_json,
)

__all__ = ["CIRCO_IMAGE_DIR", "CIRCO_IMAGE_INFO", "CIRCO_SPLITS", "load_circo", "read_image_info"]

CIRCO_SPLITS = ("val", "test")
CIRCO_IMAGE_INFO = Path("COCO2017_unlabeled/annotations/image_info_unlabeled2017.json")
CIRCO_IMAGE_DIR = Path("COCO2017_unlabeled/unlabeled2017")

_FIX_HINT = (
    "the file is damaged or not in CIRCO's format: restore it from the release "
    "(https://github.com/miccunifi/CIRCO, annotations/; COCO 2017 unlabeled image info from "
    "https://cocodataset.org) and check it with `python data_scripts/prepare_data.py circo "
    "<folder> --check`"
)
_IMAGES_HINT = (
    "download COCO 2017's unlabeled images from https://cocodataset.org and install CIRCO again "
    "with `python data_scripts/prepare_data.py circo <folder> --images <unlabeled2017 folder> "
    '--force` (book/setup.md, section "Preparing a dataset")'
)


def read_image_info(path: Path) -> dict[str, str]:
    """COCO's image list: ``{str(id): file_name}`` in file order."""
    info = read_json(path, _FIX_HINT)
    images = info.get("images") if isinstance(info, dict) else None
    if not isinstance(images, list) or not images:
        raise DatasetError(
            f"{path}: expected a JSON object with a non-empty 'images' list; {_FIX_HINT}"
        )
    out: dict[str, str] = {}
    for index, image in enumerate(images):
        if not (
            isinstance(image, dict)
            and isinstance(image.get("id"), int)
            and isinstance(image.get("file_name"), str)
        ):
            raise DatasetError(
                f"{path}: images[{index}] needs an integer 'id' and a string 'file_name'; {_FIX_HINT}"
            )
        out[str(image["id"])] = image["file_name"]
    return out


def _parse(path: Path, index: int, entry, known: dict[str, str], labelled: bool) -> Triplet:
    def error(field: str, problem: str) -> DatasetError:
        qid = entry.get("id") if isinstance(entry, dict) else None
        return DatasetError(
            f"{path}: entry {index} (id {qid}), field {field!r}: {problem}; {_FIX_HINT}"
        )

    if not isinstance(entry, dict):
        raise DatasetError(f"{path}: entry {index} is not a JSON object; {_FIX_HINT}")
    fields = {"id": int, "reference_img_id": int, "relative_caption": str, "shared_concept": str}
    if labelled:
        fields |= {"target_img_id": int, "gt_img_ids": list}
    for key, kind in fields.items():
        if key not in entry:
            raise error(key, "missing")
        if not isinstance(entry[key], kind) or isinstance(entry[key], bool):
            raise error(key, f"expected {kind.__name__}, got {type(entry[key]).__name__}")
    reference = str(entry["reference_img_id"])
    if reference not in known:
        raise error("reference_img_id", f"image {reference} is not in COCO's image list")
    target = valid = None
    if labelled:
        gts = entry["gt_img_ids"]
        if not gts or not all(isinstance(g, int) and not isinstance(g, bool) for g in gts):
            raise error("gt_img_ids", "expected a non-empty list of image ids")
        if gts[0] != entry["target_img_id"]:
            raise error(
                "gt_img_ids", f"its first id {gts[0]} is not target_img_id {entry['target_img_id']}"
            )
        unknown = [g for g in gts if str(g) not in known]
        if unknown:
            raise error("gt_img_ids", f"image {unknown[0]} is not in COCO's image list")
        target, valid = str(entry["target_img_id"]), tuple(dict.fromkeys(str(g) for g in gts))
    caption = entry["relative_caption"]
    return Triplet(
        pair_id=entry["id"],
        reference=reference,
        captions=(caption,),
        caption=caption,
        target=target,
        valid_targets=valid,
        meta={"shared_concept": entry["shared_concept"]},
    )


def load_circo(root: str | os.PathLike, split: str, *, check_images: bool = False) -> CIRSplit:
    """Load CIRCO's ``"val"`` or ``"test"`` split.

    Returns
    -------
    CIRSplit named ``"circo/<split>"``: one :class:`Triplet` per entry in file order
    (``pair_id`` = ``id``, ``target`` = ``target_img_id`` and ``valid_targets`` = ``gt_img_ids``
    on val, None on test, ``meta["shared_concept"]``); the gallery is every image of COCO's
    unlabeled list, in its order.

    Raises
    ------
    DatasetError
        A missing file or folder, an unknown split, a malformed entry (file, entry index, query
        id and field named), a duplicated query id, an image id COCO's list does not hold, or
        (``check_images``) image files missing.
    """
    root = Path(root)
    if split not in CIRCO_SPLITS:
        raise DatasetError(
            f"unknown CIRCO split {split!r}; CIRCO has {CIRCO_SPLITS} (no training split)"
        )
    annotations = root / "annotations" / f"{split}.json"
    info_file = root / CIRCO_IMAGE_INFO
    for path in (annotations, info_file):
        if not path.is_file():
            raise DatasetError(
                f"CIRCO file {path} does not exist; install CIRCO with `python "
                "data_scripts/prepare_data.py circo <folder with annotations/ and "
                "COCO2017_unlabeled/>` (book/setup.md)"
            )
    files = read_image_info(info_file)
    entries = read_entry_list(annotations, _FIX_HINT)
    triplets = parse_unique_entries(
        annotations,
        entries,
        lambda index, entry: _parse(annotations, index, entry, files, labelled=split == "val"),
        "id",
        _FIX_HINT,
    )
    image_paths = {name: root / CIRCO_IMAGE_DIR / file for name, file in files.items()}
    if check_images:
        require_image_files(
            image_paths, "CIRCO gallery images", root / CIRCO_IMAGE_DIR, "circo", _IMAGES_HINT
        )
    return CIRSplit(
        name=f"circo/{split}", triplets=triplets, gallery=list(files), image_paths=image_paths
    )
