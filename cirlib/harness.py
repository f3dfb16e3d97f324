"""One comparison for every method: same frozen encoder, same features, same budget, same seeds.

:func:`compare` trains (or loads, from the chapters' checkpoints) each method for each seed
and evaluates it on one split; :func:`comparison_tables` turns the per-seed results into the
book's "mean ± std" tables; :func:`paired_verdict` says whether a difference between two methods
is larger than the seed-to-seed spread; :func:`write_results` stores everything in a JSON file
stamped with the code version, profile, seeds and date.

Introduced in chapter "Comparing the methods".
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

import cirlib
from cirlib.eval.evaluate import evaluate
from cirlib.eval.query_ranks import RANK_FORMAT, RANK_KINDS, encode_groups, encode_ranks
from cirlib.io import atomic_write_json
from cirlib.registry import MethodSpec, checkpoint_path, get_method
from cirlib.rehearsal import run_provenance
from cirlib.report import format_mean_std, mean_std
from cirlib.train import trained_with

RECALL = ("R@1", "R@5", "R@10", "R@50")
SUBSET = ("Rs@1", "Rs@2", "Rs@3")
MULTI_TARGET = ("mR@1", "mR@5", "mR@10", "mR@50")
MAP = ("mAP@5", "mAP@10", "mAP@25", "mAP@50")

Results = dict[str, dict[int, dict]]  # method name -> seed -> evaluate() dict


def _spec(method: str | MethodSpec) -> MethodSpec:
    return method if isinstance(method, MethodSpec) else get_method(method)


def options_tag(options: Mapping) -> str:
    """Checkpoint tag of a run with non-default ``options``: ``"opt-"`` + 10 hex digits of a hash
    of the options (sorted JSON), so each variant keeps its own checkpoint and the main run's
    file is never asked to hold other settings.

    Introduced in chapter "Comparing the methods".
    """
    text = json.dumps(dict(options), sort_keys=True, default=str)
    return "opt-" + hashlib.sha256(text.encode()).hexdigest()[:10]


def run_checkpoint(method: str | MethodSpec, cfg, seed: int, options: Mapping | None = None):
    """The checkpoint :func:`compare` trains or loads for ``method`` at ``seed``: the chapter's
    own (tag ``"main"``) with default options, its :func:`options_tag` otherwise.

    Introduced in chapter "Comparing the methods".
    """
    spec = _spec(method)
    tag = options_tag(options) if options else "main"
    return checkpoint_path(cfg, spec.name, seed, tag)


def training_environment(
    methods: Iterable[str | MethodSpec],
    cfg,
    seeds: Iterable[int],
    options: Mapping[str, Mapping] | None = None,
) -> dict:
    """``{method name: {seed: trained_with(checkpoint)}}`` for the runs :func:`compare` used:
    per run the torch version, device and CPU thread count of every ``fit`` call that trained
    it (:func:`cirlib.train.trained_with`), for the results file. A run's numbers depend on
    these at the level of rounding; the file should say what produced them.

    Introduced in chapter "Comparing the methods".
    """
    options = dict(options or {})
    out = {}
    for method in methods:
        spec = _spec(method)
        extra = options.get(spec.name, {})
        out[spec.name] = {
            str(seed): trained_with(run_checkpoint(spec, cfg, seed, extra)) for seed in seeds
        }
    return out


def compare(
    methods: Iterable[str | MethodSpec],
    cfg,
    features: Mapping,
    splits: Mapping,
    seeds: Iterable[int],
    options: Mapping[str, Mapping] | None = None,
    *,
    train_split: str = "train",
    eval_split: str = "test",
) -> Results:
    """Train (checkpoint-or-train) and evaluate every method for every seed.

    Every method reads the same cached features of the same frozen encoder and trains with the
    profile's epochs, batch size and learning rate (:mod:`cirlib.registry` passes ``cfg`` to
    each recipe). A method run with its registry defaults uses the checkpoint of its own chapter
    (:func:`~cirlib.registry.checkpoint_path`, tag ``"main"``), so the comparison reuses the
    chapters' heads instead of training them again.

    Parameters
    ----------
    methods : registry names, or :class:`~cirlib.registry.MethodSpec` objects (e.g. a
        combination no paper tried).
    features, splits : ``{split name: SplitFeatures}`` and ``{split name: CIRSplit}``; token
        features are needed when any method has ``needs_tokens``.
    seeds : training seeds, the same for every method (so differences can be paired by seed).
    options : ``{method name: {option: value}}`` overriding a method's defaults; such a run is
        saved under its own tag (:func:`options_tag`).

    Returns
    -------
    ``{method name: {seed: evaluate() dict}}`` on ``eval_split`` (percentages; ``"all"`` plus
    the ``edit_type`` and ``granularity`` breakdowns where the split has them). Each dict is a
    :class:`~cirlib.eval.query_ranks.RankedEvaluation`: it also carries the per-query ranks,
    which :func:`write_results` stores for :mod:`cirlib.verdict`.

    Introduced in chapter "Comparing the methods".
    """
    options = dict(options or {})
    seeds = list(seeds)
    train_f, train_s = features[train_split], splits[train_split]
    test_f, test_s = features[eval_split], splits[eval_split]
    results: Results = {}
    for method in methods:
        spec = _spec(method)
        if spec.needs_tokens and train_f.image_tokens is None:
            raise ValueError(
                f"{spec.title} reads token features: load them with cached_features(..., "
                "tokens=True)"
            )
        extra = dict(options.get(spec.name, {}))
        results[spec.name] = {}
        for seed in seeds:
            model = spec.train(
                train_f,
                cfg,
                seed=seed,
                split=train_s,
                checkpoint=run_checkpoint(spec, cfg, seed, extra),
                **extra,
            )
            gallery = spec.gallery(model, test_f) if spec.gallery is not None else None
            results[spec.name][seed] = evaluate(
                spec.embed_queries(model, test_f, test_s),
                test_f,
                test_s,
                gallery=gallery,
                keep_ranks=True,
            )
    return results


def titles_of(methods: Iterable[str | MethodSpec]) -> dict[str, str]:
    """``{name: title}`` for registry names and :class:`~cirlib.registry.MethodSpec` objects,
    for the tables and the results file (a spec outside the registry is known only by itself).

    Introduced in chapter "Comparing the methods".
    """
    return {spec.name: spec.title for spec in map(_spec, methods)}


def _rows(per_seed: Mapping[int, dict], group: str | None, value: str | None) -> list[dict]:
    if group is None:
        return [r["all"] for r in per_seed.values()]
    return [r[group][value] for r in per_seed.values()]


def _titles(results: Results, titles: Mapping[str, str] | None) -> dict[str, str]:
    titles = dict(titles or {})
    out = {}
    for name in results:
        if name in titles:
            out[name] = titles[name]
        else:
            try:
                out[name] = get_method(name).title
            except ValueError:
                out[name] = name
    return out


def metric_summary(
    results: Results, metric: str, group: str | None = None, value: str | None = None
) -> pd.DataFrame:
    """Mean and sample std (ddof=1) over seeds of one metric, one row per method
    (``group``/``value`` pick a breakdown, e.g. ``"granularity"``, ``"coarse"``).

    Introduced in chapter "Comparing the methods".
    """
    rows = {
        name: mean_std(_rows(per_seed, group, value), [metric]).loc[metric]
        for name, per_seed in results.items()
    }
    return pd.DataFrame(rows).T


def comparison_tables(
    results: Results,
    titles: Mapping[str, str] | None = None,
    breakdown_metrics: Sequence[str] = ("R@1", "R@10", "mR@1"),
) -> dict[str, pd.DataFrame]:
    """The comparison's tables, every cell "mean ± std" over seeds (percent, 1 decimal).

    * ``"overall"``: rows = methods; R@1/5/10/50, Recall_subset@1/2/3, multi-target recall
      mR@1/5/10/50 and mAP@5/10/25/50 over every valid target (the columns the split supports).
    * ``"edit_type"`` and ``"granularity"`` (when the split has them): rows = methods, columns
      ``"<value> · <metric>"`` for each of ``breakdown_metrics``, e.g. ``"colour · R@1"``,
      ``"coarse · mR@1"``.

    Introduced in chapter "Comparing the methods".
    """
    names = _titles(results, titles)
    first = next(iter(next(iter(results.values())).values()))
    overall_cols = [c for c in (*RECALL, *SUBSET, *MULTI_TARGET, *MAP) if c in first["all"]]
    tables = {
        "overall": format_mean_std(
            {names[n]: _rows(r, None, None) for n, r in results.items()}, overall_cols
        )
    }
    for group in ("edit_type", "granularity"):
        if group not in first:
            continue
        values = list(first[group])
        metrics = [m for m in breakdown_metrics if m in first[group][values[0]]]
        columns = {}
        for value in values:
            part = format_mean_std(
                {names[n]: _rows(r, group, value) for n, r in results.items()}, metrics
            )
            for m in metrics:
                columns[f"{value} · {m}"] = part[m]
        tables[group] = pd.DataFrame(columns)
    return tables


def paired_differences(
    results: Results,
    a: str,
    b: str,
    metric: str,
    group: str | None = None,
    value: str | None = None,
) -> np.ndarray:
    """Per-seed differences ``a − b`` of one metric, paired by seed (both methods trained with
    that seed on the same features); only seeds both methods ran are used.

    Introduced in chapter "Comparing the methods".
    """
    seeds = sorted(set(results[a]) & set(results[b]))
    if not seeds:
        raise ValueError(f"{a!r} and {b!r} share no seed")

    def pick(name, seed):
        r = results[name][seed]
        return (r["all"] if group is None else r[group][value])[metric]

    return np.array([pick(a, s) - pick(b, s) for s in seeds], dtype=float)


def paired_verdict(differences: Sequence[float], floor: float = 1.0) -> str:
    r"""``"higher"``, ``"lower"`` or ``"tie"`` for per-seed differences :math:`d_s = a_s - b_s`.

    A difference counts when its mean exceeds the noise :math:`\max(\mathrm{sd}(d), f)` (sample
    std over seeds, floored at ``floor`` points, so two seeds that happen to agree do not turn a
    0.3-point gap into a finding) *and* every seed has the same sign:

    .. math::

        \text{higher} \iff \bar d > \max(\mathrm{sd}(d), f) \ \wedge\ \min_s d_s > 0

    (symmetrically for "lower"); anything else is a "tie".

    Introduced in chapter "Comparing the methods".
    """
    d = np.asarray(differences, dtype=float)
    noise = max(float(d.std(ddof=1)) if len(d) > 1 else 0.0, floor)
    if d.mean() > noise and (d > 0).all():
        return "higher"
    if d.mean() < -noise and (d < 0).all():
        return "lower"
    return "tie"


def _sources_hash() -> str:
    """SHA-256 (16 hex digits) over cirlib's ``*.py`` files, path and content, in sorted order."""
    root = Path(cirlib.__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _git_commit() -> str | None:
    root = Path(cirlib.__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def code_version() -> dict:
    """What code produced a result: the git commit of the cirlib checkout (None outside a git
    checkout, e.g. a pip-installed cirlib on Colab), the package version, and a hash of cirlib's
    sources (which also tells apart uncommitted edits on one commit).

    Introduced in chapter "Comparing the methods".
    """
    return {
        "git_commit": _git_commit(),
        "cirlib_version": cirlib.__version__,
        "cirlib_sources_sha256": _sources_hash(),
    }


def per_query_record(results: Results) -> dict | None:
    """The compact per-query part of the results file, or None when no run kept its ranks.

    ``{"format", "n_queries", "groups": {key: {"labels", "codes"}}, "ranks": {method: {seed:
    {"R" | "Rs" | "mR": text}}}}`` (:mod:`cirlib.eval.query_ranks`). Every run must have been
    evaluated on the same queries: the labels of the first run stand for all of them.

    Introduced in chapter "Comparing the methods".
    """
    ranked = {
        name: {s: r for s, r in per_seed.items() if getattr(r, "ranks", None) is not None}
        for name, per_seed in results.items()
    }
    ranked = {name: runs for name, runs in ranked.items() if runs}
    if not ranked:
        return None
    first = next(iter(next(iter(ranked.values())).values()))
    n = len(first.ranks["R"])
    for name, runs in ranked.items():
        for seed, r in runs.items():
            if len(r.ranks["R"]) != n or r.groups != first.groups:
                raise ValueError(
                    f"{name} seed {seed} was evaluated on other queries than the first run "
                    f"({len(r.ranks['R'])} vs {n}); per-query ranks can only be paired on one "
                    "split"
                )
    return {
        "format": RANK_FORMAT,
        "n_queries": n,
        "groups": encode_groups(first.groups),
        "ranks": {
            # only ranks: evaluate also keeps per-query average precision ("AP") when the split
            # lists valid targets, which no verdict reads
            name: {
                str(s): encode_ranks({k: v for k, v in r.ranks.items() if k in RANK_KINDS})
                for s, r in runs.items()
            }
            for name, runs in ranked.items()
        },
    }


def encoder_label(cfg) -> str:
    """``"<encoder>:<weights>"`` for tables and results files; a local weights file is named by
    its file name (not its path, which says where a machine keeps it, not what it is).

    Introduced in chapter "Comparing the methods".
    """
    weights = cfg.encoder_pretrained
    if weights and weights != "shipped" and Path(weights).is_file():
        weights = Path(weights).name
    return f"{cfg.encoder}:{weights}"


def results_record(
    results: Results,
    cfg,
    titles: Mapping[str, str] | None = None,
    extra: Mapping | None = None,
) -> dict:
    """The JSON-ready record :func:`write_results` stores: profile, seeds, UTC date, code
    version, whether the run was a rehearsal, the open_clip architecture and the installed
    dataset's manifest (:func:`cirlib.rehearsal.run_provenance`), and per method its title,
    per-seed ``evaluate()`` dicts and the mean/std of the overall metrics; and, when the runs
    kept them (:func:`compare` does), the per-query ranks under ``"per_query"``
    (:func:`per_query_record`).

    Introduced in chapter "Comparing the methods".
    """
    names = _titles(results, titles)
    methods = {}
    for name, per_seed in results.items():
        overall = pd.DataFrame([r["all"] for r in per_seed.values()]).drop(columns="n")
        methods[name] = {
            "title": names[name],
            "per_seed": {str(s): r for s, r in per_seed.items()},
            "mean": {k: float(v) for k, v in overall.mean().items()},
            "std": {
                k: float(v) if len(overall) > 1 else 0.0 for k, v in overall.std(ddof=1).items()
            },
        }
    seeds = sorted({s for per_seed in results.values() for s in per_seed})
    per_query = per_query_record(results)
    return {
        "profile": cfg.name,
        "dataset": cfg.dataset,
        "encoder": encoder_label(cfg),
        "budget": {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr},
        "seeds": seeds,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "methods": methods,
        **({"per_query": per_query} if per_query is not None else {}),
        # rehearsal flag, open_clip architecture, installed dataset's manifest
        **run_provenance(cfg),
        **dict(extra or {}),
    }


def write_results(
    path: str | Path,
    results: Results,
    cfg,
    titles: Mapping[str, str] | None = None,
    extra: Mapping | None = None,
) -> Path:
    """Write :func:`results_record` to ``path`` as JSON, atomically (never a half-written file).

    Introduced in chapter "Comparing the methods".
    """
    return atomic_write_json(path, results_record(results, cfg, titles, extra), indent=1)
