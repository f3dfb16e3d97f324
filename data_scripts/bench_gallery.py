"""Benchmark: top-k retrieval of many queries against a synthetic million-image gallery.

Ranks ``--queries`` random unit queries against ``--gallery`` random unit gallery rows of
dimension ``--dim`` (128 = the toy encoder, 640 = CLIP RN50x4) with

* the exact blocked ranker (cirlib.eval.index.ExactIndex) reading a float16 memory-mapped
  gallery file (2 bytes per number: 256 MB for 1M x 128, 1.3 GB for 1M x 640), and
* FAISS's exact flat inner-product index (float32 copy in memory), when faiss-cpu is installed,

and prints queries per second next to the machine's measured float32 matrix-multiply rate
(GFLOP/s of a timed ``torch.mm``), so the fraction of peak shows how much time goes into
something other than the multiply (top-k selection, float16 -> float32 casts, memory traffic).
Scoring costs 2·Q·N·d floating-point operations whatever the index.

    python data_scripts/bench_gallery.py --queries 10000 --gallery 1000000 --dim 128
    python data_scripts/bench_gallery.py --queries 1000 --dim 640 --threads 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cirlib.eval.index import ExactIndex, FaissFlatIndex


def best_times(fn, repeats: int = 3) -> tuple[float, float]:
    """Fastest wall-clock and fastest CPU time of ``repeats`` runs after a warm-up (the minimum
    is the least noisy figure on a shared machine)."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return min(wall), min(cpu)


def matmul_gflops(m: int, k: int, n: int) -> tuple[float, float]:
    """Measured float32 rate of ``[m, k] @ [k, n]``: GFLOP per wall second and per CPU second
    (2·m·k·n operations)."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    wall, cpu = best_times(lambda: torch.mm(a, b))
    return 2 * m * k * n / wall / 1e9, 2 * m * k * n / cpu / 1e9


def write_gallery(path: Path, n: int, d: int, block: int = 65536, seed: int = 0) -> np.memmap:
    """Random unit rows stored as float16 in a memory-mapped file, written block by block."""
    gen = torch.Generator().manual_seed(seed)
    out = np.memmap(path, dtype=np.float16, mode="w+", shape=(n, d))
    for g0 in range(0, n, block):
        rows = F.normalize(torch.randn(min(block, n - g0), d, generator=gen), dim=-1)
        out[g0 : g0 + len(rows)] = rows.half().numpy()
    out.flush()
    return np.memmap(path, dtype=np.float16, mode="r", shape=(n, d))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--gallery", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128, choices=(128, 640))
    parser.add_argument("--k", type=int, default=50, help="top-k kept per query (R@50 needs 50)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--query-block", type=int, default=1024)
    parser.add_argument("--gallery-block", type=int, default=16384)
    parser.add_argument("--no-faiss", action="store_true", help="only the exact ranker")
    parser.add_argument(
        "--workdir", default=None, help="where the gallery file goes (default: a temp dir)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    q_count, n, d, k = args.queries, args.gallery, args.dim, args.k
    flops = 2 * q_count * n * d

    # On a machine shared with other jobs a process waits for a core part of the time, so
    # wall-clock rates move with the load; rates per CPU second (time actually on a core) are
    # the steadier comparison, and both are printed.
    peak, peak_cpu = matmul_gflops(2048, 2048, 2048)
    block, block_cpu = matmul_gflops(args.query_block, d, args.gallery_block)
    print(f"threads: {args.threads} (os.cpu_count() = {os.cpu_count()})")
    print(
        f"matmul rate, 2048^3 float32 torch.mm: {peak:.1f} GFLOP/s wall, {peak_cpu:.1f} GFLOP "
        "per CPU second (taken as peak)"
    )
    print(
        f"matmul rate at the ranker's block shape [{args.query_block}, {d}] x "
        f"[{d}, {args.gallery_block}]: {block:.1f} GFLOP/s wall, {block_cpu:.1f} per CPU second"
    )

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        start = time.perf_counter()
        gallery = write_gallery(Path(tmp) / "gallery.f16", n, d)
        print(
            f"gallery: {n:,} x {d} float16 memory-mapped, {gallery.nbytes / 1e9:.2f} GB on disk "
            f"(written in {time.perf_counter() - start:.1f} s)"
        )
        queries = F.normalize(torch.randn(q_count, d, generator=torch.Generator().manual_seed(1)))
        print(f"queries: {q_count:,} x {d}; top-{k}; scoring = {flops / 1e12:.2f} TFLOP\n")

        def report(name: str, seconds: float, cpu: float) -> None:
            # CPU time next to wall time: on a shared machine the process may wait for a core,
            # and cpu/wall below 1 x threads shows it did.
            # The fraction of peak is taken per CPU second only: the wall-clock peak and the
            # wall-clock search are measured at different moments of a varying load.
            rate, rate_cpu = flops / seconds / 1e9, flops / cpu / 1e9
            print(
                f"{name:<22} {seconds:6.1f} s wall, {cpu:6.1f} s CPU | "
                f"{q_count / seconds:7.1f} queries/s wall, {q_count / cpu:7.1f} per CPU s | "
                f"{rate:5.1f} GFLOP/s wall, {rate_cpu:5.1f} per CPU s = "
                f"{100 * rate_cpu / peak_cpu:3.0f}% of peak"
            )

        exact = ExactIndex(gallery, gallery_block=args.gallery_block)
        start, cpu = time.perf_counter(), time.process_time()
        exact_scores, exact_ids = exact.search(queries, k, query_block=args.query_block)
        report("exact blocked (fp16)", time.perf_counter() - start, time.process_time() - cpu)

        if args.no_faiss:
            return
        try:
            start = time.perf_counter()
            flat = FaissFlatIndex(gallery, threads=args.threads)
        except ImportError as err:
            print(f"FAISS skipped: {err}")
            return
        build = time.perf_counter() - start
        start, cpu = time.perf_counter(), time.process_time()
        faiss_scores, faiss_ids = flat.search(queries, k, query_block=args.query_block)
        report("FAISS IndexFlatIP", time.perf_counter() - start, time.process_time() - cpu)
        print(f"  (FAISS build: {build:.1f} s, {flat.size * d * 4 / 1e9:.2f} GB float32 in memory)")
        same_lists = (faiss_ids == exact_ids).all(dim=1).float().mean()
        same_top1 = (faiss_ids[:, 0] == exact_ids[:, 0]).float().mean()
        # Where the lists differ, the scores position by position show whether it is only the
        # order of near-equal scores (tiny differences) or a real miss (large ones).
        score_gap = (faiss_scores - exact_scores).abs().max()
        print(
            f"agreement with the exact ranker: top-1 {100 * same_top1:.2f}% of queries, "
            f"whole top-{k} list {100 * same_lists:.2f}%; largest score difference at the same "
            f"position {score_gap:.1e}"
        )


if __name__ == "__main__":
    main()
