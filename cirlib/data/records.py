"""The records every loader returns: one :class:`Triplet` per query, one :class:`CIRSplit` per split.

CIRR, FashionIQ and the toy world all load into these, so the evaluation and training code
never branches on the dataset.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError


class DatasetError(ValueError):
    """Bad or missing dataset input. The message names the file or value and says how to fix it."""


def dangling_link(path: str | os.PathLike) -> Path | None:
    """The first of ``path`` and its parents that is a symbolic link to nothing, or None.

    ``prepare_data.py`` links the images of an installed dataset to the downloaded folder
    (unless ``--copy``): when that folder is moved or renamed, every image is "missing" although
    nothing was deleted, and the message should say so.
    """
    path = Path(path)
    for p in (path, *path.parents):
        if p.is_symlink() and not p.exists():
            return p
    return None


def moved_download_hint(path: str | os.PathLike, dataset: str = "<dataset>") -> str:
    """A sentence explaining a missing ``path`` by a dangling link on its way, else ``""``."""
    link = dangling_link(path)
    if link is None:
        return ""
    return (
        f"{link} is a link to {os.readlink(link)}, which no longer exists: the downloaded folder "
        "was probably moved or renamed after the install. Put it back, or install the dataset "
        f"again from its new place (`python data_scripts/prepare_data.py {dataset} <new folder> "
        "--force`, with `--images` as before if you used it; add `--copy` so the install no "
        "longer depends on the download). "
    )


def moved_image_hint(folder: str | os.PathLike, name: str, dataset: str = "<dataset>") -> str:
    """:func:`moved_download_hint` for image ``name`` looked for in ``folder``: the folder may be
    the dangling link, or the image's own file (``prepare_data.py`` links FashionIQ's images one
    by one, under their name plus an extension)."""
    folder = Path(folder)
    hint = moved_download_hint(folder / name, dataset)
    if hint:
        return hint
    for candidate in folder.glob(f"{glob.escape(name)}.*"):
        hint = moved_download_hint(candidate, dataset)
        if hint:
            return hint
    return ""


def read_json(path: Path, fix_hint: str) -> Any:
    """Parse a JSON annotation file; a broken one raises :class:`DatasetError` naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: not valid JSON ({err}); {fix_hint}") from None


def read_entry_list(path: Path, fix_hint: str) -> list:
    """A captions file: a non-empty JSON list of query entries."""
    entries = read_json(path, fix_hint)
    if not isinstance(entries, list):
        raise DatasetError(
            f"{path}: expected a JSON list of query entries, got {type(entries).__name__}; "
            f"{fix_hint}"
        )
    if not entries:
        raise DatasetError(f"{path}: the file holds no query entries; {fix_hint}")
    return entries


def parse_unique_entries(
    path: Path,
    entries: list,
    parse: Callable[[int, Any], Triplet],
    id_field: str,
    fix_hint: str,
) -> list[Triplet]:
    """``[parse(i, entries[i]) for i in range(len(entries))]``, refusing a query id seen before.

    Parameters
    ----------
    path : the annotation file the entries come from, named in the message.
    entries : its query entries (:func:`read_entry_list`).
    parse : ``parse(index, entry) -> Triplet``; it raises its own :class:`DatasetError` for a
        malformed entry.
    id_field : the file's name for the query id (CIRR ``pairid``, CIRCO ``id``), which the parsed
        :attr:`Triplet.pair_id` holds.
    fix_hint : how to repair the file, appended to the message.

    Returns
    -------
    list of Triplet, in file order.

    Raises
    ------
    DatasetError
        ``"<path>: entry j (<id_field> n), field '<id_field>': duplicates entry i; <fix_hint>"``
        for the first entry ``j`` whose id ``n`` an earlier entry ``i`` already had.
    """
    triplets: list[Triplet] = []
    first_index: dict[int, int] = {}
    for index, entry in enumerate(entries):
        triplet = parse(index, entry)
        if triplet.pair_id in first_index:
            raise DatasetError(
                f"{path}: entry {index} ({id_field} {triplet.pair_id}), field '{id_field}': "
                f"duplicates entry {first_index[triplet.pair_id]}; {fix_hint}"
            )
        first_index[triplet.pair_id] = index
        triplets.append(triplet)
    return triplets


@dataclass(frozen=True)
class Triplet:
    """One composed-retrieval query.

    Attributes
    ----------
    pair_id : the dataset's query id (CIRR ``pairid``; FashionIQ has none, so its loader numbers them).
    reference : name of the reference image.
    captions : the modification text(s) as written by the annotators (CIRR: one; FashionIQ: two).
    caption : the text the model reads (FashionIQ: the two captions joined, see its loader).
    target : name of the annotated target (``target_hard`` in CIRR); None in test splits.
    subset : CIRR ``img_set.members`` (6 names holding reference and target), else None.
    valid_targets : every gallery image that satisfies the query (toy world, Fashion200k), else
        None.
    meta : extra per-query facts (toy world: ``edit_type``, ``granularity``).
    excluded : gallery images removed from this query's ranking besides the reference (it may be
        listed too), or None. Fashion200k: every image whose caption equals the reference's
        (MGUR's protocol); :func:`cirlib.eval.evaluate.evaluate` applies it.
    """

    pair_id: int
    reference: str
    captions: tuple[str, ...]
    caption: str
    target: str | None = None
    subset: tuple[str, ...] | None = None
    valid_targets: tuple[str, ...] | None = None
    meta: Mapping[str, object] = field(default_factory=dict)
    excluded: tuple[str, ...] | None = None


@dataclass
class CIRSplit:
    """A split: its queries and the gallery of images they retrieve from.

    ``gallery`` is the ordered list of image names that retrieval ranks; ``image_paths`` maps a
    name to its file (missing for annotation-only copies of a dataset).

    ``galleries`` (None for one shared gallery) splits the ranking into separate galleries, e.g.
    FashionIQ's categories (:func:`cirlib.data.fashioniq_splits.merge_category_splits`): each
    query, whose ``meta["gallery"]`` names its own, is ranked only against those images, and
    ``reference_in_gallery`` says whether its reference stays in that ranking (FashionIQ under
    CLIP4Cir's protocol) or is removed (CIRR's rule, the default).
    """

    name: str
    triplets: list[Triplet]
    gallery: list[str]
    image_paths: dict[str, Path]
    galleries: dict[str, list[str]] | None = None
    reference_in_gallery: bool = False

    def __post_init__(self) -> None:
        self._index = {n: i for i, n in enumerate(self.gallery)}

    def __len__(self) -> int:
        return len(self.triplets)

    def index_of(self, image_name: str) -> int:
        """Position of ``image_name`` in the gallery."""
        try:
            return self._index[image_name]
        except KeyError:
            raise DatasetError(
                f"image {image_name!r} is not in the gallery of split {self.name!r} "
                f"({len(self.gallery)} images); check the split file of this dataset"
            ) from None

    def load_image(self, image_name: str) -> Image.Image:
        """Open one image as RGB, with an error that names the file when it is missing or broken."""
        path = self.image_paths.get(image_name)
        if path is None:
            raise DatasetError(f"no file is listed for image {image_name!r} in split {self.name!r}")
        try:
            with Image.open(path) as im:
                return im.convert("RGB")
        except FileNotFoundError:
            raise DatasetError(
                f"image file {path} is missing; {moved_download_hint(path)}re-run the "
                "data_scripts command that prepared this dataset (see book/setup.md)"
            ) from None
        except (UnidentifiedImageError, OSError) as err:
            raise DatasetError(
                f"image file {path} does not decode ({err}); delete it and prepare the dataset again"
            ) from None
