"""A fingerprint of a split's images by their bytes, so a cache never outlives the pictures.

The feature cache (:mod:`cirlib.data.features`) stores what the encoder made of every gallery
image. Two copies of a dataset can share every file name and caption and still differ in their
pictures (a re-rendered toy world, another export of CIRR, a corrected image), so the cache key
needs the images' content, not only their names:

.. math::

    \\operatorname{digest}(\\text{split}) = \\operatorname{SHA256}\\big(
        [(n_i, |f_i|, \\operatorname{SHA256}(f_i))]_{i=1}^{N}\\big)

over the gallery names :math:`n_i` in gallery order, each file's size :math:`|f_i|` and the hash
of its bytes. The file's path is not part of it: a moved data folder keeps its features.

Reading every image again at each cache hit would cost what the cache saves (a few GB for
CIRR), so each file's hash is remembered in a small JSON file beside the cache, together with
what ``stat`` says about the file (size, modification and change times in nanoseconds, inode).
A file is hashed again as soon as any of those changes; the change time (``st_ctime_ns``) is
set by the kernel on every write or rename and cannot be set back by a program, so a rewritten
file is never mistaken for the old one.

Introduced in chapter "The Combiner baseline" (with the feature cache).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from cirlib.data.records import CIRSplit, DatasetError, moved_download_hint
from cirlib.io import atomic_write_json

_CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _load_memo(memo_path: Path | None) -> dict:
    if memo_path is None or not memo_path.exists():
        return {}
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # a damaged memo only costs one more pass over the images
    return memo if isinstance(memo, dict) else {}


def image_content_digest(split: CIRSplit, memo_path: str | os.PathLike | None = None) -> str:
    """SHA-256 (hex, 16 characters) of the split's gallery images: names, sizes and bytes.

    Parameters
    ----------
    split : the split; every gallery name needs a file in ``split.image_paths``.
    memo_path : JSON file remembering, per gallery name, the file's hash next to its ``stat``
        record (see the module docstring); give each image location its own memo (a moved
        folder then starts a new one). ``None`` hashes every file. Written atomically, only when
        an entry changed.

    Raises
    ------
    DatasetError
        When a gallery image has no file or its file is missing, naming the image and the fix.
    """
    memo_path = Path(memo_path) if memo_path is not None else None
    memo = _load_memo(memo_path)
    fresh: dict[str, list] = {}
    rows = []
    for name in split.gallery:
        path = split.image_paths.get(name)
        if path is None:
            raise DatasetError(
                f"no file is listed for image {name!r} in split {split.name!r}: features need "
                "every gallery image; prepare the dataset with its images (book/setup.md)"
            )
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise DatasetError(
                f"image file {path} is missing; {moved_download_hint(path)}re-run the "
                "data_scripts command that prepared this dataset (see book/setup.md)"
            ) from None
        stat = _stat_key(st)
        known = memo.get(name)
        if isinstance(known, list) and len(known) == 2 and known[0] == stat:
            digest = known[1]
        else:
            digest = file_sha256(path)
        fresh[name] = [stat, digest]
        rows.append((name, st.st_size, digest))
    if memo_path is not None and fresh != memo:
        atomic_write_json(memo_path, fresh)
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]
