"""ShardedTable: a soft table cut into shards, each answered on a Dask worker, merged exactly.

Every shard is an ordinary table folder (``SoftTable.load`` reads one alone).
A question goes to every shard as one small task carrying the queries; each
worker streams its shard through the one kernel and returns only its partial
per-query state (soft: answer and log-sum-exp; hard: best score, row and
value; top-k: k best and log-sum-exp), and the client merges them exactly
(:func:`softdb.engine._states.merge`). Answers equal those of one :class:`~softdb.SoftTable`
holding all the rows in shard order, with the same tie rule (lowest row): both tables
are the one front end (:mod:`softdb.table._frontend`: queries, checks, weights, results),
and differ only in where the kernel passes run (:meth:`ShardedTable._run`).

Bytes moved per batch of m queries (width d) over p shards: p copies of the
queries (4·m·d) out, and p partial states back: m·(4·d_v + 9) for soft lookups,
m·(4·d_v + 12) for hard ones, m·(12·k + 9) for ``search``; never O(m·n)
(``weights`` excepted: it is m × n by nature, refused above
:attr:`ShardedTable.weights_limit` cells). A mask adds n/8 bytes (bit-packed).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from softdb import _checks
from softdb.distributed import _build as _shard_build
from softdb.distributed import _shards
from softdb.distributed import _views as _shard_views
from softdb.distributed._compressed import ShardedCompressing
from softdb.distributed._filters import ShardedFiltering
from softdb.distributed._tasks import Cluster
from softdb.distributed._texts import ShardedTexts
from softdb.engine import _states
from softdb.engine._plan import Answers, Ask, dense_to_weights, hit_weights
from softdb.table._frontend import FrontEnd, QuerySpec, as_id_list, check_add_values, next_int_id
from softdb.table._state import Reply, SearchResult, asked, default_temperature

__all__ = ["ShardedTable"]


@dataclass
class _ShardReply(Reply):
    """A sharded table's answers; hits take their ids and payloads from the version asked."""

    version: _shards.Version
    verify: bool = True
    taus: tuple = ()

    def hits_of(self, rows: Any, scores: Any, weights: Any) -> SearchResult:
        v = self.version
        pays = v.take(v.payloads, rows) if any(p is not None for p in v.payloads) else None
        return SearchResult(v.take(v.ids, rows), scores, weights, pays, rows)

    # what explain and the views read (see softdb.distributed._views)
    @property
    def state(self) -> _shard_views.VersionState:
        return _shard_views.VersionState(self.version)

    def hit_values(self, rows: np.ndarray) -> np.ndarray:
        return _shard_views.hit_values(self.version, rows, np.dtype(self.version.layout.meta["dtype"]), self.verify)

    def hit_weights_at(self, i: int) -> np.ndarray:
        return _shard_views.hit_weights_at(self.answers, self.taus, i)

    def effective_rows_at(self, i: int, i_half: int) -> np.ndarray:
        return _shard_views.effective_rows_at(self.answers, i, i_half)


def _hard_row(st: _states.KernelState) -> np.ndarray:
    """The best row of each query (m,) of a hard pass; -1 where no match."""
    return cast(_states.HardState, st.hard).row


class ShardedTable(ShardedFiltering, FrontEnd, _shard_views.ShardedViews, ShardedTexts, ShardedCompressing):
    """A table whose rows live in shards on a Dask cluster, answered as one :class:`~softdb.SoftTable`.

    Build one with :meth:`create`, open it with :meth:`open`. ``lookup``,
    ``search``, ``weights``, ``add``, ``remove``, ``len`` and ``ids`` mean what
    they mean on a SoftTable holding all rows in shard order.

    Notes
    -----
    Each worker loads the shards it answers itself, memory-mapped, from a path
    every worker can read, and keeps them in a process-wide cache keyed by the
    shard's folder and checksum. Tasks carry only that path and version, never
    shard data, so if a worker dies Dask reruns its tasks on another worker,
    which loads the shard from disk. A batch either returns every shard's part
    or raises (a timeout or a lost shard, naming the shard): it never answers
    without a shard. ``add`` and ``remove`` write new shard folders and then
    replace ``shards.json`` atomically; a reader in another thread sees the
    version that was current when its call began.

    Examples
    --------
    >>> import tempfile, os
    >>> from softdb import SoftTable
    >>> keys = np.eye(4, dtype=np.float32)
    >>> path = os.path.join(tempfile.mkdtemp(), "t")
    >>> ShardedTable.create(path, keys, ids=list("abcd"), shards=2, temperature=0.1)
    >>> sorted(os.listdir(path))  # two ordinary table folders and the shard manifest
    ['shard-0000.g0', 'shard-0001.g0', 'shards.json']
    >>> SoftTable.load(os.path.join(path, "shard-0001.g0")).ids
    ('c', 'd')

    Answering needs a cluster (a LocalCluster on 127.0.0.1 when none is given;
    ``tests/distributed/test_distributed.py`` runs this)::

        with ShardedTable.open(path, n_workers=1) as t:
            t.search([0, 0, 1, 0], k=1).ids      # array(['c'], dtype=object)
    """

    #: ``weights`` refuses to gather more than this many (query, row) cells from the workers.
    weights_limit = 1 << 24

    _root: str
    _version: _shards.Version
    _lock: threading.Lock
    _encoder: Any
    _cluster: Cluster

    def __init__(self) -> None:
        raise TypeError("use ShardedTable.open(path) (or ShardedTable.create(path, ...) to build one)")

    # ------------------------------------------------------------- building
    @staticmethod
    def create(
        path: str | os.PathLike[str],
        table_or_keys: Any,
        values: Any = None,
        *,
        ids: Iterable[Hashable] | None = None,
        payloads: Sequence[Any] | None = None,
        shards: int = 4,
        metric: str = "dot",
        temperature: float | None = None,
    ) -> None:
        """Write a sharded table: ``shards`` ordinary table folders plus ``shards.json``.

        Rows are streamed in chunks of about 32 MiB, so a memory-mapped ``.npy``
        larger than RAM needs memory for one chunk; the save is atomic (a crash
        leaves the old table or the new one at ``path``).

        Parameters
        ----------
        path : str or PathLike
            The folder to write (its parent must exist).
        table_or_keys : SoftTable, or array_like of shape (n, d)
            A table (its rows, ids, payloads, metric, τ and encoder), or the keys,
            e.g. ``np.load("emb.npy", mmap_mode="r")``.
        values : array_like of shape (n, d_v), optional
            ``None``: the values are the keys.
        ids, payloads, metric, temperature
            As in :class:`~softdb.SoftTable`; ids default to ``0 .. n-1``.
        shards : int
            Number of shards: contiguous, near-equal runs of rows.

        Examples
        --------
        >>> import tempfile, os
        >>> from softdb import SoftTable
        >>> path = os.path.join(tempfile.mkdtemp(), "t")
        >>> ShardedTable.create(path, np.eye(3, dtype=np.float32), shards=2)
        >>> sorted(os.listdir(path)), len(SoftTable.load(os.path.join(path, "shard-0001.g0")))
        (['shard-0000.g0', 'shard-0001.g0', 'shards.json'], 1)
        """
        _shard_build.create(
            path,
            table_or_keys,
            values,
            ids=ids,
            payloads=payloads,
            shards=shards,
            metric=metric,
            temperature=temperature,
        )

    # -------------------------------------------------------------- opening
    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        client: Any = None,
        n_workers: int = 2,
        threads_per_worker: int = 1,
        verify: bool = True,
        timeout: float = 300.0,
    ) -> ShardedTable:
        """Open a sharded table on a Dask cluster; each worker loads its shards itself.

        Parameters
        ----------
        path : str or PathLike
            The folder :meth:`create` wrote; every worker must read it at this path.
        client : distributed.Client, optional
            An existing cluster. ``None`` starts a LocalCluster of ``n_workers``
            processes bound to 127.0.0.1 (closed by :meth:`close`).
        verify : bool
            Check every checksum when loading (a flipped byte is reported with
            its shard and file); ``False`` checks only sizes and headers.
        timeout : float
            Seconds a load or a batch of queries may take before it raises,
            naming the shards that did not answer.

        Examples
        --------
        ::

            with ShardedTable.open("my_sharded_table") as t:   # starts, then closes, a LocalCluster
                t.search(queries, k=10)
        """
        self = cls.__new__(cls)
        self._root = os.path.abspath(os.fspath(path))
        self._version = _shards.read_version(self._root, verify)
        self._lock = threading.Lock()
        self._encoder = None
        self._cluster = Cluster(
            self._root,
            client,
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            verify=bool(verify),
            timeout=timeout,
        )
        try:
            self._cluster.load_all(self._version)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Release what this table started: its LocalCluster, or its cached shards on a given cluster."""
        if getattr(self, "_cluster", None) is not None:
            self._cluster.close()

    def __enter__(self) -> ShardedTable:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        if getattr(self, "_cluster", None) is not None and self._cluster.own is not None:
            with contextlib.suppress(Exception):
                self.close()

    # ------------------------------------------------------- the front end's hooks
    def _snapshot(self) -> _shards.Version:
        return self._version

    def _spec(self, snap: _shards.Version) -> QuerySpec:
        meta = snap.layout.meta
        return QuerySpec(snap.n, "dense", None, np.dtype(meta["dtype"]), int(meta["dim"]), str(meta["metric"]))

    def _tau(self, snap: _shards.Version, temperature: float | None) -> float:
        if temperature is not None:
            return _checks.as_temperature(temperature)
        t = snap.layout.meta["temperature"]
        return (
            default_temperature("dense", snap.layout.meta["metric"], int(snap.layout.meta["dim"]))
            if t is None
            else float(t)
        )

    def _query_encoder(self) -> Any:
        if self.encoder is None:
            raise TypeError(
                "string queries need a table built from texts, which records its encoder; "
                "this one has none; hint: encode the queries yourself"
            )
        return self.encoder  # on the client: workers see vectors only

    def _check_ask(self, snap: _shards.Version, ask: Ask, m: int) -> None:
        if ask.weights and m * snap.n > self.weights_limit:
            raise ValueError(
                f"weights() of {m} queries over {snap.n} rows would gather {m * snap.n} floats from the "
                f"workers, above weights_limit={self.weights_limit}: that is the O(m·n) traffic sharding "
                "avoids; hint: search(queries, k) gives the top rows' weights, lookup() the soft answer"
            )

    def _run(
        self, snap: _shards.Version, q: Any, single: bool, ask: Ask, tau: float, mask: Any, where: Any = None
    ) -> Reply:
        """On the workers: one pass over every shard per kind of answer, merged exactly here (``where``: there)."""
        v, q, a = snap, np.ascontiguousarray(q), Answers()  # (m, d)
        dtype = np.dtype(v.layout.meta["dtype"])

        def merged(op: str, k: int = 0, grid: tuple = ()) -> _states.KernelResult:
            parts = self._cluster.run(v, op, q, 1.0 / tau, k, mask, grid, where=where)
            return _states.finalize(_states.merge(*(st for st, _ in parts)))

        if ask.taus:  # the explorer's slider: log-sum-exp at each extra τ, one more pass
            a.lse_at = merged("grid", grid=tuple(1.0 / t for t in ask.taus)).lse_grid  # (m, g)
        if ask.hard:
            parts = self._cluster.run(v, "hard", q, 1.0, 0, mask, where=where)
            best = _hard_row(_states.merge(*(st for st, _ in parts)))  # (m,)  global; ties: lowest row
            a.hard_rows = best[:, None]  # (m, 1)
            a.hard = np.zeros((len(q), int(v.layout.meta["value_dim"])), dtype)  # (m, d_v)  no match: zeros
            for st, val in parts:
                win = (_hard_row(st) == best) & (best >= 0)  # (m,)  this shard holds the winning row
                a.hard[win] = val[win]
        if ask.soft:
            r = merged("soft")
            a.soft, a.lse = r.out, asked(r.lse)[:, None]  # (m, d_v), (m, 1)
        if ask.k:
            r = merged("search", ask.k)
            a.rows, a.scores, a.lse = r.top_rows, r.top_scores, asked(r.lse)[:, None]  # (m, k), (m, k), (m, 1)
            a.hit_weights = hit_weights(asked(r.top_rows), asked(r.top_scores), asked(r.lse), tau, dtype)  # (m, k)
        if ask.weights:
            parts = self._cluster.run(v, "dense", q, 1.0 / tau, 0, mask, where=where)
            lse = _states.finalize(_states.merge(*(st for st, _ in parts))).lse  # (m,)
            dense = np.concatenate([d for _, d in parts], axis=1)  # (m, n)  scores / τ
            a.weights = dense_to_weights(dense, asked(lse))  # (m, n)
        if ask.stats:
            r = merged("stats")
            a.entropy, a.effective_rows = r.entropy, r.effective_rows  # (m,), (m,)
        return _ShardReply(a, tau, single, v, self._cluster.verify, tuple(ask.taus))

    def weight_stats(
        self, queries: Any, *, temperature: float | None = None, mask: Any = None, where: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Entropy (nats) and effective rows 1/Σw² of each query's full-table weights, (m,) each.

        One pass on the workers (the kernel's mergeable entropy sums); no weights move.
        """
        p = self._answer(queries, Ask(stats=True), temperature=temperature, mask=mask, where=where)
        return p.one(p.answers.entropy), p.one(p.answers.effective_rows)  # type: ignore[return-value]

    # ------------------------------------------------------------- mutation
    def add(
        self,
        keys: Any,
        values: Any = None,
        *,
        ids: Iterable[Hashable] | None = None,
        payloads: Sequence[Any] | None = None,
    ) -> tuple:
        """Append rows to the smallest shard (a new version of that shard), as :meth:`SoftTable.add`; return the ids."""
        shared = bool(self._version.layout.meta["shared_kv"])
        if shared:
            check_add_values(shared, values, self.value_dim, 0)
        k, vals = _shard_build.prepare_rows(keys, values, self.metric, self.dtype, "new rows")
        _checks.check_width(k.shape[1], self.dim, "new keys")
        if not shared:
            check_add_values(shared, vals, self.value_dim, len(k))
            _checks.check_width(vals.shape[1], self.value_dim, "new values", "the table's values")
        with self._lock:
            v = self._version
            new_ids = _checks.as_ids(ids, len(k), start=next_int_id(v.ids))
            _checks.check_new_ids(v.index(), new_ids)
            new_pay = _checks.as_payloads(payloads, len(k))
            s = min(range(len(v.layout.shards)), key=lambda i: (v.layout.shards[i].n, i))
            ref = v.layout.shards[s]
            pays = None
            old_pay = v.payloads[s]
            if new_pay is not None or old_pay is not None:
                old = [None] * ref.n if old_pay is None else old_pay.tolist()
                pays = old + list(new_pay if new_pay is not None else [None] * len(k))
            self._commit(v, {s: (None, (k, vals), v.ids[s].tolist() + list(new_ids), pays)})
        return tuple(new_ids)

    def remove(self, ids: Iterable[Hashable]) -> None:
        """Remove the rows with these ids (each from the shard that holds it), as :meth:`SoftTable.remove`."""
        ids = as_id_list(ids)
        with self._lock:
            v = self._version
            index = v.index()
            _checks.check_known_ids(index, ids)
            by_shard: dict[int, list[int]] = {}
            for i in ids:
                s, row = index[i]
                by_shard.setdefault(s, []).append(row)
            changes = {}
            for s, rows in by_shard.items():
                keep = np.ones(v.layout.shards[s].n, bool)
                keep[rows] = False
                old_pay = v.payloads[s]
                pays = None if old_pay is None else old_pay[keep].tolist()
                changes[s] = (keep, None, v.ids[s][keep].tolist(), pays)
            self._commit(v, changes)

    def _commit(self, v: _shards.Version, changes: dict) -> None:
        """Write the changed shards as new folders, then swap shards.json and the in-memory version."""
        lay = v.layout
        gen = lay.generation + 1
        meta = dict(lay.meta, dtype=np.dtype(lay.meta["dtype"]))
        entries = [
            {"folder": os.path.basename(r.folder), "n": r.n, "checksum": r.checksum, "key_norm_max": r.key_norm_max}
            for r in lay.shards
        ]
        for s, (keep, new, ids, pays) in changes.items():
            entries[s] = _shard_build.rewrite_shard(lay.shards[s], gen, meta, keep, new, ids, pays)
        _shards.write_layout(self._root, _shards.layout_dict(gen, meta, entries), replace=True)
        new_v = _shards.read_version(self._root, verify=False)
        self._version = new_v
        _shards.remove_unused(self._root, {os.path.basename(r.folder) for r in lay.shards + new_v.layout.shards})

    # ----------------------------------------------------------- properties
    def __len__(self) -> int:
        return self._version.n

    def __repr__(self) -> str:
        return (
            f"ShardedTable(n={len(self)}, shards={self.n_shards}, dim={self.dim}, value_dim={self.value_dim}, "
            f"metric={self.metric!r}, temperature={self.temperature:g}, dtype={self.dtype.name})"
        )

    @property
    def path(self) -> str:
        """The table's folder (absolute)."""
        return self._root

    @property
    def n_shards(self) -> int:
        return len(self._version.layout.shards)

    @property
    def shard_sizes(self) -> tuple[int, ...]:
        """Rows per shard, in row order."""
        return tuple(r.n for r in self._version.layout.shards)

    @property
    def dim(self) -> int:
        return int(self._version.layout.meta["dim"])

    @property
    def value_dim(self) -> int:
        return int(self._version.layout.meta["value_dim"])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._version.layout.meta["dtype"])

    @property
    def metric(self) -> str:
        return str(self._version.layout.meta["metric"])

    @property
    def temperature(self) -> float:
        """τ of lookups: the table's, else √d for "dot" and 0.05 for "cosine" (as SoftTable)."""
        return self._tau(self._version, None)

    @property
    def ids(self) -> tuple:
        """Global ids, in row order (shard by shard)."""
        return tuple(i for a in self._version.ids for i in a.tolist())

    @property
    def payloads(self) -> tuple | None:
        v = self._version
        if all(p is None for p in v.payloads):
            return None
        return tuple(
            x for p, r in zip(v.payloads, v.layout.shards) for x in (p.tolist() if p is not None else [None] * r.n)
        )

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` the table answers through."""
        return self._cluster.client

    @property
    def last_batch_bytes(self) -> dict:
        """Bytes of the last batch: ``to_workers`` (queries, mask) and ``from_workers`` (states)."""
        return self._cluster.last_batch_bytes

    @property
    def timeout(self) -> float:
        """Seconds a batch may take before it raises, naming the shards that did not answer."""
        return self._cluster.timeout

    @timeout.setter
    def timeout(self, seconds: float) -> None:
        self._cluster.timeout = float(seconds)

    @property
    def encoder(self) -> Any:
        """The text encoder of a table built from texts (queries are encoded on the client)."""
        enc = self._version.layout.meta.get("encoder")
        if self._encoder is None and isinstance(enc, dict) and enc.get("name"):
            from softdb.text import encoder_from_name

            self._encoder = encoder_from_name(enc["name"])
        return self._encoder
