"""An optional compiled loop for one query's soft answer: score, online softmax and blend, row by row.

One query's soft answer (``explain``, ``lookup`` of one query) needs each row once. numpy
can only do it chunk by chunk, each chunk read twice (from memory to score it, again from
cache to blend it): its per-call cost rules out chunks small enough for L2, so the second
read comes from L3. This loop scores row j, and while the row is still in L1 takes
e_j = exp(s_j − m) and adds e_j · v_j, where the shift m runs just above the max of the
scores so far (the online softmax of FlashAttention): when a score beats m, m moves to
that score + HEADROOM and the running sums are rescaled by exp(m_old − m_new) (rare:
fewer than ln n times in a random order, and at most once per HEADROOM of rise in any
order; the block's sum is rescaled at once, the total only when the block is added to
it). So it reads each row once whatever the query's norm or τ, and no bound on the
scores is needed.

The loop leaves the online-softmax state of its rows (the shift m, Σ e, Σ e·(s − m),
Σ e², Σ e·v), the same state as the kernel's other loops
(:class:`~softdb.engine._states.SoftState`), so threads and segments merge as before.
The scalar sums are kept in float64 and Σ e·v in blocks of BLOCK rows, so the answers are
close to float64 (tests/engine/test_fused.py).

It is compiled by numba when numba is installed (``pip install "softdb[fast]"``); the
kernel uses it for one query's soft answer over at least MIN_ROWS rows of dense keys
(:func:`softdb.engine._kernel.run`). The first such call in a process imports numba and
loads the loop from numba's cache (~0.3 s here; ~1 s the very first time, while it
compiles). Without numba, :func:`online_blend` computes the same with numpy.

Examples
--------
>>> import numpy as np
>>> k = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)
>>> s, o, acc = np.empty(2, np.float32), np.zeros(2, np.float32), fresh()
>>> online_blend(k, np.array([0.0, 200.0], np.float32), k, None, s, o, acc)
>>> s.tolist(), float(acc[0]), (o / acc[1]).round(3).tolist()  # shift 200 + HEADROOM: no overflow
([200.0, 0.0], 216.0, [0.0, 1.0])
"""

from __future__ import annotations

import importlib.util
import threading
from typing import Any

import numpy as np

from softdb.engine._config import PassConfig
from softdb.engine._numba import import_numba
from softdb.engine._protocols import OneQueryScorer
from softdb.engine._reductions import Reducer
from softdb.engine._states import KernelState, SoftState

__all__ = ["BLOCK", "MIN_ROWS", "available", "fresh", "online_blend", "online_rows"]

#: Passes over fewer rows use numpy's loop (no import of numba, no compilation).
MIN_ROWS = 1 << 16
#: Rows whose e_j · v_j are summed into a block's own accumulator before it is added to
#: the total: float32 rounding grows with ~BLOCK + rows / BLOCK terms, not with rows.
BLOCK = 512
#: When a score beats the running shift m, m moves to that score + HEADROOM (rounded to the
#: values' dtype): each weight exp(s − m) is at most 1, and scores rising row after row (a
#: table sorted by score) rescale once per HEADROOM of rise, not on every row. Terms lose
#: nothing: float32 underflows below exp(−103), and float32's precision ends at exp(−16.6).
HEADROOM = 16.0
#: Set to False to use numpy's loop even when numba is installed (tests compare the two).
ENABLED = True

_loop: Any = None
_have_numba: bool | None = None
_lock = threading.Lock()


def available() -> bool:
    """True if the compiled loop can be used here (numba installed and ``ENABLED``)."""
    global _have_numba
    if _have_numba is None:
        _have_numba = importlib.util.find_spec("numba") is not None
    return ENABLED and _have_numba


def fresh() -> np.ndarray:
    """The state of no rows yet: float64 [shift m, Σ e, Σ e·(s − m), Σ e²] = [-inf, 0, 0, 0]."""
    return np.array([-np.inf, 0.0, 0.0, 0.0])


def _online_py(
    keys: np.ndarray,
    q: np.ndarray,
    values: np.ndarray,
    mask: np.ndarray | None,
    s: np.ndarray,
    o: np.ndarray,
    acc: np.ndarray,
    block: int,
    headroom: float,
    blk: np.ndarray,
    cast: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """The loop numba compiles (plain Python over scalars: only ever run compiled).

    One row at a time, in order: one sequential stream, which the hardware prefetcher
    follows (four rows in lockstep ran twice as fast from cache but three times slower
    from memory). ``blk`` (d_v,) is the block's Σ e·v at the current max, blended two rows
    per sweep (the previous row waits, still in L1; a rescale blends it first); ``cast``
    (1,) turns the float64 weight into the values' dtype.
    """
    n, d = keys.shape
    dv = values.shape[1]
    m, l, ent, sq = acc[0], acc[1], acc[2], acc[3]
    mo = m  # the shift o is kept at (it catches up with m once per block)
    zero = cast[0]  # 0 in the values' dtype
    for b0 in range(0, n, block):
        blk[:] = 0
        pj = -1  # a row whose weight pe waits to be blended with the next one: one sweep of blk for two rows
        pe = zero
        for j in range(b0, min(b0 + block, n)):
            if mask is not None and not mask[j]:
                s[j] = -np.inf
                continue
            x = zero
            for t in range(d):
                x += keys[j, t] * q[t]
            s[j] = x
            xf = np.float64(x)
            if xf > m:  # a score beats the shift: move it HEADROOM above, rescale the running sums (rare)
                if pj >= 0:  # the waiting row's weight is at the old shift: blend it first
                    for t in range(dv):
                        blk[t] += pe * values[pj, t]
                    pj = -1
                cast[0] = xf + headroom
                new = np.float64(cast[0])  # exact in the values' dtype, so the state's shift is too
                alpha = np.exp(m - new)  # 0 while there were no rows
                ent = alpha * (ent + (m - new) * l) if l > 0 else 0.0
                l *= alpha
                sq *= alpha * alpha
                cast[0] = alpha
                a = cast[0]
                for t in range(dv):
                    blk[t] *= a
                m = new
            if xf == -np.inf:  # an allowed row that scores -inf weighs 0
                continue
            e = np.exp(xf - m)
            l += e
            ent += e * (xf - m)
            sq += e * e
            cast[0] = e
            ef = cast[0]
            if pj < 0:
                pj, pe = j, ef
                continue
            for t in range(dv):
                blk[t] += pe * values[pj, t] + ef * values[j, t]
            pj = -1
        if pj >= 0:
            for t in range(dv):
                blk[t] += pe * values[pj, t]
        if mo != m:  # rebase the total onto the new max, then add the block
            cast[0] = np.exp(mo - m)
            a = cast[0]
            for t in range(dv):
                o[t] = o[t] * a + blk[t]
            mo = m
        else:
            for t in range(dv):
                o[t] += blk[t]
    acc[0], acc[1], acc[2], acc[3] = m, l, ent, sq


def _compiled() -> Any:
    """numba's compilation of the loop (once per process; None if numba cannot be imported)."""
    global _loop, _have_numba
    with _lock:
        if _loop is None and _have_numba:
            numba = import_numba("one-query soft answers use numpy's loop")
            if numba is None:
                _have_numba = False
                return None
            # reassoc + contract vectorise the dot product and fuse multiply-adds; no nnan/ninf:
            # masked rows are -inf and must stay so.
            opts = dict(nogil=True, fastmath={"reassoc", "contract", "arcp", "nsz"}, error_model="numpy")
            try:
                _loop = _jit(numba, opts, cache=True)
            except RuntimeError:  # no writable place for numba's cache: compile in every process
                _loop = _jit(numba, opts, cache=False)
    return _loop


def _jit(numba: Any, opts: dict, cache: bool) -> Any:
    return numba.njit(cache=cache, **opts)(_online_py)


def online_blend(
    keys: np.ndarray,
    q: np.ndarray,
    values: np.ndarray,
    mask: np.ndarray | None,
    s: np.ndarray,
    o: np.ndarray,
    acc: np.ndarray,
) -> None:
    """Add rows to a one-query online softmax: s_j = k_j · q, and o, ``acc`` updated, in one sweep.

    Parameters
    ----------
    keys : ndarray of shape (c, d)
    q : ndarray of shape (d,)
        The query, already scaled by 1 / τ; any norm.
    values : ndarray of shape (c, d_v)
        May be ``keys`` itself (a K = V table).
    mask : ndarray of bool, shape (c,), optional
        Rows allowed; masked rows score -inf and weigh 0.
    s : ndarray of shape (c,)
        Out: the scores (-inf where masked).
    o : ndarray of shape (d_v,)
        In-out: Σ_j exp(s_j − m) v_j over the rows so far, at the shift m = ``acc[0]``.
    acc : ndarray of float64, shape (4,)
        In-out: [m, Σ exp(s_j − m), Σ exp(s_j − m)(s_j − m), Σ exp(s_j − m)²]; start from
        :func:`fresh`. m is the shift, at least the max score so far and at most HEADROOM
        above it (-inf while no row is allowed).

    All arrays but ``acc`` share one float dtype; the compiled loop releases the GIL.
    Without numba (or with ``ENABLED`` False) the same is computed by numpy.

    Examples
    --------
    >>> import numpy as np
    >>> k = np.array([[1.0], [3.0]])
    >>> s, o, acc = np.empty(2), np.zeros(1), fresh()
    >>> online_blend(k, np.array([1.0]), k, np.array([True, False]), s, o, acc)
    >>> s.tolist(), float(acc[0]), float(acc[1] * np.exp(acc[0] - 1)), (o / acc[1]).tolist()
    ([1.0, -inf], 17.0, 1.0, [1.0])
    """
    loop = _compiled() if available() else None
    if loop is not None:
        m = np.ascontiguousarray(mask) if mask is not None else None
        blk = np.empty(values.shape[1], o.dtype)  # (d_v,)
        z = np.zeros(1, o.dtype)  # (1,)
        loop(np.asarray(keys), np.asarray(q), np.asarray(values), m, s, o, acc, BLOCK, HEADROOM, blk, z)
        return
    np.matmul(keys, q, out=s)  # (c,)
    if mask is not None:
        s[~mask] = -np.inf
    top = float(s.max()) if len(s) else -np.inf
    if top == -np.inf:
        return
    new = acc[0] if top <= acc[0] else float(o.dtype.type(top + HEADROOM))  # as the compiled loop moves it
    with np.errstate(invalid="ignore", over="ignore"):
        alpha = np.exp(acc[0] - new)  # 0 while there were no rows
        t = s.astype(np.float64) - new  # (c,)  masked: -inf
        e = np.exp(t)  # (c,)
        et = np.where(e > 0, e * t, 0.0)  # (c,)  masked: 0, not 0·(-inf)
        acc[2] = (alpha * (acc[2] + (acc[0] - new) * acc[1]) if acc[1] > 0 else 0.0) + et.sum()
    acc[1] = alpha * acc[1] + e.sum()
    acc[3] = alpha * alpha * acc[3] + (e * e).sum()
    acc[0] = new
    o *= o.dtype.type(alpha)
    o += e.astype(o.dtype) @ values  # (d_v,)


def online_rows(one: OneQueryScorer, values: np.ndarray, cfg: PassConfig, a: int, b: int) -> KernelState:
    """The kernel state of one query over rows a..b, its soft answer by the compiled loop.

    Each big chunk (``cfg.outer`` rows) is scored, softmaxed and blended row by row by
    :func:`online_blend` (one read of memory); the other reductions (hard, top-k, grid)
    then run on its scores at once.
    """
    rows = one.dense_rows()
    assert rows is not None, "run() uses the loop for dense one-query scorers only"
    keys, q = rows  # (n, d), (d,)
    dt, outer = cfg.dtype, cfg.outer
    red = Reducer(1, cfg._replace(soft=False, stats=False, fast=False, d_v=None, mask=None))  # hard, top-k, grid
    o = np.zeros(values.shape[1], dt)  # (d_v,)  Σ e v at the shift acc[0]
    acc = fresh()  # (4,)  m, Σ e, Σ e (s - m), Σ e²
    buf = np.empty(max(min(outer, b - a), 0), dt)  # (outer,)  one big chunk's scores
    mask = cfg.mask
    for start in range(a, b, outer):
        stop = min(start + outer, b)
        s = buf[: stop - start]  # (c,)
        mrows = None if mask is None else (mask[start:stop] if mask.ndim == 1 else mask[0, start:stop])  # (c,)
        online_blend(keys[start:stop], q, values[start:stop], mrows, s, o, acc)
        red.reduce(s[None, :], start, start + cfg.offset)  # (1, c)
    res = red.state(a, b)
    allowed = np.array([b > a and (mask is None or bool(mask[..., a:b].any()))])  # (1,)
    mx, se, ent, sq = acc.astype(dt)[:, None]  # (1,) each  (the shift m is exact in dt)
    soft = SoftState(mx, se, o[None, :], allowed)  # (1, d_v)
    if cfg.stats:
        soft.ent, soft.sq = ent, sq
    res.soft = soft
    return res
