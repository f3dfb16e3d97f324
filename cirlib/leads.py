"""Ablation verdicts a method chapter hands to the comparison chapter, and their standing.

A method chapter judges its ablation (variants of the method against the full method or the
Combiner) with :func:`cirlib.verdict.judge` and records the verdicts here; chapter "Comparing
the methods" reads every chapter's record and carries it into its claims. An ablation that
ran on fewer seeds or a shorter budget than the main table is a **lead**: something to
follow up with the main table's seeds and budget, not a finding. One JSON file per chapter and
profile under ``$CIRLIB_DATA_DIR/verdicts`` (written atomically, so chapters running side by
side never see half a file).

Introduced in chapter "Comparing the methods".
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pandas as pd

from cirlib.io import atomic_write_json
from cirlib.paths import subdir
from cirlib.verdict import Verdict, verdict_frame

__all__ = ["ablation_frame", "is_lead", "load_ablations", "record_ablation"]


def _path(chapter: str, profile: str):
    return subdir("verdicts") / f"{chapter}-{profile}.json"


def is_lead(verdict: Verdict, epochs: int, cfg) -> bool:
    """True when ``verdict`` rests on fewer seeds than the main table (``cfg.seeds``) or on
    runs of fewer epochs than ``cfg.epochs``."""
    return len(verdict.seeds) < len(cfg.seeds) or epochs < cfg.epochs


def record_ablation(
    chapter: str, rows: Sequence[tuple[str, str, Verdict]], cfg, epochs: int
) -> dict:
    """Store a chapter's ablation verdicts: ``rows`` of ``(title of a, title of b, verdict)``,
    trained for ``epochs`` under profile ``cfg``. Returns the record written."""
    rows = list(rows)
    if not rows:
        raise ValueError(f"{chapter}: no ablation verdicts to record")
    if epochs < 1:
        raise ValueError(f"epochs must be a positive number of training epochs, got {epochs}")
    record = {
        "chapter": chapter,
        "profile": cfg.name,
        "epochs": int(epochs),
        "rows": [
            {"a": a, "b": b, "verdict": v.to_dict(), "lead": is_lead(v, epochs, cfg)}
            for a, b, v in rows
        ],
    }
    atomic_write_json(_path(chapter, cfg.name), record, indent=1)
    return record


def load_ablations(cfg, chapters: Sequence[str]) -> tuple[list[dict], list[str]]:
    """The recorded ablations of ``chapters`` under ``cfg``'s profile: ``(rows, missing)``,
    each row ``{"chapter", "a", "b", "verdict": Verdict, "epochs", "lead"}`` (standing
    re-derived against ``cfg``), and the chapters with no record (not run yet)."""
    rows, missing = [], []
    for chapter in chapters:
        path = _path(chapter, cfg.name)
        if not path.exists():
            missing.append(chapter)
            continue
        record = json.loads(path.read_text())
        for row in record["rows"]:
            v = Verdict.from_dict(row["verdict"])
            rows.append(
                {
                    "chapter": chapter,
                    "a": row["a"],
                    "b": row["b"],
                    "verdict": v,
                    "epochs": record["epochs"],
                    "lead": is_lead(v, record["epochs"], cfg),
                }
            )
    return rows, missing


def ablation_frame(rows: Sequence[dict]) -> pd.DataFrame:
    """:func:`~cirlib.verdict.verdict_frame` of the rows with their chapter, epochs and standing
    ("lead" or "finding")."""
    if not rows:
        return pd.DataFrame(columns=["chapter", "claim", "verdict", "standing"])
    frame = verdict_frame([r["verdict"] for r in rows])
    frame["claim"] = [f"{r['a']} > {r['b']}" for r in rows]
    frame.insert(0, "chapter", [r["chapter"] for r in rows])
    frame["epochs"] = [r["epochs"] for r in rows]
    frame["standing"] = ["lead" if r["lead"] else "finding" for r in rows]
    return frame
