"""Loader for CIRR (Composed Image Retrieval on Real-life images), release rc2.

On-disk layout (the CLIP4Cir layout: the annotation folders and the image folders share a parent)::

    <root>/
      captions/cap.rc2.<split>.json        JSON list, one entry per query
      image_splits/split.rc2.<split>.json  JSON dict: image name -> relative path
      dev/ test1/ train/<n>/               the NLVR2 images, e.g. ./dev/dev-244-0-img0.png

An image file is ``(image_root or root) / <relative path>``; pass ``image_root`` when the images
live somewhere else than the annotations. The official splits are ``train``, ``val`` and
``test1``; test1 entries carry no ``target_hard``.

The book's offline toy world exports exactly this format (CLIP4Cir's nesting: ``cirr_dataset/cirr/``
beside ``cirr_dataset/{train,dev,test1}/``; see :mod:`cirlib.toyworld.world`), with no extra
field: its labels and test1 targets live in private files that :func:`cirlib.data.toy.load_toy`
adds. An optional key per caption entry is still read, for hand-made files,
``"toy": {"valid_targets": [names], "edit_type": str, "granularity": "fine"|"coarse", ...}``:
``valid_targets`` becomes :attr:`Triplet.valid_targets` and the rest goes into :attr:`Triplet.meta`.
Real CIRR files have no such key.

Field-by-field format: the CIRR repository's README (Liu et al., 2021). Introduced in the data
chapter.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cirlib.data.missing_images import require_image_files
from cirlib.data.records import (
    CIRSplit,
    DatasetError,
    Triplet,
    parse_unique_entries,
    read_entry_list,
    read_json,
)

__all__ = ["load_cirr"]

SUBSET_SIZE = 6

_SETUP_HINT = (
    "for the toy world run `python data_scripts/make_toyworld.py --profile toy`; "
    "for real CIRR run `python data_scripts/prepare_cirr.py <downloaded folder>` "
    '(book/setup.md, section "Preparing a dataset")'
)
_FIX_HINT = (
    "the file is damaged or not in the CIRR rc2 format. In a toy world (a folder toyworld-<id> "
    "under $CIRLIB_DATA_DIR/toyworld), delete that folder and run `python "
    "data_scripts/make_toyworld.py --profile toy` again (it reuses a finished world, so running "
    "it without deleting the folder keeps the damaged file); for real CIRR, restore the file from "
    "the release, check the download with `python data_scripts/prepare_cirr.py <downloaded "
    "folder> --check` (it runs these same checks) and install it again with `python "
    'data_scripts/prepare_cirr.py <downloaded folder> --force` (book/setup.md, section "Preparing '
    'a dataset")'
)

_IMAGES_HINT = (
    "CIRR images come from NLVR2 on request: check them with `python data_scripts/prepare_cirr.py "
    '<folder> --images <NLVR2 folder> --check` (book/setup.md, section "Preparing a dataset"); '
    "for the toy world run `python data_scripts/make_toyworld.py --profile toy`"
)


def load_cirr(
    root: str | os.PathLike,
    split: str,
    *,
    image_root: str | os.PathLike | None = None,
    check_images: bool = False,
) -> CIRSplit:
    """Load one CIRR split (or a toy-world export in the CIRR layout).

    Parameters
    ----------
    root : folder holding ``captions/`` and ``image_splits/`` (and, by default, the images).
    split : split name as it appears in the file names: ``train``, ``val``, ``test1`` for CIRR.
    image_root : folder the relative image paths of the split file are resolved against
        (default: ``root``).
    check_images : if True, check that every gallery image file exists and raise a
        :class:`DatasetError` saying how many are missing. Off by default: annotation-only
        copies (no NLVR2 images) load fine, and a missing file is reported when it is opened.

    Returns
    -------
    CIRSplit named ``"cirr/<split>"`` (the name describes the format, toy exports included):
    one :class:`Triplet` per caption entry in file order, with ``pair_id`` = ``pairid``,
    ``captions`` = ``(caption,)``, ``target`` = ``target_hard`` (None where absent, i.e. test1),
    ``subset`` = ``img_set.members`` and ``meta["img_set_id"]`` = ``img_set.id``; the gallery is
    the split file's image names in file order.

    Raises
    ------
    DatasetError
        When a folder or file is missing, the split is unknown, or an entry is malformed. The
        message names the file, the entry (index and pairid) and the field.
    """
    root = Path(root)
    captions_dir = root / "captions"
    splits_dir = root / "image_splits"
    for folder in (root, captions_dir, splits_dir):
        if not folder.is_dir():
            raise DatasetError(f"CIRR folder {folder} does not exist; {_SETUP_HINT}")
    if not isinstance(split, str):
        raise DatasetError(f"CIRR split must be a string such as 'val', got {split!r}")

    captions_file = captions_dir / f"cap.rc2.{split}.json"
    split_file = splits_dir / f"split.rc2.{split}.json"
    if not captions_file.is_file():
        present = sorted(
            p.name[len("cap.rc2.") : -len(".json")] for p in captions_dir.glob("cap.rc2.*.json")
        )
        raise DatasetError(
            f"unknown CIRR split {split!r}: {captions_file} does not exist; splits present in "
            f"{captions_dir}: {present or 'none'}. If a split is missing, {_SETUP_HINT}"
        )
    if not split_file.is_file():
        raise DatasetError(
            f"CIRR image split file {split_file} does not exist (the captions file "
            f"{captions_file.name} does); {_SETUP_HINT}"
        )

    image_files = _read_split_file(split_file)
    entries = read_entry_list(captions_file, _FIX_HINT)

    # Test splits have no released targets; every other split must name one per query.
    target_required = not split.startswith("test")
    triplets = parse_unique_entries(
        captions_file,
        entries,
        lambda index, entry: _parse_entry(
            captions_file, index, entry, image_files, target_required
        ),
        "pairid",
        _FIX_HINT,
    )

    base = Path(image_root) if image_root is not None else root
    image_paths = {name: base / rel for name, rel in image_files.items()}
    if check_images:
        require_image_files(
            image_paths, f"image files of CIRR split {split!r}", base, "cirr", _IMAGES_HINT
        )
    return CIRSplit(
        name=f"cirr/{split}",
        triplets=triplets,
        gallery=list(image_files),
        image_paths=image_paths,
    )


def _read_split_file(path: Path) -> dict[str, str]:
    """The image split file: name -> relative path, in file order."""
    data = read_json(path, _FIX_HINT)
    if not isinstance(data, dict):
        raise DatasetError(
            f"{path}: expected a JSON dict of image name -> relative path, got "
            f"{type(data).__name__}; {_FIX_HINT}"
        )
    if not data:
        raise DatasetError(f"{path}: the split file lists no images; {_FIX_HINT}")
    for name, rel in data.items():
        if not isinstance(rel, str) or not rel:
            raise DatasetError(
                f"{path}: image {name!r}: expected a relative path string such as "
                f"'./dev/{name}.png', got {rel!r}; {_FIX_HINT}"
            )
    return data


def _parse_entry(
    path: Path, index: int, entry: Any, image_files: dict[str, str], target_required: bool
) -> Triplet:
    def error(field: str, problem: str) -> DatasetError:
        pairid = entry.get("pairid") if isinstance(entry, dict) else None
        where = f"entry {index}" + (f" (pairid {pairid})" if pairid is not None else "")
        return DatasetError(f"{path}: {where}, field '{field}': {problem}; {_FIX_HINT}")

    def require(container: dict, key: str, field: str, kind: type) -> Any:
        if key not in container:
            raise error(field, "missing")
        value = container[key]
        # bool is an int subclass; a JSON true is never a valid pairid or id.
        if not isinstance(value, kind) or isinstance(value, bool):
            raise error(field, f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    def check_known(name: str, field: str) -> None:
        if name not in image_files:
            raise error(field, f"image {name!r} is not in the split's image list")

    if not isinstance(entry, dict):
        raise error("<entry>", f"expected a JSON object, got {type(entry).__name__}")
    pair_id = require(entry, "pairid", "pairid", int)
    reference = require(entry, "reference", "reference", str)
    caption = require(entry, "caption", "caption", str)
    img_set = require(entry, "img_set", "img_set", dict)
    img_set_id = require(img_set, "id", "img_set.id", int)
    members = require(img_set, "members", "img_set.members", list)
    if len(members) != SUBSET_SIZE or not all(isinstance(m, str) for m in members):
        raise error("img_set.members", f"expected {SUBSET_SIZE} image names, got {members!r}")
    target = None
    if target_required or "target_hard" in entry:
        target = require(entry, "target_hard", "target_hard", str)
    check_known(reference, "reference")
    if target is not None:
        check_known(target, "target_hard")
    for member in members:
        check_known(member, "img_set.members")
    if reference not in members:
        raise error("img_set.members", f"does not contain the reference {reference!r}")

    meta: dict[str, object] = {"img_set_id": img_set_id}
    valid_targets = None
    if "toy" in entry:
        toy = require(entry, "toy", "toy", dict)
        meta.update((k, v) for k, v in toy.items() if k != "valid_targets")
        if "valid_targets" in toy:
            names = require(toy, "valid_targets", "toy.valid_targets", list)
            if not all(isinstance(n, str) for n in names):
                raise error("toy.valid_targets", f"expected image names, got {names!r}")
            for name in names:
                check_known(name, "toy.valid_targets")
            if target is not None and target not in names:
                raise error("toy.valid_targets", f"does not contain the target {target!r}")
            valid_targets = tuple(names)

    return Triplet(
        pair_id=pair_id,
        reference=reference,
        captions=(caption,),
        caption=caption,
        target=target,
        subset=tuple(members),
        valid_targets=valid_targets,
        meta=meta,
    )
