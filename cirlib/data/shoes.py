r"""Loader for Shoes (relative captions of the "Dialog-based interactive image retrieval" release).

On-disk layout (the annotation files of XiaoxiaoGuo/fashion-retrieval ``dataset/`` as released,
plus one flat image folder that ``data_scripts/prepare_shoes.py`` builds from the Attribute
Discovery tree ``womens_*/<n>/img_womens_*.jpg``)::

    <root>/
      relative_captions_shoes.json  list of {"ImageName", "ReferenceImageName", "RelativeCaption"}
      train_im_names.txt            one image file name per line (10,000)
      eval_im_names.txt             one image file name per line (4,658)
      images/<ImageName>            flat folder, e.g. images/img_womens_clogs_851.jpg

``ImageName`` is the **target**, ``ReferenceImageName`` the reference; both are file names with
their ``.jpg`` extension, and image names in this module keep it.

Evaluation convention (as MGUR evaluates Shoes, Guo et al., 2018):

* Splits: ``"train"`` (``train_im_names.txt``) and ``"test"`` (``eval_im_names.txt``). A caption
  entry belongs to a split when **both** its images are in that split's list: 8,990 train and
  1,761 test pairs in the real files (no entry straddles the two lists).
* Gallery: every image of the split's list, in file order (4,658 for test). MGUR's derived
  ``shoes-test-all.txt`` plus the test pairs' images is the same set, since every test pair's
  images are in ``eval_im_names.txt``.
* Queries: one per caption entry; the text is the relative caption with surrounding white space
  removed; one target per query (no ``valid_targets``).
* Hit: the annotated target in the first K after the **reference is removed** from the ranking
  (what :func:`cirlib.eval.evaluate.evaluate` does); metrics R@1, R@10, R@50:
  :math:`\mathrm{R@K} = \frac{1}{|Q|}\sum_{q} \mathbb{1}[\mathrm{rank}_q(t_q) < K]`, ranks over
  the gallery without the reference :math:`r_q`.
* Self-pairs: 27 real entries (26 train, 1 test) name the same image as reference and target.
  With the reference removed such a query can never be answered (papers count it as a miss), and
  the evaluator refuses a target equal to the excluded reference, so these entries are dropped
  with a warning: the real test split has 1,760 queries. The difference to counting the one
  test self-pair as a miss is at most 100/1761 = 0.06 points of recall.

Introduced in the chapter on the real datasets (book page "Setup", section "Real datasets").
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from cirlib.data.missing_images import apply_missing_images, resolve_missing_mode
from cirlib.data.records import CIRSplit, DatasetError, Triplet, read_entry_list

__all__ = ["SHOES_CAPTIONS_FILE", "SHOES_SPLIT_FILES", "load_shoes"]

SHOES_CAPTIONS_FILE = "relative_captions_shoes.json"
SHOES_SPLIT_FILES = {"train": "train_im_names.txt", "test": "eval_im_names.txt"}

_SETUP_HINT = (
    "prepare Shoes with `python data_scripts/prepare_shoes.py <folder you downloaded>` "
    '(book/setup.md, section "Real datasets")'
)
_FIX_HINT = (
    "the file is damaged or not in the Shoes release format: restore the original from "
    "github.com/XiaoxiaoGuo/fashion-retrieval (dataset/) and run "
    "`python data_scripts/prepare_shoes.py` again"
)


def load_shoes(
    root: str | os.PathLike,
    split: str,
    *,
    image_dir: str | os.PathLike | None = None,
    missing_images: str = "auto",
) -> CIRSplit:
    """Load the Shoes ``"train"`` or ``"test"`` split.

    Parameters
    ----------
    root : folder holding ``relative_captions_shoes.json`` and the two image-name lists.
    split : ``"train"`` or ``"test"`` (the ``eval_im_names.txt`` split every paper reports on).
    image_dir : the flat image folder (default ``root / "images"``); a file is
        ``image_dir / <ImageName>``.
    missing_images : ``"auto"``, ``"error"``, ``"skip"`` or ``"ignore"``, as in
        :mod:`cirlib.data.missing_images` (``"skip"`` drops the queries without files and
        warns once with the counts; ``"auto"`` loads annotations only when ``image_dir`` is
        absent).

    Returns
    -------
    CIRSplit named ``"shoes/<split>"``: one :class:`Triplet` per caption entry of the split, in
    file order, with ``pair_id`` = the entry's position in ``relative_captions_shoes.json``
    (stable across splits), ``reference`` = ``ReferenceImageName``, ``target`` = ``ImageName``,
    ``captions`` = ``(RelativeCaption,)`` as annotated and ``caption`` = it stripped; the gallery
    is the split's image list in file order.

    Raises
    ------
    DatasetError
        When a file is missing, the split is unknown, an entry or line is malformed (the message
        names the file, the entry or line and the field), or the split has no query.
    """
    root = Path(root)
    if split not in SHOES_SPLIT_FILES:
        raise DatasetError(
            f"unknown Shoes split {split!r}; choose one of {list(SHOES_SPLIT_FILES)} "
            f"('test' is the eval_im_names.txt split that papers report on)"
        )
    if not root.is_dir():
        raise DatasetError(f"Shoes folder {root} does not exist; {_SETUP_HINT}")
    captions_file = root / SHOES_CAPTIONS_FILE
    names_file = root / SHOES_SPLIT_FILES[split]
    for path in (captions_file, names_file):
        if not path.is_file():
            raise DatasetError(f"Shoes annotation file {path} does not exist; {_SETUP_HINT}")

    gallery = read_image_names(names_file)
    in_split = set(gallery)
    entries = read_entry_list(captions_file, _FIX_HINT)
    triplets = []
    self_pairs = 0
    for index, entry in enumerate(entries):
        # Every entry is checked, also those of the other split: a damaged file fails on any split.
        reference, target, caption = _parse_entry(captions_file, index, entry)
        if reference not in in_split or target not in in_split:
            continue
        if reference == target:
            self_pairs += 1
            continue
        triplets.append(
            Triplet(
                pair_id=index,
                reference=reference,
                captions=(caption,),
                caption=caption.strip(),
                target=target,
            )
        )
    name = f"shoes/{split}"
    if not triplets:
        raise DatasetError(
            f"Shoes split {split!r} is empty: no entry of {captions_file} has both its images "
            f"in {names_file} ({len(gallery)} names); check that the two files come from the "
            f"same release, or {_SETUP_HINT}"
        )
    if self_pairs:
        warnings.warn(
            f"{name}: dropped {self_pairs} of {len(triplets) + self_pairs} queries whose "
            f"reference and target are the same image (with the reference removed from the "
            f"ranking they cannot be answered)",
            stacklevel=2,
        )

    image_dir = Path(image_dir) if image_dir is not None else root / "images"
    mode = resolve_missing_mode(missing_images, image_dir, "Shoes", _SETUP_HINT)
    # One directory listing instead of a stat per image.
    files = set(os.listdir(image_dir)) if mode != "ignore" else set()
    triplets, gallery = apply_missing_images(
        name,
        triplets,
        gallery,
        {n: n in files for n in gallery},
        mode,
        image_dir,
        _SETUP_HINT,
    )
    return CIRSplit(
        name=name,
        triplets=triplets,
        gallery=gallery,
        image_paths={n: image_dir / n for n in gallery},
    )


def read_image_names(path: Path) -> list[str]:
    """An image-name list: one file name per line; blank lines (the final newline) are skipped.

    Raises :class:`DatasetError` naming the file and line for a name with white space inside, a
    name listed twice, or a list without names.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path}: not a UTF-8 text file ({err}); {_FIX_HINT}") from None
    names: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        name = line.strip()
        if not name:
            continue
        if len(name.split()) != 1:
            raise DatasetError(
                f"{path}: line {number}: expected one image file name, got {line!r}; {_FIX_HINT}"
            )
        if name in seen:
            raise DatasetError(
                f"{path}: line {number}: image {name!r} is already listed on line "
                f"{seen[name]}; {_FIX_HINT}"
            )
        seen[name] = number
        names.append(name)
    if not names:
        raise DatasetError(f"{path}: the file lists no image names; {_FIX_HINT}")
    return names


def _parse_entry(path: Path, index: int, entry: Any) -> tuple[str, str, str]:
    def error(field: str, problem: str) -> DatasetError:
        return DatasetError(f"{path}: entry {index}, field '{field}': {problem}; {_FIX_HINT}")

    if not isinstance(entry, dict):
        raise error("<entry>", f"expected a JSON object, got {type(entry).__name__}")
    values = []
    for key in ("ReferenceImageName", "ImageName", "RelativeCaption"):
        if key not in entry:
            raise error(key, "missing")
        value = entry[key]
        if not isinstance(value, str):
            raise error(key, f"expected str, got {type(value).__name__}")
        if not value.strip():
            raise error(key, "empty")
        values.append(value)
    return values[0], values[1], values[2]
