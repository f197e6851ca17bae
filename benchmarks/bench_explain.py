#!/usr/bin/env python
"""Time ``explain`` against one ``search(k=10)`` and the bare GEMV, for any score scale.

At n rows × d (random unit keys, float32, seeded; a K = V table, as ``from_texts``
builds), one query, in this one process:

- (a) a dot table (τ = 0.05) queried with a vector of norm 2.2: |score / τ| reaches 44,
  beyond the bound (40) under which a softmax needs no running max;
- (b) a cosine table at its default τ (0.05): |score / τ| ≤ 20.

For each it times ``explain(table, q, k=10)`` (top-10 with weights, soft and hard
answers, entropy, effective rows: one pass), ``table.search(q, k=10)``, the bare GEMV
``keys @ q`` into a preallocated output (the practical limit: one read of the keys), and,
to show where explain's time goes, explain's kernel pass alone (the query plan's call,
without building the Explanation), ``lookup`` (the soft answer alone: the compiled loop
with no top-k, hard or entropy) and explain with the compiled loop switched off (numpy's
loop, what the numpy + scipy core does without ``softdb[fast]``). Ratios are to search
and to the GEMV of the same run.

Timing is round-robin (every round runs each method once, in a fresh random order, after
a 0.15 s rest so OpenBLAS's spinning workers of the call before sleep), one warm-up
round, then the median of ``--repeats`` rounds (21 by default). Both explain and search
stream the 1.5 GB of keys from memory, and this machine's memory bandwidth swings by
±30 % from one second to the next (other tenants of the host): the column "paired" is
the median over rounds of each method's time / search's time *in the same round*, which
cancels a slow phase that both met; the ratio of medians is printed beside it.

    python benchmarks/bench_explain.py                 # 1M × 384, the issue's figure
    python benchmarks/bench_explain.py --n 100000 --repeats 5
    python benchmarks/bench_explain.py --breakdown     # also explain's stages, one thread each
    python benchmarks/bench_explain.py --separate-values --n 100000   # lookup with K ≠ V, both loops

Another benchmark prints the same rows with ``from bench_explain import rows, table``.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import time
from collections.abc import Callable

import numpy as np

import softdb
from softdb import SoftTable
from softdb.engine import _fused
from softdb.engine._plan import Ask
from softdb.explain import explain

SEED, K_TOP, TAU, NORM = 0, 10, 0.05, 2.2
#: Timed rounds by default: the medians of 7 rounds swung between runs by more than the target's margin.
REPEATS = 21


def machine() -> str:
    """CPU model, cores, numpy's BLAS, numba's version (the compiled loop) and softdb's."""
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
    numba = "not installed (numpy's loop)"
    if _fused.available():
        import numba as nb

        numba = nb.__version__
    return (
        f"{cpu}, {os.cpu_count()} cores; numpy {np.__version__} ({blas}); numba {numba}; "
        f"Python {platform.python_version()}; softdb {softdb.__version__}"
    )


def timed_rounds(
    fns: dict[str, Callable[[], object]],
    repeats: int,
    pause: float = 0.15,
    raw: dict[str, list[float]] | None = None,
) -> dict[str, float]:
    """Median ms of each function over ``repeats`` rounds, after one untimed round (module docstring).

    ``raw``, if given, receives each function's times (s) round by round.
    """
    names = list(fns)
    times: dict[str, list[float]] = {nm: [] for nm in names}
    shuffle = np.random.default_rng(0)
    for r in range(repeats + 1):  # round 0 is the warm-up
        gc.collect()
        for i in shuffle.permutation(len(names)):
            nm = names[i]
            time.sleep(pause)
            t0 = time.perf_counter()
            fns[nm]()
            if r:
                times[nm].append(time.perf_counter() - t0)
    if raw is not None:
        raw.update(times)
    return {nm: float(np.median(t)) * 1e3 for nm, t in times.items()}


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d), dtype=np.float32)  # (n, d)
    x /= np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]  # (n, d)  unit rows, no (n, d) temporary
    return x


def _no_loop(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` with softdb.engine._fused's compiled loop switched off (numpy's loop)."""

    def run() -> object:
        _fused.ENABLED = False
        try:
            return fn()
        finally:
            _fused.ENABLED = True

    return run


def rows(n: int, d: int, repeats: int = REPEATS) -> list[dict]:
    """Time the two cases at n × d; one dict per (case, method): ms and the ratios.

    Keys of each dict: ``case``, ``method``, ``ms`` (median), ``x_search`` (ms / search's
    ms), ``x_paired`` (the median over rounds of time / search's time in that round) and
    ``x_gemv`` (ms / the bare GEMV's ms).
    """
    keys = _unit(np.random.default_rng([SEED, 1, n, d]), n, d)  # (n, d)
    q = _unit(np.random.default_rng([SEED, 0, d]), 1, d)[0]  # (d,)
    cases = {
        f"dot, ‖q‖ = {NORM}, τ = {TAU}": (SoftTable(keys, metric="dot", temperature=TAU), q * np.float32(NORM)),
        "cosine, default τ": (SoftTable(keys, metric="cosine"), q),
    }
    out: list[dict] = []
    for name, (t, query) in cases.items():
        kk = t.keys  # (n, d)  the table's own rows
        s = np.empty(n, np.float32)  # (n,)

        def plan(t: SoftTable = t, query: np.ndarray = query) -> object:
            return t._answer(query, Ask(soft=True, hard=True, lse=True, stats=True), k=K_TOP).hits()

        fns: dict[str, Callable[[], object]] = {
            "GEMV keys @ q (limit)": lambda kk=kk, query=query, s=s: np.matmul(kk, query, out=s),
            "search(k=10)": lambda t=t, query=query: t.search(query, k=K_TOP),
            "explain(k=10)": lambda t=t, query=query: explain(t, query, k=K_TOP),
            "explain's pass alone": plan,
            "lookup (the soft answer alone)": lambda t=t, query=query: t.lookup(query),
            "explain, numpy loop": _no_loop(lambda t=t, query=query: explain(t, query, k=K_TOP)),
        }
        raw: dict[str, list[float]] = {}
        ms = timed_rounds(fns, repeats, raw=raw)
        base, gemv = ms["search(k=10)"], ms["GEMV keys @ q (limit)"]
        per = np.asarray(raw["search(k=10)"])  # (repeats,)  search's time in each round
        out += [
            {
                "case": name,
                "method": m,
                "ms": v,
                "x_search": v / base,
                "x_paired": float(np.median(np.asarray(raw[m]) / per)),
                "x_gemv": v / gemv,
            }
            for m, v in ms.items()
        ]
        del t
    return out


def breakdown(n: int, d: int, repeats: int = 5) -> dict[str, float]:
    """Where explain's pass spends its time, each stage on one thread (ms, median), case (a).

    The compiled loop over all n rows (score, online softmax, blend); the reductions that
    then run on its n scores (hard, top-10); and, for scale, one thread's GEMV.
    """
    from softdb.engine._config import PassConfig
    from softdb.engine._reductions import Reducer

    keys = _unit(np.random.default_rng([SEED, 1, n, d]), n, d)  # (n, d)
    q = _unit(np.random.default_rng([SEED, 0, d]), 1, d)[0] * np.float32(NORM / TAU)  # (d,)  scaled by 1/τ
    s, o = np.empty(n, np.float32), np.zeros(d, np.float32)  # (n,), (d,)
    cfg = PassConfig(dtype=np.dtype(np.float32), step=n, hard=True, k=K_TOP)

    def loop() -> None:
        o[:] = 0
        _fused.online_blend(keys, q, keys, None, s, o, _fused.fresh())

    def reductions() -> None:
        r = Reducer(1, cfg)
        r.reduce(s[None, :].copy(), 0, 0)
        r.state(0, n)

    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return timed_rounds(
            {
                "compiled loop (score + online softmax + blend)": loop,
                "hard + top-10 on the scores": reductions,
                "GEMV keys @ q, one thread": lambda: np.matmul(keys, q, out=s),
            },
            repeats,
        )


def separate_values(n: int, d: int, repeats: int = 5) -> dict[str, float]:
    """``lookup`` of one query over a table with separate values: compiled loop vs numpy's (ms)."""
    keys = _unit(np.random.default_rng([SEED, 1, n, d]), n, d)  # (n, d)
    values = _unit(np.random.default_rng([SEED, 2, n, d]), n, d)  # (n, d)
    q = _unit(np.random.default_rng([SEED, 0, d]), 1, d)[0]  # (d,)
    out = {}
    for name, t, query in (
        (f"dot, ‖q‖ = {NORM}, τ = {TAU}", SoftTable(keys, values, metric="dot", temperature=TAU), q * np.float32(NORM)),
        ("cosine, default τ", SoftTable(keys, values, metric="cosine"), q),
    ):
        ms = timed_rounds(
            {
                "compiled": lambda t=t, query=query: t.lookup(query),
                "numpy": _no_loop(lambda t=t, query=query: t.lookup(query)),
            },
            repeats,
        )
        out[f"{name}: compiled loop"] = ms["compiled"]
        out[f"{name}: numpy loop"] = ms["numpy"]
    return out


def table(found: list[dict]) -> str:
    """The rows as a markdown table."""
    lines = [
        "| case | method | ms | × search(k=10), paired | × search, ratio of medians | × GEMV |",
        "|---|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['case']} | {r['method']} | {r['ms']:.1f} | {r['x_paired']:.2f}× | {r['x_search']:.2f}× | "
        f"{r['x_gemv']:.2f}× |"
        for r in found
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="rows (default 1M)")
    ap.add_argument("--d", type=int, default=384, help="dimensions (default 384)")
    ap.add_argument("--repeats", type=int, default=REPEATS, help=f"timed rounds (default {REPEATS})")
    ap.add_argument("--breakdown", action="store_true", help="also time explain's stages on one thread")
    ap.add_argument("--separate-values", action="store_true", help="also time lookup with K ≠ V, both loops")
    a = ap.parse_args()
    print(machine())
    print(f"n = {a.n:,}, d = {a.d}, one query, K = V, median of {a.repeats} rounds; target: explain ≤ 1.25× search")
    print(table(rows(a.n, a.d, a.repeats)))
    if a.breakdown:
        print(f"\nexplain's stages, one thread, case (a), n = {a.n:,}:")
        for name, ms in breakdown(a.n, a.d, a.repeats).items():
            print(f"  {name:<50} {ms:8.1f} ms")
    if a.separate_values:
        print(f"\nlookup of one query, separate values (K ≠ V), n = {a.n:,}:")
        for name, ms in separate_values(a.n, a.d, a.repeats).items():
            print(f"  {name:<50} {ms:8.1f} ms")


if __name__ == "__main__":
    main()
