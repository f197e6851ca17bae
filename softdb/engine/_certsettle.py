"""The hits of a chunk of the certified int8 pass, settled in one compiled loop.

After the compiled pass (:mod:`softdb.engine._certjit`) has found a chunk's *hits* (cells with
ŝ ≥ L − B_max), :meth:`softdb.engine._certstate.CertState.feed_codes` gives each hit its own
bound B (:func:`softdb.engine._compressed.cell_bounds`), pushes the exact lower bounds ŝ − B
that reach L into the k best, keeps as candidates the hits whose upper bound ŝ + B reaches the
new L, and adds the others to the non-candidates' sums. :func:`settle` does the first three in
one numba-compiled loop (about twenty numpy calls per chunk fewer):

- B by the same float64 operations, in the same order, as ``cell_bounds`` (int8 keys): equal to
  the bit;
- the lower bounds pushed are those reaching the threshold before the chunk's pushes, as
  ``CertState._push_lower`` does, into the same k best values;
- the candidates, in the hits' (row-major) order; the others handed back for the non-candidates'
  sums (:func:`softdb.engine._certjit.out_cells`, as the numpy steps add them).

It runs when numba is installed and :data:`softdb.engine._certjit.ENABLED`;
``tests/engine/test_certsettle.py`` compares it with the numpy steps.

Examples
--------
>>> import numpy as np
>>> from softdb.engine import _certjit
>>> ready = _certjit.available() and compiled() is not None
>>> ready in (True, False)
True
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from softdb.engine._compressed import SLACK, U64
from softdb.engine._numba import import_numba

__all__ = ["compiled", "settle"]

_fn: Any = None
_tried = False
_lock = threading.Lock()


def _settle_py(
    qi: np.ndarray,
    col: np.ndarray,
    sh: np.ndarray,
    rho: np.ndarray,
    hat: np.ndarray,
    kn: np.ndarray,
    qn: np.ndarray,
    qr: np.ndarray,
    consts: np.ndarray,
    lo_min: np.ndarray,
    top_s: np.ndarray,
    top_bound: np.ndarray,
    rows: np.ndarray,
    cq: np.ndarray,
    cr: np.ndarray,
    cs: np.ndarray,
    cb: np.ndarray,
    nq: np.ndarray,
    nlo: np.ndarray,
    nhi: np.ndarray,
    counts: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """The loop numba compiles; see :func:`settle`. ``counts`` gets the numbers of candidates and others."""
    g, slack, u4, tiny_c = consts[0], consts[1], consts[2], consts[3]
    p = qi.shape[0]
    m, k = top_s.shape
    b = np.empty(p)
    thr0 = np.empty(m)  # the threshold before this chunk's pushes
    for i in range(m):
        thr0[i] = lo_min[i] if lo_min[i] > top_bound[i] else top_bound[i]
    for t in range(p):
        i = qi[t]
        j = col[t]
        knj = np.float64(kn[j])
        bb = qn[i] * (np.float64(rho[j]) + g * knj) + qr[i] * np.float64(hat[j])
        bb *= slack
        bb += abs(sh[t]) * u4
        bb += tiny_c * (1.0 + knj)
        b[t] = bb
        v = sh[t] - bb
        if v >= thr0[i] and v > top_s[i, k - 1]:  # into the k best (a value equal to the k-th: the same values)
            r = k - 1
            while r > 0 and top_s[i, r - 1] < v:
                top_s[i, r] = top_s[i, r - 1]
                r -= 1
            top_s[i, r] = v
            if top_s[i, k - 1] > top_bound[i]:
                top_bound[i] = top_s[i, k - 1]
    nc = nn = 0
    for t in range(p):
        i = qi[t]
        thr = lo_min[i] if lo_min[i] > top_bound[i] else top_bound[i]
        if sh[t] + b[t] >= thr:
            cq[nc] = i
            cr[nc] = rows[col[t]]
            cs[nc] = sh[t]
            cb[nc] = b[t]
            nc += 1
        else:  # not a candidate: into the non-candidates' sums (by the caller)
            nq[nn] = i
            nlo[nn] = sh[t] - b[t]
            nhi[nn] = sh[t] + b[t]
            nn += 1
    counts[0], counts[1] = nc, nn


def compiled() -> Any:
    """numba's compilation of the loop (once per process), or None when numba cannot be imported."""
    global _fn, _tried
    with _lock:
        if not _tried:
            _tried = True
            numba = import_numba("the certified search settles a chunk's hits with numpy")
            if numba is not None:
                try:
                    _fn = numba.njit(cache=True, nogil=True, error_model="numpy")(_settle_py)
                except RuntimeError:  # no writable place for numba's cache
                    _fn = numba.njit(cache=False, nogil=True, error_model="numpy")(_settle_py)
    return _fn


def settle(
    state: Any,
    qi: np.ndarray,
    col: np.ndarray,
    sh: np.ndarray,
    inputs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, float],
    rows: np.ndarray,
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]] | None:
    """Settle a chunk's hits into ``state`` (a CertState): None when not compiled (nothing done).

    Parameters
    ----------
    state : CertState
        Its k best lower bounds and threshold are updated.
    qi, col, sh : ndarray of shape (p,)
        The hits (query, chunk column, ŝ), row-major.
    inputs : tuple
        The chunk's ρ, ‖k̂‖, ‖k‖ (c,), the queries' ‖q‖ and ‖q − q̂‖ (m,), γ_{d+8} and the
        underflow term's factor 2⁻¹²⁰·(d + 8)·max(1, τ) (as ``cell_bounds`` makes them).
    rows : ndarray of shape (c,), int64
        Global row of each chunk column.

    Returns
    -------
    (qi, rows, ŝ, B) of the candidates, and (qi, lo, hi) of the other hits, for the
    non-candidates' sums (``CertState._out_cells``), each in the hits' order.
    """
    fn = compiled()
    if fn is None:
        return None
    rho, hat, kn, qn, qr, g, tiny_c = inputs
    p = len(qi)
    cq, cr = np.empty(p, np.int64), np.empty(p, np.int64)
    cs, cb = np.empty(p), np.empty(p)
    nq, nlo, nhi = np.empty(p, np.int64), np.empty(p), np.empty(p)
    counts = np.zeros(2, np.int64)
    consts = np.array([g, SLACK, 4.0 * U64, tiny_c])
    assert state.top is not None
    lo_min = state.lo.min(axis=1)  # (m,)
    fn(qi, col, sh, rho, hat, kn, qn, qr, consts, lo_min, state.top.s, state.top.bound, rows, cq, cr, cs, cb, nq, nlo,
       nhi, counts)  # fmt: skip
    nc, nn = int(counts[0]), int(counts[1])
    return (cq[:nc], cr[:nc], cs[:nc], cb[:nc]), (nq[:nn], nlo[:nn], nhi[:nn])
