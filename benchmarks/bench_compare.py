#!/usr/bin/env python
"""Compare this checkout's lookups with another commit's, interleaved in one process.

The other commit is exported with ``git archive`` into a temporary folder and
imported under its own module objects, so both versions run on the same data,
round-robin (every round runs each method of both versions once, in a random
order): background load hits them alike. Ratios are to the bare Q@K.T GEMM of the
same round; the last column is this checkout's time over the other's. Timing is
bench_lookup.timed_rounds: a rest (``--pause``) before each timed call, as OpenBLAS's
idle workers spin ~0.1 s after a multithreaded call, and calls under 50 ms timed warm.

    python benchmarks/bench_compare.py --base HEAD~1 --sizes 100k --queries 1,256
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pkgutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(HERE), str(HERE / "benchmarks")]  # this checkout first
from bench_lookup import K_TOP, SETTLE_S, make_data, parse_sizes, timed_rounds


def _import_softdb(root: Path):
    """Import the softdb package found in ``root`` as a fresh module tree.

    Every module of it is imported now, from ``root``: softdb imports some modules lazily,
    inside functions, and those must resolve to this tree's own modules (``_activate``),
    whatever its layout (``softdb._kernel`` before the layers became folders,
    ``softdb.engine._kernel`` after).
    """
    for name in [k for k in sys.modules if k == "softdb" or k.startswith("softdb.")]:
        del sys.modules[name]
    sys.path.insert(0, str(root))
    try:
        import softdb

        for info in pkgutil.walk_packages(softdb.__path__, "softdb.", onerror=lambda name: None):
            if info.name.endswith("__main__"):
                continue
            with contextlib.suppress(ImportError):  # an optional dependency not installed: not timed here
                importlib.import_module(info.name)
    finally:
        sys.path.pop(0)
    mods = {k: v for k, v in sys.modules.items() if k == "softdb" or k.startswith("softdb.")}
    return softdb, mods


def _activate(mods: dict) -> None:
    """Make ``mods`` the softdb in sys.modules (lazy imports inside softdb resolve through it)."""
    for name in [k for k in sys.modules if (k == "softdb" or k.startswith("softdb.")) and k not in mods]:
        del sys.modules[name]
    sys.modules.update(mods)


def methods(sd, Q, K, V) -> dict:
    t = sd.SoftTable(K, V)
    kv = sd.SoftTable(K)
    kernel = sys.modules.get("softdb.engine._kernel") or sys.modules["softdb._kernel"]  # after / before the move
    stream = kernel.stream
    out = {
        "lookup soft": lambda: t.lookup(Q),
        "lookup hard": lambda: t.lookup(Q, mode="hard"),
        "kernel top-10": lambda: stream(Q, t.keys, k=K_TOP),
        "search k=10": lambda: t.search(Q, k=K_TOP),
        "weights": lambda: t.weights(Q) if len(K) * len(Q) <= 30_000_000 else None,
        "explain (K=V, 1 query)": lambda: kv.explain(Q[0], k=K_TOP),
    }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="HEAD~1", help="the commit to compare with (default HEAD~1)")
    ap.add_argument("--sizes", default="100k")
    ap.add_argument("--queries", default="1,256")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--pause", type=float, default=SETTLE_S, help="seconds of rest before each timed call")
    ap.add_argument("--methods", help="comma-separated substrings: time only the methods whose name has one")
    args = ap.parse_args(argv)
    rev = subprocess.run(
        ["git", "-C", str(HERE), "rev-parse", "--short", args.base], capture_output=True, text=True, check=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(HERE), "archive", rev, "softdb"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        base_sd, base_mods = _import_softdb(Path(tmp))
        head_sd, head_mods = _import_softdb(HERE)
        print(f"base {rev} vs this checkout; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        print(
            f"{'n':>8} {'m':>4}  {'method':<24} {'base ms':>9} {'x GEMM':>7} {'head ms':>9} {'x GEMM':>7} "
            f"{'head/base':>9}"
        )
        for n in parse_sizes(args.sizes):
            for m in parse_sizes(args.queries):
                Q, K, V = make_data(n, m)
                S = np.empty((m, n), np.float32)
                fns = {("gemm", "Q@K.T"): lambda Q=Q, K=K, S=S: np.matmul(Q, K.T, out=S)}
                for tag, sd, mods in (("base", base_sd, base_mods), ("head", head_sd, head_mods)):
                    _activate(mods)
                    for name, fn in methods(sd, Q, K, V).items():
                        if args.methods and not any(w in name for w in args.methods.split(",")):
                            continue
                        # lazy imports inside softdb resolve through sys.modules: give each its own
                        fns[(tag, name)] = lambda fn=fn, mods=mods: (_activate(mods), fn())
                keys = list(fns)
                med = {key: ms / 1e3 for key, ms in timed_rounds(fns, args.repeats, args.pause).items()}
                g = med[("gemm", "Q@K.T")]
                for name in [k[1] for k in keys if k[0] == "head"]:
                    b, h = med[("base", name)], med[("head", name)]
                    print(
                        f"{n:>8} {m:>4}  {name:<24} {b * 1e3:>9.1f} {b / g:>7.2f} {h * 1e3:>9.1f} {h / g:>7.2f} "
                        f"{h / b:>9.2f}",
                        flush=True,
                    )
        print(f"load average at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
