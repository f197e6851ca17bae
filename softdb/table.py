"""SoftTable: rows of (id, key, value, payload) answered by soft, hard and top-k lookups."""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from . import _answers, _checks
from ._kernel import stream
from ._projected import COSINE_TEMPERATURE, ProjectedMode

if TYPE_CHECKING:  # pragma: no cover
    from os import PathLike

    from .projection import Projection

__all__ = ["SoftTable", "SearchResult"]



class SearchResult(NamedTuple):
    """Top-k hits of a search, best first.

    Attributes
    ----------
    ids : ndarray of object, shape (m, k) or (k,)
        Row ids; ``None`` where there is no match (all rows masked).
    scores : ndarray of shape (m, k) or (k,)
        Raw similarity (dot product, or cosine); ``-inf`` for no match.
    weights : ndarray of shape (m, k) or (k,)
        Each hit's weight under the softmax over the *whole* table (not
        renormalised over the k hits); 0 for no match.
    payloads : ndarray of object, shape (m, k) or (k,), or None
        Payload of each hit, when the table has payloads.
    rows : ndarray of int64, shape (m, k) or (k,)
        Row positions in the table at search time; -1 for no match.
    """

    ids: np.ndarray
    scores: np.ndarray
    weights: np.ndarray
    payloads: np.ndarray | None
    rows: np.ndarray

    def to_dicts(self) -> list:
        """Hits as ``{"id", "score", "weight", "payload"}`` dicts (see :func:`softdb.views.to_dicts`)."""
        from .views import to_dicts

        return to_dicts(self)

    def to_pandas(self) -> Any:
        """Hits as a pandas DataFrame (see :func:`softdb.views.to_pandas`; needs ``softdb[views]``)."""
        from .views import to_pandas

        return to_pandas(self)

    def _repr_html_(self) -> str:
        from .views import search_result_html

        return search_result_html(self)


@dataclass(frozen=True)
class _Rows:
    """One immutable version of the table's rows. Mutation swaps in a new one."""

    keys: np.ndarray  # (n, d)  read-only; unit rows when metric="cosine"
    values: np.ndarray  # (n, d_v)  read-only; `keys` itself when K = V
    ids: tuple
    payloads: tuple | None
    index: dict = field(repr=False)  # id -> row
    key_norm_max: float = 0.0

    @classmethod
    def build(cls, keys, values, ids, payloads) -> _Rows:
        for a in (keys, values):
            a.flags.writeable = False  # arrays are the table's own: freeze them
        norm_max = float(np.sqrt(np.einsum("ij,ij->i", keys, keys, dtype=np.float64)).max()) if len(keys) else 0.0
        return cls(keys, values, ids, payloads, dict(zip(ids, range(len(ids)))), norm_max)


def _readonly(a: np.ndarray) -> np.ndarray:
    v = a.view()
    v.flags.writeable = False
    return v


class SoftTable(ProjectedMode):
    """A table of keys and values answered by soft (attention) lookups.

    A query q scores every key, s_j = q·k_j (or the cosine), the scores become
    weights w = softmax(s / τ), and the soft answer is w·V. ``mode="hard"``
    returns the value of the best-scoring row instead: the classic exact lookup
    that soft lookup approaches as τ → 0.

    Parameters
    ----------
    keys : array_like of shape (n, d)
        One key per row. float64 stays float64; other numbers become float32.
    values : array_like of shape (n, d_v), optional
        One value per row. ``None`` means the values are the keys (K = V).
    ids : sequence of str or int, optional
        n unique ids; default ``0 .. n-1``.
    payloads : sequence, optional
        Any per-row objects (e.g. the row's text), returned with search hits.
    metric : {"dot", "cosine"}
        "cosine" L2-normalises keys and queries (a zero vector is an error);
        the table then stores the unit keys.
    temperature : float, optional
        τ > 0. Default √d for "dot" (the Transformer's scaling) and 0.05 for
        "cosine" (the scale at which sentence encoders are trained: cosine
        scores lie in [-1, 1], so √d would make every weight nearly equal).
    projection : Projection, optional
        Projected mode: lookups, weights and search score ``(q W_Q)·(k W_K)``
        and blend ``v W_V`` (see :class:`softdb.Projection` and :meth:`fit`).

    Notes
    -----
    Projected mode. With metric="cosine" the raw keys and queries are
    L2-normalised first, then projected (the projected vectors are not
    renormalised). τ is the projection's own if it has one, else this
    table's; for metric="dot" without an explicit τ it is √(d_k / heads), the
    per-head Transformer scaling. The projected rows are computed once per
    version of the rows and of the projection, and cached. With ``heads > 1``
    each head runs its own softmax through the kernel: ``lookup`` concatenates
    the heads' answers (``mode="hard"``: each head's best row, the τ → 0 limit),
    ``weights`` is the mean of the heads' weights (still summing to 1), and
    ``search`` ranks rows by that mean weight, reporting score = log(mean weight).

    Lookups read one immutable version of the rows; ``add`` and ``remove``
    build new arrays and swap them in whole, so a concurrent reader sees
    either the old rows or the new ones, never a mix.

    A query whose rows are all masked gets "no match": a zero answer, a row of
    zero weights, and search hits with id None, score -inf and weight 0.

    Examples
    --------
    >>> import numpy as np
    >>> from softdb import SoftTable
    >>> keys = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32)
    >>> values = np.array([[10.0], [20.0], [30.0]], dtype=np.float32)
    >>> table = SoftTable(keys, values, ids=["a", "b", "c"], temperature=0.1)
    >>> table.lookup([2, 0.5], mode="hard")
    array([30.], dtype=float32)
    >>> table.search([2, 0.5], k=2).ids
    array(['c', 'a'], dtype=object)
    """

    def __init__(
        self,
        keys: Any,
        values: Any = None,
        *,
        ids: Iterable[Hashable] | None = None,
        payloads: Sequence[Any] | None = None,
        metric: str = "dot",
        temperature: float | None = None,
        projection: Projection | None = None,
    ) -> None:
        self._metric = _checks.as_metric(metric)
        self._temperature = None if temperature is None else _checks.as_temperature(temperature)
        k = _checks.as_matrix(keys, "keys", copy=True)
        self._dtype = k.dtype
        self._dim = k.shape[1]
        self._shared_kv = values is None
        if self._shared_kv:
            v = None
        else:
            v = _checks.as_matrix(values, "values", dtype=self._dtype, copy=True)
            _checks.check_same_rows(len(k), "keys", len(v), "values")
        self._value_dim = self._dim if v is None else v.shape[1]
        self._has_payloads = payloads is not None
        self._lock = threading.Lock()
        self.encoder = None
        self._rows = self._make_rows(k, v, ids, payloads, start_id=0)
        self._init_projection(projection)

    # ------------------------------------------------------------------ rows
    def _prepare_keys(self, k: np.ndarray, name: str) -> np.ndarray:
        if self._metric != "cosine" or not len(k):
            return k
        norms = np.sqrt(np.einsum("ij,ij->i", k, k, dtype=np.float64))  # (n,)
        zero = np.flatnonzero(norms == 0)
        if zero.size:
            raise ValueError(
                f"{name} has {zero.size} zero vectors (first at row {int(zero[0])}), which have no "
                "direction for metric='cosine'; hint: drop them or use metric='dot'"
            )
        return (k / norms[:, None]).astype(self._dtype, copy=False)  # (n, d)

    def _make_rows(self, k, v, ids, payloads, *, start_id: int) -> _Rows:
        n = len(k)
        ids = _checks.as_ids(ids, n, start=start_id)
        payloads = _checks.as_payloads(payloads, n)
        if payloads is None and self._has_payloads:
            payloads = (None,) * n
        k = self._prepare_keys(k, "keys")
        v = k if v is None else v
        return _Rows.build(k, v, ids, payloads)

    def __len__(self) -> int:
        return len(self._rows.ids)

    def _repr_html_(self) -> str:
        from .views import table_html

        return table_html(self)

    def __repr__(self) -> str:
        return (
            f"SoftTable(n={len(self)}, dim={self._dim}, value_dim={self._value_dim}, "
            f"metric={self._metric!r}, temperature={self.temperature:g}, dtype={self._dtype.name})"
        )

    @property
    def dim(self) -> int:
        """Width d of the keys (and of queries)."""
        return self._dim

    @property
    def value_dim(self) -> int:
        """Width d_v of the values (and of soft answers)."""
        return self._value_dim

    @property
    def dtype(self) -> np.dtype:
        """float32, or float64 when the keys were given as float64."""
        return self._dtype

    @property
    def metric(self) -> str:
        return self._metric

    @property
    def temperature(self) -> float:
        """The default τ of lookups (see the class docstring for the default)."""
        if self._projection is not None:
            return self._projected_tau(None)
        if self._temperature is not None:
            return self._temperature
        return COSINE_TEMPERATURE if self._metric == "cosine" else float(np.sqrt(self._dim))

    @property
    def ids(self) -> tuple:
        """Row ids, in row order."""
        return self._rows.ids

    @property
    def keys(self) -> np.ndarray:
        """Read-only keys (n, d); unit rows when metric="cosine"."""
        return _readonly(self._rows.keys)

    @property
    def values(self) -> np.ndarray:
        """Read-only values (n, d_v)."""
        return _readonly(self._rows.values)

    @property
    def payloads(self) -> tuple | None:
        """Per-row payloads, or None if the table has none."""
        return self._rows.payloads

    def row_of(self, id: Hashable) -> int:
        """Row position of ``id``."""
        try:
            return self._rows.index[id]
        except (KeyError, TypeError):
            raise KeyError(f"unknown id {id!r}; hint: table.ids lists the ids in the table") from None

    # -------------------------------------------------------------- mutation
    def add(
        self,
        keys: Any,
        values: Any = None,
        *,
        ids: Iterable[Hashable] | None = None,
        payloads: Sequence[Any] | None = None,
    ) -> None:
        """Append rows, swapping in new arrays (readers never see a mix).

        Parameters
        ----------
        keys : array_like of shape (n_new, d)
        values : array_like of shape (n_new, d_v)
            Required unless the table's values are its keys.
        ids : sequence, optional
            Default: integers after the largest integer id in the table.
        payloads : sequence, optional

        Examples
        --------
        >>> t = SoftTable(np.eye(2, dtype=np.float32))
        >>> t.add([[1.0, 1.0]], ids=["both"])
        >>> len(t), t.ids
        (3, (0, 1, 'both'))
        """
        k = _checks.as_matrix(keys, "keys", dtype=self._dtype, copy=True)
        _checks.check_width(k.shape[1], self._dim, "new keys")
        if self._shared_kv:
            if values is not None:
                raise ValueError(
                    "this table's values are its keys (it was built with values=None), "
                    "so add() takes no values; hint: build the table with explicit values"
                )
            v = None
        else:
            if values is None:
                raise ValueError(
                    f"add() needs values of width {self._value_dim} for the {len(k)} new rows, "
                    "because this table has separate values; hint: add(keys, values)"
                )
            v = _checks.as_matrix(values, "values", dtype=self._dtype, copy=True)
            _checks.check_width(v.shape[1], self._value_dim, "new values", "the table's values")
            _checks.check_same_rows(len(k), "keys", len(v), "values")
        if payloads is not None and not self._has_payloads:
            self._has_payloads = True
        with self._lock:
            old = self._rows
            start = max((i for i in old.ids if isinstance(i, int)), default=-1) + 1
            new = self._make_rows(k, v, ids, payloads, start_id=start)
            _checks.check_new_ids(old.index, new.ids)
            keys_all = np.concatenate([old.keys, new.keys])  # (n + n_new, d)
            values_all = keys_all if self._shared_kv else np.concatenate([old.values, new.values])
            pay = None
            if self._has_payloads:
                pay = (old.payloads or (None,) * len(old.ids)) + (new.payloads or (None,) * len(new.ids))
            self._rows = _Rows.build(keys_all, values_all, old.ids + new.ids, pay)
            self._on_rows_changed()

    def remove(self, ids: Iterable[Hashable]) -> None:
        """Remove the rows with these ids (unknown ids are an error).

        Examples
        --------
        >>> t = SoftTable(np.eye(3, dtype=np.float32), ids=["a", "b", "c"])
        >>> t.remove(["b"])
        >>> t.ids
        ('a', 'c')
        """
        if isinstance(ids, str | bytes) or not isinstance(ids, Iterable):
            ids = [ids]  # type: ignore[list-item]
        ids = list(ids)
        with self._lock:
            old = self._rows
            _checks.check_known_ids(old.index, ids)
            drop = np.zeros(len(old.ids), bool)
            drop[[old.index[i] for i in ids]] = True
            keep = np.flatnonzero(~drop)
            keys = old.keys[keep]  # (n - r, d)  a new array
            values = keys if self._shared_kv else old.values[keep]
            kept_ids = tuple(old.ids[i] for i in keep)
            pay = None if old.payloads is None else tuple(old.payloads[i] for i in keep)
            self._rows = _Rows.build(keys, values, kept_ids, pay)
            self._on_rows_changed()

    def _on_rows_changed(self) -> None:
        """Hook for cached derived state (projected rows) to refresh."""
        self._proj_cache = None

    # --------------------------------------------------------------- lookups
    def _queries(self, queries: Any, rows: _Rows) -> tuple[np.ndarray, bool]:
        if isinstance(queries, str) or (
            isinstance(queries, list | tuple) and queries and all(isinstance(q, str) for q in queries)
        ):
            queries = self._encode_queries(queries)
        q = _checks.as_matrix(queries, "queries", dtype=self._dtype, allow_1d=True)
        single = q.ndim == 1
        q = q[None, :] if single else q
        _checks.check_width(q.shape[1], self._dim, "queries")
        _checks.check_not_empty(len(rows.ids))
        if self._metric == "cosine":
            q = self._prepare_keys(q, "queries")
        return q, single

    @property
    def encoder(self) -> Any:
        """The text encoder of a table built from texts (None otherwise).

        A loaded table rebuilds it from the name its manifest recorded, lazily.
        """
        if self._encoder is None and getattr(self, "_encoder_name", None):
            from .text import encoder_from_name

            self._encoder = encoder_from_name(self._encoder_name)
        return self._encoder

    @encoder.setter
    def encoder(self, encoder: Any) -> None:
        self._encoder = encoder
        self._encoder_name = getattr(encoder, "name", None)

    def explain(self, query: Any, k: int = 5, *, temperature: float | None = None) -> Any:
        """A readable "soft SELECT" for one query (see :func:`softdb.explain.explain`).

        Examples
        --------
        >>> t = SoftTable(np.eye(2, dtype=np.float32), ids=["x", "y"], temperature=1.0)
        >>> print(t.explain([1.0, 0.0], k=1))  # doctest: +ELLIPSIS
        query: [1. 0.]
        ...
           1  x ... 0.731  ███████████████ ...
        """
        from .explain import explain

        return explain(self, query, k, temperature=temperature)

    def _encode_queries(self, queries: str | Sequence[str]) -> np.ndarray:
        if self.encoder is None:
            raise TypeError(
                "string queries need a table built from texts (SoftTable.from_texts), "
                "which knows its encoder; this table has none; hint: encode the query "
                "yourself, or set table.encoder"
            )
        texts = [queries] if isinstance(queries, str) else list(queries)
        out = self.encoder.encode(texts)
        return out[0] if isinstance(queries, str) else out

    def _tau(self, temperature: float | None) -> float:
        return self.temperature if temperature is None else _checks.as_temperature(temperature)

    def lookup(
        self,
        queries: Any,
        *,
        mode: str = "soft",
        temperature: float | None = None,
        mask: Any = None,
    ) -> np.ndarray:
        """Answer queries: the weighted average of the values, or the best row's value.

        Parameters
        ----------
        queries : array_like of shape (m, d) or (d,)
        mode : {"soft", "hard"}
            "soft": Σ_j w_j v_j with w = softmax(scores / τ). "hard": the value of
            the best-scoring row (ties go to the lowest row).
        temperature : float, optional
            τ for this call; default ``table.temperature``.
        mask : array_like of bool, shape (n,) or (m, n), optional
            True where a row is allowed. A query with no allowed row gets zeros.

        Returns
        -------
        ndarray of shape (m, d_v), or (d_v,) for one query

        Examples
        --------
        >>> t = SoftTable(np.eye(2, dtype=np.float32), [[0.0], [1.0]], temperature=1.0)
        >>> t.lookup([[5.0, 0.0]]).round(4)
        array([[0.0067]], dtype=float32)
        >>> t.lookup([5.0, 0.0], mode="hard")
        array([0.], dtype=float32)
        """
        mode = _checks.as_mode(mode)
        rows, proj = self._snapshot()
        q, single = self._queries(queries, rows)
        mask = _checks.as_mask(mask, len(q), len(rows.ids), single)
        if proj is not None:
            tau = self._projected_tau(temperature, proj.params)
            out = _answers.lookup_projected(q, proj, mode, tau, mask, self._dtype)
        elif mode == "hard":
            r = stream(q, rows.keys, hard=True, mask=mask)
            out = np.where((r.best_row >= 0)[:, None], rows.values[np.maximum(r.best_row, 0)], 0)
            out = out.astype(self._dtype, copy=False)  # (m, d_v)
        else:
            tau = self._tau(temperature)
            r = stream(q, rows.keys, rows.values, scale=1.0 / tau, soft=True, mask=mask,
                       key_norm_max=rows.key_norm_max)
            out = r.out  # (m, d_v)
            _checks.check_finite_result(out, "soft lookup", tau)
        return out[0] if single else out

    def weights(
        self,
        queries: Any,
        *,
        temperature: float | None = None,
        mask: Any = None,
    ) -> np.ndarray:
        """The attention weights softmax(scores / τ) of every row.

        This output is O(m × n) by nature; use :meth:`search` for the top rows.

        Parameters
        ----------
        queries : array_like of shape (m, d) or (d,)
        temperature : float, optional
        mask : array_like of bool, shape (n,) or (m, n), optional
            Masked rows get weight 0; a query with no allowed row gets all zeros.

        Returns
        -------
        ndarray of shape (m, n), or (n,) for one query; each row sums to 1.

        Examples
        --------
        >>> t = SoftTable(np.eye(2, dtype=np.float32), temperature=1.0)
        >>> t.weights([1.0, 0.0]).round(4)
        array([0.7311, 0.2689], dtype=float32)
        """
        rows, proj = self._snapshot()
        q, single = self._queries(queries, rows)
        mask = _checks.as_mask(mask, len(q), len(rows.ids), single)
        if proj is None:
            tau = self._tau(temperature)
            w = _answers.dense_weights(q, rows.keys, tau, mask, rows.key_norm_max, self._dtype)  # (m, n)
        else:
            tau = self._projected_tau(temperature, proj.params)
            w = _answers.dense_weights(q @ proj.w_q[0], proj.keys[0], tau, mask, proj.key_norm_max[0],
                                       self._dtype)  # (m, n)
            for w_q, k, nm in zip(proj.w_q[1:], proj.keys[1:], proj.key_norm_max[1:]):
                w += _answers.dense_weights(q @ w_q, k, tau, mask, nm, self._dtype)  # (m, n)
            w /= len(proj.keys)  # mean over heads
        _checks.check_finite_result(w, "weights", tau)
        return w[0] if single else w

    def search(
        self,
        queries: Any,
        k: int = 10,
        *,
        temperature: float | None = None,
        mask: Any = None,
    ) -> SearchResult:
        """The k best rows of each query, with scores and full-table weights.

        Parameters
        ----------
        queries : array_like of shape (m, d) or (d,)
        k : int
            1 <= k <= len(table).
        temperature : float, optional
        mask : array_like of bool, shape (n,) or (m, n), optional

        Returns
        -------
        SearchResult
            ids, scores, weights, payloads and rows, each (m, k) or (k,), sorted by
            score descending (ties: lowest row first). Slots past the allowed rows
            hold id None, score -inf, weight 0 and row -1.

        Examples
        --------
        >>> t = SoftTable(np.eye(3, dtype=np.float32), ids=["x", "y", "z"], temperature=1.0)
        >>> hits = t.search([0.0, 2.0, 1.0], k=2)
        >>> hits.ids, hits.scores, hits.weights.round(3)
        (array(['y', 'z'], dtype=object), array([2., 1.], dtype=float32), array([0.665, 0.245], dtype=float32))
        """
        rows, proj = self._snapshot()
        q, single = self._queries(queries, rows)
        k = _checks.as_k(k, len(rows.ids))
        mask = _checks.as_mask(mask, len(q), len(rows.ids), single)
        if proj is None:
            tau = self._tau(temperature)
            top_rows, top_scores, w = _answers.top_k(q, rows.keys, k, tau, mask, rows.key_norm_max, self._dtype)
        elif len(proj.keys) == 1:
            tau = self._projected_tau(temperature, proj.params)
            top_rows, top_scores, w = _answers.top_k(q @ proj.w_q[0], proj.keys[0], k, tau, mask,
                                                     proj.key_norm_max[0], self._dtype)
        else:
            tau = self._projected_tau(temperature, proj.params)
            top_rows, top_scores, w = _answers.top_k_heads(q, proj, k, tau, mask, self._dtype)
        _checks.check_finite_result(w, "search weights", tau)
        ids_arr = np.empty(len(rows.ids) + 1, object)
        ids_arr[:-1] = rows.ids  # row -1 maps to the trailing None
        hit_ids = ids_arr[top_rows]  # (m, k)
        pays = None
        if rows.payloads is not None:
            pay_arr = np.empty(len(rows.ids) + 1, object)
            pay_arr[:-1] = rows.payloads
            pays = pay_arr[top_rows]  # (m, k)
        res = SearchResult(hit_ids, top_scores, w, pays, top_rows)
        if single:
            res = SearchResult(*(None if a is None else a[0] for a in res))
        return res

    # ------------------------------------------------------ delegated features
    @classmethod
    def from_texts(
        cls,
        texts: Sequence[str],
        *,
        ids: Iterable[Hashable] | None = None,
        payloads: Sequence[Any] | None = None,
        values: Any = None,
        encoder: Any = None,
        temperature: float | None = None,
    ) -> SoftTable:
        """Encode texts into a cosine table that also accepts string queries.

        Parameters
        ----------
        texts : sequence of str
            One text per row; the keys are their embeddings.
        ids, payloads, values : optional
            As in :class:`SoftTable`; payloads default to the texts.
        encoder : optional
            Any object with ``name``, ``dim`` and ``encode(texts)``; default
            all-MiniLM-L6-v2 (``softdb.text.default_encoder()``).

        Examples
        --------
        >>> from softdb.text import HashEncoder
        >>> t = SoftTable.from_texts(["read a csv file", "compress with gzip"], encoder=HashEncoder())
        >>> t.search("gzip compression", k=1).payloads
        array(['compress with gzip'], dtype=object)
        """
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, got one string; hint: wrap it in a list")
        texts = list(texts)
        if encoder is None:
            from .text import default_encoder

            encoder = default_encoder()
        keys = encoder.encode(texts)
        table = cls(keys, values, ids=ids, payloads=texts if payloads is None else payloads,
                    metric="cosine", temperature=temperature)
        table.encoder = encoder
        return table

    # ----------------------------------------------------------- persistence
    @classmethod
    def _from_parts(
        cls,
        keys: np.ndarray,
        values: np.ndarray | None,
        *,
        ids: tuple,
        payloads: tuple | None,
        metric: str,
        temperature: float | None,
    ) -> SoftTable:
        """Rebuild a table from validated arrays without copying them (used by load).

        ``keys`` must already be unit rows for metric="cosine"; ``values=None``
        means K = V. Arrays may be read-only memory maps.
        """
        table = cls.__new__(cls)
        table._metric = _checks.as_metric(metric)
        table._temperature = None if temperature is None else _checks.as_temperature(temperature)
        table._dtype = keys.dtype
        table._dim = keys.shape[1]
        table._shared_kv = values is None
        table._value_dim = table._dim if values is None else values.shape[1]
        table._has_payloads = payloads is not None
        table._lock = threading.Lock()
        table.encoder = None
        ids = _checks.as_ids(ids, len(keys))
        table._rows = _Rows.build(keys, keys if values is None else values, ids, payloads)
        table._init_projection(None)
        return table

    def save(self, path: str | PathLike[str]) -> None:
        """Save the table to a folder, atomically (see :mod:`softdb.storage`)."""
        from .storage import save_table

        save_table(self, path)

    @classmethod
    def load(cls, path: str | PathLike[str], *, mmap: bool = False, verify: bool = True) -> SoftTable:
        """Load a table saved by :meth:`save` (see :mod:`softdb.storage`)."""
        from .storage import load_table

        return load_table(path, mmap=mmap, verify=verify)
