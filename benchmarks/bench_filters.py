#!/usr/bin/env python
"""Filtered search (``where=``) against the unfiltered search, the bare GEMM and peers, in one process.

Data: n random unit float32 keys (seeded; random, not real embeddings: every query's best
scores are alike), each row's payload ``{"bucket": b}`` with b uniform in 0..99, so
``{"bucket": 0}`` passes 1% of the rows and ``{"bucket": {"$lt": 50}}`` 50%. For 1 and 256
queries, k = 10, it times (median of ``--repeats`` rounds, bench_lookup.timed_rounds):

- bare GEMM / GEMV: ``Q @ Kᵀ`` over every row, in the kernel's chunks (no softmax, no top-k);
- softdb's search without a filter, and with each filter (the prefilter scores only the passing
  rows when few pass; the mask path scores all and masks);
- a numpy post-filter: score every row, set the failing ones to -inf, argpartition the top k;
- hnswlib's filtered search (``knn_query(filter=callable)``), the index built once with
  ``--hnsw-m`` / ``--hnsw-ef-construction`` and cached in ``--cache`` (outside the repository),
  with its recall@10 against the exact filtered top-10;
- building the filter's mask over every row (the payload columns built once, beforehand).

    python benchmarks/bench_filters.py                 # 1M × 384 (the hnswlib build takes minutes once)
    python benchmarks/bench_filters.py --rows 100000   # a quick run
    python benchmarks/bench_filters.py --rows 200000 --sweep   # the prefilter's switch point
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(HERE), str(HERE / "benchmarks")]
from bench_lookup import machine, timed_rounds

from softdb import SoftTable
from softdb.table import _prefilter
from softdb.table._columns import where_mask

K = 10
FILTERS = {"1%": {"bucket": 0}, "50%": {"bucket": {"$lt": 50}}}
CHUNK = 16384


def unit_rows(rng: np.random.Generator, n: int, d: int, step: int = 1 << 17) -> np.ndarray:
    out = np.empty((n, d), np.float32)  # (n, d)
    for a in range(0, n, step):
        x = rng.standard_normal((min(step, n - a), d), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[a : a + len(x)] = x
    return out


def bare_gemm(q: np.ndarray, keys: np.ndarray, buf: np.ndarray) -> None:
    """Q @ Kᵀ over every row (one query: one GEMV K q), chunk by chunk into one buffer: scoring alone."""
    if len(q) == 1:
        np.matmul(keys, q[0], out=buf[0])  # (n,)
        return
    for a in range(0, len(keys), CHUNK):
        b = min(a + CHUNK, len(keys))
        np.matmul(q, keys[a:b].T, out=buf[:, : b - a])  # (m, c)


def post_filter(q: np.ndarray, keys: np.ndarray, allowed: np.ndarray, block: int = 32) -> np.ndarray:
    """numpy: score every row, mask, top-k (queries in blocks, so memory stays ~ block × n)."""
    out = np.empty((len(q), K), np.int64)
    for a in range(0, len(q), block):
        s = q[a : a + block] @ keys.T  # (b, n)
        s[:, ~allowed] = -np.inf
        top = np.argpartition(-s, K, axis=1)[:, :K]  # (b, k)
        order = np.argsort(-np.take_along_axis(s, top, 1), axis=1, kind="stable")
        out[a : a + block] = np.take_along_axis(top, order, 1)
    return out


def hnsw_index(keys: np.ndarray, m: int, efc: int, cache: Path, seed: int) -> tuple[object, float | None]:
    import hnswlib

    n, d = keys.shape
    path = cache / f"hnsw-unit-{n}x{d}-seed{seed}-M{m}-efc{efc}.bin"
    index = hnswlib.Index(space="ip", dim=d)
    if path.exists():
        index.load_index(str(path), max_elements=n)
        return index, None
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    index.init_index(max_elements=n, M=m, ef_construction=efc, random_seed=seed)
    index.add_items(keys, np.arange(n), num_threads=os.cpu_count() or 1)
    built = time.perf_counter() - t0
    index.save_index(str(path))
    return index, built


def recall(got: np.ndarray, want: np.ndarray) -> float:
    hits = [len(set(g[g >= 0].tolist()) & set(w[w >= 0].tolist())) for g, w in zip(got, want)]
    return float(np.sum(hits)) / max(1, int((want >= 0).sum()))


def sweep(t: SoftTable, rng: np.random.Generator, d: int, repeats: int, pause: float, shares: list[float]) -> None:
    """Mask path vs prefilter path at several shares of passing rows: where the switch belongs."""
    n = len(t)
    print(f"\nswitch point: search k={K} over {n:,} rows, ms (median of {repeats}); mask path vs prefilter path")
    print(f"{'queries':>7} {'passing':>8} {'mask':>9} {'prefilter':>10} {'prefilter/mask':>15}")
    for m in (1, 16, 256):
        q = unit_rows(rng, m, d)
        for share in shares:
            allowed = np.zeros(n, bool)
            allowed[rng.choice(n, int(share * n), replace=False)] = True

            def forced(v: float, q: np.ndarray = q, allowed: np.ndarray = allowed) -> object:
                old = _prefilter.PREFILTER_BELOW, _prefilter.PREFILTER_BELOW_MANY
                _prefilter.PREFILTER_BELOW = _prefilter.PREFILTER_BELOW_MANY = v
                try:
                    return t.search(q, k=K, mask=allowed)
                finally:
                    _prefilter.PREFILTER_BELOW, _prefilter.PREFILTER_BELOW_MANY = old

            ms = timed_rounds({"mask": lambda: forced(-1.0), "pre": lambda: forced(1.0)}, repeats, pause)
            print(f"{m:>7} {share:>8.0%} {ms['mask']:>9.2f} {ms['pre']:>10.2f} {ms['pre'] / ms['mask']:>15.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", default="1,256")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pause", type=float, default=0.2)
    ap.add_argument("--hnsw-m", type=int, default=16)
    ap.add_argument("--hnsw-ef-construction", type=int, default=100)
    ap.add_argument("--hnsw-ef", type=int, default=256, help="hnswlib's ef at query time")
    ap.add_argument("--hnsw-queries", type=int, default=32, help="at most this many queries for hnswlib (slow filter)")
    ap.add_argument("--no-hnsw", action="store_true")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "softdb-bench")
    ap.add_argument("--sweep", action="store_true", help="time the prefilter's switch point instead")
    ap.add_argument("--shares", default="0.05,0.15,0.25,0.35,0.5,0.7,0.9", help="with --sweep: shares passing")
    ap.add_argument("--build-index-only", action="store_true", help="build and cache hnswlib's index, then stop")
    args = ap.parse_args()
    n, d, seed = args.rows, args.dim, 0
    print(machine())
    print(f"{n:,} random unit float32 keys × {d}; payload {{'bucket': 0..99}}; k = {K}")
    rng = np.random.default_rng(seed)
    keys = unit_rows(rng, n, d)
    if args.build_index_only:
        _, built = hnsw_index(keys, args.hnsw_m, args.hnsw_ef_construction, args.cache, seed)
        print("hnswlib index", "cached already" if built is None else f"built in {built:.0f} s")
        return
    bucket = np.random.default_rng(1).integers(0, 100, n)
    t0 = time.perf_counter()
    t = SoftTable(keys, payloads=[{"bucket": int(b)} for b in bucket], temperature=0.05)
    print(f"table built in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    where_mask(t._state.rows, FILTERS["1%"])  # builds the payload columns once
    print(f"payload columns built in {time.perf_counter() - t0:.2f} s (once per segment)")
    qrng = np.random.default_rng(2)
    if args.sweep:
        sweep(t, qrng, d, args.repeats, args.pause, [float(x) for x in args.shares.split(",")])
        return
    allowed = {name: where_mask(t._state.rows, f) for name, f in FILTERS.items()}  # (n,) each
    for name, a in allowed.items():
        print(f"filter {name}: {FILTERS[name]} passes {a.mean():.2%} of the rows")
    index = None
    if not args.no_hnsw:
        index, built = hnsw_index(keys, args.hnsw_m, args.hnsw_ef_construction, args.cache, seed)
        how = f"built in {built:.0f} s" if built is not None else "loaded from the cache"
        print(f"hnswlib {how}: M={args.hnsw_m}, ef_construction={args.hnsw_ef_construction}, ef={args.hnsw_ef}")
        index.set_ef(max(args.hnsw_ef, K))  # type: ignore[attr-defined]
        index.set_num_threads(1)  # type: ignore[attr-defined]  # a Python filter holds the GIL anyway

    mask_ms = timed_rounds({name: (lambda f=f: where_mask(t._state.rows, f)) for name, f in FILTERS.items()}, 9, 0.0)
    print(f"\nbuilding the filter's mask over {n:,} rows: " + ", ".join(f"{k} {v:.2f} ms" for k, v in mask_ms.items()))

    for m in (int(x) for x in args.queries.split(",")):
        q = unit_rows(qrng, m, d)  # (m, d)
        buf = np.empty((m, n if m == 1 else CHUNK), np.float32)
        fns = {
            "bare GEMM/GEMV (all rows)": lambda q=q, buf=buf: bare_gemm(q, keys, buf),
            "softdb search": lambda q=q: t.search(q, k=K),
        }
        for name, f in FILTERS.items():
            fns[f"softdb where {name}"] = lambda q=q, f=f: t.search(q, k=K, where=f)
            fns[f"numpy post-filter {name}"] = lambda q=q, a=allowed[name]: post_filter(q, keys, a)
        ms = timed_rounds(fns, args.repeats, args.pause)
        extra: dict[str, tuple[float, float]] = {}
        if index is not None:
            mh = min(m, args.hnsw_queries)
            for name in FILTERS:
                a = allowed[name]
                exact = t.search(q[:mh], k=K, where=FILTERS[name]).rows  # (mh, k)
                t0 = time.perf_counter()
                labels, _ = index.knn_query(q[:mh], k=K, filter=lambda i, a=a: bool(a[i]))  # type: ignore[attr-defined]
                took = (time.perf_counter() - t0) * 1000 * m / mh
                extra[f"hnswlib filter= {name}"] = (took, recall(labels.astype(np.int64), exact))
            exact = t.search(q[:mh], k=K).rows
            t0 = time.perf_counter()
            labels, _ = index.knn_query(q[:mh], k=K)  # type: ignore[attr-defined]
            extra["hnswlib (no filter)"] = ((time.perf_counter() - t0) * 1000 * m / mh, recall(labels, exact))
        base, gemm = ms["softdb search"], ms["bare GEMM/GEMV (all rows)"]
        print(f"\n{m} quer{'y' if m == 1 else 'ies'}, k={K}: ms (median of {args.repeats}), ratios")
        print(f"{'':28} {'ms':>10} {'/ search':>9} {'/ GEMM':>8} {'recall@10':>10}")
        for name, v in ms.items():
            print(f"{name:28} {v:>10.2f} {v / base:>9.3f} {v / gemm:>8.3f} {'1.000':>10}")
        for name, (v, r) in extra.items():
            note = "" if m <= args.hnsw_queries else f"  (from {args.hnsw_queries} queries)"
            print(f"{name:28} {v:>10.2f} {v / base:>9.3f} {v / gemm:>8.3f} {r:>10.3f}{note}")


if __name__ == "__main__":
    main()
