"""A compressed sharded table: each worker keeps its shards' keys in int8 or bf16; search is certified exact.

``ShardedTable.compress("int8" | "bf16")`` asks every worker to compress the shards it holds
(:mod:`softdb.distributed._cworker`): the compressed keys live in the worker's memory, beside
the loaded shard, and the fp32 keys stay memory-mapped for rescoring. Nothing but queries goes
out and O(m·k) comes back, as for the fp32 search.

``search`` is the certified exact top-k of :class:`~softdb.table._compressed.CompressedTable`,
per shard, merged here (:func:`merge_shards`):

- hits: score descending, ties to the lowest global row (each shard's rows are exact, so the
  merged k best are the exact k best of the whole table);
- the full-table log-sum-exp interval: the logaddexp of the shards' lower bounds and of their
  upper bounds (Z = Σ_shards Z_s, and Z_lo,s ≤ Z_s ≤ Z_hi,s), widened by its float64 rounding;
- certificates: rows rescored summed, margin = the smallest, fallback = any shard's.

With ``weight_tolerance``, each worker narrows its own shards' (Z_hi,s − Z_lo,s) / Z_lo,s to
tol / 2 (:func:`softdb.engine._certified.tighten`, ``relative``); the merged ratio is then at most
tol / 2 too, and every hit's interval narrower than tol, in the same single round trip.

Ids and scores equal the fp32 ``ShardedTable.search`` of the same version of the table: each
worker rescores its candidates with the BLAS call shapes of its own fp32 pass.

The view is a read-only snapshot of the version it was made from: ``add`` and ``remove`` raise,
and once the table changes, ``search`` raises too (compress again: shards the writes did not
touch keep their compressed keys on their workers).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from softdb import _checks
from softdb.distributed import _cworker
from softdb.distributed._cworker import ShardCertified
from softdb.distributed._shards import Version
from softdb.distributed._tasks import shard_slices
from softdb.engine._certified import Certificate, lse_slack, weight_interval
from softdb.table._compressed import CertifiedSearch
from softdb.table._frontend import prepare_queries

__all__ = ["CompressedShardedTable", "ShardedCompressing", "merge_shards"]


def merge_shards(
    parts: Sequence[ShardCertified], k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Certificate]:
    """The shards' certified top-k merged: rows (m, k), scores (m, k), LSE interval (m,) ×2, certificate.

    Scaled score descending (the scores of the query scaled by 1/τ: two of them can give one score
    once scaled back, and the fp32 merge ranks by them), ties to the lowest global row (-1 pads
    last); the log-sum-exp bounds are the logaddexp of the shards' lower bounds and of their upper
    bounds, each widened by its own float64 rounding.

    Examples
    --------
    >>> import numpy as np
    >>> f32 = lambda s: np.array([s], np.float32)
    >>> one = lambda r, s, lo: ShardCertified(np.array([r]), f32(s), f32(s), np.array([lo]), np.array([lo + 0.5]),
    ...                                       np.array([3]), np.array([1.0]), np.array([False]))
    >>> rows, scores, lo, hi, cert = merge_shards([one([7, -1], [2.0, -np.inf], 0.0), one([2, 4], [2.0, 1.0], 0.0)], 2)
    >>> rows.tolist(), scores.tolist(), round(float(lo[0]), 6), cert.rescored.tolist()
    ([[2, 7]], [[2.0, 2.0]], 0.693147, [6])
    """
    rows = np.concatenate([p.rows for p in parts], axis=1)  # (m, p·k)
    scores = np.concatenate([p.scores for p in parts], axis=1)  # (m, p·k)
    scaled = np.concatenate([p.scaled for p in parts], axis=1)  # (m, p·k)  what the fp32 merge ranks by
    order = np.lexsort((np.where(rows < 0, np.iinfo(np.int64).max, rows), -scaled.astype(np.float64)), axis=-1)
    rows = np.take_along_axis(rows, order[:, :k], axis=1)  # (m, k)
    scores = np.take_along_axis(scores, order[:, :k], axis=1)  # (m, k)
    rows[~np.isfinite(scores)] = -1
    with np.errstate(invalid="ignore"):
        lo = np.logaddexp.reduce(np.stack([p.lse_lo for p in parts]), axis=0)  # (m,)
        hi = np.logaddexp.reduce(np.stack([p.lse_hi for p in parts]), axis=0)  # (m,)
    lo, hi = lo - lse_slack(len(parts), lo), hi + lse_slack(len(parts), hi)
    fallback = np.logical_or.reduce([p.fallback for p in parts])  # (m,)
    reasons = dict.fromkeys(p.reason for p in parts if p.reason)
    cert = Certificate(
        np.sum([p.rescored for p in parts], axis=0).astype(np.int64),
        np.min([p.margin for p in parts], axis=0),
        fallback,
        np.ones(len(fallback), bool),  # every shard's holds: a shard that fell back answered in fp32
        "; ".join(reasons),
    )
    return rows, scores, lo, hi, cert


class CompressedShardedTable:
    """A read-only version of a :class:`~softdb.distributed.ShardedTable` with compressed keys on its workers.

    Made by :meth:`ShardedTable.compress`; see :mod:`softdb.distributed._compressed`.
    ``search`` returns a :class:`~softdb.table._compressed.CertifiedSearch` whose ids and scores
    equal the table's fp32 ``search``.
    """

    def __init__(self, table: Any, version: Version, precision: str, shards: list[dict], seconds: float) -> None:
        self._table, self._version, self.precision = table, version, precision
        self._shards, self.compress_seconds = shards, seconds
        self.last_batch_bytes = {"to_workers": 0, "from_workers": 0}

    def __len__(self) -> int:
        return self._version.n

    def __repr__(self) -> str:
        t = self._table
        return (
            f"CompressedShardedTable(n={len(self)}, shards={len(self._version.layout.shards)}, dim={t.dim}, "
            f"precision={self.precision!r}, metric={t.metric!r})"
        )

    @property
    def table(self) -> Any:
        """The :class:`~softdb.distributed.ShardedTable` this view was made from."""
        return self._table

    @property
    def nbytes(self) -> int:
        """Bytes of the compressed keys (with their scales and norms) held by the workers, all shards."""
        return int(sum(s["nbytes"] for s in self._shards))

    @property
    def shard_info(self) -> list[dict]:
        """Per shard (with rows): the worker's pid, seconds to compress (0 when cached) and bytes kept."""
        return [dict(s) for s in self._shards]

    def _refuse(self, what: str) -> None:
        raise TypeError(
            f"a compressed sharded table is a read-only snapshot of one version of its table, so it has no "
            f"{what}(); hint: table.{what}(...) on the ShardedTable itself, then table.compress({self.precision!r}) "
            "again (shards the write did not touch keep their compressed keys)"
        )

    def add(self, *args: Any, **kwargs: Any) -> None:
        """Refused: write to the ShardedTable, then compress again."""
        self._refuse("add")

    def remove(self, *args: Any, **kwargs: Any) -> None:
        """Refused: see :meth:`add`."""
        self._refuse("remove")

    def _check_current(self) -> None:
        now = self._table._snapshot()
        if now is not self._version:
            raise RuntimeError(
                f"this compressed view is of generation {self._version.layout.generation} of the table, which "
                f"has since changed (now generation {now.layout.generation}); hint: "
                f"table.compress({self.precision!r}) again (shards the writes did not touch keep their compressed keys)"
            )

    def search(
        self,
        queries: Any,
        k: int = 10,
        *,
        temperature: float | None = None,
        mask: Any = None,
        where: Any = None,
        weight_tolerance: float | None = None,
    ) -> CertifiedSearch:
        """The certified exact top-k over every shard: ids and scores equal the fp32 ``search``'s.

        Parameters
        ----------
        queries : array_like of shape (m, d) or (d,), or str / list of str
        k : int
            1 <= k <= len(table).
        temperature : float, optional
        mask : array_like of bool, shape (n,) or (m, n), optional
        where : dict or str, optional
            A filter on the payloads (as ``ShardedTable.search``), evaluated on the workers.
        weight_tolerance : float, optional
            Bring each hit's certified weight interval under this width: every worker rescores
            rows (largest bound contributions first) until its shards' share of the full-table
            sum is known to within tol / 2 (relative), or runs their fp32 pass; that bounds the
            merged intervals by tol (``docs/guide/compressed.md``).

        Returns
        -------
        CertifiedSearch
            ids, scores, weights, payloads, rows ((m, k) or (k,)), ``weight_lo`` / ``weight_hi``
            (certified interval of each hit's full-table weight) and the merged certificate ((m,)).

        Examples
        --------
        Answering needs a cluster (``tests/distributed/test_compressed_sharded.py`` runs this)::

            with ShardedTable.open(path) as t:
                hits = t.compress("int8").search(queries, k=10)
                hits.ids, hits.scores, hits.certificate.rescored   # ids, scores: those of t.search
        """
        self._check_current()
        t, v = self._table, self._version
        spec = t._spec(v)
        q, single = prepare_queries(queries, spec, t._query_encoder)
        q = np.ascontiguousarray(q)  # (m, d)
        k = _checks.as_k(k, spec.n)
        if weight_tolerance is not None:
            weight_tolerance = _checks.as_tolerance(weight_tolerance)
        mask = _checks.as_mask(mask, q.shape[0], spec.n, single)
        filt = None if where is None else t._parse_where(v, where)
        tau = t._tau(v, temperature)
        jobs, sent = [], 0
        for r, a, packed, nb in shard_slices(v, mask):
            args = (r, t._cluster.verify, a, q, self.precision, k, tau, packed, filt, weight_tolerance)
            jobs.append((r, (_cworker.search, *args)))
            sent += nb + q.nbytes
        out: list[ShardCertified] = t._cluster.submit(jobs, "certified")
        back = sum(
            x.nbytes
            for p in out
            for x in (p.rows, p.scores, p.scaled, p.lse_lo, p.lse_hi, p.rescored, p.margin, p.fallback)
        )
        self.last_batch_bytes = {"to_workers": sent, "from_workers": int(back)}
        rows, scores, lse_lo, lse_hi, cert = merge_shards(out, k)
        lo, hi = weight_interval(scores, rows, lse_lo, lse_hi, tau)  # (m, k) each
        mid = 0.5 * (lse_lo + lse_hi)  # (m,)
        with np.errstate(over="ignore", invalid="ignore"):
            w = np.exp(scores.astype(np.float64) / tau - mid[:, None])  # (m, k)
        w = np.where(rows >= 0, np.clip(w, lo, hi), 0.0).astype(spec.dtype)  # (m, k)
        _checks.check_finite_result(scores[rows >= 0], "search scores", tau)
        ids = v.take(v.ids, rows)  # (m, k)
        pays = v.take(v.payloads, rows) if any(p is not None for p in v.payloads) else None
        res: list[Any] = [ids, scores, w, pays, rows, lo, hi]
        if single:
            res = [None if x is None else x[0] for x in res]
        ids, scores, w, pays, rows, lo, hi = res
        return CertifiedSearch(ids, scores, w, pays, rows, lo, hi, cert)


class ShardedCompressing:
    """``compress`` of :class:`~softdb.distributed.ShardedTable` (a mixin: the table's module is at its size limit)."""

    def compress(self, precision: str = "int8") -> CompressedShardedTable:
        """This version of the table with its keys compressed on the workers: certified exact search.

        Each worker compresses the shards it holds (int8: one byte per number and one scale per
        row; bf16: two bytes) and keeps them in memory beside the memory-mapped fp32 keys, which
        stay on disk for rescoring. A shard already compressed at this precision is not
        compressed again.

        Parameters
        ----------
        precision : {"int8", "bf16"}

        Returns
        -------
        CompressedShardedTable
            A read-only snapshot of this version: ``search`` gives the fp32 search's ids and
            scores, with certified weight intervals and certificates.

        Examples
        --------
        Needs a cluster (``tests/distributed/test_compressed_sharded.py`` runs this)::

            with ShardedTable.open(path) as t:
                small = t.compress("int8")         # each worker compresses its shards
                small.search(queries, k=10).ids    # == t.search(queries, k=10).ids
        """
        return compress_sharded(self, precision)


def compress_sharded(table: Any, precision: Any) -> CompressedShardedTable:
    """Check, then compress every shard of ``table``'s current version on the worker that holds it."""
    precision = _checks.as_precision(precision)
    v: Version = table._snapshot()
    _checks.check_compressible("dense", np.dtype(v.layout.meta["dtype"]), False)
    refs = [r for r in v.layout.shards if r.n]
    if not refs:
        raise ValueError("the table has no rows; hint: add rows first")
    t0 = time.perf_counter()
    jobs = [(r, (_cworker.compress, r, table._cluster.verify, precision)) for r in refs]
    got = table._cluster.submit(jobs, "compress")
    seconds = time.perf_counter() - t0
    bad = [v.offsets[r.index] + info["bad"] for r, info in zip(refs, got)]  # global rows, shard by shard
    _checks.check_finite_keys(np.concatenate(bad).astype(np.int64), v.n)
    shards = [
        {"shard": r.index, "pid": info["pid"], "seconds": info["seconds"], "nbytes": info["nbytes"]}
        for r, info in zip(refs, got)
    ]
    return CompressedShardedTable(table, v, precision, shards, seconds)
