"""Beyond memory, again, through the library: ShardedTable.compress("int8") against today's fp32 search.

    python benchmarks/bench_beyond_memory_int8.py --rows 21000000 --dir /big/disk/bm   # then delete /big/disk/bm

1. builds exactly the table of bench_beyond_memory.py (``DIR/emb.npy``: rows x 384 float32,
   seed 0, written chunk by chunk; ``ShardedTable.create(DIR/table, ..., shards=4)``; emb.npy
   deleted), or reuses ``DIR/table`` with ``--reuse``;
2. opens it on the same 2-worker LocalCluster and answers the same 256 queries (seed 1) with
   the fp32 ``search(k=10)``, twice (every worker streams its shards' fp32 keys from disk);
3. ``t.compress("int8")``: each worker compresses the shards it holds (reading their fp32 keys
   once) and keeps the int8 keys in its memory, the fp32 keys staying memory-mapped for
   rescoring; the time to compress is printed;
4. answers the same queries with the compressed table's certified ``search(k=10)``, twice, and
   checks that all the queries' ids and scores are identical to the fp32 search's;
5. prints each search's time, the rows rescored per query (median / max), and every process's
   peak private memory (RssAnon: anonymous pages, not the file-backed memory maps, as
   bench_beyond_memory.py) and peak RSS (file-backed pages of the maps included), sampled
   every 50 ms per stage, beside the historical fp32 figure (243 s per search).

Everything is written under --dir; delete it afterwards (``--clean`` does).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_beyond_memory import generate

HISTORY = (
    "historical fp32 figure (docs/performance.md, 32.3 GB streamed from disk, 2 workers, load 6-14): "
    "243 s and 248 s per 256-query search"
)


class PeakMemory:
    """Samples RssAnon and VmRSS of this process and all its descendants; keeps each one's peak per stage (MiB)."""

    def __init__(self, every: float = 0.05) -> None:
        import psutil

        self.psutil, self.every = psutil, every
        self.anon: dict[int, float] = {}
        self.rss: dict[int, float] = {}
        self.names: dict[int, str] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        me = self.psutil.Process()
        while not self._stop.is_set():
            for p in [me, *me.children(recursive=True)]:
                try:
                    with open(f"/proc/{p.pid}/status") as f:
                        got = {ln.split(":")[0]: int(ln.split()[1]) for ln in f if ln.startswith(("RssAnon", "VmRSS"))}
                    self.names.setdefault(p.pid, " ".join(p.cmdline()[-2:])[-50:] if p.pid != me.pid else "client")
                except (OSError, ValueError, self.psutil.Error):
                    continue
                if "RssAnon" in got and "VmRSS" in got:
                    self.anon[p.pid] = max(self.anon.get(p.pid, 0.0), got["RssAnon"] / 1024)
                    self.rss[p.pid] = max(self.rss.get(p.pid, 0.0), got["VmRSS"] / 1024)
            self._stop.wait(self.every)

    def report(self, stage: str) -> None:
        for pid in sorted(self.anon):
            if self.rss[pid] < 64:
                continue  # helpers (the resource tracker, uname): not the client or a worker
            print(
                f"  {stage:<15} pid {pid:>7}  peak private (RssAnon) {self.anon[pid]:8.1f} MiB  "
                f"peak RSS {self.rss[pid]:8.1f} MiB  {self.names.get(pid, '')}"
            )
        self.anon.clear()
        self.rss.clear()

    def stop(self) -> None:
        self._stop.set()
        self._t.join()


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def build(args: argparse.Namespace, table: str, mon: PeakMemory) -> None:
    """Exactly bench_beyond_memory.py's table: emb.npy (seed 0), 4 shards, emb.npy deleted."""
    from softdb.distributed import ShardedTable

    emb = os.path.join(args.dir, "emb.npy")
    if not os.path.exists(emb):
        t0 = time.perf_counter()
        generate(emb, args.rows, args.dim)
        print(f"generate emb.npy: {time.perf_counter() - t0:.1f} s")
    src = np.load(emb, mmap_mode="r")
    assert src.shape == (args.rows, args.dim), src.shape
    t0 = time.perf_counter()
    ShardedTable.create(table, src, shards=args.shards)
    print(f"create ({args.shards} shards): {time.perf_counter() - t0:.1f} s")
    mon.report("create")
    del src
    os.remove(emb)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=21_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--queries", type=int, default=256)
    ap.add_argument("--precision", default="int8", choices=["int8", "bf16"])
    ap.add_argument("--dir", required=True, help="a folder on a disk with room for 2x the keys")
    ap.add_argument("--reuse", action="store_true", help="DIR/table exists: skip generating and building")
    ap.add_argument("--no-verify", action="store_true", help="open without reading every checksum")
    ap.add_argument("--clean", action="store_true", help="delete DIR/table at the end")
    args = ap.parse_args()

    from softdb.distributed import ShardedTable
    from softdb.engine._lowp import backend_for
    from softdb.engine._lowp_simd import capabilities

    os.makedirs(args.dir, exist_ok=True)
    table = os.path.join(args.dir, "table")
    print(
        f"{args.rows} x {args.dim} float32 keys = {args.rows * args.dim * 4 / 1e9:.1f} GB; "
        f"RAM {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 1e9:.1f} GB; "
        f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {cpu_name()}; numpy {np.__version__}"
    )
    print("SIMD:", capabilities(), f"; int8 backend for {args.queries} queries:", backend_for("int8", args.queries))
    mon = PeakMemory()
    if not (args.reuse and os.path.exists(os.path.join(table, "shards.json"))):
        build(args, table, mon)
    q = np.random.default_rng(1).standard_normal((args.queries, args.dim), dtype=np.float32)
    t0 = time.perf_counter()
    with ShardedTable.open(table, n_workers=args.workers, verify=not args.no_verify, timeout=7200) as t:
        print(f"open (verify={not args.no_verify}): {time.perf_counter() - t0:.1f} s; {t}")
        mon.report("open")
        fp32 = []
        for rep in range(2):
            t0 = time.perf_counter()
            fp32.append(t.search(q, k=10))
            print(
                f"fp32 search m={args.queries} k=10 (run {rep + 1}, load {os.getloadavg()[0]:.1f}): "
                f"{time.perf_counter() - t0:.1f} s"
            )
        mon.report("fp32 search")
        t0 = time.perf_counter()
        small = t.compress(args.precision)
        print(
            f"compress({args.precision!r}) on the workers: {time.perf_counter() - t0:.1f} s; "
            f"{small.nbytes / 1e9:.2f} GB of compressed keys in the workers' memory; per shard: "
            + ", ".join(f"{s['shard']}: {s['seconds']:.0f} s (pid {s['pid']})" for s in small.shard_info)
        )
        mon.report("compress")
        got = []
        for rep in range(2):
            t0 = time.perf_counter()
            got.append(small.search(q, k=10))
            c = got[-1].certificate
            print(
                f"{args.precision} search m={args.queries} k=10 (run {rep + 1}, load {os.getloadavg()[0]:.1f}): "
                f"{time.perf_counter() - t0:.1f} s; rows rescored per query: median {int(np.median(c.rescored))}, "
                f"max {int(c.rescored.max())} of {len(t)}; fallbacks {int(c.fallback.sum())}; "
                f"certificates hold {bool(c.holds.all())}; min margin {float(c.margin.min()):.3g}"
            )
        mon.report(f"{args.precision} search")
        ref = fp32[0]
        ids_same = all(g.ids.tolist() == ref.ids.tolist() for g in got)
        scores_same = all(np.array_equal(g.scores, ref.scores) for g in got)
        fp32_same = np.array_equal(fp32[1].scores, ref.scores) and np.array_equal(fp32[1].rows, ref.rows)
        w = ref.weights.astype(np.float64)  # (m, 10)  float32 weights of the fp32 search: 1e-6 of rounding
        inside = min(float(((g.weight_lo * (1 - 1e-6) <= w) & (w <= g.weight_hi * (1 + 1e-6))).mean()) for g in got)
        print(
            f"all {args.queries} queries: ids identical to the fp32 search {ids_same}, scores identical "
            f"{scores_same} (fp32 run 2 == run 1: {fp32_same}); share of the fp32 hit weights inside the "
            f"certified intervals (float32 rounding allowed): {inside:.3f}"
        )
        print("first query's top 3:", got[0].ids[0][:3].tolist(), got[0].scores[0][:3].round(3).tolist())
    print(HISTORY)
    mon.stop()
    if args.clean:
        shutil.rmtree(table, ignore_errors=True)


if __name__ == "__main__":
    main()
