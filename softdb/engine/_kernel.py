"""The one streaming engine that turns scores into answers.

Every lookup walks the rows in chunks. Per chunk it asks a scorer for the scores
(:mod:`softdb.engine._protocols` says what a scorer is; :mod:`softdb.engine._scorers`
has a GEMM for dense keys, a sparse product for CSR keys, a weighted sum for blocks of
both), then feeds them to the reductions the lookup needs, each of which keeps only
small running state per query (:mod:`softdb.engine._reductions`, with the top-k in
:mod:`softdb.engine._topk`):

- soft:  the online softmax (running max, Σ exp, weighted sum of values), giving the
         soft answer and the log-sum-exp of every query; optionally what the entropy
         and the effective number of rows of the weights need;
- hard:  running best score and row (ties go to the lowest row);
- top-k: running k best scores and rows; only scores at or above a lower bound
         of the query's final k-th best are gathered and merged in batches;
- grid:  the log-sum-exp at extra temperatures, in the same pass.

This module is the front of the pass: :func:`run` binds the scorer to the queries,
decides once how the pass runs (a :class:`~softdb.engine._config.PassConfig`: chunk
sizes, score layout, the fast softmax, the one-query blend), runs the chunk loop
(:class:`~softdb.engine._pass.Pass`) over the rows and merges the states.

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

from softdb.engine import _fused, _parallel
from softdb.engine._config import PassConfig
from softdb.engine._pass import Pass
from softdb.engine._protocols import OneQueryScorer, Scorer, is_one_query, is_row_scorer
from softdb.engine._scorers import DenseScorer
from softdb.engine._states import KernelResult, KernelState, finalize, merge
from softdb.engine._topk import ROW_LAYOUT_MIN

__all__ = ["KernelResult", "KernelState", "PassConfig", "chunk_rows", "run", "stream"]

#: Bytes of scores held per chunk (shared by the threads of a split pass): small enough for
#: L3, large enough that the calls are few (each multithreaded BLAS call ends in a barrier).
CHUNK_BYTES = 16 << 20
#: A single query with a soft answer over dense values (``explain``, ``lookup`` of one
#: query) reads chunks of about this many bytes of keys + values (per thread), scored and
#: blended by numpy's own loops: the values (the keys again when K = V) are still in cache
#: when the chunk is blended, so memory is swept once. When |score / τ| <= FAST_BOUND the
#: blend needs no running max, and the other reductions run once per CHUNK_BYTES of scores
#: instead of once per blended chunk (``softdb.engine._pass.Pass._bounded_blend``). With numba installed
#: (``softdb[fast]``), dense keys and at least ``_fused.MIN_ROWS`` rows, the pass is
#: softdb.engine._fused's compiled online softmax instead, whatever |score / τ|: each row
#: scored, exp'd against the running max and blended while in L1.
BLEND_CHUNK_BYTES = 16 << 20
#: With |scores / τ| <= FAST_BOUND, exp cannot overflow or underflow (float32), so the
#: soft reduction needs no running max: one exp pass per chunk instead of three.
FAST_BOUND = 40.0


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
    scorer: Scorer,
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
    scorer : Scorer
        See :mod:`softdb.engine._protocols` (e.g. ``DenseScorer(keys)``); holds n rows.
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
    one_q = bound if m == 1 and is_one_query(bound) else None  # one query, scored by numpy's loops
    blend = (
        soft and one_q is not None and isinstance(values, np.ndarray) and values.dtype == dt
    )  # one query: cache-sized chunks scored and blended by numpy
    one = blend or one_q is not None  # numpy's loop: 0.14-0.5x OpenBLAS's GEMV here, and the same per row anywhere
    longest = max(b - a for a, b in parts)
    step = score_rows = chunk_rows(m, longest, dt.itemsize, chunk, len(parts))  # one pass's memory, any threads
    if blend and one_q is not None and chunk is None:
        row_bytes = one_q.row_bytes() + values.shape[1] * values.itemsize
        step = int(min(max(longest, 1), max(256, BLEND_CHUNK_BYTES // max(row_bytes, 1))))
    fast = bounded = False
    if want_lse and post_scale is None and m:
        ab = bound.abs_max()
        bounded = ab is not None and ab <= FAST_BOUND  # exp(scores) can neither overflow nor underflow
        fast = bounded and not stats  # the soft reduction needs no running max
    outer = 0  # a bounded blend: values blended per cache-sized chunk, reductions per big chunk
    fused = (  # the compiled online softmax, any score scale: each row scored and blended in L1
        blend
        and one_q is not None
        and chunk is None
        and post_scale is None
        and dense is None
        and n >= _fused.MIN_ROWS
        and _fusable(one_q, values)
        and _fused.available()
    )
    if blend and one_q is not None and (bounded or fused) and chunk is None:
        outer = max(step, score_rows)
    by_row = (
        bool(k)
        and m >= ROW_LAYOUT_MIN
        and not hard
        and dense is None
        and not (soft and values is not None)
        and not grid
        and not stats
        and is_row_scorer(bound)
    )
    units = scale if want_lse else 1.0  # s holds raw score × units once post-scaled
    cfg = PassConfig(
        dtype=dt,
        step=step,
        soft=want_lse,
        hard=hard,
        k=k,
        dense=dense,
        mask=mask,
        stats=stats,
        grid=tuple([g / units for g in grid]),
        fast=fast,
        post_scale=post_scale,
        d_v=values.shape[1] if soft and values is not None and not outer else None,
        offset=offset,
        one=one,
        blend=blend,
        by_row=by_row,
        outer=outer,
        fused=fused,
    )
    states = _parallel.map_ranges(Pass(bound, values, cfg).rows, parts)
    res = merge(*states) if len(states) > 1 else states[0]
    res.score_scale, res.scale, res.grid_scales = (1.0 / scale if pre else 1.0), float(scale), grid
    return res


def _fusable(one: OneQueryScorer, values: np.ndarray) -> bool:
    """Dense keys, the query and the values in one float dtype (float32 or float64).

    K = V tables (the values are the keys themselves) read each row once for both. With
    separate values the loop reads a key row and a value row in turn; that measured
    faster than numpy's chunks of keys, then of values (1 query, 100k and 1M rows:
    ``benchmarks/bench_explain.py --separate-values``, figures in ``docs/performance.md``),
    so it serves them too.
    """
    rows = one.dense_rows()
    if rows is None:
        return False
    keys, q = rows  # (n, d), (d,)
    return keys.dtype == q.dtype == values.dtype and q.dtype in (np.float32, np.float64)
