"""The one streaming engine that turns scores into answers.

Every lookup walks the rows in chunks. Per chunk it asks a scorer for the scores
(:mod:`softdb.engine._scorers`: a GEMM for dense keys, a sparse product for CSR keys, a
weighted sum for blocks of both), then feeds them to the reductions the lookup
needs, each of which keeps only small running state per query
(:mod:`softdb.engine._states`):

- soft:  running max ``mx``, running sum of exp ``se``, running weighted sum ``o``
         (the online softmax that FlashAttention uses), giving the soft answer and
         the log-sum-exp of every query; optionally Σ e·(l − mx) and Σ e² for the
         entropy and the effective number of rows of the weights;
- hard:  running best score and row (ties go to the lowest row);
- top-k: running k best scores and rows; only scores at or above a lower bound
         of the query's final k-th best are gathered (found coarse to fine) and
         merged in batches;
- grid:  the log-sum-exp at extra temperatures, in the same pass.

:func:`run` may cut the rows into ranges, one per thread, each with a one-thread
BLAS (:mod:`softdb.engine._parallel`): numpy's per-chunk work then runs on every core
too, and the ranges' states merge exactly.

:func:`run` returns that state (a :class:`~softdb.engine._states.KernelState`, with global
rows: a run over a part of a table passes its first row as ``offset``); states of
disjoint parts merge exactly (:func:`~softdb.engine._states.merge`), and
:func:`~softdb.engine._states.finalize` turns a state into answers. :func:`stream` is
``finalize(run(DenseScorer(keys), ...))``.

Chunks of scores are laid out by query, (m, c) = Q·K_chunkᵀ, except for top-k
alone or with the log-sum-exp (``search``) from ROW_LAYOUT_MIN queries on: there
they are laid out by row, (c, m) = K_chunk·Qᵀ, which is the faster GEMM on
OpenBLAS and lets one vectorised comparison hold every query to its own bound.

Memory is O(m × chunk), never O(m × n) (except ``dense``, whose output *is* m × n),
and the results do not depend on the chunk size beyond float rounding.
A query whose rows are all masked gets "no match": row -1, score -inf,
log-sum-exp -inf and a zero soft answer, never NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from softdb.engine import _fused, _parallel
from softdb.engine._scorers import DenseScorer
from softdb.engine._states import HardState, KernelResult, KernelState, SoftState, TopKState, finalize, merge

__all__ = ["KernelResult", "KernelState", "chunk_rows", "run", "stream"]

#: Bytes of scores held per chunk (shared by the threads of a split pass): small enough for
#: L3, large enough that the calls are few (each multithreaded BLAS call ends in a barrier).
CHUNK_BYTES = 16 << 20
#: A single query with a soft answer over dense values (``explain``, ``lookup`` of one
#: query) reads chunks of about this many bytes of keys + values (per thread), scored and
#: blended by numpy's own loops: the values (the keys again when K = V) are still in cache
#: when the chunk is blended, so memory is swept once. When |score / τ| <= FAST_BOUND the
#: blend needs no running max, and the other reductions run once per CHUNK_BYTES of scores
#: instead of once per blended chunk (``_Pass._bounded_blend``). With numba installed
#: (``softdb[fast]``), a K = V table and at least ``_fused.MIN_ROWS`` rows, that blend is
#: softdb.engine._fused's compiled loop instead: each row scored, exp'd and blended while in L1.
BLEND_CHUNK_BYTES = 16 << 20
#: With |scores / τ| <= FAST_BOUND, exp cannot overflow or underflow (float32), so the
#: soft reduction needs no running max: one exp pass per chunk instead of three.
FAST_BOUND = 40.0
#: A query short of k hits bounds its candidates by the k-th best of the maxima of this
#: many (at least k) disjoint column groups: a lower bound of the chunk's own k-th best.
TOPK_GROUPS = 64
#: Laid out by query, top-k compares blocks of this many queries against the lowest
#: bound in the block (a scalar compare is ~3x a broadcast one); 1 below ROW_LAYOUT_MIN queries.
TOPK_BLOCK = 16
#: Top-k (alone or with the log-sum-exp of ``search``) lays scores out by row, (c, m), from
#: this many queries on: K·Qᵀ is the faster GEMM, and every query meets its own bound.
ROW_LAYOUT_MIN = 8
#: Laid out by row, the per-query bounds are repeated to rows of at least this many
#: elements, so the comparison runs in long inner loops.
TOPK_TILE = 8192
#: Candidates wait until at least this many (and m·k) have gathered before a merge.
TOPK_MERGE_MIN = 4096
#: Laid out by row, a short query's start-up bound is the k-th best of the maxima of
#: groups of this many rows (at least k groups).
TOPK_GROUP_ROWS = 16


def chunk_rows(m: int, n: int, itemsize: int, chunk: int | None = None, threads: int = 1) -> int:
    """Rows per chunk: ``chunk`` if given, else CHUNK_BYTES worth of scores shared by ``threads``."""
    if chunk is not None:
        return max(1, int(chunk))
    return int(min(max(n, 1), max(256, CHUNK_BYTES // threads // (max(m, 1) * itemsize))))


def stream(
    queries: np.ndarray,
    keys: np.ndarray,
    values: np.ndarray | None = None,
    *,
    scale: float = 1.0,
    soft: bool = False,
    hard: bool = False,
    k: int = 0,
    dense: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    key_norm_max: float | None = None,
    chunk: int | None = None,
) -> KernelResult:
    """Stream dense ``keys`` in chunks and run the requested reductions.

    Parameters
    ----------
    queries : ndarray of shape (m, d)
    keys : ndarray of shape (n, d)
    values : ndarray of shape (n, d_v), optional
        With ``soft``, the values to blend; without them only the log-sum-exp is kept.
    scale : float
        1 / τ: soft scores are ``queries @ keys.T * scale``.
    soft, hard : bool
        Run the soft (online softmax) or hard (argmax) reduction.
    k : int
        Run the top-k reduction when ``k > 0``.
    dense : ndarray of shape (m, n), optional
        Receives the scaled scores; with ``soft`` the caller turns them into
        weights as ``exp(dense - lse[:, None])``.
    mask : ndarray of bool, shape (n,) or (m, n), optional
        True where a row is allowed.
    key_norm_max : float, optional
        max ‖k_j‖; lets the soft reduction skip the running max when the scores
        provably stay within ±FAST_BOUND.
    chunk : int, optional
        Rows per chunk (default: CHUNK_BYTES of scores).

    Returns
    -------
    KernelResult

    Examples
    --------
    >>> import numpy as np
    >>> K = np.eye(3, dtype=np.float32)
    >>> r = stream(np.array([[0, 5, 0]], np.float32), K, K, soft=True, hard=True)
    >>> int(r.best_row[0]), r.out.round(3).tolist()
    (1, [[0.007, 0.987, 0.007]])
    """
    return finalize(
        run(
            DenseScorer(keys, key_norm_max),
            queries,
            values,
            scale=scale,
            soft=soft,
            hard=hard,
            k=k,
            dense=dense,
            mask=mask,
            chunk=chunk,
        )
    )


@np.errstate(over="ignore", invalid="ignore")  # overflow → ±inf scores; callers check results
def run(
    scorer: Any,
    queries: Any,
    values: Any = None,
    *,
    scale: float = 1.0,
    soft: bool = False,
    hard: bool = False,
    k: int = 0,
    dense: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    chunk: int | None = None,
    offset: int = 0,
    grid: Sequence[float] = (),
    stats: bool = False,
    threads: int | None = None,
) -> KernelState:
    """One streaming pass over ``scorer``'s rows; returns the mergeable per-query state.

    Parameters
    ----------
    scorer : scorer
        See :mod:`softdb.engine._scorers` (e.g. ``DenseScorer(keys)``); holds n rows.
    queries : any
        What ``scorer.bind`` takes: (m, d) for dense keys.
    values : ndarray or scipy.sparse matrix of shape (n, d_v), optional
        With ``soft``, the values to blend.
    scale : float
        1 / τ of the soft reduction, ``dense`` and ``stats``.
    soft, hard, k, dense, mask, chunk
        As in :func:`stream`; ``mask`` and ``dense`` are over the scorer's own n rows.
    offset : int
        Global row of the scorer's row 0: hard and top-k report ``offset + row``.
    grid : sequence of float
        Extra scales 1 / τ_j: the state keeps the log-sum-exp at each (``KernelState.grid``).
    stats : bool
        With ``soft``, also keep what the entropy and the effective number of rows
        (1 / Σ w²) of the weights need.
    threads : int, optional
        Cut the rows into this many ranges, one per thread (each with a one-thread
        BLAS), and merge their states. Default: as many as BLAS is set to use, when the
        pass is large enough (:mod:`softdb.engine._parallel`); the answers are the same up to
        float rounding, and top-k and hard rows are identical.

    Returns
    -------
    KernelState

    Examples
    --------
    >>> import numpy as np
    >>> from softdb.engine._scorers import DenseScorer
    >>> from softdb.engine._states import finalize
    >>> st = run(DenseScorer(np.eye(3, dtype=np.float32)), np.array([[0, 5, 0]], np.float32), k=2, offset=10)
    >>> finalize(st).top_rows.tolist()
    [[11, 10]]
    """
    n = scorer.n
    grid = tuple(float(g) for g in grid)
    want_lse = soft or dense is not None
    post_scale = None
    if want_lse and not 1e-12 <= scale <= 1e12:
        post_scale = scale  # extreme τ: scale each chunk's scores instead of the queries
    pre = want_lse and post_scale is None
    bound = scorer.bind(queries, scale if pre else 1.0)  # one score call serves every reduction
    m, dt = bound.m, np.dtype(bound.dtype)
    parts = _parallel.split(n, _parallel.threads_for(m, n, threads)) if n else [(0, 0)]
    blend = (
        soft and m == 1 and isinstance(values, np.ndarray) and values.dtype == dt and hasattr(bound, "scores_one")
    )  # one query: cache-sized chunks scored and blended by numpy
    one = blend or (m == 1 and len(parts) > 1 and hasattr(bound, "scores_one"))  # numpy's dot: 2x one-thread GEMV
    longest = max(b - a for a, b in parts)
    step = score_rows = chunk_rows(m, longest, dt.itemsize, chunk, len(parts))  # one pass's memory, any threads
    if blend and chunk is None:
        row_bytes = bound.row_bytes() + values.shape[1] * values.itemsize
        step = int(min(max(longest, 1), max(256, BLEND_CHUNK_BYTES // max(row_bytes, 1))))
    fast = bounded = False
    if want_lse and post_scale is None and m:
        ab = bound.abs_max()
        bounded = ab is not None and ab <= FAST_BOUND  # exp(scores) can neither overflow nor underflow
        fast = bounded and not stats  # the soft reduction needs no running max
    outer = 0  # a bounded blend: values blended per cache-sized chunk, reductions per big chunk
    fused = False  # a bounded blend by the compiled loop: each row scored and blended in L1
    if blend and bounded and chunk is None:
        outer = max(step, score_rows)
        fused = n >= _fused.MIN_ROWS and _fusable(bound, values) and _fused.available()
    by_row = (
        bool(k)
        and m >= ROW_LAYOUT_MIN
        and not hard
        and dense is None
        and not (soft and values is not None)
        and not grid
        and not stats
        and getattr(bound, "by_row", False)
    )
    units = scale if want_lse else 1.0  # s holds raw score × units once post-scaled
    pass_ = _Pass(
        bound,
        values,
        step=step,
        one=one,
        blend=blend,
        by_row=by_row,
        offset=offset,
        outer=outer,
        fused=fused,
        setup=dict(
            dt=dt,
            dense=dense,
            hard=hard,
            k=k,
            mask=mask,
            fast=fast,
            post_scale=post_scale,
            soft=want_lse,
            values=values if soft and not outer else None,
            stats=stats,
            grid=[g / units for g in grid],
        ),
    )
    states = _parallel.map_ranges(pass_.rows, parts)
    res = merge(*states) if len(states) > 1 else states[0]
    res.score_scale, res.scale, res.grid_scales = (1.0 / scale if pre else 1.0), float(scale), grid
    return res


def _fusable(bound: Any, values: np.ndarray) -> bool:
    """A K = V table (the values are the dense keys themselves) in one float dtype.

    Separate values are left to numpy's loop: reading a key row and a value row in turn
    measured 1.11-1.28x slower than numpy's chunks of keys, then of values (1 query,
    100k and 1M rows, benchmarks/bench_compare.py).
    """
    if not hasattr(bound, "dense_rows"):
        return False
    keys, q = bound.dense_rows()
    same = (
        values.shape == keys.shape and values.strides == keys.strides and values.ctypes.data == keys.ctypes.data
    )  # one buffer: each row read once serves both
    return same and keys.dtype == q.dtype == values.dtype and q.dtype in (np.float32, np.float64)


class _Pass:
    """One kernel pass, set up once; ``rows(a, b)`` runs its chunk loop over rows a..b (one thread)."""

    def __init__(
        self,
        bound: Any,
        values: Any,
        *,
        step: int,
        one: bool,
        blend: bool,
        by_row: bool,
        offset: int,
        outer: int,
        fused: bool,
        setup: dict,
    ) -> None:
        self.bound, self.values, self.step, self.one, self.blend, self.by_row = bound, values, step, one, blend, by_row
        self.offset, self.outer, self.fused, self.setup = offset, outer, fused, setup

    @np.errstate(over="ignore", invalid="ignore")  # numpy's error state is per thread: set it in each
    def rows(self, a: int, b: int) -> KernelState:
        if self.outer:
            return self._bounded_blend(a, b)
        bound, values, step, blend, offset = self.bound, self.values, self.step, self.blend, self.offset
        m = bound.m
        st = _State(m, **self.setup)
        buf = np.empty(m * min(step, b - a), st.dt)  # (m·step,)  one score buffer for every chunk
        for start in range(a, b, step):
            stop = min(start + step, b)
            if self.by_row:
                s = buf[: m * (stop - start)].reshape(stop - start, m)  # (c, m)  contiguous view
                s = bound.scores_by_row(start, stop, s)  # (c, m)  scores (divided by τ when soft)
                st.reduce_rows(s, start, start + offset)
                continue
            s = buf[: m * (stop - start)].reshape(m, stop - start)  # (m, c)  contiguous view
            s = (
                bound.scores_one(start, stop, s) if self.one else bound.scores(start, stop, s)
            )  # (m, c)  scores (/ τ when soft)
            e = st.reduce(s, start, start + offset)  # (m, c)  exp(s - mx), or None
            if blend and st.o is not None:
                st.o += np.einsum("c,cd->d", e[0], values[start:stop], out=st.o_chunk[0])  # (1, d_v)  V chunk in cache
            elif st.o is not None:
                v = values[start:stop]  # (c, d_v)
                st.o += (v.T @ e.T).T if sp.issparse(v) else np.matmul(e, v, out=st.o_chunk)  # (m, d_v)
        return st.state(a, b)

    def _bounded_blend(self, a: int, b: int) -> KernelState:
        """One query, a soft answer, |score / τ| <= FAST_BOUND: o = Σ exp(l_j) v_j with no shift.

        Each cache-sized chunk (``step`` rows, BLEND_CHUNK_BYTES of keys and values) is scored
        into a big chunk's score buffer and blended at once, while its values are in cache;
        the reductions (log-sum-exp, hard, top-k, entropy, grid) then run once per big chunk
        (``outer`` rows), so their fixed cost per call is paid ~outer/step times less often.
        With ``fused``, :func:`softdb.engine._fused.score_blend` scores and blends each big chunk
        row by row instead (one read of memory, not two).
        """
        bound, values, step, outer, offset = self.bound, self.values, self.step, self.outer, self.offset
        st = _State(1, **self.setup)
        o = np.zeros(values.shape[1], st.dt)  # (d_v,)  Σ exp(l_j) v_j: shift 0
        buf = np.empty(min(outer, b - a), st.dt)  # (outer,)  scores of one big chunk
        if self.fused:
            keys, q = bound.dense_rows()
        else:
            tmp = np.empty_like(o)  # (d_v,)
            ebuf = np.empty(min(step, b - a), st.dt)  # (step,)  exp of one small chunk at a time
        for start in range(a, b, outer):
            stop = min(start + outer, b)
            s = buf[: stop - start].reshape(1, stop - start)  # (1, c)
            if self.fused:  # each row scored, exp'd and blended while in L1: one read of memory
                _fused.score_blend(keys[start:stop], q, values[start:stop], st.mask_rows(start, stop), s[0], o)
            else:
                for i in range(start, stop, step):
                    j = min(i + step, stop)
                    si = s[:, i - start : j - start]  # (1, c_i)  view
                    bound.scores_one(i, j, si)
                    st.apply_mask(si, i)
                    e = np.exp(si[0], out=ebuf[: j - i])  # (c_i,)  masked: 0
                    o += np.einsum("c,cd->d", e, values[i:j], out=tmp)  # values still in cache
            st.reduce(s, start, start + offset)
        res = st.state(a, b)
        soft = res.soft
        with np.errstate(over="ignore"):
            rebase = np.where(soft.se > 0, np.exp(-soft.mx), 0).astype(st.dt)  # (1,)  Σ e^l v → Σ e^(l-mx) v
        soft.o = (o * rebase)[None, :]  # (1, d_v)
        return res


class _Lse:
    """Running log-sum-exp of scores × ``ratio`` (a grid temperature), with a running max."""

    def __init__(self, m: int, dt: np.dtype, ratio: float) -> None:
        self.ratio = dt.type(ratio)
        self.mx = np.full(m, -np.inf, dt)  # (m,)
        self.se = np.zeros(m, dt)  # (m,)
        self.buf = np.empty(0, dt)

    def feed(self, s: np.ndarray) -> None:
        if self.buf.size < s.size:
            self.buf = np.empty(s.size, s.dtype)
        t = np.multiply(s, self.ratio, out=self.buf[: s.size].reshape(s.shape))  # (m, c)
        new_mx = np.maximum(self.mx, t.max(axis=1))  # (m,)
        shift = np.where(new_mx == -np.inf, 0, new_mx).astype(t.dtype)  # (m,)
        self.se *= np.exp(self.mx - shift)
        t -= shift[:, None]
        self.se += np.exp(t, out=t).sum(axis=1)
        self.mx[:] = new_mx


class _State:
    """Running per-query state of the reductions; ``reduce`` feeds it one chunk."""

    def __init__(
        self,
        m: int,
        *,
        dt: np.dtype,
        dense,
        hard: bool,
        k: int,
        mask,
        fast: bool,
        post_scale,
        soft: bool,
        values,
        stats: bool,
        grid: Sequence[float],
    ) -> None:
        self.dt, self.dense, self.hard, self.k, self.mask, self.fast = dt, dense, hard, k, mask, fast
        self.post_scale = None
        if post_scale is not None:
            with np.errstate(over="ignore"):
                self.post_scale = dt.type(post_scale)
        self.mx = self.se = self.o = self.ent = self.sq = None  # (m,), (m,), (m, d_v), (m,), (m,)
        if soft:
            self.mx = np.full(m, 0.0 if fast else -np.inf, dt)  # (m,)  running max (fixed 0 if fast)
            self.se = np.zeros(m, dt)  # (m,)  running Σ exp(s - mx)
            if values is not None:
                self.o = np.zeros((m, values.shape[1]), dt)  # (m, d_v)
                self.o_chunk = np.empty_like(self.o)  # (m, d_v)
            if stats:
                self.ent, self.sq = np.zeros(m, dt), np.zeros(m, dt)  # (m,), (m,)
        self.grid = [_Lse(m, dt, g) for g in grid]
        self.ebuf = np.empty(0, dt)
        if hard:
            self.best_s = np.full(m, -np.inf, dt)  # (m,)
            self.best_r = np.full(m, -1, np.int64)  # (m,)
        self.top = _TopK(m, k, dt) if k else None
        self.m = m

    def state(self, a: int, b: int) -> KernelState:
        """The mergeable state of rows a..b (global rows; scales are set by ``run``)."""
        res = KernelState()
        if self.se is not None:
            mask, m, some = self.mask, self.m, b > a
            allowed = np.full(m, some) if mask is None else mask[..., a:b].any(axis=-1) & np.full(m, some)  # (m,)
            res.soft = SoftState(self.mx, self.se, self.o, allowed, self.ent, self.sq)
        if self.hard:
            res.hard = HardState(self.best_s, self.best_r)
        if self.top is not None:
            self.top.merge()
            res.top = TopKState(self.top.s, self.top.r)
        res.grid = tuple(SoftState(g.mx, g.se) for g in self.grid)
        return res

    def mask_rows(self, start: int, stop: int) -> np.ndarray | None:
        """The one query's allowed local rows start..stop, (c,) bool; None without a mask."""
        if self.mask is None:
            return None
        return self.mask[start:stop] if self.mask.ndim == 1 else self.mask[0, start:stop]

    def apply_mask(self, s: np.ndarray, start: int) -> None:
        """Set the masked cells of chunk scores ``s`` (m, c) of local rows start.. to -inf."""
        if self.mask is not None:
            mask, c = self.mask, s.shape[1]
            mc = mask[start : start + c] if mask.ndim == 1 else mask[:, start : start + c]  # (c,) | (m, c)
            np.copyto(s, -np.inf, where=~mc)

    def reduce(self, s: np.ndarray, start: int, row0: int) -> np.ndarray | None:
        """Feed one chunk's scores (m, c) of local rows start.. (global row0..) to every reduction.

        Returns exp(s - mx) (in ``s`` itself unless ``stats``), or None without soft.
        """
        self.apply_mask(s, start)
        if self.hard:
            idx = s.argmax(axis=1)  # (m,)  first max: lowest row in the chunk
            cs = np.take_along_axis(s, idx[:, None], axis=1)[:, 0]  # (m,)
            better = cs > self.best_s  # (m,)  strict: earlier chunks win ties
            self.best_s[better] = cs[better]
            self.best_r[better] = idx[better] + row0
        if self.top is not None:
            self.top.feed(s, row0)
        if self.post_scale is not None and (self.se is not None or self.grid):
            s *= self.post_scale
        for g in self.grid:
            g.feed(s)
        if self.se is None:
            return None
        if self.dense is not None:
            self.dense[:, start : start + s.shape[1]] = s
        mx, se = self.mx, self.se  # (m,), (m,)  updated in place
        if self.fast:
            np.exp(s, out=s)  # (m, c)  |s| <= FAST_BOUND: no shift needed
            se += s.sum(axis=1)
            return s
        new_mx = np.maximum(mx, s.max(axis=1))  # (m,)
        shift = np.where(new_mx == -np.inf, 0, new_mx).astype(s.dtype)  # (m,)  all masked: 0
        alpha = np.exp(mx - shift)  # (m,)  rescale of old state; 0 while empty
        s -= shift[:, None]
        e = s
        if self.ent is not None:
            if self.ebuf.size < s.size:
                self.ebuf = np.empty(s.size, s.dtype)
            e = np.exp(s, out=self.ebuf[: s.size].reshape(s.shape))  # (m, c)
            np.copyto(s, 0, where=e == 0)  # masked: 0·(-inf) would be NaN
            self.ent[:] = np.where(se == 0, 0, alpha * (self.ent + (mx - shift) * se))  # rebase onto shift
            self.ent += np.einsum("ij,ij->i", e, s)  # (m,)  Σ e (l - shift)
            self.sq *= alpha * alpha
            self.sq += np.einsum("ij,ij->i", e, e)  # (m,)  Σ e²
        else:
            np.exp(s, out=s)  # (m, c)
        se *= alpha
        se += e.sum(axis=1)
        if self.o is not None:
            self.o *= alpha[:, None]
        mx[:] = new_mx
        return e

    def reduce_rows(self, s: np.ndarray, start: int, row0: int) -> None:
        """``reduce`` for scores laid out by row, ``s`` (c, m): top-k, then the log-sum-exp."""
        c = s.shape[0]
        if self.mask is not None:
            mask = self.mask
            mc = mask[start : start + c, None] if mask.ndim == 1 else mask[:, start : start + c].T  # (c, 1)|(c, m)
            np.copyto(s, -np.inf, where=~mc)
        self.top.feed_rows(s, row0)
        if self.se is None:
            return
        if self.post_scale is not None:
            s *= self.post_scale
        mx, se = self.mx, self.se  # (m,), (m,)  updated in place
        if not self.fast:
            new_mx = np.maximum(mx, s.max(axis=0))  # (m,)
            shift = np.where(new_mx == -np.inf, 0, new_mx).astype(s.dtype)  # (m,)  all masked: 0
            se *= np.exp(mx - shift)  # rescale of old state; 0 while empty
            s -= shift
            mx[:] = new_mx
        np.exp(s, out=s)  # (c, m)
        se += _column_sums(s)  # (m,)


def _column_sums(s: np.ndarray, block: int = 1024) -> np.ndarray:
    """Σ over rows of ``s`` (c, m): sums of ``block`` rows each, then the sum of those.

    One float32 chain over all c rows would lose ~c·eps; this keeps ~block·eps. Each
    block's rows are added by numpy's vectorised reduction over the middle axis (no BLAS
    call: a multithreaded call per block costs a barrier each, slow on a loaded machine).
    """
    c, m = s.shape
    full = c // block * block
    total = s[:full].reshape(-1, block, m).sum(axis=1).sum(axis=0) if full else np.zeros(m, s.dtype)  # (m,)
    if full < c:
        total += s[full:].sum(axis=0)  # (m,)
    return total  # (m,)


def _true_cells(hit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of every True of ``hit`` (r, 8·w), in row-major order.

    Few are True, so the search goes in two steps: the nonzero uint64 words
    (8 cells each), then the bytes of those words only.
    """
    w = hit.shape[1] // 8  # words per row
    wi = np.flatnonzero(hit.view(np.uint64) != 0)  # (p_w,)  hit words, flat over (r, w)
    jw, byte = np.nonzero(hit.reshape(-1, 8)[wi])  # (p,), (p,)
    row, word = np.divmod(wi[jw], w)  # (p,), (p,)
    return row, word * 8 + byte


class _TopK:
    """Running k best scores and rows per query, fed one chunk of scores at a time.

    Each chunk contributes only its *candidates*: scores at or above the query's
    bound, a lower bound of its final k-th best (the running k-th best, or while
    the query is short of k hits the k-th best of the maxima of disjoint column
    groups of the chunk). Late in the table they are few (see ``_true_cells``).
    Candidates wait in a small pending list and are merged into the running best
    only when about m·k have gathered (or at the end):
    a stale bound is still a valid bound, it just lets a few more candidates in.
    A merge sorts by (query, score descending, row ascending), so ties go to the
    lowest row whatever the chunk size.
    """

    def __init__(self, m: int, k: int, dt: np.dtype) -> None:
        self.k = k
        self.s = np.full((m, k), -np.inf, dt)  # (m, k)  merged k best, descending
        self.r = np.full((m, k), -1, np.int64)  # (m, k)  their rows, -1 = none
        self.bound = np.full(m, -np.inf, dt)  # (m,)  lower bound of each final k-th best
        self.pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (query, row, score)
        self.n_pending = 0
        self.limit = max(m * k, TOPK_MERGE_MIN)  # merge once this many candidates wait
        self.hit = np.empty(0, bool)  # comparison mask, grown to (m, 8·⌈c/8⌉) on first use

    def feed(self, s: np.ndarray, start: int) -> None:
        """Take the candidates of one chunk of scores ``s`` (m, c) starting at row ``start``."""
        m, c = s.shape
        k, bound = self.k, self.bound
        short = np.flatnonzero(self.s[:, -1] == -np.inf)  # (f,)  short of k merged hits
        if short.size and c >= k:
            g = max(k, TOPK_GROUPS)  # k-th best of g disjoint column groups' maxima
            sf = s[short] if short.size < m else s  # (f, c)
            gm = sf[:, : c // g * g].reshape(sf.shape[0], -1, g).max(axis=1) if c >= 2 * g else sf  # (f, g)|(f, c)
            gb = np.partition(gm, gm.shape[1] - k, axis=1)[:, -k]  # (f,)
            bound[short] = np.maximum(bound[short], gb)
        lim = np.maximum(bound, np.finfo(s.dtype).min)  # (m,)  masked (-inf) scores never enter
        hit = self._mask(m, c)  # (m, ≥c)
        bq = TOPK_BLOCK if m >= ROW_LAYOUT_MIN else 1  # queries per block
        lo = np.minimum.reduceat(lim, np.arange(0, m, bq))  # (⌈m/B⌉,)  bound of each block
        for i, b in zip(range(0, m, bq), lo):
            np.greater_equal(s[i : i + bq], b, out=hit[i : i + bq, :c])  # (B, c)
        qi, ci = _true_cells(hit)  # (p,), (p,)  row-major: columns ascend per query
        sc = s[qi, ci]  # (p,)
        keep = sc >= lim[qi]  # (p,)  the block's bound was weaker; >=: ties lose on row order at the merge
        if not keep.all():
            qi, ci, sc = qi[keep], ci[keep], sc[keep]
        self._push(qi, ci + start, sc)

    def feed_rows(self, s: np.ndarray, start: int) -> None:
        """``feed`` for scores laid out by row, ``s`` (c, m): every query against its own bound."""
        c, m = s.shape
        k, bound = self.k, self.bound
        short = np.flatnonzero(self.s[:, -1] == -np.inf)  # (f,)  short of k merged hits
        if short.size and c >= k:
            g = TOPK_GROUP_ROWS if c >= k * TOPK_GROUP_ROWS else 1  # rows per group
            gm = np.maximum.reduce(s[: c // g * g].reshape(-1, g, m), axis=1) if g > 1 else s  # (c/g, m)
            gm = gm[:, short] if short.size < m else gm  # (c/g, f)
            bound[short] = np.maximum(bound[short], np.partition(gm, gm.shape[0] - k, axis=0)[-k])  # (f,)
        lim = np.maximum(bound, np.finfo(s.dtype).min)  # (m,)  masked (-inf) scores never enter
        hit = self._mask(c, m)  # (c, ≥m)
        tile = max(1, TOPK_TILE // m)  # rows per tile of repeated bounds
        done = c // tile * tile if hit.shape[1] == m and c >= tile > 1 else 0  # rows compared in tiles
        if done:
            np.greater_equal(
                s[:done].reshape(-1, tile * m), np.tile(lim, tile), out=hit[:done].reshape(-1, tile * m)
            )  # (c/tile, tile·m)
        np.greater_equal(s[done:], lim, out=hit[done:, :m])  # (c - done, m)
        ri, qi = _true_cells(hit)  # (p,), (p,)  chunk row and query: rows ascend per query
        self._push(qi, ri + start, s[ri, qi])

    def _mask(self, rows: int, cols: int) -> np.ndarray:
        """A reused (rows, cols padded to whole 8-byte words) bool buffer, padding False."""
        width = -(-cols // 8) * 8
        if self.hit.size < rows * width:
            self.hit = np.empty(rows * width, bool)  # reused by every chunk: no fresh pages
        hit = self.hit[: rows * width].reshape(rows, width)
        hit[:, cols:] = False
        return hit

    def _push(self, qi: np.ndarray, rows: np.ndarray, scores: np.ndarray) -> None:
        """Queue candidates (query, table row, score); merge once enough wait."""
        if qi.size:
            self.pending.append((qi, rows, scores))
            self.n_pending += qi.size
            if self.n_pending >= self.limit:
                self.merge()

    def merge(self) -> None:
        """Fold the pending candidates into the running k best."""
        if not self.pending:
            return
        k = self.k
        qi, ri, sc = (np.concatenate(a) for a in zip(*self.pending))  # (p,) each
        self.pending, self.n_pending = [], 0
        key = qi.astype(np.int16) if self.s.shape[0] <= 1 << 15 else qi  # int16: a radix sort
        o = np.argsort(key, kind="stable")  # (p,)  by query; within one, rows ascend
        qi, ri, sc = qi[o], ri[o], sc[o]
        counts = np.bincount(qi, minlength=self.s.shape[0])  # (m,)
        rows = np.flatnonzero(counts)  # (r,)  queries with candidates
        counts = counts[rows]  # (r,)
        r, p = rows.size, qi.size
        rr = np.repeat(np.arange(r), counts)  # (p,)  pad row of each candidate
        slot = k + np.arange(p) - np.repeat(np.cumsum(counts) - counts, counts)  # (p,)  after the k best
        pad_s = np.full((r, k + counts.max()), -np.inf, sc.dtype)  # (r, k + p_max)
        pad_r = np.full(pad_s.shape, -1, np.int64)  # (r, k + p_max)
        pad_s[:, :k], pad_r[:, :k] = self.s[rows], self.r[rows]  # earlier rows than every candidate
        pad_s[rr, slot], pad_r[rr, slot] = sc, ri
        best = np.argsort(-pad_s, axis=1, kind="stable")[:, :k]  # (r, k)  score desc, then row asc
        self.s[rows] = np.take_along_axis(pad_s, best, axis=1)  # (r, k)
        self.r[rows] = np.take_along_axis(pad_r, best, axis=1)  # (r, k)
        np.maximum(self.bound, self.s[:, -1], out=self.bound)
