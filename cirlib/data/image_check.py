"""Decode every image of a dataset once, so a damaged file is named at preparation time.

An image that exists but is truncated or not an image at all would otherwise pass the
preparation step and fail much later, in the middle of feature encoding. Introduced on the book
page "Setup", section "Real datasets".
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

from cirlib.progress import progress

__all__ = ["undecodable_images"]


def undecodable_images(
    paths: Iterable[Path], desc: str = "decoding images"
) -> list[tuple[Path, str]]:
    """The files among ``paths`` that PIL cannot decode completely, with the reason.

    Each file is opened and fully decoded (``Image.load``), which catches truncated files as
    well as files that are not images; a progress bar counts them (silent under
    ``TQDM_DISABLE``). A missing file is reported as ``"missing"``.

    Returns
    -------
    list of (path, reason), in the order of ``paths``; empty when every image decodes.
    """
    paths = list(paths)
    bad: list[tuple[Path, str]] = []
    with warnings.catch_warnings():
        # Large real photos trip PIL's decompression-bomb warning; size is not what we check.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        for path in progress(paths, desc=desc, unit="img"):
            try:
                with Image.open(path) as im:
                    im.load()
            except FileNotFoundError:
                bad.append((Path(path), "missing"))
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
                bad.append((Path(path), f"{type(err).__name__}: {err}"))
    return bad
