"""Loader for FashionIQ (dress, shirt, toptee) and its caption handling.

On-disk layout (the official annotation release plus the CLIP4Cir flat image folder)::

    <root>/
      captions/cap.<category>.<split>.json        list of {candidate, target, captions: [c1, c2]}
      image_splits/split.<category>.<split>.json  list of image names (ASINs)
      images/<name>.jpg                           flat folder (CLIP4Cir's layout)

``candidate`` is the reference image; test files have no ``target``. The book's toy world exports
the same format (``fashionIQ_dataset/``, ASIN-like names, JPEGs; its labels in private files, see
:func:`cirlib.data.toy.load_toy_fashioniq`). An optional ``"toy"`` key per entry is still read
(``valid_targets`` -> :attr:`Triplet.valid_targets`, the rest -> :attr:`Triplet.meta`).

Two evaluation protocols exist (CLIP4Cir's, also used by SPRC and CaLa, and CoSMo's, used by
MGUR), and their numbers must not share a table:

* ``"clip4cir"`` (CLIP4Cir, SPRC, CaLa): the gallery is every image of the split file.
* ``"cosmo"`` (CoSMo, MGUR): the gallery is the union of the candidates and targets of the
  captions file, in order of first appearance.

In both the reference stays in the gallery here; whether it is excluded from the ranking is the
evaluator's decision. The protocol is recorded in the split's name,
``"fashioniq/<category>/<split>/<protocol>"``.

Only about 74k of the 77.7k FashionIQ images can still be obtained; ``missing_images`` says what
to do about the rest (see :func:`load_fashioniq`). Introduced in the data chapter.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

from cirlib.data.missing_images import (
    MISSING_IMAGE_MODES,
    apply_missing_images,
    resolve_missing_mode,
)
from cirlib.data.records import (
    CIRSplit,
    DatasetError,
    Triplet,
    moved_image_hint,
    read_entry_list,
    read_json,
)

__all__ = [
    "FASHIONIQ_CATEGORIES",
    "FASHIONIQ_PROTOCOLS",
    "clean_fashioniq_caption",
    "fashioniq_training_caption",
    "fashioniq_validation_caption",
    "load_fashioniq",
]

FASHIONIQ_CATEGORIES = ("dress", "shirt", "toptee")
FASHIONIQ_PROTOCOLS = ("clip4cir", "cosmo")
# Real FashionIQ images are .jpg; some mirrors hold .png copies. A .png wins when both exist.
_IMAGE_EXTENSIONS = (".png", ".jpg")
_DEFAULT_EXTENSION = ".jpg"

_SETUP_HINT = (
    "for the toy world run `python data_scripts/make_toyworld.py --profile toy`; "
    "for real FashionIQ run `python data_scripts/prepare_fashioniq.py <downloaded folder>` "
    '(book/setup.md, section "Preparing a dataset")'
)
_MISSING_HINT = (
    "about 74k of the 77.7k FashionIQ images can still be obtained; see which ones you have "
    "with `python data_scripts/prepare_fashioniq.py <downloaded folder> --images <image folder> "
    '--check` (book/setup.md, section "Preparing a dataset")'
)
_FIX_HINT = (
    "the file is damaged or not in the FashionIQ format. In a toy world (a folder toyworld-<id> "
    "under $CIRLIB_DATA_DIR/toyworld), delete that folder and run `python "
    "data_scripts/make_toyworld.py --profile toy` again (it reuses a finished world, so running "
    "it without deleting the folder keeps the damaged file); for real FashionIQ, restore the file "
    "from the release, check the download with `python data_scripts/prepare_fashioniq.py "
    "<downloaded folder> --check` (it runs these same checks) and install it again with `python "
    "data_scripts/prepare_fashioniq.py <downloaded folder> --force` (book/setup.md, section "
    '"Preparing a dataset")'
)


def clean_fashioniq_caption(caption: str) -> str:
    """Strip the surrounding characters ``.``, ``?``, ``,`` and spaces from one caption."""
    return caption.strip(".?, ")


def _capitalise_first(text: str) -> str:
    # Only the first letter: str.capitalize() would also lower-case brand names in the rest.
    return text[:1].upper() + text[1:]


def _join(first: str, second: str) -> str:
    """Join as ``"First and second"``, falling back to the non-empty one when a caption is empty."""
    first, second = clean_fashioniq_caption(first), clean_fashioniq_caption(second)
    if not first or not second:
        return _capitalise_first(first or second)
    return f"{_capitalise_first(first)} and {second}"


def fashioniq_validation_caption(c1: str, c2: str) -> str:
    """The query text used at evaluation: ``"C1 and c2"`` (CLIP4Cir, Baldrati et al., 2023).

    Both captions are cleaned with :func:`clean_fashioniq_caption`; only the first word of the
    joined text is capitalised. When one caption is empty after cleaning (3 of the 6,016 real
    val queries), the other one alone is returned rather than a dangling ``"... and "``.

    >>> fashioniq_validation_caption("is red.", "has long sleeves ")
    'Is red and has long sleeves'
    """
    return _join(c1, c2)


def fashioniq_training_caption(c1: str, c2: str, rng: random.Random) -> str:
    """Draw one training text uniformly from ``"C1 and c2"``, ``"C2 and c1"``, ``"C1"``, ``"C2"``.

    The SPRC/CaLa/CLIP4Cir caption augmentation (Baldrati et al., 2023, released code);
    ``rng`` makes it reproducible. Inputs are the captions (cleaning again is harmless); an empty caption falls
    back to the other one, as in :func:`fashioniq_validation_caption`.
    """
    choice = rng.randrange(4)
    first, second = (c1, c2) if choice in (0, 2) else (c2, c1)
    if choice < 2:
        return _join(first, second)
    return _join(first, "") or _join(second, "")


def load_fashioniq(
    root: str | os.PathLike,
    category: str,
    split: str,
    *,
    protocol: str = "clip4cir",
    image_dir: str | os.PathLike | None = None,
    missing_images: str = "auto",
) -> CIRSplit:
    """Load one FashionIQ category and split.

    Parameters
    ----------
    root : folder holding ``captions/``, ``image_splits/`` and (optionally) ``images/``.
    category : ``dress``, ``shirt`` or ``toptee`` (whatever categories the files provide).
    split : ``train``, ``val`` or ``test``. Splits named ``test*`` need no ``target``.
    protocol : ``"clip4cir"`` (gallery = the split file) or ``"cosmo"`` (gallery = candidates and
        targets of the captions file), see the module docstring.
    image_dir : the flat image folder (default ``root / "images"``). Each image is
        ``<name>.png`` if that file exists, else ``<name>.jpg``.
    missing_images : what to do about images whose file is absent.

        * ``"error"``: raise a :class:`DatasetError` with the count and the first names.
        * ``"skip"``: drop every query whose reference or target file is missing and every
          missing gallery image (and trim the toy export's valid targets), and emit one warning
          with the counts, so training never meets a missing file mid-epoch; raise a
          :class:`DatasetError` naming the image folder when no query is left.
        * ``"ignore"``: do not look; a missing file is reported when it is opened.
        * ``"auto"`` (default): ``"error"`` when the image folder exists, ``"ignore"`` when it
          does not (annotation-only copies, such as the real annotations without images).

        ``"error"`` and ``"skip"`` require the image folder to exist.

    Returns
    -------
    CIRSplit named ``"fashioniq/<category>/<split>/<protocol>"``: one :class:`Triplet` per
    caption entry in file order, with ``pair_id`` = position in the file, ``reference`` =
    ``candidate``, ``captions`` = the two raw captions, ``caption`` =
    :func:`fashioniq_validation_caption` of them, ``target`` None in test splits.
    """
    root = Path(root)
    captions_dir = root / "captions"
    splits_dir = root / "image_splits"
    for folder in (root, captions_dir, splits_dir):
        if not folder.is_dir():
            raise DatasetError(f"FashionIQ folder {folder} does not exist; {_SETUP_HINT}")
    if protocol not in FASHIONIQ_PROTOCOLS:
        raise DatasetError(
            f"unknown FashionIQ protocol {protocol!r}; choose one of {list(FASHIONIQ_PROTOCOLS)}"
        )
    if missing_images not in MISSING_IMAGE_MODES:  # before reading any file
        raise DatasetError(
            f"unknown missing_images={missing_images!r}; choose one of {list(MISSING_IMAGE_MODES)}"
        )

    captions_file = captions_dir / f"cap.{category}.{split}.json"
    split_file = splits_dir / f"split.{category}.{split}.json"
    if not captions_file.is_file():
        present = _present(captions_dir)
        if category not in present:
            raise DatasetError(
                f"unknown FashionIQ category {category!r}: no captions file for it in "
                f"{captions_dir}; categories present: {sorted(present) or 'none'}. "
                f"If one is missing, {_SETUP_HINT}"
            )
        raise DatasetError(
            f"unknown FashionIQ split {split!r} for category {category!r}: {captions_file} does "
            f"not exist; splits present: {sorted(present[category])}. If one is missing, "
            f"{_SETUP_HINT}"
        )
    if not split_file.is_file():
        raise DatasetError(
            f"FashionIQ image split file {split_file} does not exist (the captions file "
            f"{captions_file.name} does); {_SETUP_HINT}"
        )

    split_images = _read_split_file(split_file)
    known = set(split_images)
    entries = read_entry_list(captions_file, _FIX_HINT)
    target_required = not split.startswith("test")
    triplets = [
        _parse_entry(captions_file, i, entry, known, target_required)
        for i, entry in enumerate(entries)
    ]

    if protocol == "clip4cir":
        gallery = list(split_images)
    else:
        # dict keeps the order of first appearance.
        seen: dict[str, None] = {}
        for t in triplets:
            seen[t.reference] = None
            if t.target is not None:
                seen[t.target] = None
        gallery = list(seen)

    image_dir = Path(image_dir) if image_dir is not None else root / "images"
    mode = resolve_missing_mode(missing_images, image_dir, "FashionIQ", _SETUP_HINT)
    # One directory listing instead of a stat per image: cheap even for 74k files.
    files = set(os.listdir(image_dir)) if image_dir.is_dir() else set()

    def find(name: str) -> Path | None:
        for ext in _IMAGE_EXTENSIONS:
            if name + ext in files:
                return image_dir / (name + ext)
        return None

    found = {name: find(name) for name in gallery}
    name = f"fashioniq/{category}/{split}/{protocol}"
    if mode != "ignore":
        # the listing shows links whose download was moved away as files: stat one of them
        first = next((path for path in found.values() if path is not None), None)
        if first is not None and not first.exists():
            hint = moved_image_hint(image_dir, first.stem, "fashioniq")
            if hint:
                raise DatasetError(f"FashionIQ image {first} is unreachable: {hint}")
    if mode == "error":
        missing = [n for n in gallery if found[n] is None]
        if missing:
            raise DatasetError(
                f"{len(missing)} of {len(gallery)} images of FashionIQ {category}/{split} are "
                f"missing in {image_dir} (first: {', '.join(missing[:5])}); "
                f"{moved_image_hint(image_dir, missing[0], 'fashioniq')}pass "
                f"missing_images='skip' to drop the queries and gallery images without a file; "
                f"{_MISSING_HINT}"
            )
    elif mode == "skip":
        # The rule of the other loaders: one warning, and an error when no query is left.
        has_file = {n: path is not None for n, path in found.items()}
        triplets, gallery = apply_missing_images(
            name, triplets, gallery, has_file, mode, image_dir, _MISSING_HINT
        )

    image_paths = {
        n: found[n] if found[n] is not None else image_dir / (n + _DEFAULT_EXTENSION)
        for n in gallery
    }
    return CIRSplit(name=name, triplets=triplets, gallery=gallery, image_paths=image_paths)


def _present(captions_dir: Path) -> dict[str, set[str]]:
    """Category -> splits, from the captions file names present."""
    present: dict[str, set[str]] = {}
    for p in captions_dir.glob("cap.*.*.json"):
        parts = p.name.split(".")
        if len(parts) == 4:
            present.setdefault(parts[1], set()).add(parts[2])
    return present


def _read_split_file(path: Path) -> list[str]:
    data = read_json(path, _FIX_HINT)
    if not isinstance(data, list):
        raise DatasetError(
            f"{path}: expected a JSON list of image names, got {type(data).__name__}; {_FIX_HINT}"
        )
    if not data:
        raise DatasetError(f"{path}: the split file lists no images; {_FIX_HINT}")
    seen: set[str] = set()
    for index, name in enumerate(data):
        if not isinstance(name, str) or not name:
            raise DatasetError(
                f"{path}: entry {index}: expected an image name, got {name!r}; {_FIX_HINT}"
            )
        if name in seen:
            raise DatasetError(
                f"{path}: entry {index}: image {name!r} is listed twice; {_FIX_HINT}"
            )
        seen.add(name)
    return data


def _parse_entry(
    path: Path, index: int, entry: Any, known: set[str], target_required: bool
) -> Triplet:
    def error(field: str, problem: str) -> DatasetError:
        return DatasetError(f"{path}: entry {index}, field '{field}': {problem}; {_FIX_HINT}")

    def require(container: dict, key: str, field: str, kind: type) -> Any:
        if key not in container:
            raise error(field, "missing")
        value = container[key]
        if not isinstance(value, kind):
            raise error(field, f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    def check_known(name: str, field: str) -> None:
        if name not in known:
            raise error(field, f"image {name!r} is not in the split's image list")

    if not isinstance(entry, dict):
        raise error("<entry>", f"expected a JSON object, got {type(entry).__name__}")
    reference = require(entry, "candidate", "candidate", str)
    check_known(reference, "candidate")
    target = None
    if target_required or "target" in entry:
        target = require(entry, "target", "target", str)
        check_known(target, "target")
    captions = require(entry, "captions", "captions", list)
    if len(captions) != 2 or not all(isinstance(c, str) for c in captions):
        raise error("captions", f"expected 2 caption strings, got {captions!r}")

    meta: dict[str, object] = {}
    valid_targets = None
    if "toy" in entry:
        toy = require(entry, "toy", "toy", dict)
        meta.update((k, v) for k, v in toy.items() if k != "valid_targets")
        if "valid_targets" in toy:
            names = require(toy, "valid_targets", "toy.valid_targets", list)
            if not all(isinstance(n, str) for n in names):
                raise error("toy.valid_targets", f"expected image names, got {names!r}")
            for n in names:
                check_known(n, "toy.valid_targets")
            if target is not None and target not in names:
                raise error("toy.valid_targets", f"does not contain the target {target!r}")
            valid_targets = tuple(names)

    return Triplet(
        pair_id=index,
        reference=reference,
        captions=tuple(captions),
        caption=fashioniq_validation_caption(*captions),
        target=target,
        valid_targets=valid_targets,
        meta=meta,
    )
