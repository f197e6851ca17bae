"""What a worker runs for a compressed sharded table: compress its shards, answer the certified top-k.

A worker compresses each shard it holds once per precision and keeps the compressed keys
(codes, scales, norms: :mod:`softdb.engine._compressed`) in its own memory, beside the loaded
shard (:class:`softdb.distributed._worker._Loaded`, so they go when the shard goes), while the
fp32 keys stay memory-mapped for rescoring. A question sends only the queries (and a mask slice
or a parsed filter); the worker streams the compressed keys through
:func:`softdb.engine._certified.certified_search` over its shard as one part, and returns the
shard's certified top-k with *global* rows, its log-sum-exp interval and its certificate
(:class:`ShardCertified`, O(m·k) bytes), which the client merges
(:func:`softdb.distributed._compressed.merge_shards`).

Rescoring runs here, on the worker, through :mod:`softdb.engine._rescore`: the BLAS calls this
shard's fp32 pass makes for the same m queries, so the scores equal those of the fp32
``ShardedTable.search`` to the bit; the hits also carry their scores of the query scaled by
1/τ, which the client ranks by, as the fp32 merge does. A query whose certificate does not hold
on this shard is answered by the shard's full fp32 pass (the same arithmetic, in the call shapes
of all m queries), and its certificate says ``fallback``.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from softdb.distributed import _worker as _shard_worker
from softdb.distributed._shards import ShardRef
from softdb.engine._certified import certified_search, tighten
from softdb.engine._compressed import CompressedKeys, compress_keys
from softdb.engine._segmented import Part, Parts
from softdb.table._columns import columns_of
from softdb.table._compressed import full_pass
from softdb.table._where import evaluate

__all__ = ["ShardCertified", "compress", "search"]

_advice_lock = threading.Lock()
_lock = threading.Lock()  # one compression at a time per worker process: at most one shard's codes in flight


@dataclass
class ShardCertified:
    """One shard's certified top-k for m queries: rows global (-1 pads), fp32 scores, LSE interval, certificate."""

    rows: np.ndarray  # (m, k) int64
    scores: np.ndarray  # (m, k) float32 (-inf pads)
    scaled: np.ndarray  # (m, k) float32: the scores of the query scaled by 1/τ, which the fp32 merge ranks by
    lse_lo: np.ndarray  # (m,) float64, of scores / τ over this shard's allowed rows
    lse_hi: np.ndarray  # (m,) float64
    rescored: np.ndarray  # (m,) int64
    margin: np.ndarray  # (m,) float64
    fallback: np.ndarray  # (m,) bool
    reason: str = ""


@contextlib.contextmanager
def _random_reads(keys: np.ndarray) -> Iterator[None]:
    """The memory map under ``keys`` advised for random reads (no readahead) for the duration.

    Rescoring reads a few hundred scattered rows of a shard per query: with the kernel's default
    readahead each page fault would read 128 KB around a 1.5 KB row. Back to normal after (the
    fp32 search streams the same map). A no-op for keys in memory or without ``madvise``.
    """
    base: Any = keys
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    if base is None or not hasattr(base, "madvise") or not hasattr(mmap, "MADV_RANDOM"):
        yield
        return
    with _advice_lock:
        base.madvise(mmap.MADV_RANDOM)
    try:
        yield
    finally:
        with _advice_lock:
            base.madvise(mmap.MADV_NORMAL)


def compressed(ref: ShardRef, verify: bool, precision: str) -> tuple[Any, CompressedKeys]:
    """The loaded shard and its compressed keys (compressed on first use, then kept beside the shard)."""
    got = _shard_worker._get(ref, verify)
    ck = got.compressed.get(precision)
    if ck is None:
        with _lock:
            ck = got.compressed.get(precision)
            if ck is None:
                ck = compress_keys(got.keys, precision)  # steps of rows: the fp32 keys are read once
                got.compressed[precision] = ck
                _warm(got.keys, precision)
    return got, ck


def _warm(keys: np.ndarray, precision: str) -> None:
    """One tiny certified search over the shard's first rows: the low-precision backends load and the
    compiled pass compiles (or loads from numba's cache) here, once per process, not in the first question."""
    few = np.ascontiguousarray(keys[: min(len(keys), 512)], np.float32)  # (r, d)
    if not len(few) or not np.isfinite(few).all():
        return
    parts = Parts([Part(few, None, None, None)])
    q = few[np.arange(16) % len(few)]  # (16, d): the many-query backend
    with np.errstate(all="ignore"):
        certified_search(parts, [compress_keys(few, precision)], q, k=1, tau=1.0)
        certified_search(parts, [compress_keys(few, precision)], q[:1], k=1, tau=1.0)  # and the one-query one


def compress(ref: ShardRef, verify: bool, precision: str) -> dict:
    """Compress one shard here (or find it compressed); report its size, time and non-finite rows.

    A shard with rows that cannot be compressed (non-finite keys or norms) keeps nothing: the
    client raises, naming how many and the first.
    """
    t0 = time.perf_counter()
    got, ck = compressed(ref, verify, precision)
    bad = np.flatnonzero(~np.isfinite(ck.key_norm) | ~np.isfinite(ck.rho))  # (b,)  local rows
    if len(bad):
        got.compressed.pop(precision, None)
    return {
        "pid": os.getpid(),
        "seconds": time.perf_counter() - t0,
        "nbytes": ck.nbytes,
        "bad": bad,
    }


def search(
    ref: ShardRef,
    verify: bool,
    offset: int,
    q: np.ndarray,
    precision: str,
    k: int,
    tau: float,
    mask: tuple | None,
    where: Any = None,
    weight_tolerance: float | None = None,
) -> ShardCertified:
    """The certified top-k of queries ``q`` (m, d) over this shard (rows global: ``offset`` + local).

    ``mask``: this shard's slice, bit-packed (as :func:`softdb.distributed._worker.run` takes it);
    ``where``: a parsed filter, evaluated over the shard's payload columns and ANDed with the mask;
    ``weight_tolerance``: rescore rows until this shard's (Z_hi − Z_lo) / Z_lo ≤ tol / 2 (or its
    fp32 pass), which bounds every merged hit's weight interval below tol
    (:func:`softdb.engine._certified.tighten`, ``relative``).
    """
    got, ck = compressed(ref, verify, precision)
    keys = got.keys  # (n_shard, d)  memory-mapped fp32: read only for the rows rescored
    mk = _shard_worker._unpack(mask)  # (n_shard,) | (m, n_shard) | None
    if where is not None:
        wm = evaluate(where, columns_of(got, len(keys), got.payloads))  # (n_shard,)
        mk = wm if mk is None else mk & wm
    parts = Parts([Part(keys, None, ref.key_norm_max, None)])
    with _random_reads(keys):  # the candidates are scattered rows of a file bigger than the page cache
        res = certified_search(parts, [ck], q, k=k, tau=tau, mask=mk)
        if weight_tolerance is not None and not res.cert.fallback.all():
            res.cert.fallback |= tighten(parts, [ck], q, res, tau=tau, tol=weight_tolerance, mask=mk, relative=True)
    fb = res.cert.fallback.copy()  # (m,)
    if fb.any():  # this shard's fp32 pass for those queries, in the call shapes of all m (as the fp32 search)
        full_pass(parts, q, k, tau, mk, res)
    rows = np.where(res.rows >= 0, res.rows + offset, -1)  # (m, k)  global
    c = res.cert
    assert res.scaled is not None
    return ShardCertified(rows, res.scores, res.scaled, res.lse_lo, res.lse_hi, c.rescored, c.margin, fb, c.reason)
