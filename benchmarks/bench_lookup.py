#!/usr/bin/env python
"""Time softdb's soft, hard and top-10 lookups against their limit and real peers.

For every table size n and query count m (d = 384, float32 unit vectors, seeded)
it times, in this one process:

- softdb: ``table.lookup`` (soft), ``table.lookup(mode="hard")``, the kernel's
  top-10 alone, ``table.search(k=10)`` (top-10 plus full-table weights), and, on
  the same keys as a K = V table (a text table, as ``from_texts`` builds), the
  query plan's "explain" (top-10, soft and hard answers, entropy, effective rows:
  one pass; with numba installed, ``softdb[fast]``, its soft answer is the compiled
  loop of softdb/_fused.py, and "explain, numpy loop" is the same call without it)
  and "search --json" (top-10, weights, entropy, effective rows: one pass, as
  ``softdb search --json`` asks it) of the first query;
- (a) the bare GEMMs the lookup needs, into preallocated outputs: Q@K.T, plus W@V
  for soft. This is the practical limit and the denominator of every ratio. For
  hard and top-10 the same scores as K@Q.T are shown too: that orientation is often
  a few per cent faster, and softdb's top-k uses it;
- (b) naive numpy building the full (m, n) score matrix, in float32 and float64;
- (c) ``scipy.special.softmax``;
- (d) ``torch.nn.functional.scaled_dot_product_attention`` on CPU;
- (e) FAISS ``IndexFlatIP`` for hard (k=1) and top-10;
- (f) top-10 with a bare torch ``mm`` + ``topk``, and sentence-transformers'
  ``util.semantic_search`` (its default cosine score).

``--breakdown`` also prints where search(k=10) spends its time (chunked GEMM, exp and
column sums, top-k candidates and merge: each stage on one thread, as one of the
threads of a split pass runs it), and ``--heads-memory N`` the peak extra
memory of a 2-head projected search over N rows (tracemalloc).

Timing is round-robin: each round runs every method once (in a fresh random order,
so no method always follows the same one), so background load hits all methods alike; one
warm-up round, then the median of
``--repeats`` rounds. Each timed call starts after a pause (``--pause``, 0.15 s):
after a multithreaded call, OpenBLAS's idle worker threads spin for about 2^28 TSC
ticks (~0.1 s; OPENBLAS_THREAD_TIMEOUT) and torch's OpenMP workers for a while too,
taking a core from whatever runs next; without the pause each method would be
timed against the spinning leftovers of the one before it. After the rest a call starts
cold (caches, clock speed, sleeping BLAS workers), which would dominate the smallest
lookups: a method whose calls take under 50 ms (``WARM_S``) is called once, untimed,
right before each timed call, so it is timed as in a loop that calls it. Peak extra memory is
measured, not estimated: numpy-based
methods under tracemalloc (numpy reports its buffers to it); torch and FAISS
allocate outside Python, so they run in a child process that resets its RSS
high-water mark (/proc/self/clear_refs) and reports VmHWM - VmRSS.

    python benchmarks/bench_lookup.py                # n = 10k, 100k, 1M; m = 1, 256
    python benchmarks/bench_lookup.py --quick        # smoke run, < 30 s
    python benchmarks/bench_lookup.py --markdown     # also a README-ready table
    python benchmarks/bench_lookup.py --data clustered --sizes 100k --queries 256
                                                     # queries whose best scores differ
    python benchmarks/bench_lookup.py --sizes 100k --queries 256 --breakdown
    python benchmarks/bench_lookup.py --sizes 1M --queries 1 --no-memory  # explain, search --json
    python benchmarks/bench_lookup.py --heads-memory 1M --sizes 10k --queries 1 --no-memory
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy
import scipy.special

import softdb
from softdb import Projection, SoftTable
from softdb.engine import _fused, _parallel
from softdb.engine._kernel import chunk_rows, stream
from softdb.engine._plan import Ask
from softdb.engine._reductions import _column_sums
from softdb.engine._topk import TopK
from softdb.explain import explain
from softdb.table._state import TableState

try:
    import torch
    import torch.nn.functional as F  # noqa: N812 - torch's own spelling
except ImportError:  # pragma: no cover - optional peer
    torch = None
try:
    import faiss
except ImportError:  # pragma: no cover - optional peer
    faiss = None
try:
    from sentence_transformers import util as st_util
except ImportError:  # pragma: no cover - optional peer
    st_util = None

D, K_TOP, SEED = 384, 10, 0
HEADER = f"{'n':>8} {'m':>4}  {'lookup':<6}  {'method':<30} {'ms':>10} {'x limit':>8} {'peak extra MB':>14}"
SOFT_LIMIT, QK_LIMIT = "GEMM Q@K.T + W@V (limit)", "GEMM Q@K.T (limit)"
KQ_GEMM = "GEMM K@Q.T (same scores)"  # the other orientation: often a little faster


# ----------------------------------------------------------------------------- data
def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, D), dtype=np.float32)  # (n, d)
    x /= np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]  # (n, d)  unit rows, no (n, d) temporary
    return x


def clustered_rows(
    rng: np.random.Generator, centers: np.ndarray, n: int, lo: float, hi: float, per_row: bool
) -> np.ndarray:
    """Unit rows near random centers, each cluster (or row) with its own spread in [lo, hi]."""
    pick = rng.integers(0, len(centers), n)  # (n,)
    spread = rng.uniform(lo, hi, n if per_row else len(centers)).astype(np.float32)  # (n,) | (C,)
    x = rng.standard_normal((n, D), dtype=np.float32)  # (n, d)
    x *= (spread if per_row else spread[pick])[:, None] / np.sqrt(D)
    x += centers[pick]
    x /= np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    return x


def make_data(n: int, m: int, kind: str = "random") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded queries (m, d), keys (n, d), values (n, d): the same in every process.

    "random": independent unit vectors, every query's best scores alike. "clustered":
    1,000 topics of differing tightness, queries near a topic at differing distances, so
    some queries' 10th-best scores sit far above others' (as with real sentence embeddings).
    """
    if kind == "clustered":
        centers = unit_rows(np.random.default_rng([SEED, 3]), 1000)  # (1000, d)
        return (
            clustered_rows(np.random.default_rng([SEED, 4]), centers, m, 0.3, 3.0, True),
            clustered_rows(np.random.default_rng([SEED, 5, n]), centers, n, 0.5, 2.0, False),
            unit_rows(np.random.default_rng([SEED, 2, n]), n),
        )
    return (
        unit_rows(np.random.default_rng([SEED, 0]), m),
        unit_rows(np.random.default_rng([SEED, 1, n]), n),
        unit_rows(np.random.default_rng([SEED, 2, n]), n),
    )


# -------------------------------------------------------------------------- methods
class Case:
    """One (n, m) configuration: the data, and each peer's prepared state (built lazily)."""

    def __init__(self, table: SoftTable, queries: np.ndarray) -> None:
        self.table, self.Q = table, queries  # Q: (m, d)
        self.K, self.V = table.keys, table.values  # (n, d) each, read-only views of the table's rows
        self.tau = table.temperature  # √d: the Transformer's (and SDPA's default) scaling
        self._cache: dict[str, object] = {}

    @property
    def kv_table(self) -> SoftTable:
        """The same keys as a K = V table (sharing the arrays, no copy)."""
        return self.get(
            "kv",
            lambda: SoftTable._from_state(
                TableState.build(
                    self.table._state.rows.keys,
                    None,
                    ids=None,
                    payloads=None,
                    metric="dot",
                    temperature=None,
                    unit=True,
                )
            ),
        )

    def get(self, name: str, build: Callable[[], object]) -> object:
        if name not in self._cache:
            self._cache[name] = build()
        return self._cache[name]


def _gemm_qk(c: Case) -> Callable[[], object]:
    S = c.get("S", lambda: np.empty((len(c.Q), len(c.K)), np.float32))  # (m, n)
    return lambda: np.matmul(c.Q, c.K.T, out=S)


def _gemm_kq(c: Case) -> Callable[[], object]:
    S = c.get("ST", lambda: np.empty((len(c.K), len(c.Q)), np.float32))  # (n, m)
    return lambda: np.matmul(c.K, c.Q.T, out=S)


def _gemm_soft(c: Case) -> Callable[[], object]:
    S = c.get("S", lambda: np.empty((len(c.Q), len(c.K)), np.float32))  # (m, n)
    O = np.empty((len(c.Q), c.V.shape[1]), np.float32)  # (m, d_v)
    return lambda: (np.matmul(c.Q, c.K.T, out=S), np.matmul(S, c.V, out=O))


def _naive_soft(dt: type) -> Callable[[Case], Callable[[], object]]:
    def build(c: Case) -> Callable[[], object]:
        Q, K, V = (c.get(f"{a}{dt.__name__}", lambda a=a: getattr(c, a).astype(dt)) for a in "QKV")

        def run() -> np.ndarray:
            s = (Q @ K.T) / c.tau  # (m, n)
            w = np.exp(s - s.max(axis=1, keepdims=True))  # (m, n)
            return (w / w.sum(axis=1, keepdims=True)) @ V  # (m, d_v)

        return run

    return build


def _naive_hard(dt: type) -> Callable[[Case], Callable[[], object]]:
    def build(c: Case) -> Callable[[], object]:
        Q, K, V = (c.get(f"{a}{dt.__name__}", lambda a=a: getattr(c, a).astype(dt)) for a in "QKV")
        return lambda: V[np.argmax(Q @ K.T, axis=1)]  # (m, d_v)

    return build


def _naive_top(dt: type) -> Callable[[Case], Callable[[], object]]:
    def build(c: Case) -> Callable[[], object]:
        Q, K = (c.get(f"{a}{dt.__name__}", lambda a=a: getattr(c, a).astype(dt)) for a in "QK")

        def run() -> tuple[np.ndarray, np.ndarray]:
            s = Q @ K.T  # (m, n)
            idx = np.argpartition(s, -K_TOP, axis=1)[:, -K_TOP:]  # (m, k)
            top = np.take_along_axis(s, idx, axis=1)  # (m, k)
            order = np.argsort(-top, axis=1, kind="stable")  # (m, k)
            return np.take_along_axis(idx, order, 1), np.take_along_axis(top, order, 1)

        return run

    return build


def _scipy_soft(c: Case) -> Callable[[], object]:
    return lambda: scipy.special.softmax((c.Q @ c.K.T) / c.tau, axis=1) @ c.V  # (m, d_v)


def _torch_tensors(c: Case) -> tuple:
    with warnings.catch_warnings():  # the table's arrays are read-only; SDPA only reads them
        warnings.simplefilter("ignore", UserWarning)
        return tuple(torch.from_numpy(a)[None] for a in (c.Q, c.K, c.V))  # (1, m|n, d)


def _torch_sdpa(c: Case) -> Callable[[], object]:
    q, k, v = c.get("torch", lambda: _torch_tensors(c))

    def run() -> object:
        with torch.inference_mode():
            return F.scaled_dot_product_attention(q, k, v)  # (1, m, d_v); scale 1/√d = 1/τ

    return run


def _torch_mm_topk(c: Case) -> Callable[[], object]:
    q, k, _ = c.get("torch", lambda: _torch_tensors(c))

    def run() -> object:
        with torch.inference_mode():
            return torch.topk(torch.mm(q[0], k[0].T), K_TOP, dim=1)  # (m, k) values and indices

    return run


def _st_semantic_search(c: Case) -> Callable[[], object]:
    q, k, _ = c.get("torch", lambda: _torch_tensors(c))
    return lambda: st_util.semantic_search(q[0], k[0], top_k=K_TOP)  # its default: cosine


def _explain(c: Case) -> Callable[[], object]:
    t = c.kv_table
    return lambda: explain(t, c.Q[0], k=K_TOP)


def _explain_numpy(c: Case) -> Callable[[], object]:
    """explain with softdb.engine._fused's compiled loop switched off: what the core alone (numpy) does."""
    t = c.kv_table

    def run() -> object:
        _fused.ENABLED = False
        try:
            return explain(t, c.Q[0], k=K_TOP)
        finally:
            _fused.ENABLED = True

    return run


def _search_json(c: Case) -> Callable[[], object]:
    """What `softdb search --json` computes for a batch of query vectors: one plan call."""
    t = c.kv_table

    def run() -> object:
        p = t._answer(c.Q[:1], Ask(lse=True, stats=True), k=K_TOP)
        hits = p.hits()
        return [
            {
                "hits": [{"id": i, "score": float(s), "weight": float(w)} for i, s, w in zip(*row)],
                "entropy": float(e),
                "effective_rows": float(r),
            }
            for row, e, r in zip(zip(hits.ids, hits.scores, hits.weights), p.answers.entropy, p.answers.effective_rows)
        ]

    return run


def _faiss_index(c: Case) -> object:
    index = faiss.IndexFlatIP(D)
    index.add(np.ascontiguousarray(c.K))  # FAISS keeps its own copy of the keys
    return index


def _faiss_hard(c: Case) -> Callable[[], object]:
    index = c.get("faiss", lambda: _faiss_index(c))
    return lambda: c.V[index.search(c.Q, 1)[1][:, 0]]  # (m, d_v)


def _faiss_top(c: Case) -> Callable[[], object]:
    index = c.get("faiss", lambda: _faiss_index(c))
    return lambda: index.search(c.Q, K_TOP)  # (m, k), (m, k)


# (lookup, method, builder, runtime). The runtime decides how memory is measured.
METHODS: list[tuple[str, str, Callable[[Case], Callable[[], object]], str]] = [
    ("soft", SOFT_LIMIT, _gemm_soft, "numpy"),
    ("soft", "softdb lookup", lambda c: lambda: c.table.lookup(c.Q), "numpy"),
    ("soft", "numpy float32", _naive_soft(np.float32), "numpy"),
    ("soft", "numpy float64", _naive_soft(np.float64), "numpy"),
    ("soft", "scipy.special.softmax", _scipy_soft, "numpy"),
    ("soft", "torch SDPA", _torch_sdpa, "torch"),
    ("hard", QK_LIMIT, _gemm_qk, "numpy"),
    ("hard", KQ_GEMM, _gemm_kq, "numpy"),
    ("hard", "softdb lookup hard", lambda c: lambda: c.table.lookup(c.Q, mode="hard"), "numpy"),
    ("hard", "numpy float32 argmax", _naive_hard(np.float32), "numpy"),
    ("hard", "numpy float64 argmax", _naive_hard(np.float64), "numpy"),
    ("hard", "faiss IndexFlatIP k=1", _faiss_hard, "faiss"),
    ("top10", QK_LIMIT, _gemm_qk, "numpy"),
    ("top10", KQ_GEMM, _gemm_kq, "numpy"),
    ("top10", "softdb kernel top-10", lambda c: lambda: stream(c.Q, c.K, k=K_TOP), "numpy"),
    ("top10", "softdb search k=10 +weights", lambda c: lambda: c.table.search(c.Q, k=K_TOP), "numpy"),
    ("top10", "softdb search k=10, τ=0.05", lambda c: lambda: c.table.search(c.Q, k=K_TOP, temperature=0.05), "numpy"),
    ("top10", "numpy float32 argpartition", _naive_top(np.float32), "numpy"),
    ("top10", "numpy float64 argpartition", _naive_top(np.float64), "numpy"),
    ("top10", "faiss IndexFlatIP k=10", _faiss_top, "faiss"),
    ("top10", "torch mm + topk", _torch_mm_topk, "torch"),
    ("top10", "st util.semantic_search", _st_semantic_search, "st"),
    ("plan", "softdb search k=10 (1 query)", lambda c: lambda: c.kv_table.search(c.Q[0], k=K_TOP), "numpy"),
    ("plan", "softdb explain (1 query)", _explain, "numpy"),
    ("plan", "softdb explain, numpy loop", _explain_numpy, "numpy"),
    ("plan", "softdb search --json (1 query)", _search_json, "numpy"),
]
AVAILABLE = {
    "numpy": True,
    "torch": torch is not None,
    "faiss": faiss is not None,
    "st": torch is not None and st_util is not None,
}
PLAN_BASE = "softdb search k=10 (1 query)"  # the denominator of the plan rows' second ratio


# --------------------------------------------------------------------------- memory
def numpy_peak_mb(fn: Callable[[], object]) -> float:
    """Peak bytes numpy allocates during one call (tracemalloc sees numpy's buffers)."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        out = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
        del out
    finally:
        tracemalloc.stop()
    return peak / 2**20


def _proc_status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def child_memory(runtime: str, n: int, ms: list[int]) -> dict:
    """Runs in a child: RSS high-water above the baseline of each method, per m."""
    q_all, keys, values = make_data(n, max(ms))
    table = SoftTable(keys, values)
    del keys, values
    result: dict[str, dict[str, float]] = {}
    for m in ms:
        case = Case(table, q_all[:m])
        for lookup, name, build, rt in METHODS:
            if rt != runtime or (lookup == "plan" and m != 1):
                continue
            fn = build(case)
            fn()  # lazy initialisation (thread pools, dispatch) is not the method's memory
            gc.collect()
            rss = _proc_status_kb("VmRSS")
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
            out = fn()
            result.setdefault(f"{lookup}/{name}", {})[str(m)] = (_proc_status_kb("VmHWM") - rss) / 1024
            del out
    return result


def measure_child(runtime: str, n: int, ms: list[int]) -> dict | str:
    if not os.path.exists("/proc/self/clear_refs"):
        return "n/a: needs Linux /proc to read the RSS high-water mark"
    cmd = [sys.executable, os.path.abspath(__file__), "--child-memory", runtime, str(n), ",".join(map(str, ms))]
    # every allocation >= 64 kB gets its own mapping, returned to the OS when freed, so a
    # buffer reused from an earlier call still shows in the high-water mark
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)
    if p.returncode:
        return f"n/a: child failed ({(p.stderr.strip().splitlines() or ['?'])[-1][:60]})"
    return json.loads(p.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- timing
#: Rest before each timed call: OpenBLAS's idle workers spin ~2^28 TSC ticks (~0.1 s) after a call.
SETTLE_S = 0.15


def time_case(case: Case, repeats: int, pause: float) -> dict[tuple[str, str], float]:
    """Round-robin timing: every round runs each method once, in a rotated order, each after ``pause`` s."""
    fns: dict[str, tuple[Callable[[], object], str]] = {}
    for lookup, name, build, rt in METHODS:
        if lookup == "plan" and len(case.Q) != 1:
            continue  # one query: explain's use
        if AVAILABLE[rt] and name not in fns:
            fns[name] = (build(case), rt)
    return timed_rounds({nm: fn for nm, (fn, _) in fns.items()}, repeats, pause)


#: Calls shorter than this are timed as the second of two back-to-back calls (module docstring).
WARM_S = 0.05


def timed_rounds(fns: dict[str, Callable[[], object]], repeats: int, pause: float) -> dict[str, float]:
    """Median ms of each function over ``repeats`` rounds (after one untimed round).

    Every round runs each function once, in a fresh random order, after ``pause`` s of rest.
    A function whose first call took under WARM_S is called once more untimed right before
    each timed call, so it is timed warm (as in a loop calling it), not cold after the rest.
    """
    names = list(fns)
    times: dict[str, list[float]] = {nm: [] for nm in names}
    short: dict[str, bool] = {}
    shuffle = np.random.default_rng(0)
    for r in range(repeats + 1):  # round 0 is the warm-up
        gc.collect()
        order = [names[i] for i in shuffle.permutation(len(names))]  # each method after a random other
        for nm in order:
            fn = fns[nm]
            time.sleep(pause)  # OpenBLAS / OpenMP workers of the call before go to sleep (module docstring)
            if short.get(nm):
                fn()  # warm: caches, clocks and this method's own BLAS threads, as in a loop
            t0 = time.perf_counter()
            fn()
            t = time.perf_counter() - t0
            if r:
                times[nm].append(t)
            else:
                short[nm] = t < WARM_S
    return {nm: float(np.median(t)) * 1e3 for nm, t in times.items()}


# -------------------------------------------------------------------------- reporting
def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{blas['name']} {blas.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - older numpy: no dict mode
        blas = "?"
    peers = []
    if torch is not None:
        peers.append(f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    if faiss is not None:
        peers.append(f"faiss {faiss.__version__}")
    if _fused.available():
        import numba

        peers.append(f"numba {numba.__version__} (softdb[fast]: explain's compiled loop)")
    return (
        f"{cpu}, {os.cpu_count()} cores; numpy {np.__version__} ({blas}), scipy {scipy.__version__}, "
        + ", ".join(peers)
        + f"; Python {platform.python_version()}; softdb {softdb.__version__}"
    )


def fmt_ms(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def fmt_mb(x: object) -> str:
    return f"{x:.1f}" if isinstance(x, float) else str(x)


def parse_sizes(text: str) -> list[int]:
    mult = {"k": 10**3, "m": 10**6}
    return [
        int(float(s[:-1]) * mult[s[-1].lower()]) if s[-1].lower() in mult else int(s)
        for s in text.replace(" ", "").split(",")
        if s
    ]


def default_repeats(n: int) -> int:
    return 15 if n <= 10_000 else 7 if n <= 100_000 else 3


def breakdown(table: SoftTable, Q: np.ndarray, repeats: int, pause: float, tau: float = 0.05) -> None:
    """Where search(k=10) spends its time: each stage added to the chunked GEMM, timed round-robin.

    At τ = 0.05 (the cosine default: scores / τ up to ±20 on unit vectors), against the
    bare GEMM and two peers, torch mm + topk and sentence-transformers' semantic_search.
    """
    m, n = Q.shape[0], len(table)
    K = table.keys
    threads = _parallel.threads_for(m, n, None)
    step = chunk_rows(m, n, 4, None, threads)  # the chunk one thread of table.search's split pass uses
    buf = np.empty(m * min(step, n), np.float32)  # (m·step,)
    Qs = Q * np.float32(1 / tau)  # (m, d)

    def stages(upto: int) -> Callable[[], object]:
        def run() -> None:
            top = TopK(m, K_TOP, np.dtype(np.float32))
            for s0 in range(0, n, step):
                s = buf[: m * min(step, n - s0)].reshape(-1, m)  # (c, m)
                np.matmul(K[s0 : s0 + step], Qs.T, out=s)
                if upto >= 1:
                    top.feed_rows(s, s0)
                if upto >= 2:
                    np.exp(s, out=s)
                if upto >= 3:
                    _column_sums(s)
            top.merge()

        return run

    S = np.empty((m, n), np.float32)
    fns = {
        "bare GEMM Q@K.T": lambda: np.matmul(Q, K.T, out=S),
        "chunked GEMM K@Q.T": stages(0),
        "+ top-k candidates and merge": stages(1),
        "+ exp": stages(2),
        "+ column sums (= search kernel)": stages(3),
        "table.search(k=10)": lambda: table.search(Q, k=K_TOP, temperature=tau),
    }
    if torch is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            tq, tk = torch.from_numpy(Q), torch.from_numpy(np.asarray(K))

        def mm_topk() -> object:
            with torch.inference_mode():
                return torch.topk(torch.mm(tq, tk.T), K_TOP, dim=1)

        fns["peer: torch mm + topk"] = mm_topk
        if st_util is not None:
            fns["peer: st util.semantic_search"] = lambda: st_util.semantic_search(tq, tk, top_k=K_TOP)
    names = list(fns)
    med = timed_rounds(fns, repeats, pause)  # ms
    base = med["bare GEMM Q@K.T"] / 1e3
    print(
        f"\nsearch(k=10) breakdown at n = {n}, m = {m}, τ = {tau:g} (stages on one thread, {step} rows per "
        f"chunk; table.search splits the rows over {threads} threads; median of {repeats}, "
        f"load {os.getloadavg()[0]:.1f}):"
    )
    prev = None
    for nm in names:
        t = med[nm] / 1e3
        staged = nm.startswith(("chunked", "+"))
        step_ms = f"  (+{(t - prev) * 1e3:.1f} ms)" if staged and prev is not None else ""
        print(f"  {nm:<34} {t * 1e3:9.1f} ms  {t / base:5.2f}x{step_ms}")
        prev = t if staged else None


def heads_memory(n: int, m: int = 256) -> None:
    """Peak extra memory (tracemalloc) of search(k=10) on a 2-head projected table of n rows."""
    q_all, keys, _ = make_data(n, m)
    table = SoftTable(keys, projection=Projection(D, heads=2, init="random"))
    del keys
    table.search(q_all[:2], k=K_TOP)  # projects the rows once (cached, not part of a search)
    gc.collect()
    mb = numpy_peak_mb(lambda: table.search(q_all, k=K_TOP))
    print(f"\n2-head projected search(k=10): n = {n}, m = {m}, d = {D}: peak extra memory {mb:.1f} MB")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke run (< 30 s)")
    ap.add_argument("--sizes", default="10k,100k,1M", help="table sizes n, e.g. 10k,100k,1M")
    ap.add_argument("--queries", default="1,256", help="query counts m (default 1,256)")
    ap.add_argument("--repeats", type=int, help="timed rounds per size (default 15 / 7 / 3 by n)")
    ap.add_argument("--markdown", action="store_true", help="also print a README-ready table")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    ap.add_argument(
        "--data",
        choices=("random", "clustered"),
        default="random",
        help="random unit vectors (default), or clustered ones whose queries differ in their best scores",
    )
    ap.add_argument("--breakdown", action="store_true", help="also time the stages of search(k=10)")
    ap.add_argument(
        "--pause",
        type=float,
        default=SETTLE_S,
        help=f"seconds of rest before each timed call (default {SETTLE_S}: BLAS workers asleep)",
    )
    ap.add_argument("--heads-memory", help="peak extra memory of a 2-head projected search over this many rows")
    ap.add_argument("--child-memory", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_memory:
        runtime, n, ms = args.child_memory
        print(json.dumps(child_memory(runtime, int(n), [int(x) for x in ms.split(",")])))
        return 0

    sizes, ms = parse_sizes(args.sizes), parse_sizes(args.queries)
    pause = args.pause
    if args.quick:
        sizes, ms, args.repeats, pause = [3_000], [1, 16], args.repeats or 2, 0.0
    print(f"machine: {machine()}")
    print(f"data: {args.data} unit vectors, d = {D}")
    load = os.getloadavg()[0]
    print(
        f"load average at start: {load:.2f}"
        + (
            " (busy: other jobs will slow every method; rerun when quieter)"
            if load > 0.5 * (os.cpu_count() or 1)
            else ""
        )
    )
    for rt in ("torch", "faiss", "st"):
        if not AVAILABLE[rt]:
            print(f'note: {rt} is not installed, its rows are skipped; pip install "softdb[bench]"')
    print(HEADER)
    rows = []  # (n, m, lookup, name, ms, ratio, mb)
    for n in sizes:
        q_all, keys, values = make_data(n, max(ms), args.data)
        table = SoftTable(keys, values)  # copies keys and values: the table owns its rows
        del keys, values
        child_mb = {}
        if not args.no_memory:  # before the peers' copies (float64, FAISS) exist in this process
            for rt in ("torch", "faiss", "st"):
                if AVAILABLE[rt]:
                    child_mb[rt] = measure_child(rt, n, ms)
        for m in ms:
            case = Case(table, q_all[:m])
            t = time_case(case, args.repeats or default_repeats(n), pause)
            if args.breakdown and m > 1:
                breakdown(table, case.Q, args.repeats or default_repeats(n), pause)
            for lookup, name, build, rt in METHODS:
                if name not in t:
                    continue
                if args.no_memory:
                    mb: object = "-"
                elif rt == "numpy":

                    def src(c: Case = case, name: str = name, build: Any = build) -> Any:
                        if name == QK_LIMIT:
                            return np.matmul(c.Q, c.K.T)
                        if name == KQ_GEMM:
                            return np.matmul(c.K, c.Q.T)
                        if name == SOFT_LIMIT:
                            return np.matmul(np.matmul(c.Q, c.K.T), c.V)
                        return build(c)()

                    mb = numpy_peak_mb(src)  # GEMM rows: the (m, n) output they need, allocated
                else:
                    res = child_mb[rt]
                    mb = res if isinstance(res, str) else res.get(f"{lookup}/{name}", {}).get(str(m), "n/a")
                limit = t[SOFT_LIMIT if lookup == "soft" else QK_LIMIT]
                rows.append((n, m, lookup, name, t[name], t[name] / limit, mb))
                extra = f"  ({t[name] / t[PLAN_BASE]:.2f}x search k=10)" if lookup == "plan" else ""
                print(
                    f"{n:>8} {m:>4}  {lookup:<6}  {name:<30} {t[name]:>10.2f} {t[name] / limit:>8.2f} "
                    f"{fmt_mb(mb):>14}{extra}",
                    flush=True,
                )
            del case
            gc.collect()
        del table, q_all
        gc.collect()
    if args.heads_memory:
        heads_memory(parse_sizes(args.heads_memory)[0])
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    if args.markdown:
        print_markdown(rows, sizes, ms)
    return 0


def _short(n: int) -> str:
    return f"{n // 10**6}M" if n % 10**6 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


def print_markdown(rows: list[tuple], sizes: list[int], ms: list[int]) -> None:
    cols = [(n, m) for n in sizes for m in ms]
    big = (sizes[-1], ms[-1])
    print(f"\nMachine: {machine()}.\n")
    print(
        "Median ms (ratio to the bare GEMMs the lookup needs); peak extra memory at the "
        f"largest size, n = {_short(big[0])}, m = {big[1]}.\n"
    )
    print("| lookup | method | " + " | ".join(f"n={_short(n)}, m={m}" for n, m in cols) + " | peak extra MB |")
    print("|---|---|" + "---:|" * (len(cols) + 1))
    seen = []
    for r in rows:
        if (r[2], r[3]) not in seen:
            seen.append((r[2], r[3]))
    cell = {(r[0], r[1], r[2], r[3]): r for r in rows}
    for lookup, name in seen:
        cells = []
        for n, m in cols:
            r = cell.get((n, m, lookup, name))
            cells.append("" if r is None else f"{fmt_ms(r[4])} ({r[5]:.2f}×)")
        r = cell.get((*big, lookup, name))
        print(f"| {lookup} | {name} | " + " | ".join(cells) + f" | {'' if r is None else fmt_mb(r[6])} |")


if __name__ == "__main__":
    sys.exit(main())
