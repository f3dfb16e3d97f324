"""Write the small excerpt of real CIRR and FashionIQ annotations that chapter 1 shows.

    python data_scripts/make_real_excerpts.py --source /path/to/realdata

``--source`` holds the annotation files as their repositories publish them
(``cirr/captions/cap.rc2.val.json``, ``fashioniq/captions/cap.{dress,shirt,toptee}.val.json``).
The script draws a fixed random sample of validation queries (text and image identifiers only,
never images) and writes ``cirr_val.json`` and ``fashioniq_val.json`` next to the README that
names the sources and licences (``book/data/real_excerpts/`` by default). The same source files
and ``--seed`` always give the same excerpt. Each file is written atomically.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from cirlib.data.real_excerpts import EXCERPT_DIR, FASHIONIQ_CATEGORIES
from cirlib.io import atomic_write_json


def sample(entries: list, n: int, rng: random.Random) -> list:
    """``n`` entries drawn without replacement, kept in file order."""
    if n > len(entries):
        raise ValueError(f"asked for {n} entries but the file has only {len(entries)}")
    return [entries[i] for i in sorted(rng.sample(range(len(entries)), n))]


def cirr_excerpt(source: Path, n: int, seed: int) -> list[dict]:
    """``n`` CIRR validation queries: pair id, reference, target and caption."""
    entries = json.loads((source / "cirr" / "captions" / "cap.rc2.val.json").read_text("utf-8"))
    keep = ("pairid", "reference", "target_hard", "caption")
    return [{k: e[k] for k in keep} for e in sample(entries, n, random.Random(seed))]


def fashioniq_excerpt(source: Path, n_per_category: int, seed: int) -> list[dict]:
    """``n_per_category`` FashionIQ validation queries of each category, with both captions."""
    out = []
    for k, category in enumerate(FASHIONIQ_CATEGORIES):
        path = source / "fashioniq" / "captions" / f"cap.{category}.val.json"
        entries = json.loads(path.read_text("utf-8"))
        for e in sample(entries, n_per_category, random.Random(seed + k)):
            out.append(
                {"category": category, **{f: e[f] for f in ("candidate", "target", "captions")}}
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="the real annotation files")
    parser.add_argument("--out", type=Path, default=EXCERPT_DIR)
    parser.add_argument("--cirr", type=int, default=24, help="CIRR queries")
    parser.add_argument("--fashioniq", type=int, default=8, help="FashionIQ queries per category")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        cirr = cirr_excerpt(args.source, args.cirr, args.seed)
        fiq = fashioniq_excerpt(args.source, args.fashioniq, args.seed)
    except (FileNotFoundError, ValueError) as err:
        print(
            f"make_real_excerpts: {err} (is --source the folder holding cirr/ and fashioniq/?)",
            file=sys.stderr,
        )
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "cirr_val.json", cirr, indent=1, ensure_ascii=False)
    atomic_write_json(args.out / "fashioniq_val.json", fiq, indent=1, ensure_ascii=False)
    print(f"wrote {len(cirr)} CIRR and {len(fiq)} FashionIQ queries to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
