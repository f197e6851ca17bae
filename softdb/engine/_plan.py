"""The query plan: what answers a question wants → one kernel pass per head.

Every public way of asking (``lookup``, ``weights``, ``search``, ``explain``, the
CLI, :mod:`softdb.testing`, :mod:`softdb.plot`, :mod:`softdb.eval._evaluate`, ``fit``'s
validation) describes what it wants as an :class:`Ask` and calls :func:`answer`
once, with queries that are already encoded (and normalised for "cosine").

Heads
-----
A table is a sequence of :class:`Head` s: plain mode is one identity head (the
table's keys and values); projected mode has one head per projection head, each
scoring ``(q W_Q^a)·k^a`` and blending its own values. So there is one code path:

- one head: a single kernel pass gives every answer asked for at once (soft
  answer, hard row, top-k with full-table weights, log-sum-exp, dense weights,
  entropy and effective rows, log-sum-exp at extra temperatures);
- several heads: one pass per head gives each head's soft answer, hard row,
  log-sum-exp (and dense weights); the top-k by *mean head weight*
  w̄_j = (1/h) Σ_a w^a_j is then a second streaming pass, whose scorer
  (:class:`_MeanHeads`) turns each chunk's per-head scores into log w̄, so memory
  stays O(m × chunk), never O(m × n). Its "scores" are log w̄ (as ``search``
  reports them for heads > 1).

The hard answer is each head's best row's value (:func:`values_at`, the one
gather), concatenated over heads.

Examples
--------
>>> import numpy as np
>>> K = np.eye(3, dtype=np.float32)
>>> heads = [Head(K, K, key_norm_max=1.0)]
>>> a = answer(heads, np.array([[0, 2, 1]], np.float32), Ask(soft=True, hard=True, k=2), tau=1.0)
>>> a.rows.tolist(), a.hard.tolist(), a.hit_weights.round(3).tolist()
([[1, 2]], [[0.0, 1.0, 0.0]], [[0.665, 0.245]])
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from softdb.engine._kernel import run
from softdb.engine._keys import Blocks
from softdb.engine._keys import scorer as blocks_scorer
from softdb.engine._protocols import BoundScorer, Scorer
from softdb.engine._scorers import CsrScorer, DenseScorer, is_sparse
from softdb.engine._segmented import Parts, run_parts
from softdb.engine._states import KernelState, finalize

__all__ = ["Answers", "Ask", "Head", "answer", "dense_to_weights", "hit_weights", "values_at"]


@dataclass(frozen=True)
class Head:
    """One attention head over n rows.

    Attributes
    ----------
    keys : ndarray of shape (n, d_h), scipy.sparse matrix, Blocks, or a scorer
        The head's keys (the table's keys in plain mode; projected keys otherwise).
        A scorer (a :class:`~softdb.engine._protocols.Scorer`, e.g. a
        ``BlockScorer([DenseScorer(emb), CsrScorer(bm25)], weights)``) is used as is;
        a scipy.sparse matrix is scored by a ``CsrScorer`` (built per call: pass the
        scorer itself to build it once), :class:`~softdb.engine._keys.Blocks` by a
        ``BlockScorer`` with the block ``weights``.
    values : ndarray of shape (n, d_vh), optional
        Needed for soft and hard answers only.
    w_q : ndarray of shape (d, d_h), optional
        Query projection of the head; None is the identity (plain mode).
    key_norm_max : float, optional
        max ‖k_j‖ (enables the kernel's fast softmax).
    weights : sequence of float, optional
        Block weights, when ``keys`` are :class:`~softdb.engine._keys.Blocks`.
    b_q : ndarray of shape (d_h,), optional
        Query bias of the head: a query scores as ``q W_Q + b_q`` (dense queries only).
    """

    keys: Any
    values: Any = None
    w_q: np.ndarray | None = None
    key_norm_max: Any = None
    weights: Any = None  # block weights, when ``keys`` are softdb.engine._keys.Blocks
    b_q: np.ndarray | None = None  # (d_h,)  query bias (projected heads)

    def scorer(self) -> Scorer:
        """The kernel's scorer of these keys (see ``keys``)."""
        keys = self.keys
        if isinstance(keys, np.ndarray):
            return DenseScorer(keys, self.key_norm_max)
        if is_sparse(keys):
            return CsrScorer(keys, self.key_norm_max)
        if isinstance(keys, Blocks):
            return blocks_scorer(keys, self.weights, self.key_norm_max)  # blocks [dense | sparse]
        if isinstance(keys, Parts):
            raise TypeError("a segmented head has one scorer per part; hint: run it through _drive")
        return keys  # a scorer

    def part(self, i: int) -> Head:
        """Part i of a segmented head (keys a :class:`~softdb.engine._segmented.Parts`), as a plain head."""
        p = self.keys.parts[i]
        return Head(p.keys, p.values, None, p.key_norm_max, self.weights)

    @property
    def n(self) -> int:
        """Number of rows."""
        keys = self.keys
        return keys.shape[0] if isinstance(keys, np.ndarray | Blocks) or is_sparse(keys) else keys.n

    def project(self, q: Any) -> Any:
        """The head's queries: ``q W_Q + b_q`` (q itself without W_Q)."""
        if self.w_q is None:
            return q
        if isinstance(q, tuple):  # blocks: W_Q projects the first (dense) query block
            return type(q)([(q[0] @ self.w_q).astype(q[0].dtype, copy=False), *q[1:]])
        qh = q @ self.w_q  # (m, d_h)
        if self.b_q is not None:
            qh += self.b_q  # (m, d_h)
        return qh


@dataclass(frozen=True)
class Ask:
    """The answers wanted from one pass.

    Attributes
    ----------
    soft : bool
        The soft answer w·V (concatenated over heads).
    hard : bool
        The hard answer: each head's best row's value (and ``hard_rows``).
    k : int
        Top-k rows (0: none). Ranked by score (one head) or mean head weight.
    lse : bool
        log Σ exp(score / τ) of every query (per head), and the top-k hits'
        full-table weights.
    weights : bool
        The dense (m, n) weights (mean over heads); O(m × n) by nature.
    each : bool
        With ``weights``: also each head's own dense weights, (h, m, n).
    head : int, optional
        Answer with this head alone (its soft and hard answers, hits, weights and
        statistics), as if the table had that one head.
    stats : bool
        Entropy (nats) and effective number of rows 1 / Σ w² of the weights.
    taus : tuple of float
        Extra temperatures: the log-sum-exp at each (one head only), so hits can be
        re-weighted exactly at another τ: w_j(τ') = exp(score_j / τ' − lse(τ')).
    """

    soft: bool = False
    hard: bool = False
    k: int = 0
    lse: bool = False
    weights: bool = False
    stats: bool = False
    taus: tuple = ()
    each: bool = False
    head: int | None = None


@dataclass
class Answers:
    """What :func:`answer` computed (None where not asked for); m queries, h heads.

    Attributes
    ----------
    soft, hard : ndarray of shape (m, d_out)
    hard_rows : ndarray of int64, shape (m, h)
        Each head's best row (-1: no match).
    rows : ndarray of int64, shape (m, k)
        Top-k rows, best first; -1 where there is no match.
    scores : ndarray of shape (m, k)
        Raw scores (one head) or log mean head weight (heads > 1); -inf for no match.
    hit_weights : ndarray of shape (m, k)
        Full-table (mean) weight of each hit; 0 for no match (with ``lse`` or heads > 1).
    lse : ndarray of shape (m, h)
    weights : ndarray of shape (m, n)
    head_weights : ndarray of shape (h, m, n)
        Each head's weights (with ``each``).
    entropy, effective_rows : ndarray of shape (m,), float64
    lse_at : ndarray of shape (m, len(taus))
    """

    soft: np.ndarray | None = None
    hard: np.ndarray | None = None
    hard_rows: np.ndarray | None = None
    rows: np.ndarray | None = None
    scores: np.ndarray | None = None
    hit_weights: np.ndarray | None = None
    lse: np.ndarray | None = None
    weights: np.ndarray | None = None
    entropy: np.ndarray | None = None
    effective_rows: np.ndarray | None = None
    lse_at: np.ndarray | None = None
    head_weights: np.ndarray | None = None


def values_at(heads: Sequence[Head], rows: np.ndarray, dtype: np.dtype, *, per_head: bool = False) -> np.ndarray:
    """Values of ``rows`` concatenated over heads; zeros where a row is -1: (..., d_out).

    ``rows`` is (...,): the same row for every head, or with ``per_head`` (..., h):
    each head's own row (the hard answer). This is the one gather of values.
    """
    rows = np.asarray(rows)
    outs = []
    for a, h in enumerate(heads):
        r = rows[..., a] if per_head else rows  # (...,)
        idx = np.maximum(r, 0).ravel()  # (r,)
        v = h.keys.take(idx, values=True) if isinstance(h.keys, Parts) else h.values[idx]  # (r, d_vh)
        v = np.asarray(v.toarray() if hasattr(v, "toarray") else v).reshape(*r.shape, -1)  # (..., d_vh)
        outs.append(np.where((r >= 0)[..., None], v, 0))  # (..., d_vh)
    return np.concatenate(outs, axis=-1).astype(dtype, copy=False)  # (..., d_out)


def answer(
    heads: Sequence[Head],
    queries: np.ndarray,
    ask: Ask,
    tau: float,
    mask: np.ndarray | None = None,
    *,
    dtype: DTypeLike | None = None,
) -> Answers:
    """Answer ``queries`` (m, d) as ``ask`` says, in one kernel pass per head.

    Parameters
    ----------
    heads : sequence of Head
        One (plain mode or one projection head) or several.
    queries : ndarray of shape (m, d)
        Encoded (and, for metric="cosine", normalised) queries; whatever the heads'
        scorers take (e.g. a list of one matrix per block for a BlockScorer head).
    ask : Ask
    tau : float
        The temperature τ > 0.
    mask : ndarray of bool, shape (n,) or (m, n), optional
        True where a row is allowed.
    dtype : numpy dtype, optional
        Of the answers (default: the queries').

    Returns
    -------
    Answers
    """
    dt = np.dtype(getattr(queries, "dtype", np.float32) if dtype is None else dtype)
    if ask.head is not None:
        heads = [heads[ask.head]]
    if len(heads) == 1:
        out = _one_head(heads[0], queries, ask, tau, mask, dt)
        if ask.each and out.weights is not None:
            out.head_weights = out.weights[None]  # (1, m, n)  a view
        return out
    return _heads(heads, queries, ask, tau, mask, dt)


def _drive(heads: Sequence[Head], make: Any, queries: Any, *, values: bool = False, **kw: Any) -> KernelState:
    """The pass driver: one kernel pass over the heads' rows (``make(heads)`` is its scorer).

    Heads over segmented rows (keys a :class:`~softdb.engine._segmented.Parts`, every head
    with the same parts) run one pass per part, merged exactly
    (:func:`~softdb.engine._segmented.run_parts`); ``values``: blend the first head's values.
    """
    first = heads[0]
    if not isinstance(first.keys, Parts):
        return run(make(heads), queries, first.values if values else None, **kw)
    return run_parts(
        first.keys,
        lambda i: make([h.part(i) for h in heads]),
        queries,
        (lambda i: first.keys.parts[i].values) if values else None,
        **kw,
    )


def _asked(x: np.ndarray | None) -> np.ndarray:
    """An answer the pass was asked for, hence not None."""
    assert x is not None, "the kernel pass was asked for this answer"
    return x


def dense_to_weights(w: np.ndarray, lse: np.ndarray) -> np.ndarray:
    """Scaled scores (m, n) → softmax weights, in place; rows sum to 1 (or all 0)."""
    with np.errstate(invalid="ignore", over="ignore"):
        w -= np.where(lse == -np.inf, 0, lse)[:, None]  # (m, n)  no match: stays -inf → 0
        np.exp(w, out=w)  # (m, n)
        total = w.sum(axis=1, keepdims=True)  # (m, 1)  1 up to float32 rounding of lse
        w /= np.where(total == 0, 1, total)  # (m, n)  exact sums; no match stays all 0
    return w


def hit_weights(rows: np.ndarray, scores: np.ndarray, lse: np.ndarray, tau: float, dtype: np.dtype) -> np.ndarray:
    """Full-table weights exp(score / τ − lse) of top-k hits (m, k); 0 where a row is -1 (no match)."""
    found = rows >= 0  # (m, k)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # τ below float32: inf, checked
        logits = scores / np.asarray(tau, scores.dtype)  # (m, k)
        w = np.where(found, np.exp(logits - np.where(found, lse[:, None], 0)), 0)  # (m, k)
        w = np.minimum(w, 1)  # float32 rounding of score / τ against the log-sum-exp: no weight above 1
    return w.astype(dtype, copy=False)  # (m, k)


def _one_head(head: Head, q: Any, ask: Ask, tau: float, mask: np.ndarray | None, dtype: np.dtype) -> Answers:
    n = head.n
    qh = head.project(q)  # (m, d_h); for a BlockScorer head, one query matrix per block
    m = qh.shape[0] if hasattr(qh, "shape") else qh[0].shape[0]
    need_lse = ask.soft or ask.lse or ask.weights or ask.stats
    dense = np.empty((m, n), dtype) if ask.weights else None  # (m, n)
    state = _drive(
        [head],
        lambda hs: hs[0].scorer(),
        qh,
        values=ask.soft,
        scale=1.0 / tau,
        soft=need_lse,
        hard=ask.hard,
        k=ask.k,
        dense=dense,
        mask=mask,
        stats=ask.stats,
        grid=tuple(1.0 / t for t in ask.taus),
    )
    r = finalize(state)
    out = Answers(
        soft=r.out,
        lse=None if r.lse is None else r.lse[:, None],
        entropy=r.entropy,
        effective_rows=r.effective_rows,
        lse_at=r.lse_grid,
    )
    if ask.hard:
        best = _asked(r.best_row)  # (m,)
        out.hard_rows = best[:, None]  # (m, 1)
        out.hard = values_at([head], best, dtype)  # (m, d_vh)
    if ask.k:
        rows, scores = _asked(r.top_rows), _asked(r.top_scores)  # (m, k), (m, k)
        out.rows, out.scores = rows, scores
        if r.lse is not None:
            out.hit_weights = hit_weights(rows, scores, r.lse, tau, dtype)  # (m, k)
    if dense is not None:
        out.weights = dense_to_weights(dense, _asked(r.lse))  # (m, n)
    return out


def _heads(
    heads: Sequence[Head], q: np.ndarray, ask: Ask, tau: float, mask: np.ndarray | None, dtype: np.dtype
) -> Answers:
    if ask.taus:
        raise ValueError(
            "log-sum-exp at extra temperatures is defined for one head only; "
            "hint: ask a table without heads, or one head at a time"
        )
    m, n, h = q.shape[0], heads[0].n, len(heads)
    want_weights = ask.weights or ask.stats  # the mean of softmaxes has no streaming entropy
    qs = [hd.project(q) for hd in heads]  # h × (m, d_h)
    outs: list[np.ndarray] = []  # h × (m, d_vh), with ``soft``
    lses: list[np.ndarray] = []  # h × (m,)
    best: list[np.ndarray] = []  # h × (m,), with ``hard``
    w = None  # (m, n)  Σ over heads of the weights
    each = np.empty((h, m, n), dtype) if ask.each and ask.weights else None  # (h, m, n)
    for a, (hd, qh) in enumerate(zip(heads, qs)):  # pass 1: one pass per head
        dense = None if not want_weights else (np.empty((m, n), dtype) if each is None else each[a])  # (m, n)
        r = finalize(
            _drive(
                [hd],
                lambda hs: hs[0].scorer(),
                qh,
                values=ask.soft,
                scale=1.0 / tau,
                soft=True,
                hard=ask.hard,
                dense=dense,
                mask=mask,
            )
        )
        if ask.soft:
            outs.append(_asked(r.out))
        lses.append(_asked(r.lse))
        if ask.hard:
            best.append(_asked(r.best_row))
        if dense is not None:
            wa = dense_to_weights(dense, lses[-1])  # (m, n)
            w = wa.copy() if w is None and each is not None else wa if w is None else np.add(w, wa, out=w)
    lse = np.stack(lses, axis=1)  # (m, h)
    res = Answers(lse=lse, head_weights=each)
    if ask.soft:
        res.soft = np.concatenate(outs, axis=1)  # (m, d_out)
    if ask.hard:
        res.hard_rows = np.stack(best, axis=1)  # (m, h)
        res.hard = values_at(heads, res.hard_rows, dtype, per_head=True)  # (m, d_out)
    if w is not None:
        w /= h  # mean over heads
        if ask.stats:
            w64 = w.astype(np.float64)  # (m, n)
            with np.errstate(divide="ignore", invalid="ignore"):
                res.entropy = -np.where(w64 > 0, w64 * np.log(w64), 0).sum(axis=1)  # (m,)
                sq = (w64 * w64).sum(axis=1)  # (m,)
            res.effective_rows = np.where(sq > 0, 1.0 / np.where(sq > 0, sq, 1), 0)  # (m,)
        if ask.weights:
            res.weights = w
    if ask.k:  # pass 2: top-k by mean head weight, streamed
        r = finalize(_drive(heads, lambda hs: _MeanHeads(hs, lse, tau), qs, k=ask.k, mask=mask))
        top_scores = _asked(r.top_scores)  # (m, k)
        res.rows = r.top_rows  # (m, k)
        res.scores = top_scores.astype(dtype)  # (m, k)  log mean weight; -inf: no match
        res.hit_weights = np.exp(top_scores).astype(dtype)  # (m, k)
    return res


class _MeanHeads(Scorer):
    """A scorer whose scores are log w̄_j = log (1/h) Σ_a exp(s^a_j / τ − lse_a), in float64.

    Used by the second pass of multi-head search: the kernel's top-k then ranks rows by
    mean head weight with memory O(m × chunk).
    """

    def __init__(self, heads: Sequence[Head], lse: np.ndarray, tau: float) -> None:
        self.heads, self.n, self.tau = heads, heads[0].n, tau
        self.lse = np.where(lse == -np.inf, 0, lse)  # (m, h)  no match: scores stay -inf

    def bind(self, queries: Sequence[np.ndarray], scale: float = 1.0) -> _MeanHeadsBound:
        bound = [hd.scorer().bind(qh, 1.0 / self.tau) for hd, qh in zip(self.heads, queries)]
        return _MeanHeadsBound(bound, self.lse, math.log(len(self.heads)))


class _MeanHeadsBound(BoundScorer):
    by_row = False
    one_query = False
    dtype = np.dtype(np.float64)

    def __init__(self, bound: list[BoundScorer], lse: np.ndarray, log_h: float) -> None:
        self.bound, self.lse, self.log_h, self.m = bound, lse, log_h, bound[0].m
        self.local = threading.local()  # one buffer per thread: the kernel may score ranges in parallel

    def scores(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        t = getattr(self.local, "tmp", None)
        if t is None or t.size < out.size:
            t = self.local.tmp = np.empty(out.size, self.bound[0].dtype)  # (m·c,)  reused by every chunk
        t = t[: out.size].reshape(out.shape)  # (m, c)
        out.fill(-np.inf)
        for a, b in enumerate(self.bound):
            b.scores(start, stop, t)  # (m, c)  s^a / τ
            t -= self.lse[:, a, None].astype(t.dtype)  # (m, c)  log w^a
            np.logaddexp(out, t, out=out)  # (m, c)  log Σ_a w^a, float64: no underflow
        out -= self.log_h  # (m, c)  log mean weight
        return out

    def abs_max(self) -> float | None:
        return None
