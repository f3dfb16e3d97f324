"""The papers' tables with the book's own rows beside them, read from a results file.

:func:`paper_tables` takes the record chapter 8 writes (``results_paper.json``,
:func:`cirlib.harness.results_record`) and, for every published table of the same dataset
(:data:`cirlib.published.PUBLISHED`), returns that table with one row per method of the run,
labelled ``"this book, paper profile, <encoder>, <n> seeds: <method>"``, each cell the mean over
seeds. CIRR rows come from the ``"all"`` numbers of the val split (the papers' CIRR tables are
test1, from the server: the label says so); FashionIQ rows from the per-category numbers
(``"gallery"``, :mod:`cirlib.eval.per_gallery`) and their means. A rehearsal's rows (the
record's ``"rehearsal"``) are labelled ``"REHEARSAL, not a result"`` and must never be read as
results. Introduced in chapter "Comparing the methods".
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from cirlib.published import PUBLISHED, published_table

DATASET_OF_TABLE = {"CIRR": "cirr", "FashionIQ": "fashioniq"}
SPLIT_NOTE = {
    "cirr": "our rows: CIRR val (the papers' rows: test1, from the server)",
    "fashioniq": "our rows: FashionIQ val, CLIP4Cir's protocol (each category its own gallery, "
    "reference kept in the ranking)",
}


def book_label(record: Mapping) -> str:
    """``"this book, paper profile, <encoder>, <n> seeds"`` (prefixed for a rehearsal)."""
    n = len(record["seeds"])
    label = f"this book, {record['profile']} profile, {record['encoder']}, {n} seed{'s' * (n != 1)}"
    return f"REHEARSAL, not a result: {label}" if record.get("rehearsal") else label


def _cell(per_seed: Mapping, column: str) -> float:
    """Mean over seeds of one published column, from the run's ``evaluate()`` dicts."""
    values = []
    for result in per_seed.values():
        if " " in column:  # FashionIQ: "dress R@10" or "avg R@10"
            where, metric = column.split(" ", 1)
            values.append(
                result["all"][metric] if where == "avg" else result["gallery"][where][metric]
            )
        else:
            values.append(result["all"][column])
    return float(np.mean(values))


def book_rows(record: Mapping, table: Mapping) -> pd.DataFrame:
    """One row per method of the run, in the published table's columns."""
    rows = {}
    for method in record["methods"].values():
        rows[f"{book_label(record)}: {method['title']}"] = {
            c: round(_cell(method["per_seed"], c), 2) for c in table["columns"]
        }
    df = pd.DataFrame(rows).T
    df["backbone"] = record["encoder"]
    return df


def paper_tables(record: Mapping) -> dict[str, pd.DataFrame]:
    """``{table name: published rows + this run's rows}`` for the tables of the record's
    dataset (empty when none of :data:`~cirlib.published.PUBLISHED` is on that dataset)."""
    out = {}
    for key, table in PUBLISHED.items():
        if DATASET_OF_TABLE.get(table["dataset"]) != record["dataset"]:
            continue
        out[key] = pd.concat([published_table(table), book_rows(record, table)])
    return out
