"""Beyond memory, again: int8 keys in memory, the fp32 keys memory-mapped for rescoring.

    python benchmarks/bench_beyond_memory.py ...   # the fp32 baseline (243 s per search at 21M rows)
    python benchmarks/bench_beyond_memory_int8.py --rows 21000000 --dir /big/disk/bm

1. writes ``DIR/emb.npy`` (rows x 384 float32, seed 0: the same keys as
   bench_beyond_memory.py) unless it exists;
2. opens it memory-mapped and builds the int8 keys block by block (one scale per row,
   residual norms), reading the fp32 keys from disk once;
3. answers the same 256 queries (seed 1) with an exact top-10: int8 scores of every row,
   a candidate bound, the candidates rescored from the memory-mapped fp32 keys
   (benchmarks/_int8_search.py), twice;
4. with ``--verify Q``: the first Q queries' fp32 top-10 by one streamed fp32 pass;
5. prints each stage's time and this process's peak private memory (RssAnon, sampled
   every 50 ms) and peak RSS (file-backed pages of the memory map included).

Delete DIR afterwards (``--clean`` does).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _int8_search import Int8Keys
from bench_beyond_memory import PeakPrivate, generate

BASELINE = "fp32 baseline (docs/performance.md, 32.3 GB streamed from disk, 2 workers): 243 s and 248 s per search"


def peak_rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=21_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=256)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--verify", type=int, default=0, help="check this many queries against a streamed fp32 pass")
    ap.add_argument("--clean", action="store_true", help="delete DIR/emb.npy at the end")
    args = ap.parse_args()

    import torch

    from softdb.engine._lowp import backend_for
    from softdb.engine._lowp_simd import capabilities

    os.makedirs(args.dir, exist_ok=True)
    emb = os.path.join(args.dir, "emb.npy")
    print(
        f"{args.rows} x {args.dim} float32 keys = {args.rows * args.dim * 4 / 1e9:.1f} GB; "
        f"RAM {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 1e9:.1f} GB; "
        f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; torch threads {torch.get_num_threads()}"
    )
    print("SIMD:", capabilities(), "int8 backend for", args.queries, "queries:", backend_for("int8", args.queries))
    mon = PeakPrivate()
    if not os.path.exists(emb):
        t0 = time.perf_counter()
        generate(emb, args.rows, args.dim)
        print(f"generate emb.npy: {time.perf_counter() - t0:.1f} s")
        mon.report("gen")
    keys = np.load(emb, mmap_mode="r")
    assert keys.shape == (args.rows, args.dim), keys.shape
    t0 = time.perf_counter()
    table = Int8Keys(keys)
    print(
        f"int8 keys from the memory-mapped fp32 keys: {time.perf_counter() - t0:.1f} s; "
        f"{table.nbytes / 1e9:.2f} GB in memory (codes {table.codes.nbytes / 1e9:.2f} GB + scale, ρ, ‖k̃‖)"
    )
    mon.report("int8")
    q = np.random.default_rng(1).standard_normal((args.queries, args.dim), dtype=np.float32)
    for rep in range(2):
        t0 = time.perf_counter()
        ids, scores, rescored = table.search(q, k=10, block=1 << 17)
        print(
            f"search m={args.queries} k=10 (run {rep + 1}, load {os.getloadavg()[0]:.1f}): "
            f"{time.perf_counter() - t0:.1f} s; rows rescored per query: median {int(np.median(rescored))}, "
            f"max {int(rescored.max())}"
        )
    mon.report("search")
    print(f"peak RSS (VmHWM, file-backed map pages included): {peak_rss_mib():.0f} MiB")
    print("first query's top 3:", ids[0][:3].tolist(), scores[0][:3].round(3).tolist())
    print(BASELINE)
    if args.verify:
        t0 = time.perf_counter()
        qv = q[: args.verify]
        best_s = np.full((len(qv), 10), -np.inf, np.float32)
        best_r = np.full((len(qv), 10), -1, np.int64)
        for a in range(0, args.rows, 1 << 17):
            s = qv @ np.asarray(keys[a : a + (1 << 17)]).T  # (v, c)
            s_all = np.concatenate([best_s, s], axis=1)
            r_all = np.concatenate([best_r, np.broadcast_to(np.arange(a, a + s.shape[1]), s.shape)], axis=1)
            o = np.argsort(-s_all, axis=1, kind="stable")[:, :10]  # ties: the earlier (lower) row
            best_s, best_r = np.take_along_axis(s_all, o, 1), np.take_along_axis(r_all, o, 1)
        same = float((np.sort(best_r, axis=1) == np.sort(ids[: args.verify], axis=1)).mean())
        print(
            f"verify {args.verify} queries by a streamed fp32 pass ({time.perf_counter() - t0:.1f} s): "
            f"top-10 ids identical: {same:.3f}; max |score difference| "
            f"{float(np.abs(best_s - scores[: args.verify]).max()):.2e}"
        )
    mon.stop()
    if args.clean:
        shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
