"""ShardedTable: a soft table cut into shards, each answered on a Dask worker, merged exactly.

Every shard is an ordinary table folder (``SoftTable.load`` reads one alone).
A question goes to every shard as one small task carrying the queries; each
worker streams its shard through the one kernel and returns only its partial
per-query state (soft: answer and log-sum-exp; hard: best score, row and
value; top-k: k best and log-sum-exp), and the client merges them exactly
(:func:`softdb.engine._states.merge`). Answers equal those of one :class:`~softdb.SoftTable`
holding all the rows in shard order, with the same tie rule (lowest row).

Bytes moved per batch of m queries (width d) over p shards: p copies of the
queries (4·m·d) out, and p partial states back: m·(4·d_v + 9) for soft lookups,
m·(4·d_v + 12) for hard ones, m·(12·k + 9) for ``search``; never O(m·n)
(``weights`` excepted: it is m × n by nature, refused above
:attr:`ShardedTable.weights_limit` cells). A mask adds n/8 bytes (bit-packed).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np

from softdb import _checks
from softdb.distributed import _build as _shard_build
from softdb.distributed import _shards
from softdb.distributed._tasks import Cluster
from softdb.engine import _states
from softdb.table._state import COSINE_TEMPERATURE, SearchResult, unit_rows

__all__ = ["ShardedTable"]


class ShardedTable:
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
    ``tests/test_distributed.py`` runs this)::

        with ShardedTable.open(path, n_workers=1) as t:
            t.search([0, 0, 1, 0], k=1).ids      # array(['c'], dtype=object)
    """

    #: ``weights`` refuses to gather more than this many (query, row) cells from the workers.
    weights_limit = 1 << 24

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
        self._cluster = None
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
            try:
                self.close()
            except Exception:  # noqa: BLE001
                pass

    # -------------------------------------------------------------- queries
    def _queries(self, queries: Any, v: _shards.Version) -> tuple[np.ndarray, bool]:
        if isinstance(queries, str) or (
            isinstance(queries, list | tuple) and queries and all(isinstance(x, str) for x in queries)
        ):
            if self.encoder is None:
                raise TypeError(
                    "string queries need a table built from texts, which records its encoder; "
                    "this one has none; hint: encode the queries yourself"
                )
            texts = [queries] if isinstance(queries, str) else list(queries)
            enc = self.encoder.encode(texts)  # on the client: workers see vectors only
            queries = enc[0] if isinstance(queries, str) else enc
        q = _checks.as_matrix(queries, "queries", dtype=self.dtype, allow_1d=True)
        single = q.ndim == 1
        q = q[None, :] if single else q  # (m, d)
        _checks.check_width(q.shape[1], self.dim, "queries")
        _checks.check_not_empty(v.n)
        if self.metric == "cosine":  # SoftTable's own arithmetic, so scores match bit for bit
            q = unit_rows(q, "queries", self.dtype)  # (m, d)
        return np.ascontiguousarray(q), single

    def _tau(self, temperature: float | None) -> float:
        return self.temperature if temperature is None else _checks.as_temperature(temperature)

    def lookup(
        self, queries: Any, *, mode: str = "soft", temperature: float | None = None, mask: Any = None
    ) -> np.ndarray:
        """Soft or hard answers, as :meth:`softdb.SoftTable.lookup`: (m, d_v) or (d_v,).

        Examples
        --------
        ::

            t.lookup(queries, mode="hard")   # (m, d_v): the best row's value, ties to the lowest global row
        """
        mode = _checks.as_mode(mode)
        v = self._version
        q, single = self._queries(queries, v)
        mask = _checks.as_mask(mask, len(q), v.n, single)
        if mode == "hard":
            parts = self._cluster.run(v, "hard", q, 1.0, 0, mask)
            best = _states.merge(*(st for st, _ in parts)).hard.row  # (m,)  global; ties: lowest row
            out = np.zeros((len(q), self.value_dim), self.dtype)  # (m, d_v)  no match: zeros
            for st, val in parts:
                win = (st.hard.row == best) & (best >= 0)  # (m,)  this shard holds the winning row
                out[win] = val[win]
        else:
            tau = self._tau(temperature)
            parts = self._cluster.run(v, "soft", q, 1.0 / tau, 0, mask)
            out = _states.finalize(_states.merge(*(st for st, _ in parts))).out  # (m, d_v)
            _checks.check_finite_result(out, "soft lookup", tau)
        return out[0] if single else out

    def search(self, queries: Any, k: int = 10, *, temperature: float | None = None, mask: Any = None) -> SearchResult:
        """The k best rows with full-table weights, as :meth:`softdb.SoftTable.search`.

        Examples
        --------
        ::

            t.search(queries, k=10).ids      # (m, 10) global ids, best first
        """
        v = self._version
        q, single = self._queries(queries, v)
        k = _checks.as_k(k, v.n)
        mask = _checks.as_mask(mask, len(q), v.n, single)
        tau = self._tau(temperature)
        parts = self._cluster.run(v, "search", q, 1.0 / tau, k, mask)
        r = _states.finalize(_states.merge(*(st for st, _ in parts)))
        rows, scores, lse = r.top_rows, r.top_scores, r.lse  # (m, k), (m, k), (m,)
        found = rows >= 0  # (m, k)
        with np.errstate(over="ignore", invalid="ignore"):
            logits = scores / np.asarray(tau, self.dtype)  # (m, k)
            w = np.where(found, np.exp(logits - np.where(found, lse[:, None], 0)), 0).astype(self.dtype)
        _checks.check_finite_result(w, "search weights", tau)
        pays = v.take(v.payloads, rows) if any(p is not None for p in v.payloads) else None
        res = SearchResult(v.take(v.ids, rows), scores, w, pays, rows)
        return SearchResult(*(None if a is None else a[0] for a in res)) if single else res

    def weights(self, queries: Any, *, temperature: float | None = None, mask: Any = None) -> np.ndarray:
        """Every row's weight, as :meth:`softdb.SoftTable.weights`; refused above ``weights_limit`` cells."""
        v = self._version
        q, single = self._queries(queries, v)
        if len(q) * v.n > self.weights_limit:
            raise ValueError(
                f"weights() of {len(q)} queries over {v.n} rows would gather {len(q) * v.n} floats from the "
                f"workers, above weights_limit={self.weights_limit}: that is the O(m·n) traffic sharding "
                "avoids; hint: search(queries, k) gives the top rows' weights, lookup() the soft answer"
            )
        mask = _checks.as_mask(mask, len(q), v.n, single)
        tau = self._tau(temperature)
        parts = self._cluster.run(v, "dense", q, 1.0 / tau, 0, mask)
        lse = _states.finalize(_states.merge(*(st for st, _ in parts))).lse  # (m,)
        w = np.concatenate([dense for _, dense in parts], axis=1)  # (m, n)  scores / τ
        with np.errstate(invalid="ignore", over="ignore"):
            w -= np.where(lse == -np.inf, 0, lse)[:, None]
            np.exp(w, out=w)
            total = w.sum(axis=1, keepdims=True)  # (m, 1)
            w /= np.where(total == 0, 1, total)
        _checks.check_finite_result(w, "weights", tau)
        return w[0] if single else w

    def weight_stats(
        self, queries: Any, *, temperature: float | None = None, mask: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Entropy (nats) and effective rows 1/Σw² of each query's full-table weights, (m,) each.

        One pass on the workers (the kernel's mergeable entropy sums); no weights move.
        """
        v = self._version
        q, single = self._queries(queries, v)
        mask = _checks.as_mask(mask, len(q), v.n, single)
        tau = self._tau(temperature)
        r = _states.finalize(_states.merge(*(st for st, _ in self._cluster.run(v, "stats", q, 1.0 / tau, 0, mask))))
        return (r.entropy[0], r.effective_rows[0]) if single else (r.entropy, r.effective_rows)

    # ------------------------------------------------------------- mutation
    def add(
        self,
        keys: Any,
        values: Any = None,
        *,
        ids: Iterable[Hashable] | None = None,
        payloads: Sequence[Any] | None = None,
    ) -> None:
        """Append rows to the smallest shard (a new version of that shard), as :meth:`SoftTable.add`."""
        meta = self._version.layout.meta
        if meta["shared_kv"] and values is not None:
            raise ValueError(
                "this table's values are its keys (it was built with values=None), "
                "so add() takes no values; hint: build the table with explicit values"
            )
        k, vals = _shard_build.prepare_rows(keys, values, self.metric, self.dtype, "new rows")
        _checks.check_width(k.shape[1], self.dim, "new keys")
        if not meta["shared_kv"]:
            if vals is None:
                raise ValueError(
                    f"add() needs values of width {self.value_dim} for the {len(k)} new rows, "
                    "because this table has separate values; hint: add(keys, values)"
                )
            _checks.check_width(vals.shape[1], self.value_dim, "new values", "the table's values")
        with self._lock:
            v = self._version
            start = max((int(a.max()) for a in v.ids if a.dtype == np.int64 and len(a)), default=-1)
            start = max([start] + [i for a in v.ids if a.dtype == object for i in a.tolist() if type(i) is int])
            new_ids = _checks.as_ids(ids, len(k), start=start + 1)
            _checks.check_new_ids(v.index(), new_ids)
            new_pay = _checks.as_payloads(payloads, len(k))
            s = min(range(len(v.layout.shards)), key=lambda i: (v.layout.shards[i].n, i))
            ref = v.layout.shards[s]
            pays = None
            if new_pay is not None or v.payloads[s] is not None:
                old = [None] * ref.n if v.payloads[s] is None else v.payloads[s].tolist()
                pays = old + list(new_pay if new_pay is not None else [None] * len(k))
            self._commit(v, {s: (None, (k, vals), v.ids[s].tolist() + list(new_ids), pays)})

    def remove(self, ids: Iterable[Hashable]) -> None:
        """Remove the rows with these ids (each from the shard that holds it), as :meth:`SoftTable.remove`."""
        if isinstance(ids, str | bytes) or not isinstance(ids, Iterable):
            ids = [ids]  # type: ignore[list-item]
        ids = list(ids)
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
                pays = None if v.payloads[s] is None else v.payloads[s][keep].tolist()
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
        t = self._version.layout.meta["temperature"]
        if t is not None:
            return float(t)
        return COSINE_TEMPERATURE if self.metric == "cosine" else float(np.sqrt(self.dim))

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
