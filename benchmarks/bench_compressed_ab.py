"""Before/after in one process: the certified int8 search with an older revision's bookkeeping.

    python benchmarks/bench_compressed_ab.py --before 1ea88ff --rows 100000 --queries 256
    python benchmarks/bench_compressed_ab.py --before 1ea88ff --rows 1000000 --queries 1 --rounds 7

``--before`` names a git revision; its ``softdb/engine/_certstate.py``, ``_compressed.py`` and
``_lowp_simd.py`` (via ``git show``) replace this tree's in ``softdb.engine._certified`` for the
"before" runs, alternating with this tree's ("after") over ``--rounds`` rounds, each round also
timing the bare fp32 GEMV/GEMM. Random unit vectors, a cosine table, d = 384, k = 10, as in
bench_compressed.py. Prints the fastest and median times, the main thread's CPU time, the ratio
of the fastest run to the fastest bare product, and checks both answers against the fp32 search.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from types import ModuleType

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_compressed import cpu_model, random_data

import softdb.engine._certified as certified
import softdb.engine._certjit as certjit
import softdb.engine._certstate as certstate
import softdb.engine._compressed as compressed
import softdb.engine._lowp_simd as lowp_simd
from softdb import SoftTable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def old_module(rev: str, name: str, folder: str) -> ModuleType:
    """softdb/engine/<name>.py at ``rev``, imported under a private name."""
    text = subprocess.run(
        ["git", "-C", ROOT, "show", f"{rev}:softdb/engine/{name}.py"], check=True, capture_output=True, text=True
    ).stdout
    path = os.path.join(folder, f"{name}_before.py")
    with open(path, "w") as f:
        f.write(text)
    spec = importlib.util.spec_from_file_location(f"{name}_before", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="1ea88ff", help="git revision of the 'before' bookkeeping")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-jit", action="store_true", help="'after' without the compiled chunk pass")
    args = ap.parse_args()
    n, m = args.rows, args.queries
    keys, queries = random_data(n, max(m, 8), 384, 0)
    queries = queries[:m]
    table = SoftTable(keys, metric="cosine")
    ct = table.compress("int8")
    new_i8 = lowp_simd.int8_torch
    with tempfile.TemporaryDirectory() as tmp:
        old = {name: old_module(args.before, name, tmp) for name in ("_certstate", "_compressed", "_lowp_simd")}

    def use(before: bool) -> None:
        certified.CertState = (old["_certstate"] if before else certstate).CertState  # type: ignore[misc]
        mod = old["_compressed"] if before else compressed
        for name in ("chunk_scores", "chunk_max_bound", "cell_bounds", "chunk_bounds"):
            setattr(certified, name, getattr(mod, name))
        lowp_simd.int8_torch = old["_lowp_simd"].int8_torch if before else new_i8
        certjit.ENABLED = not before and not args.no_jit  # the compiled chunk pass is "after"'s only

    times: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    bare = []
    for _ in range(args.rounds + 1):  # the first round warms up
        t0 = time.perf_counter()
        _ = keys @ queries[0] if m == 1 else queries @ keys.T
        bare.append(time.perf_counter() - t0)
        for before in (True, False):
            use(before)
            w0, c0 = time.perf_counter(), time.thread_time()
            ct.search(queries, k=10)
            times[before].append((time.perf_counter() - w0, time.thread_time() - c0))
    ref = table.search(queries, k=10)
    unit = "GEMV" if m == 1 else "GEMM"
    print(f"{cpu_model()}; {n:,} x {m}, d = 384, k = 10; bare fp32 {unit} {min(bare[1:]) * 1e3:.1f} ms")
    for before in (True, False):
        use(before)
        got = ct.search(queries, k=10)
        same = np.array_equal(got.rows, ref.rows) and np.array_equal(got.scores, ref.scores)
        w = np.array(times[before][1:])
        print(
            f"{'before' if before else 'after '}: fastest {w[:, 0].min() * 1e3:.0f} ms, "
            f"median {np.median(w[:, 0]) * 1e3:.0f} ms, "
            f"main-thread CPU {w[:, 1].min() * 1e3:.0f} ms, {w[:, 0].min() / min(bare[1:]):.2f}x the bare product; "
            f"rescored/query {got.certificate.rescored.mean():.1f}; identical to fp32 search: {same}"
        )
    use(False)


if __name__ == "__main__":
    main()
