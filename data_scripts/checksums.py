"""Checksums of every stage of a run (toy world, features, batches, first training steps,
chapter 3's Combiner), and where two such records diverge.

Record the stages of a profile under a fresh data folder, twice, then compare::

    CIRLIB_DATA_DIR=/tmp/run-a python data_scripts/checksums.py record --profile smoke \\
        --out /tmp/a.json --tensors /tmp/a.pt
    CIRLIB_DATA_DIR=/tmp/run-b python data_scripts/checksums.py record --profile smoke \\
        --out /tmp/b.json --tensors /tmp/b.pt
    python data_scripts/checksums.py compare /tmp/a.json /tmp/b.json --tensors /tmp/a.pt /tmp/b.pt

``record`` builds whatever the data folder lacks (so give it an empty one to check that a build
from scratch is reproducible) and writes JSON: per stage a SHA-256 of each tensor or file, in
pipeline order. ``compare`` prints the first entry that differs (where the two runs diverge;
everything after it may differ as a consequence), how many entries of each stage differ and,
with the saved tensors, how large the differences are. It exits with 1 when the records differ.
Set ``CIRLIB_THREADS`` to compare thread counts (the runs record it as a note).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import torch

from cirlib.config import resolve
from cirlib.harness import code_version
from cirlib.io import atomic_torch_save, atomic_write_json
from cirlib.notebook import pinned_threads
from cirlib.paths import data_root
from cirlib.reproducibility import (
    difference_sizes,
    differing_keys,
    first_difference,
    stage_checksums,
)
from cirlib.seed import deterministic, seed_everything


def record(args) -> int:
    logging.getLogger().setLevel(logging.ERROR)  # open_clip's note before the toy weights load
    threads = pinned_threads()
    if threads:
        torch.set_num_threads(threads)
    cfg = resolve(args.profile)
    seed_everything(cfg.seed)
    deterministic(True)
    stages, tensors = stage_checksums(
        cfg,
        methods=args.methods.split(","),
        seeds=[int(s) for s in args.seeds.split(",")],
        steps=args.steps,
        full_runs=not args.no_full_runs,
    )
    out = {
        "profile": cfg.name,
        "data_dir": str(data_root()),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "code_version": code_version(),
        "stages": stages,
    }
    atomic_write_json(args.out, out, indent=1)
    if args.tensors:
        atomic_torch_save(args.tensors, tensors)
    print(f"{len(stages)} entries -> {args.out}")
    return 0


def _group(key: str) -> str:
    """``train/combiner/s0/step2/combiner.fc.weight`` -> ``train/combiner/s0/step2``."""
    parts = key.split("/")
    depth = {"world": 2, "features": 3, "train": 4, "run": 3}.get(parts[0], 1)
    return "/".join(parts[:depth])


def compare(args) -> int:
    a, b = (json.loads(Path(p).read_text()) for p in args.records)
    sa, sb = a["stages"], b["stages"]
    for label, rec in (("A", a), ("B", b)):
        print(
            f"{label}: {rec['profile']}, {rec['threads']} thread(s), {rec['cpu_capability']}, "
            f"torch {rec['torch']}, {len(rec['stages'])} entries ({rec['data_dir']})"
        )
    first = first_difference(sa, sb)
    summary = {
        "runs": [
            {k: rec[k] for k in ("profile", "threads", "cpu_capability", "torch", "code_version")}
            for rec in (a, b)
        ],
        "compared_on": datetime.now(timezone.utc).date().isoformat(),
        "entries": len(sa),
        "first_difference": first,
        "differing_entries": 0,
        "differing_by_stage": {},
        "metrics": {},  # the compared numbers (test metrics, losses) that differ: [A, B]
        "sizes": {},  # per stage, its first differing float tensor's difference_sizes
    }
    if first is None:
        print("identical: every entry has the same digest")
        if args.json:
            atomic_write_json(args.json, summary, indent=1)
        return 0
    diff = differing_keys(sa, sb)
    summary["differing_entries"] = len(diff)
    summary["differing_by_stage"] = dict(Counter(map(_group, diff)))
    print(f"first difference: {first}")
    print(f"{len(diff)} of {len(sa)} entries differ; by stage:")
    for group, n in Counter(map(_group, diff)).items():
        print(f"  {group}: {n}")
    for key in diff:
        if "value" in sa.get(key, {}) and "value" in sb.get(key, {}):
            print(f"  {key}: {sa[key].get('note')} vs {sb[key].get('note')}")
            summary["metrics"][key] = [sa[key].get("note"), sb[key].get("note")]
    if args.tensors:
        ta, tb = (torch.load(p, weights_only=True) for p in args.tensors)
        shown = set()
        print("sizes (first differing tensor of each stage; max_rel relative to max |A|):")
        for key in diff:
            group = _group(key)
            if group in shown or key not in ta or key not in tb:
                continue
            if not (ta[key].is_floating_point() and tb[key].is_floating_point()):
                continue
            shown.add(group)
            s = difference_sizes(ta[key], tb[key])
            summary["sizes"][group] = {"tensor": key, **{k: float(v) for k, v in s.items()}}
            print(
                f"  {key}: max_abs {s['max_abs']:.3g}, max_rel {s['max_rel']:.3g}, "
                f"{100 * s['changed']:.1f}% of entries changed"
            )
    if args.json:
        atomic_write_json(args.json, summary, indent=1)
    return 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="checksum every stage under $CIRLIB_DATA_DIR")
    rec.add_argument("--profile", default="smoke", choices=["smoke", "toy"])
    rec.add_argument("--out", required=True, help="JSON file to write")
    rec.add_argument("--tensors", help="also save the features and parameters (.pt) here")
    rec.add_argument("--methods", default="combiner,mapnet", help="registry names, comma-separated")
    rec.add_argument("--seeds", default="0", help="training seeds, comma-separated")
    rec.add_argument("--steps", type=int, default=3, help="training steps recorded per method")
    rec.add_argument(
        "--no-full-runs", action="store_true", help="skip chapter 3's full Combiner runs"
    )
    cmp_ = sub.add_parser("compare", help="where two records diverge")
    cmp_.add_argument("records", nargs=2, metavar="RECORD")
    cmp_.add_argument("--tensors", nargs=2, metavar="PT", help="the two runs' --tensors files")
    cmp_.add_argument(
        "--json", help="also write the comparison here (runs, first difference, sizes, metrics)"
    )
    args = ap.parse_args(argv)
    return record(args) if args.command == "record" else compare(args)


if __name__ == "__main__":
    sys.exit(main())
