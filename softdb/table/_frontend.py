"""The one front end of every table: questions in, answers out, wherever the kernel runs.

:class:`~softdb.SoftTable` and :class:`~softdb.distributed.ShardedTable` differ only
in where the kernel passes run: in this process (the query plan,
:mod:`softdb.engine._plan`) or on Dask workers returning mergeable partial states.
Everything around those passes is here, once:

- preparing queries (:func:`prepare_queries`): strings through the table's encoder,
  arrays checked, unit rows for "cosine";
- checking a question (:meth:`FrontEnd._answer`): k, the mask and τ, in that order;
- turning answers into results (:class:`FrontEnd` ``lookup``, ``weights``, ``search``):
  finite checks, one query → 1-D answers, ids and payloads of hits; scores become
  weights through :func:`softdb.engine._plan.hit_weights` and
  :func:`~softdb.engine._plan.dense_to_weights` on either side;
- what writes share: the first free integer id (:func:`next_int_id`), an id list
  (:func:`as_id_list`) and the values a new row needs (:func:`check_add_values`).

A table class subclasses :class:`FrontEnd` and implements four hooks: ``_snapshot``
(one consistent version), ``_spec`` (what preparing queries needs of it), ``_tau``
and ``_run`` (the kernel passes, returning a :class:`~softdb.table._state.Reply`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from softdb import _checks
from softdb.engine import _keys
from softdb.engine._plan import Ask
from softdb.table._match import mark_no_terms
from softdb.table._state import Reply, SearchResult, asked, unit_rows

__all__ = ["NO_K", "FrontEnd", "QuerySpec", "as_id_list", "check_add_values", "next_int_id", "prepare_queries"]

NO_K: Any = object()  # _answer(k=...) not given


@dataclass(frozen=True)
class QuerySpec:
    """What preparing queries needs to know of one version of a table."""

    n: int  # rows
    kind: str  # "dense", "csr" or "blocks" (softdb.engine._keys)
    keys: Any  # the keys (sparse and block queries are shaped after them); unused for dense keys
    dtype: np.dtype
    dim: int
    metric: str


def is_text(queries: Any) -> bool:
    """One string, or a non-empty list / tuple of strings."""
    return isinstance(queries, str) or (
        isinstance(queries, list | tuple) and bool(queries) and all(isinstance(q, str) for q in queries)
    )


def prepare_queries(queries: Any, spec: QuerySpec, encoder: Any) -> tuple[Any, bool]:
    """Queries → (m, d) in the table's dtype (encoded, checked, unit for "cosine"), and single.

    CSR keys take dense or CSR queries; block keys one query matrix per block.
    ``encoder`` is called only for string queries: it returns the table's encoder
    (or raises the table's own error when it has none).
    """
    one_text = isinstance(queries, str)
    if is_text(queries):
        texts = [queries] if one_text else list(queries)
        queries = encoder().encode(texts)
        if one_text and spec.kind == "dense":
            queries = queries[0]  # sparse and block queries stay 2-D; one text is still single
    if spec.kind != "dense":
        q, single = _keys.as_queries(queries, spec.keys, spec.dtype)
        _checks.check_not_empty(spec.n)
        return q, single or one_text
    if sp.issparse(queries):
        raise TypeError(
            "sparse queries need sparse keys; this table's keys are dense; "
            "hint: queries.toarray(), or build the table from CSR keys"
        )
    q = _checks.as_matrix(queries, "queries", dtype=spec.dtype, allow_1d=True)
    single = q.ndim == 1
    q = q[None, :] if single else q  # (m, d)
    _checks.check_width(q.shape[1], spec.dim, "queries")
    _checks.check_not_empty(spec.n)
    if spec.metric == "cosine":
        q = unit_rows(q, "queries", spec.dtype)  # (m, d)
    return q, single


def next_int_id(groups: Iterable[Any]) -> int:
    """1 + the largest integer id in ``groups`` (sequences of ids, or int64 arrays), else 0."""
    top = -1
    for g in groups:
        if isinstance(g, np.ndarray) and g.dtype.kind == "i":
            top = max(top, int(g.max())) if len(g) else top
        else:
            top = max(top, max((i for i in g if isinstance(i, int)), default=-1))
    return top + 1


def as_id_list(ids: Any) -> list:
    """The ids to remove as a list: one id (a str, bytes or any non-iterable) or an iterable of them."""
    if isinstance(ids, str | bytes) or not isinstance(ids, Iterable):
        return [ids]
    return list(ids)


def check_add_values(shared_kv: bool, values: Any, value_dim: int, n_new: int) -> None:
    """``add`` takes values exactly when the table has separate values."""
    if shared_kv and values is not None:
        raise ValueError(
            "this table's values are its keys (it was built with values=None), "
            "so add() takes no values; hint: build the table with explicit values"
        )
    if not shared_kv and values is None:
        raise ValueError(
            f"add() needs values of width {value_dim} for the {n_new} new rows, "
            "because this table has separate values; hint: add(keys, values)"
        )


class FrontEnd:
    """``lookup``, ``weights`` and ``search`` of every table; subclasses say where the kernel runs."""

    # ------------------------------------------------------------- hooks
    def _snapshot(self) -> Any:
        """One consistent version of the table, read once per question."""
        raise NotImplementedError

    def _spec(self, snap: Any) -> QuerySpec:
        raise NotImplementedError

    def _tau(self, snap: Any, temperature: float | None) -> float:
        """τ of a call (``temperature`` checked), else the table's."""
        raise NotImplementedError

    def _query_encoder(self) -> Any:
        """The encoder of string queries, or the table's error when it has none."""
        raise NotImplementedError

    def _check_ask(self, snap: Any, ask: Ask, m: int) -> None:
        """Refuse a question this table will not answer (checked before the mask)."""

    def _run(self, snap: Any, q: Any, single: bool, ask: Ask, tau: float, mask: np.ndarray | None) -> Reply:
        """The kernel passes: every answer ``ask`` wants, for prepared queries ``q``."""
        raise NotImplementedError

    def _parse_where(self, snap: Any, where: Any) -> Any:
        """A ``where=`` filter parsed and checked against the fields of ``snap`` (:mod:`softdb.table._where`)."""
        raise NotImplementedError

    def _where_mask(self, snap: Any, where: Any) -> np.ndarray:
        """The live rows of ``snap`` that pass a parsed filter: (n,) bool."""
        raise NotImplementedError

    def _run_where(
        self, snap: Any, q: Any, single: bool, ask: Ask, tau: float, mask: np.ndarray | None, where: Any
    ) -> Reply:
        """``_run`` with a parsed filter: by default its mask, AND the caller's."""
        wm = self._where_mask(snap, where)  # (n,)
        return self._run(snap, q, single, ask, tau, wm if mask is None else mask & wm)

    # ------------------------------------------------------------ questions
    def _answer(
        self,
        queries: Any,
        ask: Ask,
        *,
        temperature: float | None = None,
        mask: Any = None,
        k: Any = NO_K,
        where: Any = None,
    ) -> Reply:
        """Answer through one version of the table (internal: for softdb's own modules).

        Parameters
        ----------
        queries : array_like of shape (m, d) or (d,), or str / list of str
        ask : softdb.engine._plan.Ask
            What to compute (soft, hard, top-k, log-sum-exp, weights, statistics, extra τ).
        temperature : float, optional
        mask : array_like of bool, shape (n,) or (m, n), optional
        k : int, optional
            Checked against the table's size (of the same version) and put into ``ask``.
        where : dict or str, optional
            A filter (:mod:`softdb.table._where`), ANDed with ``mask``.

        Returns
        -------
        softdb.table._state.Reply
            A :class:`~softdb.table._state.Planned` for a SoftTable.

        Examples
        --------
        >>> import numpy as np
        >>> from softdb import SoftTable
        >>> t = SoftTable(np.eye(2, dtype=np.float32), temperature=1.0)
        >>> p = t._answer([1.0, 0.0], Ask(hard=True, stats=True))
        >>> p.one(p.answers.hard), round(float(p.one(p.answers.effective_rows)), 3)
        (array([1., 0.], dtype=float32), 1.648)
        """
        snap = self._snapshot()
        spec = self._spec(snap)
        q, single = prepare_queries(queries, spec, self._query_encoder)
        m = q.shape[0]
        if k is not NO_K:
            ask = replace(ask, k=_checks.as_k(k, spec.n))
        self._check_ask(snap, ask, m)
        mask = _checks.as_mask(mask, m, spec.n, single)
        filt = None if where is None else self._parse_where(snap, where)
        tau = self._tau(snap, temperature)
        if filt is not None:
            reply = self._run_where(snap, q, single, ask, tau, mask, filt)
        else:
            reply = self._run(snap, q, single, ask, tau, mask)
        return mark_no_terms(reply, q, spec.kind, self)  # BM25: no term, no match

    def lookup(
        self,
        queries: Any,
        *,
        mode: str = "soft",
        temperature: float | None = None,
        mask: Any = None,
        where: Any = None,
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
        where : dict or str, optional
            A filter on the payloads, Chroma style (``{"year": {"$gte": 2020}}``; the
            operators and their semantics: docs/guide/filters.md), ANDed with ``mask``.

        Returns
        -------
        ndarray of shape (m, d_v), or (d_v,) for one query

        Examples
        --------
        >>> import numpy as np
        >>> from softdb import SoftTable
        >>> t = SoftTable(np.eye(2, dtype=np.float32), [[0.0], [1.0]], temperature=1.0)
        >>> t.lookup([[5.0, 0.0]]).round(4)
        array([[0.0067]], dtype=float32)
        >>> t.lookup([5.0, 0.0], mode="hard")
        array([0.], dtype=float32)
        """
        mode = _checks.as_mode(mode)
        ask = Ask(soft=mode == "soft", hard=mode == "hard")
        p = self._answer(queries, ask, temperature=temperature, mask=mask, where=where)
        if mode == "hard":
            return asked(p.one(p.answers.hard))
        _checks.check_finite_result(asked(p.answers.soft), "soft lookup", p.tau)
        return asked(p.one(p.answers.soft))

    def weights(
        self,
        queries: Any,
        *,
        temperature: float | None = None,
        mask: Any = None,
        heads: str = "mean",
        where: Any = None,
    ) -> np.ndarray:
        """The attention weights softmax(scores / τ) of every row.

        This output is O(m × n) by nature (× heads with ``heads="each"``); use
        :meth:`search` for the top rows.

        Parameters
        ----------
        queries : array_like of shape (m, d) or (d,)
        temperature : float, optional
        mask : array_like of bool, shape (n,) or (m, n), optional
            Masked rows get weight 0; a query with no allowed row gets all zeros.
        heads : {"mean", "each"}
            How a table with several heads (a projection with ``heads > 1``) reports
            them. "mean" (the default): the mean over heads of each head's weights,
            which still sums to 1 (what ``search`` ranks by). "each": every head's own
            weights, stacked on a first axis. A table without heads has one.
        where : dict or str, optional
            A filter on the payloads (as in :meth:`lookup`): rows that fail it get weight
            0, the others are renormalised, exactly as masked rows.

        Returns
        -------
        ndarray of shape (m, n), or (n,) for one query; each row sums to 1.
            With ``heads="each"``: shape (heads, m, n), or (heads, n) for one query.

        Examples
        --------
        >>> import numpy as np
        >>> from softdb import Projection, SoftTable
        >>> t = SoftTable(np.eye(2, dtype=np.float32), temperature=1.0)
        >>> t.weights([1.0, 0.0]).round(4)
        array([0.7311, 0.2689], dtype=float32)
        >>> t2 = SoftTable(np.eye(2, dtype=np.float32), temperature=1.0, projection=Projection(2, heads=2))
        >>> t2.weights([1.0, 0.0], heads="each").round(4)  # head 0 reads dim 0, head 1 dim 1
        array([[0.7311, 0.2689],
               [0.5   , 0.5   ]], dtype=float32)
        >>> t2.weights([1.0, 0.0]).round(4)  # the mean over heads
        array([0.6155, 0.3845], dtype=float32)
        """
        if heads not in ("mean", "each"):
            raise ValueError(
                f"heads must be 'mean' or 'each', got {heads!r}; hint: 'each' gives every head's weights, "
                "shape (heads, m, n)"
            )
        each = heads == "each"
        p = self._answer(queries, Ask(weights=True, each=each), temperature=temperature, mask=mask, where=where)
        _checks.check_finite_result(asked(p.answers.weights), "weights", p.tau)
        if not each:
            return asked(p.one(p.answers.weights))
        w = p.answers.head_weights
        w = asked(p.answers.weights)[None] if w is None else w  # (h, m, n)
        return w[:, 0] if p.single else w

    def search(
        self,
        queries: Any,
        k: int = 10,
        *,
        temperature: float | None = None,
        mask: Any = None,
        where: Any = None,
        by: str = "chunk",
        rank: str = "score",
    ) -> SearchResult:
        """The k best rows (or documents) of each query, with scores and full-table weights.

        Parameters
        ----------
        queries : array_like of shape (m, d) or (d,)
        k : int
            1 <= k <= len(table).
        temperature : float, optional
        mask : array_like of bool, shape (n,) or (m, n), optional
        where : dict or str, optional
            A filter on the payloads (as in :meth:`lookup`): exactly k hits whenever
            k rows pass, with their full-table weights over the rows that pass.
        by : {"chunk", "document"}
            "chunk": rows. "document": the k best documents of a table built from documents
            (:mod:`softdb.table._documents`): a document's weight is the sum of its chunks'
            full-table weights, its score, row and payload its best chunk's.
        rank : {"score", "weight"}
            With ``by="document"``: order documents by their best chunk's score or by their weight.

        Returns
        -------
        SearchResult
            ids, scores, weights, payloads and rows, each (m, k) or (k,), sorted by
            score descending (ties: lowest row first). Slots past the allowed rows
            hold id None, score -inf, weight 0 and row -1. A query with no hit at all
            (every row masked, or a BM25 query with no term the table knows, which
            scores 0 on every row) is a no-match: ``SearchResult.no_match``.

        Examples
        --------
        >>> import numpy as np
        >>> from softdb import SoftTable
        >>> t = SoftTable(np.eye(3, dtype=np.float32), ids=["x", "y", "z"], temperature=1.0)
        >>> hits = t.search([0.0, 2.0, 1.0], k=2)
        >>> hits.ids, hits.scores, hits.weights.round(3)
        (array(['y', 'z'], dtype=object), array([2., 1.], dtype=float32), array([0.665, 0.245], dtype=float32))
        >>> t2 = SoftTable(np.eye(3, dtype=np.float32), payloads=[{"y": 2019}, {"y": 2021}, {"y": 2022}])
        >>> t2.search([0.0, 2.0, 1.0], k=2, where={"y": {"$gte": 2021}}).payloads
        array([{'y': 2021}, {'y': 2022}], dtype=object)
        """
        if by != "chunk":
            if by != "document":
                raise ValueError(f"by must be 'chunk' or 'document', got {by!r}; hint: by='document' groups chunks")
            from softdb.table._documents import search_documents

            return search_documents(self, queries, k, temperature=temperature, mask=mask, where=where, rank=rank)
        p = self._answer(queries, Ask(lse=True), temperature=temperature, mask=mask, k=k, where=where)
        _checks.check_finite_result(asked(p.answers.hit_weights), "search weights", p.tau)
        return p.hits()
