#!/usr/bin/env python
"""Writes that cost what they write: adds, removes, saves and compaction of a segmented table.

On an n × d float32 table (default 1M × 384, cosine keys) this measures

- 10,000 single-row adds: median and 99th percentile, and the sealing adds (the growing segment
  sealed, maybe merged) on their own; peak extra memory per add (tracemalloc: numpy's buffers);
- 1,000 single-row removes: median and 99th percentile;
- a save after 1,000 adds (the table saved once before): bytes written (every file or folder a
  save creates is new, named by its content; the manifest is replaced);
- search over the segments the merge policy left after the 10,000 adds (before any compact)
  against the same rows compacted into one segment, at n × 1 query and (``--m-rows``) × 256
  queries, interleaved round by round (bench_lookup.timed_rounds), with the bare GEMV / GEMM
  of the same rounds;
- compaction time.

    python benchmarks/bench_writes.py                 # 1M × 384, as docs/format.md reports
    python benchmarks/bench_writes.py --rows 200000 --seal 1024,4096,16384   # the seal-size sweep
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(HERE), str(HERE / "benchmarks")]
from bench_lookup import SETTLE_S, machine, timed_rounds

from softdb import SoftTable
from softdb.table import _segments


def unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d), dtype=np.float32)  # (n, d)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def pct(t: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(t) * 1e3, q)) if t else float("nan")


def adds(table: SoftTable, rows: np.ndarray, tag: str, memory: bool = True) -> dict:
    """Single-row adds: times (s), which sealed, peak extra memory (bytes) per add."""
    times, sealing, peaks = [], [], []
    if memory:
        tracemalloc.start()
    for i in range(len(rows)):
        before = len(table._state.rows.views)
        grow = table._state.rows.views[-1]
        if memory:
            tracemalloc.reset_peak()
            cur = tracemalloc.get_traced_memory()[0]
        t0 = time.perf_counter()
        table.add(rows[i : i + 1], ids=[f"{tag}{i}"])
        dt = time.perf_counter() - t0
        if memory:
            peaks.append(tracemalloc.get_traced_memory()[1] - cur)
        last = table._state.rows.views[-1]
        sealed = not last.growing or last.seg is not grow.seg or len(table._state.rows.views) != before
        (sealing if sealed and i else times).append(dt)
    if memory:
        tracemalloc.stop()
    return {"times": times, "sealing": sealing, "peaks": peaks}


def folder_bytes(path: Path) -> dict[str, int]:
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, path)] = (os.stat(p).st_ino, os.path.getsize(p))
    return out


def written_by_save(table: SoftTable, path: Path) -> tuple[int, int, int]:
    """(bytes written, of which the manifest, files written) by one save: files new or changed since before."""
    before = folder_bytes(path)
    table.save(path)
    after = folder_bytes(path)
    new = {
        k: v
        for k, v in after.items()
        if before.get(k) != v and not (k.endswith(".npy") and v[0] in {b[0] for b in before.values()})
    }
    total = sum(v[1] for v in new.values())
    return total, after["manifest.json"][1], len(new)


def search_ratio(seg: SoftTable, one: SoftTable, q: np.ndarray, repeats: int) -> dict[str, float]:
    keys = np.asarray(one.keys)
    fns = {
        "segments": lambda: seg.search(q, k=10),
        "one segment": lambda: one.search(q, k=10),
        "bare": (lambda: keys @ q[0]) if len(q) == 1 else (lambda: q @ keys.T),
    }
    return timed_rounds(fns, repeats, SETTLE_S)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--m-rows", type=int, default=100_000, help="rows of the 256-query search comparison")
    ap.add_argument("--adds", type=int, default=10_000)
    ap.add_argument("--removes", type=int, default=1_000)
    ap.add_argument("--seal", default=str(_segments.SEAL_ROWS), help="seal sizes (rows), comma-separated")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="adds and searches only (the seal-size sweep)")
    args = ap.parse_args()
    print(machine())
    rng = np.random.default_rng(0)
    n, d = args.rows, args.dim
    base = unit(rng, n, d)  # (n, d)
    new = unit(rng, args.adds + 1000, d)  # (adds + 1000, d)
    q1 = unit(rng, 1, d)  # (1, d)
    q256 = unit(rng, 256, d)  # (256, d)
    row_bytes = d * 4
    for seal in [int(s) for s in args.seal.split(",")]:
        _segments.SEAL_ROWS = seal
        print(f"\n== {n:,} x {d} float32 cosine, SEAL_ROWS={seal}, MERGE_FACTOR={_segments.MERGE_FACTOR}")
        t = SoftTable(base, ids=np.arange(n), metric="cosine")
        gc.collect()
        a = adds(t, new[: args.adds], "n", memory=not args.quick)
        allt = a["times"] + a["sealing"]
        print(
            f"{args.adds:,} single adds: median {pct(allt, 50):.3f} ms, p99 {pct(allt, 99):.3f} ms, "
            f"max {pct(allt, 100):.1f} ms; {len(a['sealing'])} sealing adds: "
            f"{', '.join(f'{x * 1e3:.1f}' for x in sorted(a['sealing'])[-5:])} ms (largest 5)"
        )
        if a["peaks"]:
            pk = np.asarray(a["peaks"])
            print(
                f"peak extra memory per add: median {np.median(pk) / 1024:.1f} KiB, p99 "
                f"{np.percentile(pk, 99) / 1024:.1f} KiB (a row is {row_bytes / 1024:.1f} KiB; "
                f"a sealing add copies at most SEAL_ROWS rows: {seal * row_bytes / 2**20:.1f} MiB)"
            )
        views = t._state.rows.views
        print(f"segments after the adds: {len(views)} ({[v.n for v in views]})")
        one = SoftTable(np.concatenate([base, new[: args.adds]]), ids=list(t.ids), metric="cosine")
        r1 = search_ratio(t, one, q1, args.repeats)
        print(
            f"search, {len(t):,} rows x 1 query: segments {r1['segments']:.2f} ms, one segment "
            f"{r1['one segment']:.2f} ms, ratio {r1['segments'] / r1['one segment']:.3f}; bare GEMV "
            f"{r1['bare']:.2f} ms (one segment / GEMV {r1['one segment'] / r1['bare']:.2f}, "
            f"segments / GEMV {r1['segments'] / r1['bare']:.2f})"
        )
        del one
        gc.collect()
        m = args.m_rows
        tm = SoftTable(base[:m], ids=np.arange(m), metric="cosine")
        adds(tm, new[: args.adds], "n", memory=False)
        onem = SoftTable(np.concatenate([base[:m], new[: args.adds]]), ids=list(tm.ids), metric="cosine")
        r2 = search_ratio(tm, onem, q256, max(3, args.repeats // 3))
        print(
            f"search, {len(tm):,} rows x 256 queries: segments {r2['segments']:.1f} ms, one segment "
            f"{r2['one segment']:.1f} ms, ratio {r2['segments'] / r2['one segment']:.3f}; bare GEMM "
            f"{r2['bare']:.1f} ms (one segment / GEMM {r2['one segment'] / r2['bare']:.2f}, segments / GEMM "
            f"{r2['segments'] / r2['bare']:.2f}); segments: {len(tm._state.rows.views)}"
        )
        del tm, onem
        gc.collect()
        if args.quick:
            continue
        ids = list(t.ids)
        pick = rng.choice(len(ids), size=args.removes, replace=False)
        times = []
        for i in pick:
            t0 = time.perf_counter()
            t.remove([ids[i]])
            times.append(time.perf_counter() - t0)
        print(f"{args.removes:,} single removes: median {pct(times, 50):.3f} ms, p99 {pct(times, 99):.3f} ms")
        folder = Path(tempfile.mkdtemp(prefix="softdb-bench-writes-", dir=os.environ.get("BENCH_TMP")))
        try:
            path = folder / "t"
            t0 = time.perf_counter()
            t.save(path)
            first = time.perf_counter() - t0
            adds(t, new[args.adds : args.adds + 1000], "m", memory=False)
            t0 = time.perf_counter()
            total, manifest, files = written_by_save(t, path)
            second = time.perf_counter() - t0
            new_rows = 1000 * (row_bytes + 0)
            print(
                f"save after 1,000 adds: wrote {total:,} bytes in {files} files ({second * 1e3:.0f} ms) = "
                f"{(total - manifest) / new_rows:.2f} x the new rows' {new_rows:,} key bytes + the manifest "
                f"({manifest:,} bytes); the first save wrote the whole table in {first:.1f} s"
            )
            t0 = time.perf_counter()
            rep = t.compact()
            print(
                f"compact: {rep.segments_before} segments -> {rep.segments_after}, {rep.rows_dropped:,} rows "
                f"dropped, {rep.seconds:.2f} s ({time.perf_counter() - t0:.2f} s wall)"
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
