"""One compiled pass per chunk for the certified compressed search (int8 keys).

:meth:`softdb.engine._certstate.CertState.feed` makes several float64 numpy passes over a
chunk's compressed scores (the scale product, the screen's group maxima, the comparison with
the threshold, the max, the exp and the sums of the non-candidates' bound contributions).
:func:`chunk_pass` does them in one numba-compiled pass over each query's row (a row of ŝ stays
in L1/L2 between its two sweeps) with the same float64 operations in the same order per cell:

- ŝ = I·(t·s) (the exact product t·s, then one rounding), -inf where not allowed;
- the screen (k-th best of the column groups' maxima, minus B_max) raises the kernel's bound;
- cells with ŝ ≥ L − B_max (L: the threshold) are the hits (query, column, ŝ), row-major as
  :func:`softdb.engine._topk._true_cells` gives them;
- the others' max and their (ŝ − max)/τ (-inf elsewhere), whose exp and sum numpy then takes
  (its SIMD exp: numba's is scalar here, six times slower) exactly as the numpy path does.

So the hits, hence candidates and lower bounds, and the sums equal the numpy path's. It is
used when numba is installed (``pip install "softdb[fast]"``) and ``ENABLED``; the numpy path
stays the fallback.

Examples
--------
>>> import numpy as np
>>> ints = np.array([[30, 10, 29]], np.int32)
>>> out = chunk_pass_numpy(ints, np.ones(1), np.full(3, 0.1), None, np.full(1, 0.1),
...                        np.full(1, -np.inf), np.full(1, 2.9), np.array([False]), 1, 1.0)
>>> out[0].tolist(), out[1].tolist()  # hits: query 0, columns 0 and 2
([0, 0], [0, 2])
"""

from __future__ import annotations

import importlib.util
import threading
from typing import Any

import numpy as np

from softdb.engine._numba import import_numba

__all__ = ["ENABLED", "available", "chunk_pass", "chunk_pass_numpy"]

#: Set to False to use numpy's passes even when numba is installed (tests compare the two).
ENABLED = True
#: Column groups of a chunk whose maxima give a first threshold (as ``_certstate.SCREEN_GROUPS``).
SCREEN_GROUPS = 64

_fn: Any = None
_have_numba: bool | None = None
_lock = threading.Lock()

#: (qi, col, ŝ of the hits; per query: bound, hits, allowed, max of the others, Σ e^{(ŝ − max)/τ})
Pass = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def available() -> bool:
    """True if the compiled pass can be used here (numba installed and ``ENABLED``)."""
    global _have_numba
    if _have_numba is None:
        _have_numba = importlib.util.find_spec("numba") is not None
    return ENABLED and _have_numba


def _pass_py(
    ints: np.ndarray,
    qs: np.ndarray,
    ks: np.ndarray,
    mode: int,
    al1: np.ndarray,
    al2: np.ndarray,
    bq: np.ndarray,
    lo_min: np.ndarray,
    floor: np.ndarray,
    short: np.ndarray,
    k: int,
    g: int,
    inv: float,
    row: np.ndarray,
    hq: np.ndarray,
    hc: np.ndarray,
    hs: np.ndarray,
    per: np.ndarray,
    nh: np.ndarray,
) -> int:  # pragma: no cover - compiled
    """The loop numba compiles (plain Python over scalars: only ever run compiled).

    ``mode`` 0: all allowed, 1: ``al1`` (c,), 2: ``al2`` (m, c). ``floor`` (m,): the kernel's
    bound (raised in place by the screen), L = max(``lo_min``, ``floor``); ``row`` (m, c) gets
    (ŝ − max)/τ of the others (-inf: hits, not allowed); ``per`` (m, 3): max of the others,
    unused, allowed count; ``nh`` (m,) hits. Returns the number of hits (more than ``hq`` holds:
    rerun).
    """
    m, c = ints.shape
    cap = hq.shape[0]
    p = 0
    lowest = np.finfo(np.float64).min
    for i in range(m):
        t = qs[i]
        na = 0
        for j in range(c):
            x = (t * ks[j]) * np.float64(ints[i, j])
            if (mode == 1 and not al1[j]) or (mode == 2 and not al2[i, j]):
                x = -np.inf
            if x != -np.inf:
                na += 1
            row[i, j] = x
        thr = floor[i]
        if short[i] and c >= k:
            if c >= 2 * g:
                w = c // g
                gm = np.empty(g)
                for a in range(g):
                    v = -np.inf
                    for j in range(a * w, a * w + w):
                        if row[i, j] > v:
                            v = row[i, j]
                    gm[a] = v
            else:
                gm = row[i].copy()
            gm.sort()
            got = gm[gm.shape[0] - k] - bq[i]
            if got != got:
                got = -np.inf
            if got > thr:
                thr = got
            floor[i] = thr
        if lo_min[i] > thr:
            thr = lo_min[i]
        lim = thr - bq[i]
        if lim < lowest or lim != lim:
            lim = lowest
        mx = -np.inf
        h0 = p
        for j in range(c):
            x = row[i, j]
            if x >= lim:
                if p < cap:
                    hq[p] = i
                    hc[p] = j
                    hs[p] = x
                p += 1
            elif x > mx:
                mx = x
        nh[i] = p - h0
        off = mx if mx != -np.inf else 0.0
        for j in range(c):
            x = row[i, j]
            if x < lim:
                y = x - off
                if inv != 1.0:
                    y *= inv
                row[i, j] = y
            else:
                row[i, j] = -np.inf
        per[i, 0] = mx
        per[i, 2] = na
    return p


def _compiled() -> Any:
    """numba's compilation of the pass (once per process; None if numba cannot be imported)."""
    global _fn, _have_numba
    with _lock:
        if _fn is None and _have_numba:
            numba = import_numba("the certified search uses numpy's passes")
            if numba is None:
                _have_numba = False
                return None
            # no fastmath: every cell's ŝ, comparison and exp argument must equal numpy's.
            try:
                _fn = _jit(numba, cache=True)
            except RuntimeError:  # no writable place for numba's cache: compile in every process
                _fn = _jit(numba, cache=False)
    return _fn


def _jit(numba: Any, cache: bool) -> Any:
    return numba.njit(cache=cache, nogil=True, error_model="numpy")(_pass_py)


def chunk_pass(
    ints: np.ndarray,
    qs: np.ndarray,
    ks: np.ndarray,
    allowed: np.ndarray | None,
    bq: np.ndarray,
    lo_min: np.ndarray,
    floor: np.ndarray,
    short: np.ndarray,
    k: int,
    inv: float,
    buf: np.ndarray | None = None,
) -> Pass | None:
    """The compiled pass over a chunk (None if numba cannot be imported); see :func:`chunk_pass_numpy`.

    ``buf``: float64 scratch of at least m·c cells to reuse (else one is allocated).
    """
    fn = _compiled()
    if fn is None:
        return None
    m, c = ints.shape
    mode = 0 if allowed is None else allowed.ndim
    al1 = allowed if mode == 1 else np.ones(1, np.bool_)
    al2 = allowed if mode == 2 else np.ones((1, 1), np.bool_)
    assert al1 is not None and al2 is not None
    g = max(k, SCREEN_GROUPS)
    row = np.empty((m, c)) if buf is None or buf.size < m * c else buf.ravel()[: m * c].reshape(m, c)
    per = np.empty((m, 3))
    nh = np.empty(m, np.int64)
    cap = max(4096, m * k * 4)
    while True:
        hq, hc, hs = np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap)
        p = int(fn(ints, qs, ks, mode, al1, al2, bq, lo_min, floor, short, k, g, float(inv), row, hq, hc, hs, per, nh))
        if p <= cap:
            break
        cap = p  # the screen only raised ``floor`` (idempotent): run again with room for every hit
    with np.errstate(under="ignore"):
        np.exp(row, out=row)  # (m, c)  e^{(ŝ − max)/τ}: numpy's SIMD exp (numba's is scalar here, 6x slower)
    return hq[:p], hc[:p], hs[:p], floor, nh, per[:, 2].astype(np.int64), per[:, 0], row.sum(axis=1)


def chunk_pass_numpy(
    ints: np.ndarray,
    qs: np.ndarray,
    ks: np.ndarray,
    allowed: np.ndarray | None,
    bq: np.ndarray,
    lo_min: np.ndarray,
    floor: np.ndarray,
    short: np.ndarray,
    k: int,
    inv: float,
) -> Pass:
    """The same pass with numpy (the reference of the tests; ``floor`` is raised in place).

    Parameters
    ----------
    ints : ndarray of shape (m, c), int32
        Exact int8 dot products of the chunk.
    qs, ks : ndarray of shape (m,) and (c,), float64
        Query and key scales (float32 values): ŝ = I·(t·s).
    allowed : ndarray of shape (c,) or (m, c), bool, optional
    bq : ndarray of shape (m,), float64
        B_max of each query.
    lo_min, floor : ndarray of shape (m,), float64
        The smallest merged lower bound and the kernel's bound (raised in place by the screen
        of queries in ``short``): the threshold is their max.
    short : ndarray of shape (m,), bool
        Queries short of k merged lower bounds.
    k : int
    inv : float
        1 / τ.

    Returns
    -------
    qi, col, s_hat : ndarray of shape (p,)
        The hits (ŝ ≥ L − B_max), row-major.
    floor : ndarray of shape (m,)
    hits, n_allowed : ndarray of shape (m,), int64
    mx, total : ndarray of shape (m,), float64
        Max of the other allowed cells' ŝ (-inf: none) and Σ e^{(ŝ − mx)/τ} over them.
    """
    m, c = ints.shape
    base = np.multiply.outer(qs, ks)  # (m, c)
    base *= ints
    if allowed is not None:
        base = np.where(np.broadcast_to(allowed, (m, c)), base, -np.inf)
    n_allowed = np.count_nonzero(base != -np.inf, axis=1).astype(np.int64)  # (m,)
    g = max(k, SCREEN_GROUPS)
    for i in np.flatnonzero(short) if c >= k else []:
        r = base[i]
        gm = r[: c // g * g].reshape(g, -1).max(axis=1) if c >= 2 * g else r  # (g,) | (c,)
        with np.errstate(invalid="ignore"):
            got = np.sort(gm)[gm.shape[0] - k] - bq[i]
        floor[i] = max(floor[i], -np.inf if np.isnan(got) else got)
    lim = np.maximum(np.maximum(lo_min, floor) - bq, np.finfo(np.float64).min)  # (m,)
    hit = base >= lim[:, None]  # (m, c)
    qi, col = np.nonzero(hit)
    s_hat = base[qi, col]
    base[hit] = -np.inf
    mx = base.max(axis=1) if c else np.full(m, -np.inf)  # (m,)
    safe = np.where(np.isfinite(mx), mx, 0.0)
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        y = base - safe[:, None]
        if inv != 1.0:
            y *= inv
        total = np.exp(y).sum(axis=1)  # (m,)
    return (
        qi.astype(np.int64), col.astype(np.int64), s_hat, floor, hit.sum(axis=1).astype(np.int64), n_allowed, mx,
        total,
    )  # fmt: skip
