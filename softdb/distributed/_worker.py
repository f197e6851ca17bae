"""What runs on a Dask worker: load a shard from disk (memory-mapped), keep it, answer it.

Each worker process keeps the shards it has loaded in a small process-wide cache
keyed by (shard folder, manifest checksum). Nothing of a shard is Dask data: a
task carries only the shard's path and version (a :class:`ShardRef`) and loads
the shard on a cache miss. So when a worker dies, Dask reruns its tasks on
another worker, which simply loads the shard from disk; and a stale or
changed shard is refused, never answered. Tasks return the kernel's small
per-query state, a :class:`softdb.engine._states.KernelState` with *global* rows, which
the client merges exactly (:func:`softdb.engine._states.merge`).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from softdb.distributed._shards import ShardRef, check_version
from softdb.engine import _kernel
from softdb.engine._scorers import DenseScorer
from softdb.engine._states import HardState
from softdb.store import _storage as storage
from softdb.table._columns import columns_of
from softdb.table._where import evaluate

__all__ = ["CACHE_SHARDS", "forget", "load", "run"]

#: Shards one worker process keeps open (memory maps: file-backed, not private memory).
CACHE_SHARDS = 256


@dataclass(frozen=True, eq=False)
class _Loaded:
    keys: np.ndarray  # (n, d)  read-only memory map
    values: np.ndarray | None  # (n, d_v), or None when K = V
    payloads: list | None = None  # the manifest's, for filters (their columns: built on first use)
    compressed: dict = field(default_factory=dict)  # precision -> CompressedKeys (softdb.distributed._cworker)


_cache: OrderedDict[tuple[str, str], _Loaded] = OrderedDict()
_lock = threading.Lock()
_loads = 0  # loads from disk by this process (a test reads it to see reloads)


def load(ref: ShardRef, verify: bool) -> dict:
    """Open ``ref`` on this worker (from the cache, else from disk); report where and how big."""
    got = _get(ref, verify)
    try:
        from distributed import get_worker

        where = get_worker().address
    except (ImportError, ValueError):  # not inside a worker (called directly)
        where = None
    return {"worker": where, "pid": os.getpid(), "n": len(got.keys), "loads": _loads}


def _get(ref: ShardRef, verify: bool) -> _Loaded:
    global _loads
    key = (ref.folder, ref.checksum)
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    try:
        m, arrays = storage.open_arrays(ref.folder, mmap=True, verify=verify)
    except (OSError, ValueError) as exc:
        raise type(exc)(f"shard {ref.index} ({ref.folder}): {exc}") from None
    check_version(ref, m.get("checksum"), m.get("n"))
    got = _Loaded(arrays["keys.npy"], None if m["shared_kv"] else arrays["values.npy"], m.get("payloads"))
    del m  # the manifest's id list is the client's business, not the worker's
    with _lock:
        for old in [k for k in _cache if k[0] == ref.folder or _same_slot(k[0], ref.folder)]:
            del _cache[old]  # an older version of this shard: let its files go
        _cache[key] = got
        while len(_cache) > CACHE_SHARDS:
            _cache.popitem(last=False)
        _loads += 1
    return got


def _same_slot(a: str, b: str) -> bool:
    """Two folders of one shard of one table (shard-0003.g1 vs shard-0003.g4)."""
    return (
        os.path.dirname(a) == os.path.dirname(b)
        and os.path.basename(a).split(".")[0] == os.path.basename(b).split(".")[0]
    )


def forget(root: str) -> int:
    """Drop every cached shard under ``root`` (run on each worker by ``ShardedTable.close``)."""
    root = os.path.join(os.path.abspath(root), "")
    with _lock:
        gone = [k for k in _cache if k[0].startswith(root)]
        for k in gone:
            del _cache[k]
    return len(gone)


def _unpack(mask: tuple | None) -> np.ndarray | None:
    if mask is None:
        return None
    bits, shape = mask
    return np.unpackbits(np.frombuffer(bits, np.uint8), count=int(np.prod(shape))).view(bool).reshape(shape)


def run(
    ref: ShardRef,
    verify: bool,
    offset: int,
    q: np.ndarray,
    op: str,
    scale: float,
    k: int,
    mask: tuple | None,
    grid: tuple = (),
    where: Any = None,
) -> tuple:
    """One shard's mergeable state for queries ``q`` (m, d), rows global (``offset`` + local).

    Returns ``(state, extra)``. ``op`` is "soft" (soft state with Σ e·v), "hard"
    (hard state; extra: the best row's value (m, d_v)), "search" (top-k and soft
    state, for the full-table log-sum-exp) or "dense" (soft state; extra: the
    scaled scores (m, n_shard)) or "stats" (soft state with the entropy sums). ``mask`` is
    this shard's slice, bit-packed: (bytes, shape). "grid": soft state with the log-sum-exp
    at each scale of ``grid`` (1 / τ of the explorer's slider). ``where``: a parsed filter
    (:mod:`softdb.table._where`), evaluated here over the shard's payload columns, ANDed with the mask.
    """
    got = _get(ref, verify)
    keys, values = got.keys, got.keys if got.values is None else got.values
    mk = _unpack(mask)
    if where is not None:
        wm = evaluate(where, columns_of(got, len(keys), got.payloads))  # (n_shard,)
        mk = wm if mk is None else mk & wm  # (n_shard,) | (m, n_shard)
    scorer = DenseScorer(keys, ref.key_norm_max)
    if op == "soft":
        return _kernel.run(scorer, q, values, scale=scale, soft=True, mask=mk, offset=offset), None
    if op == "hard":
        st = _kernel.run(scorer, q, hard=True, mask=mk, offset=offset)
        row = cast(HardState, st.hard).row  # (m,)  global best row; -1 where no match
        local = row - offset  # (m,)  -offset - 1 where no match
        found = row >= 0  # (m,)
        val = np.where(found[:, None], values[np.where(found, local, 0)], 0).astype(keys.dtype, copy=False)
        return st, val  # (m, d_v)
    if op == "search":
        return _kernel.run(scorer, q, scale=scale, soft=True, k=k, mask=mk, offset=offset), None  # padded: merges to k
    if op == "stats":
        return _kernel.run(scorer, q, scale=scale, soft=True, stats=True, mask=mk, offset=offset), None
    if op == "grid":
        return _kernel.run(scorer, q, scale=scale, soft=True, grid=grid, mask=mk, offset=offset), None
    if op == "dense":
        s = np.empty((len(q), len(keys)), keys.dtype)  # (m, n_shard)
        return _kernel.run(scorer, q, scale=scale, dense=s, mask=mk, offset=offset), s
    raise ValueError(f"unknown shard operation {op!r}")
