"""An optional compiled loop for one query's soft answer: score, exp and blend row by row.

One query's soft answer (``explain``, ``lookup`` of one query) over a K = V table (the
values are the keys, as in text tables) needs each row once. numpy can only do it chunk
by chunk, each chunk read twice (from memory to score it, again from cache to blend
it): its per-call cost rules out chunks small enough for L2, so the second read comes
from L3 and the pass costs 1.4-1.9x a ``search`` at 1M rows. This loop scores row j,
takes its exp and adds e_j · v_j while the row is still in L1: one read of memory,
about the cost of the search (benchmarks/bench_lookup.py, the "plan" rows).

It is compiled by numba when numba is installed (``pip install "softdb[fast]"``); the
kernel uses it for K = V tables of at least MIN_ROWS rows (with separate values, a key
row and a value row read in turn measured slower than numpy's loop, which they keep).
The first such call in a process imports numba and loads the loop from numba's cache
(~0.3 s here; ~1 s the very first time, while it compiles). Both loops give the same
answers up to float rounding (tests/test_fused.py); this one's blocked sums are the
closer to float64.

Examples
--------
>>> import numpy as np
>>> k = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)
>>> s, o = np.empty(2, np.float32), np.zeros(2, np.float32)
>>> score_blend(k, np.array([0.0, 2.0], np.float32), k, None, s, o)
>>> s.tolist(), np.allclose(o, [1.0, np.exp(2.0)])
([2.0, 0.0], True)
"""

from __future__ import annotations

import importlib.util
import threading
import warnings
from typing import Any

import numpy as np

__all__ = ["BLOCK", "MIN_ROWS", "available", "score_blend"]

#: Passes over fewer rows use numpy's loop (no import of numba, no compilation).
MIN_ROWS = 1 << 16
#: Rows whose e_j · v_j are summed into a block's own accumulator before it is added to
#: the total: float32 rounding grows with ~BLOCK + rows / BLOCK terms, not with rows.
BLOCK = 512
#: Set to False to use numpy's loop even when numba is installed (tests compare the two).
ENABLED = True

_loop: Any = None
_weight: Any = None  # the compiled _weight_py, which the compiled loop calls
_have_numba: bool | None = None
_lock = threading.Lock()


def available() -> bool:
    """True if the compiled loop can be used here (numba installed and ``ENABLED``)."""
    global _have_numba
    if _have_numba is None:
        _have_numba = importlib.util.find_spec("numba") is not None
    return ENABLED and _have_numba


def _score_blend_py(
    keys: np.ndarray,
    q: np.ndarray,
    values: np.ndarray,
    mask: np.ndarray | None,
    s: np.ndarray,
    o: np.ndarray,
    block: int,
    zero: np.floating,
) -> None:  # pragma: no cover - compiled
    """The loop numba compiles (plain Python over scalars: only ever run compiled).

    One row at a time, in order: one sequential stream, which the hardware prefetcher
    follows (four rows in lockstep ran twice as fast from cache but three times slower
    from memory).
    """
    n, d = keys.shape
    dv = values.shape[1]
    acc = np.zeros(dv, o.dtype)
    for b0 in range(0, n, block):
        acc[:] = 0
        for j in range(b0, min(b0 + block, n)):
            x = zero
            for t in range(d):
                x += keys[j, t] * q[t]
            e = _weight(x, j, mask, s, zero)
            for t in range(dv):
                acc[t] += e * values[j, t]
        for t in range(dv):
            o[t] += acc[t]


def _weight_py(
    x: np.floating, j: int, mask: np.ndarray | None, s: np.ndarray, zero: np.floating
) -> np.floating:  # pragma: no cover - compiled
    """Row j's score into s[j] and its weight exp(x); masked: -inf and 0.

    ``mask`` None compiles to a loop with no test at all (numba prunes the branch).
    """
    if mask is not None and not mask[j]:
        s[j] = -np.inf
        return zero
    s[j] = x
    return np.exp(x)


def _compiled() -> Any:
    """numba's compilation of the loop (once per process; None if numba cannot be imported)."""
    global _loop, _have_numba
    with _lock:
        if _loop is None and _have_numba:
            try:
                import numba
            except Exception as e:  # noqa: BLE001 - e.g. a numba built for another numpy
                warnings.warn(
                    f"softdb: numba is installed but cannot be imported ({e}); one-query soft "
                    f'answers use numpy\'s loop; hint: pip install -U "softdb[fast]"',
                    stacklevel=3,
                )
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
    global _weight
    _weight = numba.njit(inline="always", cache=cache, **opts)(_weight_py)
    return numba.njit(cache=cache, **opts)(_score_blend_py)


def score_blend(
    keys: np.ndarray, q: np.ndarray, values: np.ndarray, mask: np.ndarray | None, s: np.ndarray, o: np.ndarray
) -> None:
    """s_j = k_j · q (or -inf where ``mask`` is False) and o += Σ_j exp(s_j) v_j, in one sweep.

    Parameters
    ----------
    keys : ndarray of shape (c, d)
    q : ndarray of shape (d,)
        The query, already scaled by 1 / τ; |s_j| must be small enough for exp (the
        kernel's FAST_BOUND), since no running max is kept.
    values : ndarray of shape (c, d_v)
        May be ``keys`` itself (a K = V table).
    mask : ndarray of bool, shape (c,), optional
        Rows allowed; masked rows score -inf and are not blended.
    s : ndarray of shape (c,)
        Out: the scores.
    o : ndarray of shape (d_v,)
        In-out: the running Σ exp(s_j) v_j, added to.

    All arrays share one float dtype; the compiled loop releases the GIL. Without numba
    (or with ``ENABLED`` False) the same is computed by numpy.
    """
    loop = _compiled() if available() else None
    if loop is None:
        np.matmul(keys, q, out=s)  # (c,)
        if mask is not None:
            s[~mask] = -np.inf
        o += np.exp(s) @ values  # (d_v,)
        return
    m = np.ascontiguousarray(mask) if mask is not None else None
    loop(np.asarray(keys), np.asarray(q), np.asarray(values), m, s, o, BLOCK, s.dtype.type(0))
