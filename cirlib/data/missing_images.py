"""What a loader does about annotated images that have no file on disk.

Real benchmarks are rarely complete: about 74k of FashionIQ's 77.7k images can still be obtained,
and the Shoes and Fashion200k downloads live on personal drives. A query whose reference or
target file is absent would crash a training epoch half-way, so the FashionIQ, Fashion200k and
Shoes loaders share one rule, chosen by ``missing_images``:

* ``"error"``: raise a :class:`~cirlib.data.records.DatasetError` with the count and the first
  names;
* ``"skip"``: drop every missing gallery image and every query whose reference or annotated
  target is missing, trim the other valid targets (and the excluded images) to those with a
  file, and emit **one** warning with the counts;
* ``"ignore"``: do not look (annotation-only copies); a missing file is reported when opened;
* ``"auto"``: ``"error"`` when the image folder exists, ``"ignore"`` when it does not.

CIRR and CIRCO, whose releases are complete, have only the ``"error"`` rule, on request
(``check_images=True``): :func:`require_image_files`.

Introduced in the chapter on the real datasets (book page "Setup", section "Real datasets").
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from pathlib import Path

from cirlib.data.records import DatasetError, Triplet, moved_download_hint, moved_image_hint

__all__ = [
    "MISSING_IMAGE_MODES",
    "apply_missing_images",
    "require_image_files",
    "resolve_missing_mode",
]

MISSING_IMAGE_MODES = ("auto", "error", "skip", "ignore")


def resolve_missing_mode(mode: str, folder: Path, dataset: str, setup_hint: str) -> str:
    """Check ``mode`` and turn ``"auto"`` into ``"error"`` or ``"ignore"``.

    Raises :class:`DatasetError` for an unknown mode, and for ``"error"``/``"skip"`` when the
    image folder does not exist (there is nothing to compare the annotations against).
    """
    if mode not in MISSING_IMAGE_MODES:
        raise DatasetError(
            f"unknown missing_images={mode!r}; choose one of {list(MISSING_IMAGE_MODES)}"
        )
    exists = folder.is_dir()
    moved = moved_download_hint(folder, dataset.lower())
    if mode != "ignore" and moved:
        # a link to a moved download is not an annotation-only copy: never load it as one
        raise DatasetError(f"{dataset} image folder {folder} is unreachable: {moved}")
    if mode == "auto":
        return "error" if exists else "ignore"
    if mode in ("error", "skip") and not exists:
        raise DatasetError(
            f"{dataset} image folder {folder} does not exist but missing_images={mode!r} asks "
            f"for images; pass missing_images='ignore' to load the annotations only, or "
            f"{setup_hint}"
        )
    return mode


def apply_missing_images(
    split_name: str,
    triplets: list[Triplet],
    gallery: list[str],
    has_file: Mapping[str, bool],
    mode: str,
    folder: Path,
    error_hint: str,
) -> tuple[list[Triplet], list[str]]:
    """Apply a resolved ``mode`` (``"error"``, ``"skip"`` or ``"ignore"``) to one split.

    Parameters
    ----------
    split_name : the split's name, quoted in the messages.
    triplets, gallery : the split as parsed, every query's images in ``gallery``.
    has_file : gallery name -> whether its file exists (only read when ``mode != "ignore"``).
    folder : where the files were looked for, quoted in the messages.
    error_hint : how to fix it, appended to the ``"error"`` message.

    Raises
    ------
    DatasetError
        With ``"error"`` when a file is missing; with ``"skip"`` when no query would be left.

    Returns
    -------
    ``(triplets, gallery)``: unchanged unless ``mode == "skip"`` and files are missing; then the
    kept queries in their original order and the gallery without the missing names (order kept).
    A kept query's ``valid_targets`` lose their missing names (the annotated target is kept, so
    the list is never empty), and so do its ``excluded`` images.
    """
    if mode == "ignore":
        return triplets, gallery
    missing = [name for name in gallery if not has_file[name]]
    if not missing:
        return triplets, gallery
    if mode == "error":
        raise DatasetError(
            f"{len(missing)} of {len(gallery)} images of {split_name} have no file in {folder} "
            f"(first: {', '.join(missing[:5])}); {moved_image_hint(folder, missing[0])}"
            f"pass missing_images='skip' to drop them and the queries that need them, or "
            f"{error_hint}"
        )
    absent = set(missing)
    kept = []
    for t in triplets:
        if t.reference in absent or (t.target is not None and t.target in absent):
            continue
        if t.valid_targets is not None and absent.intersection(t.valid_targets):
            t = dataclasses.replace(
                t, valid_targets=tuple(n for n in t.valid_targets if n not in absent)
            )
        if t.excluded is not None and absent.intersection(t.excluded):
            t = dataclasses.replace(t, excluded=tuple(n for n in t.excluded if n not in absent))
        kept.append(t)
    if not kept:
        raise DatasetError(
            f"{split_name}: every one of its {len(triplets)} queries needs one of the "
            f"{len(missing)} images that have no file in {folder} (first: "
            f"{', '.join(missing[:5])}); {moved_image_hint(folder, missing[0])}nothing is left "
            f"to train or evaluate on: {error_hint}"
        )
    warnings.warn(
        f"{split_name}: {len(missing)} of {len(gallery)} gallery images have no file in "
        f"{folder}; dropped them and {len(triplets) - len(kept)} of {len(triplets)} queries "
        f"whose reference or target is missing (first missing: {', '.join(missing[:5])})",
        stacklevel=3,
    )
    return kept, [name for name in gallery if name not in absent]


def require_image_files(
    image_paths: Mapping[str, Path], what: str, folder: Path, dataset: str, fix_hint: str
) -> None:
    """Raise unless every file of ``image_paths`` (image name -> file) exists.

    Parameters
    ----------
    image_paths : the split's gallery, name -> the file the loader will open.
    what : the images in words, after the counts (``"CIRCO gallery images"``).
    folder : where they were looked for, quoted in the message.
    dataset : the name ``prepare_data.py`` takes, for the advice when a link to the download
        dangles (:func:`~cirlib.data.records.moved_download_hint`).
    fix_hint : where the images come from and which command checks or installs them.

    Raises
    ------
    DatasetError
        ``"<m> of <n> <what> are missing under <folder> (first: <up to 5 names>; expected e.g.
        <file of the first>); <moved-download advice, if any><fix_hint>"``.
    """
    missing = [name for name, path in image_paths.items() if not path.is_file()]
    if not missing:
        return
    example = image_paths[missing[0]]
    raise DatasetError(
        f"{len(missing)} of {len(image_paths)} {what} are missing under {folder} "
        f"(first: {', '.join(missing[:5])}; expected e.g. {example}); "
        f"{moved_download_hint(example, dataset)}{fix_hint}"
    )
