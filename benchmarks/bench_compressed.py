"""Compressed keys: exact top-10 from int8 keys against the fp32 GEMM/GEMV of the same run, and peers.

    python benchmarks/bench_compressed.py                 # 1M x 1 query and 100k x 256 queries, d = 384
    python benchmarks/bench_compressed.py --quick         # small sizes (a smoke run)

One process. For each data set (random unit vectors; SciFact encoded with MiniLM, from
softdb's embedding cache, tiled to the row count: copy c of document i is the document's
unit vector plus Gaussian noise of norm ≈ 0.1, renormalised, copy 0 the document itself)
and each shape it times, median of --repeats after a warm-up:

- the bare fp32 GEMV / GEMM (numpy, OpenBLAS): the unit of every ratio;
- softdb's fp32 ``SoftTable.search(k=10)``;
- the exact top-10 from int8 keys: ``SoftTable.compress("int8").search`` when the table
  has ``compress``, and the _lowp pipeline of benchmarks/_int8_search.py (int8 scores by
  the auto backend, a candidate bound, fp32 rescoring), with the rows rescored per query;
- peers, each with its recall@10 against the fp32 top-10: FAISS ``IndexScalarQuantizer``
  SQ8 + ``IndexRefineFlat``, torch bf16 ``mm`` + ``topk``, numkong int8 dots + top-10
  (no rescoring), usearch exact int8 search;
- the low-precision kernels alone (``dot_int8`` / ``dot_bf16`` per backend, 1 and 2
  threads): the measurement behind ``_lowp``'s automatic choice;
- the memory of the fp32, int8 and bf16 keys;
- benchmarks/bench_explain.py's rows, if that file exists (imported by path).

It prints the CPU model and the SIMD paths that ran (numkong's capabilities, torch's CPU capability).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time
from collections.abc import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _int8_search import Int8Keys

from softdb import SoftTable
from softdb.engine._lowp import backend_for, dot_bf16, dot_int8, quantize_int8, to_bf16
from softdb.engine._lowp_simd import capabilities

SCIFACT = "/work/shared/data/beir/scifact"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def median_time(fn: Callable[[int], object], repeats: int) -> float:
    """The time of fn: the median of ``repeats`` runs after a warm-up, or with --best the fastest run.

    On a machine shared with other jobs (load far above the core count) the fastest run is
    the one least disturbed, and the ratios of fastest runs are the steadier figures.
    """
    fn(0)  # warm-up
    ts = []
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(i)
        ts.append(time.perf_counter() - t0)
    return float(np.min(ts) if BEST else np.median(ts))


BEST = False


def recall(ids: np.ndarray, ref: np.ndarray) -> float:
    ids, ref = np.atleast_2d(ids), np.atleast_2d(ref)
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / len(b) for a, b in zip(ids, ref)]))


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def random_data(n: int, m: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return unit(rng.standard_normal((n, d), dtype=np.float32)), unit(rng.standard_normal((m, d), dtype=np.float32))


def scifact_data(n: int, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from softdb.text import beir_corpus, beir_queries, default_encoder

    enc = default_encoder()
    docs = unit(np.asarray(enc.encode(beir_corpus(SCIFACT).texts), np.float32))  # (5183, 384)
    queries = beir_queries(SCIFACT, "test").texts
    qv = unit(np.asarray(enc.encode(list(queries)), np.float32))  # (300, 384)
    rng = np.random.default_rng(seed)
    copies = -(-n // len(docs))
    keys = np.empty((copies * len(docs), docs.shape[1]), np.float32)
    for c in range(copies):  # one copy of the corpus per step: (5183, 384) at a time
        block = docs if c == 0 else docs + rng.standard_normal(docs.shape, dtype=np.float32) * np.float32(0.1 / 19.6)
        keys[c * len(docs) : (c + 1) * len(docs)] = unit(block)
    return keys[:n], np.resize(qv, (m, qv.shape[1]))


def time_methods(name: str, keys: np.ndarray, queries: np.ndarray, repeats: int, k: int = 10) -> list[str]:
    """Every method on one data set and shape; returns the table's rows (markdown)."""
    import faiss
    import numkong as nk
    import torch
    from usearch.index import MetricKind
    from usearch.index import search as usearch_search

    n, d = keys.shape
    m = queries.shape[0]
    one = m == 1
    qs = [queries[i % m][None] for i in range(repeats + 1)] if one else None

    def q_of(i: int) -> np.ndarray:
        return qs[i] if qs is not None else queries

    rows: list[str] = []
    from threadpoolctl import threadpool_limits

    def bare(i: int) -> object:
        return keys @ q_of(i)[0] if one else q_of(i) @ keys.T

    # the unit: the faster of BLAS's own threads and one BLAS thread (two BLAS threads wait on
    # each other when the cores are shared: the slower one would flatter every ratio)
    t_ref = median_time(bare, repeats)
    with threadpool_limits(1):
        t_ref = min(t_ref, median_time(bare, repeats))
    unit_name = "GEMV" if one else "GEMM"

    table = SoftTable(keys, metric="dot")
    exact = {i: table.search(q_of(i), k=k) for i in range(repeats + 1)} if one else {0: table.search(queries, k=k)}

    def ref_ids(i: int) -> np.ndarray:
        return np.atleast_2d(exact[i if one else 0].ids)

    def add(method: str, t: float, rec: float | None, extra: str = "") -> None:
        rec_s = "" if rec is None else f"{rec:.3f}"
        rows.append(f"| {name} | {method} | {t * 1e3:.1f} ms | {t / t_ref:.2f}× | {rec_s} | {extra} |")
        print(rows[-1], flush=True)

    add(f"fp32 {unit_name} (numpy)", t_ref, None)
    add("softdb search, fp32", median_time(lambda i: table.search(q_of(i), k=k), repeats), 1.0)

    if hasattr(table, "compress"):
        for precision in ("int8", "bf16"):
            t0 = time.perf_counter()
            ct = table.compress(precision)
            build = time.perf_counter() - t0
            certs = {}

            def run_ct(i: int, ct: object = ct, certs: dict = certs) -> None:
                certs[i] = ct.search(q_of(i), k=k)  # type: ignore[attr-defined]

            t = median_time(run_ct, repeats)
            got = certs[0]
            rescored = np.concatenate([np.atleast_1d(c.certificate.rescored) for c in certs.values()])
            fallbacks = int(sum(np.sum(c.certificate.fallback) for c in certs.values()))
            same = all(
                np.array_equal(np.atleast_2d(c.ids), np.atleast_2d(exact[i if one else 0].ids))
                and np.array_equal(np.atleast_2d(c.scores), np.atleast_2d(exact[i if one else 0].scores))
                for i, c in certs.items()
            )
            add(
                f'softdb compress("{precision}").search (certified)',
                t,
                recall(np.atleast_2d(got.ids), ref_ids(0)),
                f"rescored/query median {int(np.median(rescored))}, max {int(rescored.max())}; fallbacks "
                f"{fallbacks}; ids and scores identical to fp32 search: {same}; compress {build:.1f} s, "
                f"{ct.nbytes / 1e6:.0f} MB",
            )
            del ct

    t0 = time.perf_counter()
    i8 = Int8Keys(keys)
    build = time.perf_counter() - t0
    res = {}

    def run_i8(i: int) -> None:
        res[i] = i8.search(q_of(i), k=k)

    t = median_time(run_i8, repeats)
    same = np.mean([np.array_equal(np.atleast_2d(res[i][0]), ref_ids(i)) for i in res]) if one else None
    rec = recall(res[0][0], ref_ids(0))
    rescored = np.concatenate([res[i][2] for i in res])
    add(
        f"int8 exact top-{k} (_lowp: {backend_for('int8', m)} + bound + fp32 rescoring)",
        t,
        rec,
        f"rescored/query median {int(np.median(rescored))}, max {int(rescored.max())}; "
        f"ids identical to fp32: {'all' if same is None and rec == 1.0 else same}; build {build:.1f} s",
    )

    # peers ---------------------------------------------------------------------------------
    faiss.omp_set_num_threads(2)
    sq = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    sq.train(keys[: min(n, 100_000)])
    refine = faiss.IndexRefineFlat(sq)
    refine.add(keys)
    got = {}

    def run_faiss(i: int) -> None:
        got[i] = refine.search(q_of(i), k)[1]

    t = median_time(run_faiss, repeats)
    add(f"FAISS SQ8 + IndexRefineFlat (k_factor {refine.k_factor:g})", t, recall(got[0], ref_ids(0)))

    kb = torch.from_numpy(keys).bfloat16()

    def run_torch(i: int) -> None:
        with torch.inference_mode():
            got[i] = torch.topk(torch.from_numpy(q_of(i)).bfloat16() @ kb.T, k, dim=1).indices.numpy()

    t = median_time(run_torch, repeats)
    add("torch bf16 mm + topk", t, recall(got[0], ref_ids(0)))

    def top_of(s: np.ndarray) -> np.ndarray:
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]  # (m, k)
        return np.take_along_axis(part, np.argsort(-np.take_along_axis(s, part, 1), axis=1), 1)

    def run_nk(i: int) -> None:
        qc, _ = quantize_int8(q_of(i))
        ints = np.asarray(nk.cdist(qc, i8.codes, metric="dot", out_dtype="float32"))  # (m, n) exact integers
        s = np.multiply(ints, i8.scale, dtype=np.float32)
        got[i] = top_of(s)

    t = median_time(run_nk, repeats)
    add("numkong int8 dots + top-10 (per-row scales, no rescoring; 1 thread)", t, recall(got[0], ref_ids(0)))

    g = 127 / float(np.abs(keys).max())
    k8 = np.clip(np.rint(keys * g), -127, 127).astype(np.int8)

    def run_us(i: int) -> None:
        q8 = np.clip(np.rint(q_of(i) * (127 / np.abs(q_of(i)).max())), -127, 127).astype(np.int8)
        got[i] = np.atleast_2d(usearch_search(k8, q8, k, MetricKind.IP, exact=True, threads=2).keys)

    t = median_time(run_us, repeats)
    add("usearch exact int8 (one global scale)", t, recall(got[0], ref_ids(0)))

    print(
        f"memory: fp32 keys {keys.nbytes / 1e6:.0f} MB; int8 keys {i8.nbytes / 1e6:.0f} MB "
        f"(codes {i8.codes.nbytes / 1e6:.0f} MB + scale, ρ and ‖k̃‖ per row); bf16 keys {n * d * 2 / 1e6:.0f} MB"
    )
    return rows


def time_kernels(n: int, m: int, d: int, repeats: int) -> None:
    """dot_int8 / dot_bf16 per backend, 1 and 2 threads: the measurement behind "auto"."""
    import torch
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(2)
    a8, b8 = rng.integers(-127, 128, (m, d), dtype=np.int8), rng.integers(-127, 128, (n, d), dtype=np.int8)
    af, bf = rng.standard_normal((m, d), dtype=np.float32), rng.standard_normal((n, d), dtype=np.float32)
    a16, b16 = to_bf16(af), to_bf16(bf)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        with threadpool_limits(threads):
            t32 = median_time(lambda i: af @ bf.T, repeats)
            cells = [f"fp32 {t32 * 1e3:.1f} ms"]
            for be in ("numpy", "numkong", "torch"):
                t = median_time(lambda i, be=be, th=threads: dot_int8(a8, b8, backend=be, threads=th), repeats)
                cells.append(f"int8 {be} {t / t32:.2f}×")
            for be in ("numpy", "numkong"):
                t = median_time(lambda i, be=be, th=threads: dot_bf16(a16, b16, backend=be, threads=th), repeats)
                cells.append(f"bf16 {be} {t / t32:.2f}×")
            print(f"| {m} × {n} × {d} | {threads} | " + " | ".join(cells) + " |", flush=True)
    torch.set_num_threads(os.cpu_count() or 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows for the one-query shape")
    ap.add_argument("--gemm-rows", type=int, default=100_000, help="rows for the many-query shape")
    ap.add_argument("--queries", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-real", action="store_true", help="skip SciFact (random unit vectors only)")
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    ap.add_argument("--best", action="store_true", help="time = the fastest run, not the median (a shared machine)")
    ap.add_argument("--no-kernels", action="store_true", help="skip the table of kernels alone")
    ap.add_argument("--kernels-only", action="store_true", help="only the table of kernels alone")
    args = ap.parse_args()
    global BEST
    BEST = args.best
    if args.quick:
        args.rows, args.gemm_rows, args.queries, args.repeats = 20_000, 5_000, 16, 2
    import torch

    d = 384
    print(f"CPU: {cpu_model()}; {os.cpu_count()} cores; load {os.getloadavg()[0]:.1f}; numpy {np.__version__}")
    print(f"times: {'fastest' if BEST else 'median'} of {args.repeats} runs after a warm-up")
    print(f"SIMD paths: {capabilities()}; torch threads {torch.get_num_threads()}")
    print(
        f"auto int8 backend: 1 query -> {backend_for('int8', 1)}, {args.queries} -> {backend_for('int8', args.queries)}"
    )
    print("\nkernels alone (time / fp32 numpy of the same threads):")
    print("| shape (m × n × d) | threads | fp32 | int8 numpy | int8 numkong | int8 torch | bf16 numpy | bf16 numkong |")
    if not args.no_kernels:
        time_kernels(args.rows, 1, d, args.repeats)
        time_kernels(args.gemm_rows, args.queries, d, args.repeats)

    if args.kernels_only:
        return
    print("\n| data | method | time | / fp32 GEMV or GEMM | recall@10 | notes |")
    print("|---|---|---|---|---|---|")
    sets = [("random unit", lambda n, m: random_data(n, m, d, 0))]
    if not args.no_real and os.path.isdir(SCIFACT):
        sets.append(("SciFact (MiniLM, tiled)", lambda n, m: scifact_data(n, m, 0)))
    for label, make in sets:
        for n, m in ((args.rows, 1), (args.gemm_rows, args.queries)):
            keys, queries = make(n, m)
            time_methods(f"{label}, {n:,} × {m}", keys, queries, args.repeats)
            del keys, queries

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_explain.py")
    if os.path.exists(path):
        spec = importlib.util.spec_from_file_location("bench_explain", path)
        if spec is not None and spec.loader is not None:
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            print("\nbench_explain.py:")
            if hasattr(mod, "rows"):  # rows(n, d, repeats): one dict per (case, method)
                reps = args.repeats if args.quick else max(args.repeats, getattr(mod, "REPEATS", args.repeats))
                print(f"({reps} rounds; paired: the median over rounds of time / search's time in that round)")
                for r in mod.rows(args.rows, d, reps):
                    paired = f"{r['x_paired']:.2f}× search (paired) | " if "x_paired" in r else ""
                    print(
                        f"| {r['case']} | {r['method']} | {r['ms']:.1f} ms | {paired}{r['x_search']:.2f}× search | "
                        f"{r['x_gemv']:.2f}× GEMV |"
                    )
            elif hasattr(mod, "main"):
                mod.main()
    else:
        print("\n(benchmarks/bench_explain.py is not on this branch: no explain rows)")


if __name__ == "__main__":
    main()
