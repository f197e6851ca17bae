"""Filtered questions in process: ``where=`` on a SoftTable, and the prefilter for selective masks.

:class:`Filtering` gives :class:`~softdb.SoftTable` the front end's two filter hooks: parse a
filter against the fields of one version, and turn it into the mask of that version's live rows
(:func:`softdb.table._columns.where_mask`, numpy over per-segment columns).

The **prefilter** (:func:`prefiltered`): when few rows may pass a mask (a filter's or the
caller's), scoring every row and throwing most scores away is waste. Instead the passing rows
are gathered (per segment, :meth:`softdb.engine._segmented.Parts.take`) and the same plan runs
over that subset; its rows are mapped back to the table's rows. The map is increasing, so ties
still go to the lowest row, and every answer equals the mask path's: the same rows and scores
(the same dot products), weights and soft answers within float rounding of the softmax sums.

The switch point :data:`PREFILTER_BELOW` was measured with ``benchmarks/bench_filters.py``
(docs/guide/filters.md): gathering a passing row costs about as much as scoring it against one
query, so below it the subset pays for its copy.

Examples
--------
>>> import numpy as np
>>> from softdb import SoftTable
>>> t = SoftTable(np.eye(4, dtype=np.float32), payloads=[{"y": i} for i in range(4)], temperature=1.0)
>>> t.search([1.0, 0.0, 0.0, 1.0], k=2, where={"y": {"$in": [2, 3]}}).rows  # one row of 4 scored twice
array([3, 2])
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import numpy as np

from softdb.engine._plan import Answers, Ask, Head, answer
from softdb.engine._protocols import BoundScorer, Scorer
from softdb.engine._segmented import Parts
from softdb.table._columns import fields_of, where_mask
from softdb.table._where import Filter, parse_where

__all__ = ["PREFILTER_BELOW", "Filtering", "GatherScorer", "gather", "prefiltered"]

#: Score only the passing rows when at most this share of the rows passes, for fewer than
#: :data:`MANY_QUERIES` queries (they are gathered into one array, then the one-query kernel):
#: bench_filters.py --sweep, 300k × 384: at 5% the subset already costs about as much as the
#: masked GEMV (gathering a row costs more than scoring it once), so only small shares switch.
PREFILTER_BELOW = 0.05
#: The same from :data:`MANY_QUERIES` queries on (keys gathered chunk by chunk as scored): the
#: sweep measured 0.22× the mask path at 5%, 0.63× at 50%, 0.84× at 70%, 1.28× at 90%.
PREFILTER_BELOW_MANY = 0.7
MANY_QUERIES = 16


class Filtering:
    """The filter hooks of :class:`~softdb.table._frontend.FrontEnd` for a table in this process."""

    def _parse_where(self, snap: Any, where: Any) -> Filter:
        if isinstance(where, Filter):
            return where
        return parse_where(where, fields_of(snap[0].rows))

    def _where_mask(self, snap: Any, where: Any) -> np.ndarray:
        return where_mask(snap[0].rows, where)  # (n,)


def _threshold(m: int) -> float:
    return PREFILTER_BELOW_MANY if m >= MANY_QUERIES else PREFILTER_BELOW


def prefiltered(st: Any, proj: Any, q: Any, ask: Ask, tau: float, mask: np.ndarray | None) -> Answers | None:
    """The plan's answers over the rows ``mask`` allows, scoring only those; None: use the mask path.

    Parameters
    ----------
    st : softdb.table._state.TableState
    proj : projected rows, or None
        Projected tables take the mask path.
    q : queries as the plan takes them, (m, d)
    ask : Ask
    tau : float
    mask : ndarray of bool, shape (n,) or (m, n), optional

    Returns
    -------
    Answers or None
        With rows of the whole table (-1: no match), weights (m, n) with zeros where masked.
    """
    if mask is None or proj is not None:
        return None
    n = st.rows.n
    m = q.shape[0] if hasattr(q, "shape") else q[0].shape[0]
    allowed = mask if mask.ndim == 1 else mask.any(axis=0)  # (n,)
    sub = np.flatnonzero(allowed)  # (s,)  increasing
    if len(sub) > _threshold(m) * n:
        return None
    if len(sub):
        sub_mask = None if mask.ndim == 1 else mask[:, sub]  # (m, s)
    else:  # nothing passes: one row, masked, gives the plan's defined no-match
        sub = np.zeros(1, np.int64)
        sub_mask = np.zeros(1, bool)
    parts = st.rows.parts
    values = None
    if m >= MANY_QUERIES and all(isinstance(p.keys, np.ndarray) for p in parts.parts):  # gathered as scored
        keys: Any = GatherScorer(parts, sub, st.rows.key_norm_max)
        if ask.soft or ask.hard:  # values are read by answers only
            values = gather(parts, sub, values=True)  # (s, d_v)
    else:
        keys = st.score(gather(parts, sub))  # (s, d) of the table's key kind
        if ask.soft or ask.hard:  # (a K = V table's values are its keys)
            values = (keys[0] if isinstance(keys, tuple) else keys) if st.shared_kv else gather(parts, sub, values=True)
    head = Head(keys, values, st.query_w, st.rows.key_norm_max, st.block_weights)
    k = min(ask.k, len(sub)) if ask.k else 0
    a = answer([head], q, replace(ask, k=k), tau, sub_mask, dtype=st.dtype)
    return _lift(a, sub, n, ask.k, st.dtype)


def gather(parts: Parts, rows: np.ndarray, values: bool = False) -> Any:
    """Keys (or values) of increasing global live ``rows`` (s,): (s, d), one ``np.take`` per segment.

    Dense parts are copied into one array (no concatenation after); other key kinds go through
    :meth:`~softdb.engine._segmented.Parts.take`.
    """
    srcs = [p.values if values else p.keys for p in parts.parts]
    if not all(isinstance(a, np.ndarray) for a in srcs):
        return parts.take(rows, values=values)
    which, local = parts.locate(rows)  # (s,), (s,)  ``which`` non-decreasing
    out = np.empty((len(rows), srcs[0].shape[1]), srcs[0].dtype)  # (s, d)
    bounds = np.searchsorted(which, np.arange(len(srcs) + 1))  # (p + 1,)
    for i, src in enumerate(srcs):
        a, b = int(bounds[i]), int(bounds[i + 1])
        if b > a:
            np.take(src, local[a:b], axis=0, out=out[a:b])  # (s_i, d)
    return out


class GatherScorer(Scorer):
    """Dense keys of some rows of the parts, scored chunk by chunk from a small gathered buffer.

    ``scores(start, stop)`` copies the keys of subset rows start..stop (one ``np.take`` per
    segment) into a per-thread buffer of the chunk's size, then one GEMM: memory O(chunk × d),
    never a copy of every passing row.

    Examples
    --------
    >>> from softdb.engine._segmented import Part
    >>> K = np.arange(8, dtype=np.float32).reshape(4, 2)  # (4, 2)
    >>> s = GatherScorer(Parts([Part(K[:2]), Part(K[2:])]), np.array([0, 3]), None)
    >>> b = s.bind(np.ones((1, 2), np.float32))
    >>> b.scores(0, 2, np.empty((1, 2), np.float32))  # rows 0 and 3
    array([[ 1., 13.]], dtype=float32)
    """

    def __init__(self, parts: Parts, rows: np.ndarray, key_norm_max: float | None) -> None:
        self.srcs = [p.keys for p in parts.parts]  # (n_p, d) each
        which, self.local = parts.locate(rows)  # (s,), (s,)
        self.bounds = np.searchsorted(which, np.arange(len(self.srcs) + 1))  # (p + 1,)
        self.n = len(rows)
        self.key_norm_max = key_norm_max

    def bind(self, queries: np.ndarray, scale: float = 1.0) -> _GatherBound:
        dt = np.result_type(queries.dtype, self.srcs[0].dtype)
        q = queries if scale == 1.0 else queries * dt.type(scale)  # (m, d)
        return _GatherBound(self, q, dt)


class _GatherBound(BoundScorer):
    by_row = False
    one_query = False

    def __init__(self, scorer: GatherScorer, q: np.ndarray, dt: np.dtype) -> None:
        self.scorer, self.q, self.dtype, self.m = scorer, q, dt, q.shape[0]
        self.local = threading.local()  # one buffer per thread: the kernel may score ranges in parallel

    def scores(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        g, c = self.scorer, stop - start
        buf = getattr(self.local, "buf", None)
        if buf is None or len(buf) < c:
            buf = self.local.buf = np.empty((c, g.srcs[0].shape[1]), g.srcs[0].dtype)  # (c, d)
        for i, src in enumerate(g.srcs):
            a, b = max(start, int(g.bounds[i])), min(stop, int(g.bounds[i + 1]))
            if b > a:
                np.take(src, g.local[a:b], axis=0, out=buf[a - start : b - start])  # (c_i, d)
        return np.matmul(self.q, buf[:c].T, out=out)  # (m, c)

    def abs_max(self) -> float | None:
        if self.scorer.key_norm_max is None:
            return None
        return float(np.sqrt(np.max(np.einsum("md,md->m", self.q, self.q)))) * float(self.scorer.key_norm_max)


def _rows_back(rows: np.ndarray, sub: np.ndarray) -> np.ndarray:
    return np.where(rows >= 0, sub[np.maximum(rows, 0)], -1)


def _lift(a: Answers, sub: np.ndarray, n: int, k: int, dtype: np.dtype) -> Answers:
    """Answers over the subset → answers over the table's n rows."""
    if a.hard_rows is not None:
        a.hard_rows = _rows_back(a.hard_rows, sub)  # (m, 1)
    if a.rows is not None:
        rows, scores = _rows_back(a.rows, sub), np.asarray(a.scores)  # (m, k'), (m, k')
        pad = k - rows.shape[1]
        if pad > 0:  # fewer rows than k pass: the mask path's empty slots
            m = rows.shape[0]
            rows = np.concatenate([rows, np.full((m, pad), -1, np.int64)], axis=1)  # (m, k)
            scores = np.concatenate([scores, np.full((m, pad), -np.inf, scores.dtype)], axis=1)  # (m, k)
            if a.hit_weights is not None:
                a.hit_weights = np.concatenate([a.hit_weights, np.zeros((m, pad), a.hit_weights.dtype)], axis=1)
        a.rows, a.scores = rows, scores
    if a.weights is not None:
        w = np.zeros((a.weights.shape[0], n), dtype)  # (m, n)
        w[:, sub] = a.weights  # (m, s)
        a.weights = w
        if a.head_weights is not None:
            a.head_weights = w[None]  # (1, m, n)
    return a
