"""A table's documented internal state: what storage, fit, explain and the CLI share.

:class:`SoftTable` keeps one :class:`TableState` and swaps it whole on every change
(``add``, ``remove``, setting the projection or the encoder), so a reader that
takes ``table._state`` once sees one consistent version. Nothing in a state is
mutated: the rows (:class:`Rows`) are read-only arrays, and a projection's weights
are themselves swapped whole (``Projection.params``).

Fields of :class:`TableState`
-----------------------------
rows : Rows
    The current rows version (:mod:`softdb.table._segments`): segment views, each with its
    live bitmap; ``keys`` (n, d) (unit rows for "cosine"), ``values`` (n, d_v) (``keys``
    itself when K = V), ``ids``, ``payloads`` of the live rows in global order (gathered on
    first use), ``index`` (id → row), ``parts`` (what the query plan runs over).
metric : {"dot", "cosine"}
temperature : float or None
    The table's own τ; None means the default (see :meth:`TableState.tau`).
projection : Projection or None
encoder : object or None
    The text encoder; ``encoder_name`` is what a saved table records (a loaded
    table rebuilds the encoder from it on first use).
shared_kv, has_payloads : bool
dim, value_dim : int; dtype : numpy dtype

:class:`Reply` is what a question returns to the front end (:mod:`softdb.table._frontend`),
whatever ran the kernel passes; :class:`Planned`, what ``SoftTable._answer`` returns, adds the
state, τ and heads the plan's answers came from, for modules that print or test them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, NamedTuple, cast

import numpy as np

from softdb import _checks
from softdb.engine import _keys
from softdb.engine._plan import Answers, values_at
from softdb.engine._segmented import Part, Parts
from softdb.table._segments import Rows

__all__ = [
    "COSINE_TEMPERATURE",
    "Planned",
    "Reply",
    "Rows",
    "SearchResult",
    "TableState",
    "asked",
    "default_temperature",
    "unit_rows",
]

#: Default temperature for metric="cosine": all-MiniLM-L6-v2 and most sentence
#: encoders are trained with a contrastive loss at scale 20, i.e. τ = 0.05.
COSINE_TEMPERATURE = 0.05


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

    ``no_match`` is True for a query with no hit at all (see :attr:`no_match`).
    """

    ids: np.ndarray
    scores: np.ndarray
    weights: np.ndarray
    payloads: np.ndarray | None
    rows: np.ndarray

    @property
    def no_match(self) -> Any:
        """True where a query has no hit at all: every row masked, or a BM25 query with no known term.

        A bool for one query, an ndarray of bool of shape (m,) for a batch.

        Examples
        --------
        >>> import numpy as np
        >>> from softdb import SoftTable
        >>> t = SoftTable(np.eye(2, dtype=np.float32))
        >>> t.search([1.0, 0.0], k=1).no_match, t.search([1.0, 0.0], k=1, mask=[False, False]).no_match
        (False, True)
        """
        none = (np.asarray(self.rows) < 0).all(axis=-1)  # () or (m,)
        return bool(none) if none.ndim == 0 else none

    def to_dicts(self) -> list:
        """Hits as ``{"id", "score", "weight", "payload"}`` dicts (see :func:`softdb.views.to_dicts`)."""
        from softdb.render import to_dicts

        return to_dicts(self)

    def to_pandas(self) -> Any:
        """Hits as a pandas DataFrame (see :func:`softdb.views.to_pandas`; needs ``softdb[views]``)."""
        from softdb.render import to_pandas

        return to_pandas(self)

    def _repr_html_(self) -> str:
        from softdb.render import search_result_html

        return search_result_html(self)


def asked(x: np.ndarray | None) -> np.ndarray:
    """An answer that was asked for (an :class:`Answers` field is None only when it was not)."""
    return cast(np.ndarray, x)


def shared_values(keys: Any) -> Any:
    """The values of a K = V table: the keys, or the first block of block keys."""
    return keys[0] if isinstance(keys, _keys.Blocks) else keys


def unit_rows(k: np.ndarray, name: str, dtype: np.dtype) -> np.ndarray:
    """L2-normalise rows for metric="cosine"; a zero vector is an error."""
    if not len(k):
        return k
    norms = np.sqrt(np.einsum("ij,ij->i", k, k, dtype=np.float64))  # (n,)
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        raise ValueError(
            f"{name} has {zero.size} zero vectors (first at row {int(zero[0])}), which have no "
            "direction for metric='cosine'; hint: drop them or use metric='dot'"
        )
    return (k / norms[:, None]).astype(dtype, copy=False)  # (n, d)


@dataclass(frozen=True)
class TableState:
    """One consistent version of a table (see the module docstring)."""

    rows: Rows
    metric: str
    temperature: float | None
    shared_kv: bool
    has_payloads: bool
    dim: int
    value_dim: int
    dtype: np.dtype
    projection: Any = None
    encoder: Any = None
    encoder_name: str | None = None
    kind: str = "dense"  # "dense", "csr" or "blocks" (softdb.engine._keys)
    block_weights: tuple | None = None  # β_b of each key block (blocks only)
    query_w: np.ndarray | None = None  # (d_0, d_0) W_Q of the first query block (a fitted hybrid)

    @classmethod
    def build(
        cls,
        keys: Any,
        values: np.ndarray | None,
        *,
        ids: Any,
        payloads: Any,
        metric: str,
        temperature: float | None,
        unit: bool = False,
        block_weights: Any = None,
        query_w: np.ndarray | None = None,
    ) -> TableState:
        """The one construction path: validated arrays → a state (keys made unit unless ``unit``).

        ``keys`` may be dense, scipy CSR or :class:`softdb.engine._keys.Blocks` (with ``block_weights``).
        """
        metric = _checks.as_metric(metric)
        tau = None if temperature is None else _checks.as_temperature(temperature)
        kind = _keys.kind_of(keys)
        n = keys.shape[0]
        if kind != "dense" and metric != "dot":
            raise ValueError(
                f"metric={metric!r} needs dense keys, but these keys are {kind}; "
                "hint: metric='dot' (normalise dense blocks yourself, as text encoders do)"
            )
        if kind == "blocks":
            w = [1.0] * len(keys) if block_weights is None else [float(x) for x in block_weights]
            if len(w) != len(keys) or not all(np.isfinite(w)):
                raise ValueError(
                    f"block_weights must be {len(keys)} finite numbers, one per key block, got "
                    f"{list(block_weights or [])}"
                )
            block_weights = tuple(w)
        elif block_weights is not None:
            raise ValueError(
                "block_weights need block keys (a list of key matrices), but these keys are "
                f"{kind}; hint: SoftTable([dense, sparse], block_weights=[1, 0.05])"
            )
        ids = _checks.as_ids(ids, n)
        payloads = _checks.as_payloads(payloads, n)
        if metric == "cosine" and not unit:
            keys = unit_rows(keys, "keys", keys.dtype)
        shared = shared_values(keys)
        rows = Rows.build(keys, shared if values is None else values, ids, payloads)
        dtype = keys[0].dtype if kind == "blocks" else keys.dtype
        return cls(
            rows,
            metric,
            tau,
            values is None,
            payloads is not None,
            keys.shape[1],
            shared.shape[1] if values is None else values.shape[1],
            dtype,
            kind=kind,
            block_weights=block_weights,
            query_w=query_w,
        )

    def with_(self, **changes: Any) -> TableState:
        return replace(self, **changes)

    @property
    def growing_text(self) -> bool:
        """True if the encoder is a growing BM25 / hybrid one: the sparse keys are term counts."""
        return bool(getattr(self.encoder, "growing", False))

    @cached_property
    def template(self) -> Any:
        """Keys of the table's kind and widths (a growing vocabulary's: queries are shaped after them)."""
        t = self.rows.template
        return _keys.widen(t, self.encoder.dims) if self.growing_text else t

    def score(self, keys: Any) -> Any:
        """Keys (of one segment) as the kernel scores them: term counts become a BM25 scorer (current statistics)."""
        return self.encoder.key_scorer(keys) if self.growing_text else keys

    @cached_property
    def score_parts(self) -> Parts:
        """The rows' parts (segments) as the kernel scores them (see :meth:`score`), once per version."""
        parts = self.rows.parts
        if not self.growing_text:
            return parts
        return Parts([Part(self.score(p.keys), p.values, p.key_norm_max, p.live) for p in parts.parts])

    @cached_property
    def weighted_keys(self) -> Any:
        """The keys with BM25 weights in place of term counts (for fit and explain), once per version."""
        return self.encoder.weigh(self.rows.keys) if self.growing_text else self.rows.keys

    def tau(self, temperature: float | None = None, params: Any = None) -> float:
        """τ of a call: the call's, else the projection's own, else the table's, else the default.

        The default is √d for "dot" (√(d_k / heads) in projected mode: the
        per-head Transformer scaling) and 0.05 for "cosine".
        """
        if temperature is not None:
            return _checks.as_temperature(temperature)
        proj = self.projection
        if proj is not None:
            log_tau = (proj.params if params is None else params).log_tau
            if log_tau is not None:
                return float(np.exp(log_tau))
        if self.temperature is not None:
            return self.temperature
        return default_temperature(self.kind, self.metric, self.dim, proj)


def default_temperature(kind: str, metric: str, dim: int, projection: Any = None) -> float:
    """τ of a table that has none of its own (every kind of table: one rule).

    1 for sparse or block keys (their scores have no √d scale; hybrid text tables set
    their own τ), 0.05 for "cosine", √(d_k / heads) in projected mode, else √d.
    """
    if kind != "dense":
        return 1.0
    if metric == "cosine":
        return COSINE_TEMPERATURE
    if projection is not None:
        return float(np.sqrt(projection.d_k / projection.heads))
    return float(np.sqrt(dim))


@dataclass
class Reply:
    """Answers of one question, whatever ran its kernel passes (what the front end reads).

    Attributes
    ----------
    answers : Answers
    tau : float
    single : bool
        The call was one query (1-D or one string): ``one()`` strips the batch axis.
    """

    answers: Answers
    tau: float
    single: bool
    #: (m,) bool: queries with no entry in the keys' sparse block(s) (None: no sparse block);
    #: set by the front end (:func:`softdb.table._match.mark_no_terms`)
    no_terms: np.ndarray | None = field(default=None, init=False, repr=False)

    def hits(self) -> SearchResult:
        """The top-k answers as a SearchResult ((k,) arrays for a single query)."""
        a = self.answers
        res = self.hits_of(a.rows, a.scores, a.hit_weights)
        if self.single:
            res = SearchResult._make(None if x is None else x[0] for x in res)
        return res

    def hits_of(self, rows: Any, scores: Any, weights: Any) -> SearchResult:
        """Ids and payloads of hit ``rows`` (-1 = no match → None), as a SearchResult."""
        raise NotImplementedError

    def one(self, x: np.ndarray | None) -> np.ndarray | None:
        """``x[0]`` for a single query, else ``x``."""
        return x[0] if self.single and x is not None else x


@dataclass
class Planned(Reply):
    """Answers of one plan call (in process), with what they came from.

    Attributes
    ----------
    answers, tau, single
        As in :class:`Reply`.
    state : TableState
        The version the answers were computed on (ids, payloads, values).
    heads : list of Head
    queries : ndarray of shape (m, d)
        The queries as the plan took them (encoded, unit rows for "cosine").
    taus : tuple of float
        The extra temperatures asked for.
    out : projected rows, optional
        Their output projection W_O (+ b_O) turned the heads' answers into ``soft``
        and ``hard``; :meth:`hit_values` applies it too.
    """

    state: TableState
    heads: list = field(repr=False, default_factory=list)
    queries: np.ndarray | None = field(repr=False, default=None)
    taus: tuple = ()  # the extra temperatures of the ask (``answers.lse_at`` columns)
    out: Any = field(repr=False, default=None)  # softdb.learn._params.ProjectedRows with W_O, or None

    def hits_of(self, rows: Any, scores: Any, weights: Any) -> SearchResult:
        ids, pays = self.state.rows.labels(rows)
        if not self.state.has_payloads:
            pays = None
        elif pays is None:
            pays = np.full(np.shape(rows), None, object)
        return SearchResult(ids, scores, weights, pays, rows)

    def hit_weights_at(self, i: int) -> np.ndarray:
        """The hits' full-table weights at the i-th extra temperature of the ask: (m, k).

        Exact re-weighting: w_j(τ_i) = exp(score_j / τ_i − lse(τ_i)) (one head).
        """
        a = self.answers
        tau = self.taus[i]
        with np.errstate(over="ignore", invalid="ignore"):
            w = np.exp(asked(a.scores).astype(np.float64) / tau - asked(a.lse_at)[:, i, None])  # (m, k)
        return np.where(asked(a.rows) >= 0, w, 0.0)

    def effective_rows_at(self, i: int, i_half: int) -> np.ndarray:
        """1 / Σ w² at the i-th extra temperature τ, given τ / 2 is the ``i_half``-th: (m,).

        Σ_j w_j(τ)² = exp(lse(τ/2) − 2·lse(τ)), so no pass beyond the log-sum-exps is needed.
        """
        lse = asked(self.answers.lse_at).astype(np.float64)  # (m, g)
        return np.exp(2.0 * lse[:, i] - lse[:, i_half])  # (m,)

    def scores_of(self, rows: np.ndarray) -> np.ndarray:
        """Scores of some ``rows`` (r,) for every query: (m, r), as search reports them.

        One head: the raw score; several: log of the mean head weight (needs ``Ask(lse=True)``).
        """
        rows = np.asarray(rows, np.int64)
        if len(self.heads) == 1:
            h = self.heads[0]
            return h.project(self.queries) @ np.asarray(h.keys[rows]).T  # (m, r)
        out = None
        for a, h in enumerate(self.heads):
            la = (h.project(self.queries) @ np.asarray(h.keys[rows]).T).astype(np.float64) / self.tau
            la -= asked(self.answers.lse)[:, a, None]  # (m, r)  log w^a
            out = la if out is None else np.logaddexp(out, la)
        return out - np.log(len(self.heads))  # (m, r)

    def hit_values(self, rows: np.ndarray) -> np.ndarray:
        """Values of ``rows`` in the answers' space (projected, concatenated over heads, after W_O)."""
        v = values_at(self.heads, rows, self.state.dtype)  # (..., d_out)
        return v if self.out is None else self.out.output(v, np.asarray(rows) >= 0)  # (..., d_o)
