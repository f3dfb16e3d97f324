"""Benchmark: ``cirlib.eval.evaluate.evaluate`` against a reference copy of the earlier ranking code.

Builds a synthetic split of the toy test size (``--queries`` 2,809 queries, ``--gallery`` 18,000
images, ``--dim`` 128, random unit features, 6 valid targets and an image set of 5 per query,
edit-type and granularity breakdowns), then times

* ``reference``: the evaluation as it was before the single-sweep ranking (kept below, verbatim
  in behaviour: one pass over the score blocks to read the target scores and one to count, for
  each of R, mR and Rs, with an elementwise finiteness check of every block), and
* ``new``: ``evaluate(queries, features, split)``,

alternately, ``--repeats`` times each, and prints the ratio of the fastest runs (reference /
new) together with a check that every rank (R, Rs, mR) and every reported number is identical.
A second case uses gallery rows with four entries +-1 and queries in multiples of 1/8, so that
every score is exact and equal scores are everywhere (the tie rule is exercised, not only the
timing).

Run on one thread, and compare only the ratio (absolute times depend on the machine's load)::

    OMP_NUM_THREADS=1 python data_scripts/bench_evaluate.py
"""

from __future__ import annotations

import argparse
import random
import time
from collections import defaultdict
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from cirlib.data.records import CIRSplit, Triplet
from cirlib.eval.evaluate import KS, SUBSET_KS, evaluate
from cirlib.eval.ranking import evaluation_ranks
from cirlib.eval.recall import recall_at_k

# ----------------------------------------------------------------------------- reference code
# The ranking as it was before the single sweep (same block shapes, same tie rule).

QUERY_CHUNK, GALLERY_CHUNK = 1024, 8192


def _spans(total, size):
    for start in range(0, total, size):
        yield start, min(start + size, total)


def _ref_block(queries, gallery, q, g):
    scores = queries[q] @ gallery[g].T
    if not torch.isfinite(scores).all():
        raise ValueError("non-finite similarity scores")
    return scores


def _ref_gather(queries, gallery, cols, mask):
    n, m = queries.shape[0], gallery.shape[0]
    out = torch.zeros(cols.shape, dtype=queries.dtype)
    for q0, q1 in _spans(n, QUERY_CHUNK):
        c, k = cols[q0:q1], mask[q0:q1]
        for g0, g1 in _spans(m, GALLERY_CHUNK):
            sel = k & (c >= g0) & (c < g1)
            if not sel.any():
                continue
            block = _ref_block(queries, gallery, slice(q0, q1), slice(g0, g1))
            rows, slots = sel.nonzero(as_tuple=True)
            out[q0 + rows, slots] = block[rows, c[rows, slots] - g0]
    return out


def _ref_count(queries, gallery, targets, target_scores, exclude):
    n, m = queries.shape[0], gallery.shape[0]
    counts = torch.zeros(n, dtype=torch.long)
    for q0, q1 in _spans(n, QUERY_CHUNK):
        t, s_t, e = targets[q0:q1, None], target_scores[q0:q1, None], exclude[q0:q1, None]
        for g0, g1 in _spans(m, GALLERY_CHUNK):
            block = _ref_block(queries, gallery, slice(q0, q1), slice(g0, g1))
            j = torch.arange(g0, g1)[None, :]
            before = (block > s_t) | ((block == s_t) & (j < t))
            before &= (j != t) & (j != e)
            counts[q0:q1] += before.sum(dim=1)
    return counts


def reference_target_ranks(queries, gallery, targets, exclude):
    cols = targets[:, None]
    s_t = _ref_gather(queries, gallery, cols, torch.ones_like(cols, dtype=torch.bool))[:, 0]
    return _ref_count(queries, gallery, targets, s_t, exclude)


def reference_best_valid_ranks(queries, gallery, valid, exclude):
    rows = [sorted({int(v) for v in row} - {int(exclude[i])}) for i, row in enumerate(valid)]
    width = max(len(r) for r in rows)
    cols = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        cols[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = True
    scores = _ref_gather(queries, gallery, cols, mask)
    masked = scores.masked_fill(~mask, float("-inf"))
    is_top = mask & (masked == masked.max(dim=1, keepdim=True).values)
    slot = is_top.to(torch.uint8).argmax(dim=1, keepdim=True)
    best, best_score = cols.gather(1, slot)[:, 0], scores.gather(1, slot)[:, 0]
    return _ref_count(queries, gallery, best, best_score, exclude)


def reference_subset_ranks(queries, gallery, subset, targets, exclude):
    scores = _ref_gather(queries, gallery, subset, torch.ones_like(subset, dtype=torch.bool))
    t = targets[:, None]
    s_t = scores.gather(1, (subset == t).to(torch.uint8).argmax(dim=1, keepdim=True))
    before = (scores > s_t) | ((scores == s_t) & (subset < t))
    before &= (subset != t) & (subset != exclude[:, None])
    return before.sum(dim=1)


def reference_evaluate(queries, features, split, by=("edit_type", "granularity")):
    """The earlier ``evaluate`` (exact path), on the reference ranking functions."""
    gallery = F.normalize(features.images.float(), dim=-1)
    q = queries.float()
    ref, tgt = features.reference_index, features.target_index
    trip = split.triplets
    ranks = {"R": reference_target_ranks(q, gallery, tgt, ref)}
    subsets = torch.tensor([[split.index_of(n) for n in t.subset] for t in trip])
    ranks["Rs"] = reference_subset_ranks(q, gallery, subsets, tgt, ref)
    valid = [[split.index_of(n) for n in t.valid_targets] for t in trip]
    ranks["mR"] = reference_best_valid_ranks(q, gallery, valid, ref)

    def summarise(r):
        out = dict(recall_at_k(r["R"], KS, "R"))
        out.update(recall_at_k(r["Rs"], SUBSET_KS, "Rs"))
        out["Avg"] = (
            recall_at_k(r["R"], (5,))["R@5"] + recall_at_k(r["Rs"], (1,), "Rs")["Rs@1"]
        ) / 2
        out.update(recall_at_k(r["mR"], KS, "mR"))
        out["n"] = int(len(r["R"]))
        return out

    result = {"all": summarise(ranks)}
    for key in by:
        groups = defaultdict(list)
        for i, t in enumerate(trip):
            groups[t.meta[key]].append(i)
        result[key] = {
            v: summarise({k: r[torch.tensor(idx)] for k, r in ranks.items()})
            for v, idx in sorted(groups.items())
        }
    return result, ranks


# ----------------------------------------------------------------------------- synthetic split


def synthetic_case(n: int, m: int, d: int, seed: int, quantise: bool):
    """A split of ``n`` queries over ``m`` gallery images, its features and the queries."""
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    names = [f"img{j:06d}" for j in range(m)]
    triplets = []
    for i in range(n):
        ref, tgt, *others = rng.sample(range(m), 2 + 5 + 3)
        valid = [tgt, *others[:5]]
        subset = [ref, tgt, *others[5:]]
        rng.shuffle(subset)
        triplets.append(
            Triplet(
                pair_id=i,
                reference=names[ref],
                captions=("edit",),
                caption="edit",
                target=names[tgt],
                subset=tuple(names[j] for j in subset),
                valid_targets=tuple(names[j] for j in valid),
                meta={
                    "edit_type": rng.choice(["colour", "count", "shape", "position"]),
                    "granularity": rng.choice(["coarse", "fine"]),
                },
            )
        )
    split = CIRSplit("bench", triplets, names, {})
    if quantise:
        # Gallery rows with four entries +-1 (norm exactly 2, so normalising them is exact) and
        # queries in multiples of 1/8: every score is an exact multiple of 1/16, so equal scores
        # are frequent and really equal.
        images = torch.zeros(m, d)
        for j in range(m):
            images[j, rng.sample(range(d), 4)] = torch.tensor(
                [rng.choice((-1.0, 1.0)) for _ in range(4)]
            )
        queries = (torch.randn(n, d, generator=gen).clamp(-1, 1) * 8).round() / 8
    else:
        images = torch.randn(m, d, generator=gen)
        queries = F.normalize(torch.randn(n, d, generator=gen), dim=-1)
    features = SimpleNamespace(
        images=images,
        reference_index=torch.tensor([split.index_of(t.reference) for t in triplets]),
        target_index=torch.tensor([split.index_of(t.target) for t in triplets]),
    )
    return queries, features, split


def new_ranks(queries, features, split):
    gallery = F.normalize(features.images.float(), dim=-1)
    trip = split.triplets
    return evaluation_ranks(
        queries.float(),
        gallery,
        features.target_index,
        features.reference_index,
        subset=torch.tensor([[split.index_of(n) for n in t.subset] for t in trip]),
        valid=[[split.index_of(n) for n in t.valid_targets] for t in trip],
    )


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=2809)
    ap.add_argument("--gallery", type=int, default=18000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    ok = True
    for quantise in (False, True):
        label = "quantised features (exact scores, many ties)" if quantise else "unit features"
        q, f, split = synthetic_case(args.queries, args.gallery, args.dim, args.seed, quantise)
        print(f"\n{label}: {args.queries} queries, {args.gallery} gallery images, d={args.dim}")
        want, want_ranks = reference_evaluate(q, f, split)
        got = evaluate(q, f, split)
        got_ranks = new_ranks(q, f, split)
        same = got == want and all(torch.equal(got_ranks[k], want_ranks[k]) for k in want_ranks)
        ok &= same
        print(f"  identical ranks (R, Rs, mR) and metrics: {same}")
        old_t, new_t = [], []
        for _ in range(args.repeats):
            old_t.append(timed(reference_evaluate, q, f, split))
            new_t.append(timed(evaluate, q, f, split))
        print(f"  reference evaluate: {min(old_t):.3f} s (fastest of {args.repeats})")
        print(f"  evaluate:           {min(new_t):.3f} s")
        print(f"  speed ratio reference / new: {min(old_t) / min(new_t):.1f}x")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
