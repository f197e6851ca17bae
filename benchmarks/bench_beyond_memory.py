"""A sharded table larger than RAM: build it from a memory-mapped .npy, search it, watch memory.

    python benchmarks/bench_beyond_memory.py --rows 21000000 --dir /big/disk/bm

1. writes ``DIR/emb.npy`` (rows x 384 float32, seed 0) chunk by chunk with
   ``open_memmap`` unless it exists (21M rows: 32.3 GB);
2. ``ShardedTable.create(DIR/table, np.load(emb, mmap_mode="r"), shards=S)``;
3. deletes ``emb.npy`` (unless ``--keep-emb``), opens the table on a 2-worker
   LocalCluster (each worker verifies the checksums of its shards), and answers
   256 queries with ``search(k=10)``;
4. prints each stage's time and every process's peak private memory: RssAnon
   of /proc/PID/status (anonymous pages: not the file-backed memory maps),
   sampled every 50 ms.

Everything is written under --dir; delete it afterwards (``--clean`` does).
"""

from __future__ import annotations

import argparse
import os
import shutil
import threading
import time

import numpy as np


class PeakPrivate:
    """Samples RssAnon of this process and all its descendants; keeps each one's peak (MiB)."""

    def __init__(self, every: float = 0.05) -> None:
        import psutil

        self.psutil, self.every, self.peak, self.names = psutil, every, {}, {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        me = self.psutil.Process()
        while not self._stop.is_set():
            for p in [me, *me.children(recursive=True)]:
                try:
                    with open(f"/proc/{p.pid}/status") as f:
                        anon = next(int(line.split()[1]) for line in f if line.startswith("RssAnon:"))
                    self.names.setdefault(p.pid, " ".join(p.cmdline()[-2:])[-60:] if p.pid != me.pid else "client")
                except (OSError, StopIteration, self.psutil.Error):
                    continue
                self.peak[p.pid] = max(self.peak.get(p.pid, 0), anon / 1024)
            self._stop.wait(self.every)

    def report(self, stage: str) -> None:
        for pid, mib in sorted(self.peak.items()):
            print(f"  peak private (RssAnon) {stage:<7} pid {pid:>7}  {mib:8.1f} MiB  {self.names.get(pid, '')}")
        self.peak.clear()

    def stop(self) -> None:
        self._stop.set()
        self._t.join()


def generate(path: str, rows: int, dim: int) -> None:
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, dim))
    rng = np.random.default_rng(0)
    step = 1 << 16
    for s in range(0, rows, step):
        e = min(rows, s + step)
        out[s:e] = rng.standard_normal((e - s, dim), dtype=np.float32)
    out.flush()
    del out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=21_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--queries", type=int, default=256)
    ap.add_argument("--dir", required=True, help="a folder on a disk with room for 2x the keys")
    ap.add_argument("--keep-emb", action="store_true", help="keep DIR/emb.npy after building")
    ap.add_argument("--no-verify", action="store_true", help="open without reading every checksum")
    ap.add_argument("--clean", action="store_true", help="delete DIR/emb.npy and DIR/table at the end")
    ap.add_argument("--reuse", action="store_true", help="DIR/table exists: skip generating and building")
    args = ap.parse_args()

    from softdb.distributed import ShardedTable

    os.makedirs(args.dir, exist_ok=True)
    emb, table = os.path.join(args.dir, "emb.npy"), os.path.join(args.dir, "table")
    gb = args.rows * args.dim * 4 / 1e9
    print(
        f"{args.rows} x {args.dim} float32 keys = {gb:.1f} GB; "
        f"RAM {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 1e9:.1f} GB; "
        f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    mon = PeakPrivate()
    if not (args.reuse and os.path.exists(os.path.join(table, "shards.json"))):
        if not os.path.exists(emb):
            t0 = time.perf_counter()
            generate(emb, args.rows, args.dim)
            print(f"generate emb.npy: {time.perf_counter() - t0:.1f} s")
            mon.report("gen")
        src = np.load(emb, mmap_mode="r")
        assert src.shape == (args.rows, args.dim), src.shape
        t0 = time.perf_counter()
        ShardedTable.create(table, src, shards=args.shards)
        print(f"create ({args.shards} shards): {time.perf_counter() - t0:.1f} s")
        mon.report("create")
        del src
        if not args.keep_emb:
            os.remove(emb)
    q = np.random.default_rng(1).standard_normal((args.queries, args.dim), dtype=np.float32)
    t0 = time.perf_counter()
    with ShardedTable.open(table, n_workers=args.workers, verify=not args.no_verify, timeout=3600) as t:
        print(f"open (verify={not args.no_verify}): {time.perf_counter() - t0:.1f} s; {t}")
        mon.report("open")
        for rep in range(2):
            t0 = time.perf_counter()
            hits = t.search(q, k=10)
            print(
                f"search m={args.queries} k=10 (run {rep + 1}, load {os.getloadavg()[0]:.1f}): "
                f"{time.perf_counter() - t0:.1f} s; bytes to workers {t.last_batch_bytes['to_workers']}, "
                f"back {t.last_batch_bytes['from_workers']}"
            )
        mon.report("search")
        print("first query's top 3:", hits.ids[0][:3].tolist(), hits.scores[0][:3].round(3).tolist())
    mon.stop()
    if args.clean:
        shutil.rmtree(table, ignore_errors=True)
        if os.path.exists(emb):
            os.remove(emb)


if __name__ == "__main__":
    main()
