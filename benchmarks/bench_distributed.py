"""ShardedTable on a LocalCluster against one in-process SoftTable on the same cores.

    python benchmarks/bench_distributed.py                       # n=2M, d=384, m=256, 4 shards, 2 workers
    python benchmarks/bench_distributed.py --n 200000 --repeats 2

Both sides answer the same m queries over the same n rows (K = V): ``lookup``
(soft) and ``search(k=10)``. The in-process table uses every core through BLAS;
the cluster has ``--workers`` single-threaded worker processes (Dask pins BLAS
to one thread per worker), so both use the same cores. Times are medians of
interleaved runs after a warm-up; ratios are taken within this one run. It
also prints the bytes each batch moves between client and workers, against
the m·n·4 bytes a gather of all scores would move.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--m", type=int, default=256)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", help="where to write the sharded table (default: a temporary folder)")
    ap.add_argument(
        "--local-blas-threads",
        type=int,
        help="BLAS threads of the in-process table (default: all cores; on a loaded machine "
        "OpenBLAS threads spin against other jobs, so 1 shows the per-core cost)",
    )
    args = ap.parse_args()
    if args.local_blas_threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.local_blas_threads, user_api="blas")  # this process only; workers have 1

    from softdb import SoftTable
    from softdb.distributed import ShardedTable

    rng = np.random.default_rng(0)
    ref = SoftTable(rng.standard_normal((args.n, args.dim), dtype=np.float32))  # K = V, τ = √d
    q = rng.standard_normal((args.m, args.dim), dtype=np.float32)
    base = args.dir or tempfile.mkdtemp(prefix="softdb-bench-")
    path = os.path.join(base, "sharded")
    t0 = time.perf_counter()
    ShardedTable.create(path, ref, shards=args.shards)
    build = time.perf_counter() - t0
    print(
        f"n={args.n} d={args.dim} m={args.m} k={args.k}: {args.shards} shards on {args.workers} worker "
        f"processes vs one in-process SoftTable (BLAS threads: {args.local_blas_threads or 'all'}); "
        f"{os.cpu_count()} cores; load {os.getloadavg()[0]:.1f} "
        f"(create {build:.1f} s)"
    )
    try:
        with ShardedTable.open(path, n_workers=args.workers, threads_per_worker=1) as t:
            for name, local, remote in [
                ("lookup", lambda: ref.lookup(q), lambda: t.lookup(q)),
                (f"search k={args.k}", lambda: ref.search(q, k=args.k), lambda: t.search(q, k=args.k)),
            ]:
                a, b = local(), remote()  # warm-up (page cache, worker caches) and a check
                if name == "lookup":
                    assert np.allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(a).max()), "answers differ"
                else:
                    assert (a.ids == b.ids).all() and np.array_equal(a.scores, b.scores), "hits differ"
                t_local, t_remote = [], []
                for _ in range(args.repeats):  # interleaved, so both see the same load
                    t_local.append(_median_time(local, 1))
                    t_remote.append(_median_time(remote, 1))
                tl, tr = float(np.median(t_local)), float(np.median(t_remote))
                moved = t.last_batch_bytes
                print(
                    f"{name:<12} in-process {tl:7.3f} s   sharded {tr:7.3f} s   ratio {tr / tl:5.2f}x   "
                    f"bytes to workers {moved['to_workers']:>9}  back {moved['from_workers']:>9}  "
                    f"(m·n·4 = {args.m * args.n * 4})  load {os.getloadavg()[0]:.1f}"
                )
    finally:
        shutil.rmtree(path, ignore_errors=True)
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
