"""SoftTable: rows of (id, key, value, payload) answered by soft, hard and top-k lookups.

The table wires three parts: its state (:mod:`softdb.table._state`, swapped whole on
every change), the query plan (:mod:`softdb.engine._plan`, one kernel pass per question)
and, in projected mode, a cache of projected rows (:mod:`softdb.table._projected`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Hashable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from softdb import _checks
from softdb.engine import _keys
from softdb.engine._plan import Ask, Head, answer
from softdb.table._projected import ProjectionCache
from softdb.table._state import COSINE_TEMPERATURE, Planned, Rows, SearchResult, TableState, shared_values, unit_rows

if TYPE_CHECKING:  # pragma: no cover
    from os import PathLike

    from softdb.learn._fit import FitReport
    from softdb.learn._projection import Projection

__all__ = ["COSINE_TEMPERATURE", "SearchResult", "SoftTable"]


_NO_K = object()  # answer(k=...) not given


def _readonly(a: np.ndarray) -> np.ndarray:
    v = a.view()
    v.flags.writeable = False
    return v


class SoftTable:
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
        block_weights: Sequence[float] | None = None,
    ) -> None:
        _checks.as_metric(metric)
        if temperature is not None:
            _checks.as_temperature(temperature)
        k = _keys.as_keys(keys, "keys", copy=True)  # dense, scipy CSR, or blocks [dense | sparse]
        v = None
        if values is not None:
            v = _checks.as_matrix(
                values, "values", dtype=k[0].dtype if isinstance(k, _keys.Blocks) else k.dtype, copy=True
            )
            _checks.check_same_rows(k.shape[0], "keys", len(v), "values")
        self._adopt(
            TableState.build(
                k, v, ids=ids, payloads=payloads, metric=metric, temperature=temperature, block_weights=block_weights
            )
        )
        if projection is not None:
            self.projection = projection

    @classmethod
    def from_state(cls, state: TableState) -> SoftTable:
        """A table over an existing state, arrays not copied (how :meth:`load` builds tables).

        ``state`` comes from :meth:`TableState.build` (the one construction path,
        also behind ``__init__``); its arrays may be read-only memory maps.
        """
        table = cls.__new__(cls)
        table._adopt(state)
        return table

    def _adopt(self, state: TableState) -> None:
        self._lock = threading.Lock()  # serialises writers; readers take one state and go
        self._proj_cache = ProjectionCache()
        self._state = state

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> TableState:
        """The current :class:`~softdb.table._state.TableState` (internal, documented there).

        One consistent version: rows, metric, τ, projection, encoder. Changes
        swap in a new state, so a reader that takes it once never sees a mix.
        """
        return self._state

    def __len__(self) -> int:
        return len(self._state.rows.ids)

    def _repr_html_(self) -> str:
        from softdb.render import table_html

        return table_html(self)

    def __repr__(self) -> str:
        st = self._state
        return (
            f"SoftTable(n={len(self)}, dim={st.dim}, value_dim={st.value_dim}, "
            f"metric={st.metric!r}, temperature={self.temperature:g}, dtype={st.dtype.name})"
        )

    @property
    def dim(self) -> int:
        """Width d of the keys (and of queries)."""
        return self._state.dim

    @property
    def value_dim(self) -> int:
        """Width d_v of the values (and of soft answers)."""
        return self._state.value_dim

    @property
    def dtype(self) -> np.dtype:
        """float32, or float64 when the keys were given as float64."""
        return self._state.dtype

    @property
    def metric(self) -> str:
        return self._state.metric

    @property
    def temperature(self) -> float:
        """The default τ of lookups (see the class docstring for the default)."""
        return self._state.tau()

    @property
    def ids(self) -> tuple:
        """Row ids, in row order."""
        return self._state.rows.ids

    @property
    def key_kind(self) -> str:
        """ "dense", "csr" (scipy.sparse keys) or "blocks" (e.g. [dense | sparse] hybrid keys)."""
        return self._state.kind

    @property
    def block_weights(self) -> tuple[float, ...] | None:
        """β_b of each key block (score = Σ_b β_b q_b·k_b); None unless the keys are blocks."""
        return self._state.block_weights

    @property
    def query_projection(self) -> np.ndarray | None:
        """(d_0, d_0) W_Q applied to the first query block (set by fitting a hybrid), or None."""
        return self._state.query_w

    @property
    def keys(self) -> np.ndarray:
        """Read-only keys: (n, d) (unit rows when metric="cosine"), a CSR matrix, or the blocks."""
        k = self._state.rows.keys
        return _readonly(k) if isinstance(k, np.ndarray) else k

    @property
    def values(self) -> np.ndarray:
        """Read-only values (n, d_v) (a CSR matrix for a K = V table of CSR keys)."""
        v = self._state.rows.values
        return _readonly(v) if isinstance(v, np.ndarray) else v

    @property
    def payloads(self) -> tuple | None:
        """Per-row payloads, or None if the table has none."""
        return self._state.rows.payloads

    def row_of(self, id: Hashable) -> int:
        """Row position of ``id``."""
        try:
            return self._state.rows.index[id]
        except (KeyError, TypeError):
            raise KeyError(f"unknown id {id!r}; hint: table.ids lists the ids in the table") from None

    @property
    def encoder(self) -> Any:
        """The text encoder of a table built from texts (None otherwise).

        A loaded table rebuilds it from the name its manifest recorded, lazily.
        """
        st = self._state
        if st.encoder is None and st.encoder_name:
            from softdb.text import encoder_from_name

            enc = encoder_from_name(st.encoder_name)
            with self._lock:
                if self._state.encoder is None and self._state.encoder_name == st.encoder_name:
                    self._state = self._state.with_(encoder=enc)
            return enc
        return st.encoder

    @encoder.setter
    def encoder(self, encoder: Any) -> None:
        with self._lock:
            self._state = self._state.with_(encoder=encoder, encoder_name=getattr(encoder, "name", None))

    def set_encoder_name(self, name: str | None) -> None:
        """Record the encoder by name only; :attr:`encoder` builds it on first use (used by load)."""
        with self._lock:
            self._state = self._state.with_(encoder=None, encoder_name=name)

    @property
    def projection(self) -> Projection | None:
        """The table's :class:`softdb.Projection`, or None (plain mode).

        Setting it checks the widths (creating W_V for this table's value width
        if the projection has none yet); ``None`` returns to plain mode.

        Examples
        --------
        >>> from softdb import Projection, SoftTable
        >>> t = SoftTable(np.eye(2, dtype=np.float32), [[1.0], [2.0]], temperature=1.0)
        >>> t.projection = Projection(2)
        >>> t.projection.W_V.shape
        (1, 1)
        """
        return self._state.projection

    @projection.setter
    def projection(self, projection: Projection | None) -> None:
        from softdb.learn._projection import Projection

        st = self._state
        if projection is not None:
            if not isinstance(projection, Projection):
                raise TypeError(
                    f"projection must be a softdb.Projection or None, got {type(projection).__name__}; "
                    f"hint: Projection({st.dim})"
                )
            if st.kind != "dense":
                raise ValueError(
                    f"a projection needs dense keys, but this table's keys are {st.kind}; "
                    "hint: fit() of a block table learns W_Q of its dense block"
                )
            projection.bind(st.dim, st.value_dim)
        with self._lock:
            self._state = self._state.with_(projection=projection)
            self._proj_cache.clear()

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
        st = self._state
        k = _keys.as_keys(keys, "keys", dtype=st.dtype, copy=True)
        if _keys.kind_of(k) != st.kind or _keys.dims(k) != _keys.dims(st.rows.keys):
            if st.kind == "dense" and _keys.kind_of(k) == "dense":
                _checks.check_width(k.shape[1], st.dim, "new keys")
            raise ValueError(
                f"new keys are {_keys.kind_of(k)} of widths {list(_keys.dims(k))} but the table's "
                f"are {st.kind} of widths {list(_keys.dims(st.rows.keys))}; hint: encode "
                "them the same way (table.encoder.encode_documents for text tables)"
            )
        if st.shared_kv:
            if values is not None:
                raise ValueError(
                    "this table's values are its keys (it was built with values=None), "
                    "so add() takes no values; hint: build the table with explicit values"
                )
            v = None
        else:
            if values is None:
                raise ValueError(
                    f"add() needs values of width {st.value_dim} for the {k.shape[0]} new rows, "
                    "because this table has separate values; hint: add(keys, values)"
                )
            v = _checks.as_matrix(values, "values", dtype=st.dtype, copy=True)
            _checks.check_width(v.shape[1], st.value_dim, "new values", "the table's values")
            _checks.check_same_rows(k.shape[0], "keys", len(v), "values")
        new_pay = _checks.as_payloads(payloads, k.shape[0])
        if st.metric == "cosine":
            k = unit_rows(k, "keys", st.dtype)
        with self._lock:
            st = self._state
            old = st.rows
            start = max((i for i in old.ids if isinstance(i, int)), default=-1) + 1
            new_ids = _checks.as_ids(ids, k.shape[0], start=start)
            _checks.check_new_ids(old.index, new_ids)
            has_payloads = st.has_payloads or new_pay is not None  # only once the rows are valid
            keys_all = _keys.stack(old.keys, k)  # (n + n_new, d)
            values_all = shared_values(keys_all) if st.shared_kv else np.concatenate([old.values, v])
            pay = None
            if has_payloads:
                pay = (old.payloads or (None,) * len(old.ids)) + (new_pay or (None,) * k.shape[0])
            rows = Rows.build(keys_all, values_all, old.ids + new_ids, pay)
            self._state = st.with_(rows=rows, has_payloads=has_payloads)

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
            st = self._state
            old = st.rows
            _checks.check_known_ids(old.index, ids)
            drop = np.zeros(len(old.ids), bool)
            drop[[old.index[i] for i in ids]] = True
            keep = np.flatnonzero(~drop)
            keys = _keys.take(old.keys, keep)  # (n - r, d)  a new array
            values = shared_values(keys) if st.shared_kv else old.values[keep]
            kept_ids = tuple(old.ids[i] for i in keep)
            pay = None if old.payloads is None else tuple(old.payloads[i] for i in keep)
            self._state = st.with_(rows=Rows.build(keys, values, kept_ids, pay))

    # --------------------------------------------------------------- lookups
    def _snapshot(self) -> tuple[TableState, Any]:
        """One consistent (state, projected rows or None); projects at most once per version."""
        st = self._state
        if st.projection is None:
            return st, None
        return st, self._proj_cache.get(st.rows, st.projection)

    def _queries(self, queries: Any, st: TableState) -> tuple[np.ndarray, bool]:
        """Queries → (m, d) in the table's dtype (encoded, checked, unit for "cosine"), and single.

        CSR keys take dense or CSR queries; block keys one query matrix per block."""
        one_text = isinstance(queries, str)
        if isinstance(queries, str) or (
            isinstance(queries, list | tuple) and queries and all(isinstance(q, str) for q in queries)
        ):
            queries = self._encode_queries(queries)
        if st.kind != "dense":
            q, single = _keys.as_queries(queries, st.rows.keys, st.dtype)
            _checks.check_not_empty(len(st.rows.ids))
            return q, single or one_text
        if sp.issparse(queries):
            raise TypeError(
                "sparse queries need sparse keys; this table's keys are dense; "
                "hint: queries.toarray(), or build the table from CSR keys"
            )
        q = _checks.as_matrix(queries, "queries", dtype=st.dtype, allow_1d=True)
        single = q.ndim == 1
        q = q[None, :] if single else q
        _checks.check_width(q.shape[1], st.dim, "queries")
        _checks.check_not_empty(len(st.rows.ids))
        if st.metric == "cosine":
            q = unit_rows(q, "queries", st.dtype)
        return q, single

    def _encode_queries(self, queries: str | Sequence[str]) -> np.ndarray:
        encoder = self.encoder
        if encoder is None:
            raise TypeError(
                "string queries need a table built from texts (SoftTable.from_texts), "
                "which knows its encoder; this table has none; hint: encode the query "
                "yourself, or set table.encoder"
            )
        texts = [queries] if isinstance(queries, str) else list(queries)
        out = encoder.encode(texts)
        if isinstance(queries, str) and self._state.kind == "dense":
            return out[0]
        return out  # sparse and block queries stay 2-D; _queries marks one text as single

    def prepare(self, queries: Any) -> np.ndarray:
        """Queries as the plan takes them: (m, d), encoded, checked, unit rows for "cosine".

        For softdb's own modules (``fit``, the CLI): encode once, then ask many times.
        """
        return self._queries(queries, self._state)[0]

    def answer(
        self,
        queries: Any,
        ask: Ask,
        *,
        temperature: float | None = None,
        mask: Any = None,
        k: Any = _NO_K,
    ) -> Planned:
        """Answer through the query plan, in one pass (internal: for softdb's own modules).

        Parameters
        ----------
        queries : array_like of shape (m, d) or (d,), or str / list of str
        ask : softdb.engine._plan.Ask
            What to compute (soft, hard, top-k, log-sum-exp, weights, statistics, extra τ).
        temperature : float, optional
        mask : array_like of bool, shape (n,) or (m, n), optional
        k : int, optional
            Checked against the table's size (of the same version) and put into ``ask``.

        Returns
        -------
        softdb.table._state.Planned

        Examples
        --------
        >>> from softdb.engine._plan import Ask
        >>> t = SoftTable(np.eye(2, dtype=np.float32), temperature=1.0)
        >>> p = t.answer([1.0, 0.0], Ask(hard=True, stats=True))
        >>> p.one(p.answers.hard), round(float(p.one(p.answers.effective_rows)), 3)
        (array([1., 0.], dtype=float32), 1.648)
        """
        st, proj = self._snapshot()
        q, single = self._queries(queries, st)
        n = len(st.rows.ids)
        if k is not _NO_K:
            ask = Ask(**{**ask.__dict__, "k": _checks.as_k(k, n)})
        mask = _checks.as_mask(mask, q.shape[0], n, single)
        if proj is None:
            heads = [Head(st.rows.keys, st.rows.values, st.query_w, st.rows.key_norm_max, st.block_weights)]
        else:
            heads = [
                Head(kh, vh, wq, nm) for kh, vh, wq, nm in zip(proj.keys, proj.values, proj.w_q, proj.key_norm_max)
            ]
        tau = st.tau(temperature, None if proj is None else proj.params)
        return Planned(answer(heads, q, ask, tau, mask, dtype=st.dtype), st, tau, single, heads, q, ask.taus)

    def explain(self, query: Any, k: int = 5, *, temperature: float | None = None) -> Any:
        """A readable "soft SELECT" for one query (see :func:`softdb.table._explain.explain`).

        Examples
        --------
        >>> t = SoftTable(np.eye(2, dtype=np.float32), ids=["x", "y"], temperature=1.0)
        >>> print(t.explain([1.0, 0.0], k=1))  # doctest: +ELLIPSIS
        query: [1. 0.]
        ...
           1  x ... 0.731  ███████████████ ...
        """
        from softdb.table._explain import explain

        return explain(self, query, k, temperature=temperature)

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
        p = self.answer(queries, Ask(soft=mode == "soft", hard=mode == "hard"), temperature=temperature, mask=mask)
        if mode == "hard":
            return p.one(p.answers.hard)
        _checks.check_finite_result(p.answers.soft, "soft lookup", p.tau)
        return p.one(p.answers.soft)

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
        p = self.answer(queries, Ask(weights=True), temperature=temperature, mask=mask)
        _checks.check_finite_result(p.answers.weights, "weights", p.tau)
        return p.one(p.answers.weights)

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
        p = self.answer(queries, Ask(lse=True), temperature=temperature, mask=mask, k=k)
        _checks.check_finite_result(p.answers.hit_weights, "search weights", p.tau)
        return p.hits()

    # ------------------------------------------------------------- fitting
    def fit(
        self,
        queries: Any,
        targets: Any,
        *,
        loss: str = "rows",
        optimizer: str = "auto",
        max_iter: int = 100,
        reg: float = 0.0,
        validation: tuple[Any, Any] | None = None,
        patience: int = 10,
        batch_size: int = 256,
        learning_rate: float = 0.01,
        seed: int = 0,
        verbose: bool = False,
        learn: Sequence[str] | None = None,
    ) -> FitReport:
        """Fit the table's projection to training queries, in float64 (or a block table's blend).

        Block tables (e.g. hybrid [dense | sparse]) fit their blend instead, with
        :func:`softdb.learn._blend.fit_blend`: ``learn`` ⊆ {"tau", "weights", "q"} (default
        ("tau", "weights"): a handful of parameters; block 0's weight stays fixed),
        ``reg`` (λ of λ‖W_Q − I‖², with "q") and ``max_iter``; the loss is
        −log Σ_{j∈targets} w_j over the whole table. That returns a ``BlendFit``.

        Parameters
        ----------
        queries : array_like of shape (m, d)
            Raw training queries (normalised first when metric="cosine").
        targets : sequence or array_like
            loss="rows": one row id per query, or a list of ids per query; the
            loss is the mean of −log Σ_{j∈targets} w̄_j over the whole table
            (w̄: mean weight over heads). loss="values": (m, d_out) target answers;
            the loss is the mean squared error of the soft lookup.
        loss : {"rows", "values"}
        optimizer : {"auto", "lbfgs", "adam"}
            "lbfgs": full batch, scipy L-BFGS-B. "adam": mini-batches of queries
            (each against the whole table). "auto": L-BFGS up to 2·10⁷ query × row
            scores, else Adam.
        max_iter : int
            L-BFGS iterations or Adam epochs.
        reg : float
            λ of the penalty λ Σ ‖W − W₀‖² towards the starting weights.
        validation : (queries, targets), optional
            Evaluated after every iteration: recall@1 (rows; ties broken by the
            validation loss) or MSE (values). The best weights are kept, and the
            fit stops after ``patience`` iterations without improvement.
        patience : int
        batch_size : int
            Adam mini-batch size (queries).
        learning_rate : float
            Adam step size.
        seed : int
            Seeds Adam's shuffling and the low-rank factors.
        verbose : bool
            Print the loss (and validation metric) of every iteration.

        Returns
        -------
        FitReport

        Notes
        -----
        What is learned is set on the projection: ``learn`` (subset of "q", "k",
        "v"; W_V only matters to loss="values"), ``tied``, ``rank`` (low-rank
        update W₀ + A Bᵀ) and ``learn_temperature`` (log τ). The fit reads one
        version of the rows and writes the weights back with
        ``projection.set_weights`` (lookups then re-project the rows).

        Examples
        --------
        >>> from softdb import Projection, SoftTable
        >>> x = np.eye(3, dtype=np.float32)
        >>> t = SoftTable(x, ids=["a", "b", "c"], projection=Projection(3))
        >>> t.search(x, k=1).ids.ravel().tolist()  # identity: each row retrieves itself
        ['a', 'b', 'c']
        >>> report = t.fit(x, ["b", "c", "a"])  # a → b → c → a
        >>> t.search(x, k=1).ids.ravel().tolist(), report.loss_history[-1] < 0.01
        (['b', 'c', 'a'], True)
        """
        if self._state.kind == "blocks":
            return self._fit_blend(
                queries, targets, learn=("tau", "weights") if learn is None else learn, reg=reg, max_iter=max_iter
            )
        if learn is not None:
            raise TypeError(
                "learn= is for block tables; a dense table's projection says what it learns (Projection(d, learn=...))"
            )
        from softdb.learn._fit import as_targets, check_options, fit_arrays

        st = self._state
        proj = st.projection
        if proj is None:
            raise ValueError(
                "this table has no projection to fit; hint: table.projection = Projection(table.dim) "
                "(or SoftTable(..., projection=Projection(d)))"
            )
        check_options(loss, optimizer, max_iter, batch_size, patience, reg)
        rows = st.rows

        def prepare(q: Any, t: Any, what: str) -> tuple[np.ndarray, Any]:
            x = self._queries(q, st)[0].astype(np.float64)  # (m, d)
            if loss == "rows":
                return x, as_targets(t, len(x), rows.index, what)
            y = np.asarray(t, dtype=np.float64)  # (m, d_out)
            y = y[:, None] if y.ndim == 1 and proj.d_out == 1 else y
            if y.shape != (len(x), proj.d_out):
                raise ValueError(
                    f"{what} must have shape ({len(x)}, {proj.d_out}) (one answer of width d_out={proj.d_out} "
                    f"per query), got {y.shape}; hint: loss='values' targets are vectors, loss='rows' takes ids"
                )
            if not np.isfinite(y).all():
                raise ValueError(f"{what} must be finite")
            return x, y

        X, target = prepare(queries, targets, "targets")
        val = None if validation is None else prepare(validation[0], validation[1], "validation targets")
        params = proj.params
        update, report = fit_arrays(
            rows.keys.astype(np.float64),
            rows.values.astype(np.float64) if loss == "values" else None,
            X,
            target,
            params.W_Q,
            params.W_K,
            params.W_V,
            math.log(st.tau(None, params)),
            loss=loss,
            heads=proj.heads,
            tied=proj.tied,
            learn=proj.learn,
            learn_temperature=proj.learn_temperature,
            rank=proj.rank,
            optimizer=optimizer,
            max_iter=max_iter,
            reg=reg,
            validation=val,
            patience=patience,
            batch_size=batch_size,
            learning_rate=learning_rate,
            seed=seed,
            verbose=verbose,
        )
        proj.set_weights(**update)
        return report

    # ------------------------------------------------------ delegated features
    def _fit_blend(self, queries: Any, targets: Any, *, learn: Sequence[str], reg: float, max_iter: int) -> Any:
        """fit() of a block table: its blend (block weights, τ, W_Q of the dense block)."""
        from softdb.learn._blend import BlendParams, fit_blend
        from softdb.learn._fit import as_targets

        st = self._state
        rows = st.rows
        if not isinstance(rows.keys[0], np.ndarray):
            raise ValueError(
                "fit() of a block table needs a dense first block (its weight stays fixed and "
                "learn='q' fits its W_Q), but block 0 is sparse; hint: put the dense block first"
            )
        q, _ = self._queries(queries, st)  # raw queries: W_Q applies inside the fit
        tgt = as_targets(targets, q.shape[0], rows.index)
        start = BlendParams(st.block_weights, st.tau(), st.query_w)
        X = np.asarray(q[0], np.float64)  # (m, d_0)
        K = np.asarray(rows.keys[0], np.float64)  # (n, d_0)
        res = fit_blend(
            X, K, list(q[1:]), list(rows.keys[1:]), tgt, start, learn=learn, reg=float(reg), max_iter=int(max_iter)
        )
        with self._lock:
            self._state = self._state.with_(
                block_weights=tuple(res.params.weights), temperature=res.params.temperature, query_w=res.params.W_Q
            )
        return res

    def block_scores(self, query: Any, rows: Any) -> np.ndarray:
        """Each key block's raw score q_b·k_b of one query against some rows: (len(rows), n_blocks).

        A row's score is ``block_scores @ block_weights``; explain shows the parts.

        Examples
        --------
        >>> import scipy.sparse as sp
        >>> t = SoftTable([np.eye(2, dtype=np.float32), sp.csr_matrix(np.array([[0, 4], [2, 0]], np.float32))],
        ...               block_weights=[1.0, 0.5])
        >>> t.block_scores([np.array([1, 0], np.float32), sp.csr_matrix(np.array([[0, 1]], np.float32))], [0, 1])
        array([[1., 4.],
               [0., 0.]])
        """
        st = self._state
        if st.kind != "blocks":
            raise ValueError(f"block_scores needs block keys, but this table's keys are {st.kind}")
        r = st.rows
        q, _ = self._queries(query, st)
        q = Head(r.keys, w_q=st.query_w).project(q)
        idx = np.asarray(rows, np.int64)  # (k,)
        out = np.zeros((len(idx), len(r.keys)))  # (k, n_blocks)
        for b, (qb, kb) in enumerate(zip(q, r.keys)):
            s = kb[idx] @ qb[:1].T  # (k, 1)
            out[:, b] = (s.toarray() if sp.issparse(s) else np.asarray(s)).ravel()
        return out

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
            all-MiniLM-L6-v2 (``softdb.text.default_encoder()``). ``"bm25"``:
            :class:`softdb.text.BM25Encoder` (sparse BM25 keys, metric "dot", τ 1);
            ``"hybrid"``: :class:`softdb.text.HybridEncoder`, block keys
            [MiniLM | BM25] scored cos + β·BM25 (β = 0.05, τ = 0.05). An encoder
            with ``encode_corpus`` (BM25, hybrid) fits its statistics on ``texts``.

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
            from softdb.text import default_encoder

            encoder = default_encoder()
        elif isinstance(encoder, str):
            from softdb.text import text_encoder

            encoder = text_encoder(encoder)
        payloads = texts if payloads is None else payloads
        if not hasattr(encoder, "encode_corpus"):
            keys = encoder.encode(texts)
            table = cls(keys, values, ids=ids, payloads=payloads, metric="cosine", temperature=temperature)
        else:
            keys = encoder.encode_corpus(texts)  # CSR, or blocks [dense | sparse]
            if temperature is None:
                temperature = getattr(encoder, "temperature", None)
            table = cls(
                keys,
                values,
                ids=ids,
                payloads=payloads,
                metric="dot",
                temperature=temperature,
                block_weights=getattr(encoder, "weights", None),
            )
        table.encoder = encoder
        return table

    # ----------------------------------------------------------- persistence
    def save(self, path: str | PathLike[str]) -> None:
        """Save the table to a folder, atomically (the format: :mod:`softdb.store._storage`)."""
        from softdb.table._persist import save_state

        save_state(self.state, path)

    @classmethod
    def load(cls, path: str | PathLike[str], *, mmap: bool = False, verify: bool = True) -> SoftTable:
        """Load a table saved by :meth:`save` (the format: :mod:`softdb.store._storage`)."""
        from softdb.table._persist import load_state

        state = load_state(path, mmap=mmap, verify=verify)
        table = cls.from_state(state.with_(projection=None))
        if state.projection is not None:
            table.projection = state.projection
        return table
