"""The client's side of a sharded table's tasks: a cluster, shard placement, one task per shard.

:class:`Cluster` starts (or borrows) a Dask cluster, sends every shard one task
near the worker that holds it, and returns every shard's result or raises an
error naming the shards that failed or did not answer in time: a batch is never
answered from some shards only.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np

from softdb.distributed import _worker as _shard_worker
from softdb.distributed._shards import ShardRef, Version

__all__ = ["Cluster", "dask"]


def dask() -> Any:
    try:
        import distributed
    except ImportError:
        raise ImportError(
            'softdb.distributed._table needs Dask\'s distributed scheduler; hint: pip install "softdb[dask]"'
        ) from None
    return distributed


class Cluster:
    """A Dask client (and the LocalCluster it started, if any) answering one table's shards.

    ``workers=[w], allow_other_workers=True``: each shard's tasks go to the worker that
    loaded it, and anywhere else when that worker is gone.
    """

    def __init__(
        self, root: str, client: Any, *, n_workers: int, threads_per_worker: int, verify: bool, timeout: float
    ) -> None:
        distributed = dask()
        self.root, self.verify, self.timeout = root, verify, float(timeout)
        self.where: dict[int, str] = {}
        self.own = None
        self.last_batch_bytes = {"to_workers": 0, "from_workers": 0}
        if client is None:
            import dask as _dask_config

            with _dask_config.config.set({"distributed.scheduler.work-stealing": False}):  # shards stay put
                # memory_limit=0: memory-mapped shard pages count in a worker's RSS, and Dask would
                # pause (at 80%) or kill (at 95%) a worker for page cache the kernel can drop at will
                self.own = distributed.LocalCluster(
                    n_workers=n_workers,
                    threads_per_worker=threads_per_worker,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                    memory_limit=0,
                    scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
                )  # no fixed :8787
            client = distributed.Client(self.own)
        self.client = client

    def load_all(self, v: Version) -> None:
        """Each shard loaded (and verified) by a worker, which keeps it."""
        refs = [r for r in v.layout.shards if r.n]
        got = self.submit([(r, (_shard_worker.load, r, self.verify)) for r in refs], "load")
        for r, info in zip(refs, got):
            if info["worker"]:
                self.where[r.index] = info["worker"]

    def close(self) -> None:
        """Close the LocalCluster this started, or drop this table's shards from a borrowed cluster."""
        client, self.client = self.client, None
        if client is None:
            return
        if self.own is not None:
            client.close()
            self.own.close()
            self.own = None
            return
        with contextlib.suppress(Exception):  # the cluster may be gone already; nothing left to release
            client.run(_shard_worker.forget, self.root)

    def placement(self, refs: list) -> list[str]:
        """A live worker per shard: where it was, else the least loaded."""
        alive = sorted(self.client.ncores())
        if not alive:
            raise RuntimeError("the Dask cluster has no workers; hint: start some with `dask worker ADDRESS`")
        load = dict.fromkeys(alive, 0)
        for w in self.where.values():
            if w in load:
                load[w] += 1
        out = []
        for r in refs:
            at = self.where.get(r.index)
            if at is None or at not in load:
                at = min(alive, key=lambda a: (load[a], a))
                load[at] += 1
                self.where[r.index] = at
            out.append(at)
        return out

    def submit(self, jobs: list[tuple[ShardRef, tuple]], what: str) -> list[Any]:
        """Run one task per shard (near its worker); all results, or an error naming the shards."""
        if self.client is None:
            raise RuntimeError("this ShardedTable is closed; hint: ShardedTable.open(path) again")
        distributed = dask()
        token = uuid.uuid4().hex[:12]
        workers = self.placement([r for r, _ in jobs])
        futs = [
            self.client.submit(
                *call, key=f"softdb-{what}-{r.index}-{token}", workers=[w], allow_other_workers=True, pure=False
            )
            for (r, call), w in zip(jobs, workers)
        ]
        try:
            for f in distributed.as_completed(futs, timeout=self.timeout):
                if f.status == "error":
                    break  # fail fast: the error below names the shard
        except TimeoutError:
            names = ", ".join(f"{r.index} ({r.folder})" for (r, _), f in zip(jobs, futs) if not f.done())
            for f in futs:
                f.release()
            raise TimeoutError(
                f"{what}: shards {names} did not answer within {self.timeout:g} s, so there "
                "is no complete answer; hint: check the workers, or raise timeout="
            ) from None
        try:
            for (r, _), f in zip(jobs, futs):
                if f.status == "error":
                    exc = f.exception()
                    if isinstance(exc, OSError | ValueError | TypeError) and f"shard {r.index}" in str(exc):
                        raise exc
                    raise RuntimeError(
                        f"{what}: shard {r.index} ({r.folder}) failed: {type(exc).__name__}: {exc}"
                    ) from exc
            return self.client.gather(futs)
        finally:
            for f in futs:
                f.release()

    def run(
        self,
        v: Version,
        op: str,
        q: np.ndarray,
        scale: float,
        k: int,
        mask: np.ndarray | None,
        grid: tuple = (),
        *,
        where: Any = None,
    ) -> list:
        jobs, sent = [], 0
        for r, a, packed, nb in shard_slices(v, mask):
            jobs.append((r, (_shard_worker.run, r, self.verify, a, q, op, scale, k, packed, grid, where)))
            sent += nb + q.nbytes
        if not jobs:
            raise ValueError("the table has no rows; hint: add rows first")
        out = self.submit(jobs, op)
        self.last_batch_bytes = {"to_workers": sent, "from_workers": sum(nbytes(st, x) for st, x in out)}
        return out


def shard_slices(v: Version, mask: np.ndarray | None) -> Iterator[tuple[Any, int, tuple | None, int]]:
    """Each shard with rows: (shard, its first global row, its slice of ``mask`` bit-packed, the packed bytes).

    ``mask`` (n,) or (m, n) bool travels as packed bits (shape beside), None when there is no mask.
    """
    for r in v.layout.shards:
        if not r.n:
            continue
        a, b = int(v.offsets[r.index]), int(v.offsets[r.index + 1])
        if mask is None:
            yield r, a, None, 0
            continue
        mk = mask[a:b] if mask.ndim == 1 else mask[:, a:b]  # (n_i,) | (m, n_i)
        packed = np.packbits(mk).tobytes()
        yield r, a, (packed, mk.shape), len(packed)


def nbytes(*objs: Any) -> int:
    """Bytes of the arrays in kernel states (dataclasses of arrays) and plain arrays."""
    total = 0
    for o in objs:
        if isinstance(o, np.ndarray):
            total += o.nbytes
        elif hasattr(o, "__dataclass_fields__"):
            total += nbytes(*(getattr(o, f) for f in o.__dataclass_fields__))
        elif isinstance(o, tuple):
            total += nbytes(*o)
    return total
