"""A small excerpt of real CIRR and FashionIQ annotations, committed with the book.

The full annotation files are not part of the repository; ``book/data/real_excerpts/`` holds a
fixed sample of validation queries (text and image identifiers only), its README names the
sources and their licences, and ``data_scripts/make_real_excerpts.py`` re-draws it from the
published files. Introduced in chapter "The task, the data and the metrics".
"""

from __future__ import annotations

import json
from pathlib import Path

EXCERPT_DIR = Path(__file__).resolve().parents[2] / "book" / "data" / "real_excerpts"
FASHIONIQ_CATEGORIES = ("dress", "shirt", "toptee")


def load_real_excerpts(directory: str | Path | None = None) -> dict[str, list[dict]] | None:
    """``{"CIRR val": [...], "FashionIQ val": [...]}``, each a list of raw annotation entries, or
    None when the excerpt is not there (a copy of ``cirlib`` without the book's sources).

    A CIRR entry has ``pairid``, ``reference``, ``target_hard`` and ``caption``; a FashionIQ
    entry has ``category``, ``candidate`` (the reference), ``target`` and two ``captions``.
    """
    folder = Path(directory) if directory is not None else EXCERPT_DIR
    files = {"CIRR val": folder / "cirr_val.json", "FashionIQ val": folder / "fashioniq_val.json"}
    if not all(p.is_file() for p in files.values()):
        return None
    return {name: json.loads(p.read_text(encoding="utf-8")) for name, p in files.items()}


def excerpt_texts(excerpts: dict[str, list[dict]]) -> dict[str, list[str]]:
    """Every modification text of the excerpt, per source: one per CIRR query, two per
    FashionIQ query (each annotator's caption is a text of its own)."""
    return {
        "CIRR val": [e["caption"] for e in excerpts["CIRR val"]],
        "FashionIQ val": [c for e in excerpts["FashionIQ val"] for c in e["captions"]],
    }
