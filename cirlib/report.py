"""Tables of results: mean ± standard deviation over seeds, in the book's format."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pandas as pd


def mean_std(runs: Sequence[dict[str, float]], keys: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows = metrics, columns = mean and std (sample std, ddof=1; 0 for a single run)."""
    df = pd.DataFrame(list(runs))
    keys = list(keys) if keys is not None else [k for k in df.columns if k != "n"]
    std = df[keys].std(ddof=1) if len(df) > 1 else df[keys].mean() * 0
    return pd.DataFrame({"mean": df[keys].mean(), "std": std})


_METRIC = re.compile(r"^(R|Rs|mR)@\d+$|^Avg$")


def format_mean_std(
    table: dict[str, Sequence[dict[str, float]]], keys: Sequence[str]
) -> pd.DataFrame:
    """``{row label: runs}`` → a DataFrame of "mean ± std" strings (percent, 1 decimal).

    A metric of the book (``R@K``, ``Rs@K``, ``mR@K``, ``Avg``) that no run holds is left out:
    the split does not define it (Rs@K needs CIRR's image sets, mR@K the toy world's valid
    targets, and FashionIQ has neither), so one call serves every dataset. Any other missing
    key, or a metric some rows hold and others lack, is an error.
    """
    held = [set().union(*(r.keys() for r in runs)) for runs in table.values()]
    keys = [k for k in keys if not (_METRIC.match(k) and not any(k in h for h in held))]
    rows = {}
    for label, runs in table.items():
        ms = mean_std(runs, keys)
        rows[label] = {k: f"{ms.loc[k, 'mean']:.1f} ± {ms.loc[k, 'std']:.1f}" for k in keys}
    return pd.DataFrame(rows).T
