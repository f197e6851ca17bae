"""One compiled pass per chunk for the certified compressed search (int8 keys).

:meth:`softdb.engine._certstate.CertState.feed` makes several float64 numpy passes over a
chunk's compressed scores (the scale product, the screen's group maxima, the comparison with
the threshold, the max, the exp and the sums of the non-candidates' bound contributions).
:func:`chunk_pass` does them in one numba-compiled sweep over each query's row (two for a query
still short of k lower bounds: the screen's group maxima first), branch-free in blocks of
:data:`BLOCK` columns so that LLVM vectorises it (each block's hits come out as a bit mask), with
the same float64 operations per cell as the numpy path:

- ŝ = I·(t·s) (the exact product t·s, then one rounding), not counted where not allowed;
- the screen (k-th best of the column groups' maxima, minus B_max) raises the kernel's bound;
- cells with ŝ ≥ off = L − B_max (L: the threshold) are the hits (query, column, ŝ), row-major
  as :func:`softdb.engine._topk._true_cells` gives them;
- y = (ŝ − off)/τ ≤ 0 of the others rounded to float32, whose exp and sum numpy then takes in
  float32 (four times the float64 rate; numba's exp is scalar here): the sums come out as
  certified bounds, widened by :data:`EXP32_SLACK` and 2⁻¹²⁶ per term (:func:`_sums`);
- the others' largest y (an integer min of its bit patterns: a float max does not vectorise),
  from which :func:`others_max` bounds their largest ŝ from above (for the margin).

The hits, hence candidates and lower bounds, equal the numpy path's (:meth:`CertState.feed`);
the sums bound the same quantity. It is used when numba is installed
(``pip install "softdb[fast]"``) and ``ENABLED``; :func:`chunk_pass_numpy` is the reference.

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
import math
import threading
from typing import Any

import numpy as np

from softdb.engine._numba import import_numba

__all__ = ["ENABLED", "available", "chunk_pass", "chunk_pass_numpy", "others_max", "out_cells", "push_lower"]

#: Set to False to use numpy's passes even when numba is installed (tests compare the two).
ENABLED = True
#: Column groups of a chunk whose maxima give a first threshold (as ``_certstate.SCREEN_GROUPS``).
SCREEN_GROUPS = 64

_fn: Any = None
_push_fn: Any = None
_out_fn: Any = None
_have_numba: bool | None = None
_lock = threading.Lock()

#: (qi, col, ŝ of the hits; per query: bound, hits, allowed, max of the others, the offset, and bounds
#: on Σ e^{(ŝ − offset)/τ} over the others)
Pass = tuple[
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
]
#: Relative slack of the others' float32 sums: numpy's float32 exp (trusted to 512 ulps, 2⁻¹⁴; its
#: SIMD paths keep within a few), y = (ŝ − off)/τ rounded to float32 (|y|·2⁻²⁴ ≤ 2⁻¹⁷ where the
#: term is normal), the pairwise float32 sum (≤ (log₂ c + 16)·2⁻²⁴ ≤ 2⁻¹⁹), the float64 steps.
EXP32_SLACK = 2.0**-12
#: A term whose float32 exp underflows or is subnormal is off by less than this (absolute).
TINY32 = 2.0**-126
#: Columns of one vectorised sweep of the pass (its hits: one 64-bit mask).
BLOCK = 64


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
    ybits: np.ndarray,
) -> int:  # pragma: no cover - compiled
    """The loop numba compiles (plain Python over scalars: only ever run compiled).

    ``mode`` 0: all allowed, 1: ``al1`` (c,), 2: ``al2`` (m, c). ``floor`` (m,): the kernel's
    bound (raised in place by the screen), L = max(``lo_min``, ``floor``); ``row`` (m, c) float32
    gets y = (ŝ − off)/τ of the others (-inf: hits, not allowed), off = L − B_max; ``per``
    (m, 3): unused, off, allowed count; ``nh`` (m,) hits; ``ybits`` (m,) int32: the bit pattern
    of the others' largest y (-inf's when none; any when c = 0). Each query's row is
    swept in blocks of :data:`BLOCK` columns by a branch-free loop that LLVM vectorises (ŝ, the
    comparison, y, the counts, a bit mask of the hits), whose set bits then give the hits; the
    largest y is the smallest int32 bit pattern of the row (every y is ≤ -0.0: an integer min,
    which vectorises where a float max does not). A query short of k lower bounds first gets the
    screen's group maxima. Returns the number of hits (more than ``hq`` holds: rerun).
    """
    m, c = ints.shape
    cap = hq.shape[0]
    p = 0
    lowest = np.finfo(np.float64).min
    ninf = -np.inf
    for i in range(m):
        t = qs[i]
        ii = ints[i]
        ri = row[i]
        thr = floor[i]
        if short[i] and c >= k:
            if c >= 2 * g:
                w = c // g
                gm = np.full(g, ninf)
                for a in range(g):
                    v = ninf
                    for j in range(a * w, a * w + w):
                        if (mode == 1 and not al1[j]) or (mode == 2 and not al2[i, j]):
                            continue
                        x = (t * ks[j]) * np.float64(ii[j])
                        if x > v:
                            v = x
                    gm[a] = v
            else:
                gm = np.full(c, ninf)
                for j in range(c):
                    if (mode == 1 and not al1[j]) or (mode == 2 and not al2[i, j]):
                        continue
                    gm[j] = (t * ks[j]) * np.float64(ii[j])
            gm.sort()
            got = gm[gm.shape[0] - k] - bq[i]
            if got != got:
                got = ninf
            if got > thr:
                thr = got
            floor[i] = thr
        if lo_min[i] > thr:
            thr = lo_min[i]
        lim = thr - bq[i]
        if lim < lowest or lim != lim:
            lim = lowest
        off = lim
        na = 0
        h0 = p
        for b0 in range(0, c, BLOCK):
            b1 = min(b0 + BLOCK, c)
            u0 = np.uint64(b0)  # unsigned indices: numba then knows none is negative, and LLVM vectorises
            hm = np.uint64(0)  # bit jj: column b0 + jj is a hit
            if mode == 0:
                for jj in range(np.uint64(b1 - b0)):
                    u = u0 + jj
                    x = (t * ks[u]) * np.float64(ii[u])
                    h = x >= lim
                    hm |= np.uint64(h) << jj
                    ri[u] = np.float32(ninf if h else (x - off) * inv)
                na += b1 - b0
            else:
                for jj in range(np.uint64(b1 - b0)):
                    u = u0 + jj
                    x = (t * ks[u]) * np.float64(ii[u])
                    ok = al1[u] if mode == 1 else al2[i, u]
                    h = ok and x >= lim
                    hm |= np.uint64(h) << jj
                    na += ok
                    ri[u] = np.float32((x - off) * inv if ok and not h else ninf)
            while hm:  # the hits, lowest column first
                bit = hm & (~hm + np.uint64(1))
                u = u0 + np.uint64(math.frexp(np.float64(bit))[1] - 1)  # log2 of a power of two, exact
                hm ^= bit
                if p < cap:
                    hq[p] = i
                    hc[p] = u
                    hs[p] = (t * ks[u]) * np.float64(ii[u])
                p += 1
        bits = ri.view(np.int32)
        low = np.int32(2147483647)
        for j in range(c):
            v = bits[j]
            low = v if v < low else low
        ybits[i] = low
        per[i, 1] = off
        per[i, 2] = na
        nh[i] = p - h0
    return p


def _push_py(s: np.ndarray, bound: np.ndarray, qi: np.ndarray, lo: np.ndarray) -> None:  # pragma: no cover
    """Insert values ``lo`` (p,) of queries ``qi`` into the k best ``s`` (m, k, descending); raise ``bound``."""
    k = s.shape[1]
    for p in range(qi.shape[0]):
        i = qi[p]
        v = lo[p]
        if v > s[i, k - 1]:
            j = k - 1
            while j > 0 and s[i, j - 1] < v:
                s[i, j] = s[i, j - 1]
                j -= 1
            s[i, j] = v
            if s[i, k - 1] > bound[i]:
                bound[i] = s[i, k - 1]


def _out_py(
    lo_max: np.ndarray,
    lo_sum: np.ndarray,
    hi_max: np.ndarray,
    hi_sum: np.ndarray,
    out_hi: np.ndarray,
    out_n: np.ndarray,
    qi: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    inv: float,
) -> None:  # pragma: no cover - compiled
    """Cells (query ``qi``, bounds ``lo`` ≤ ``hi``) into the online log-sum-exps of lo/τ and hi/τ (in place)."""
    for p in range(qi.shape[0]):
        i = qi[p]
        for side in range(2):  # lo/τ, then hi/τ: a new maximum rescales the sum
            mx, sm = (lo_max, lo_sum) if side == 0 else (hi_max, hi_sum)
            x = (lo[p] if side == 0 else hi[p]) * inv
            if x > mx[i]:
                sm[i] = sm[i] * np.exp(mx[i] - x) + 1.0
                mx[i] = x
            else:
                sm[i] += np.exp(x - mx[i])
        if hi[p] > out_hi[i]:
            out_hi[i] = hi[p]
        out_n[i] += 1


def out_cells(state: Any, qi: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> bool:
    """Cells into a :class:`~softdb.engine._certstate.CertState`'s non-candidate sums, compiled (False: not done).

    One online log-sum-exp step per cell and side (a new maximum rescales the sum); the sums are
    the same quantities as numpy's segment sums up to float64 rounding (``lse_slack`` covers
    both), the largest ``hi`` and the count exactly the same.
    """
    fn = _compiled(which="out")
    if fn is None:
        return False
    st = state
    fn(st.lo_max, st.lo_sum, st.hi_max, st.hi_sum, st.out_hi, st.out_n, qi, lo, hi, 1.0 / st.tau)
    return True


def push_lower(s: np.ndarray, bound: np.ndarray, qi: np.ndarray, lo: np.ndarray) -> bool:
    """Insert lower bounds into the k best values per query, compiled (False: numba unavailable, nothing done).

    ``s`` (m, k) float64, descending (-inf pads), and ``bound`` (m,) are updated in place: each
    row keeps the k largest of its values and the new ones (a value equal to the k-th is left
    out: the values kept are the same), and ``bound`` rises to the k-th where that is higher.

    Examples
    --------
    >>> s, bound = np.full((1, 2), -np.inf), np.full(1, -np.inf)
    >>> _ = available() and push_lower(s, bound, np.array([0, 0, 0]), np.array([1.0, 3.0, 2.0]))
    >>> s.tolist() if available() else [[3.0, 2.0]]
    [[3.0, 2.0]]
    """
    fn = _compiled(which="push")
    if fn is None:
        return False
    fn(s, bound, qi, lo)
    return True


def _compiled(which: str = "pass") -> Any:
    """numba's compilation of the pass, or of :func:`push_lower` ("push") or :func:`out_cells`
    ("out") (once per process; None if numba cannot be imported)."""
    global _fn, _push_fn, _out_fn, _have_numba
    with _lock:
        if _fn is None and _have_numba:
            numba = import_numba("the certified search uses numpy's passes")
            if numba is None:
                _have_numba = False
                return None
            try:
                _fn, _push_fn, _out_fn = _jit(numba, cache=True)
            except RuntimeError:  # no writable place for numba's cache: compile in every process
                _fn, _push_fn, _out_fn = _jit(numba, cache=False)
    return {"pass": _fn, "push": _push_fn, "out": _out_fn}[which]


def _jit(numba: Any, cache: bool) -> tuple[Any, Any, Any]:
    # nnan, nsz only: no contraction or reassociation, so ŝ, y and every comparison equal numpy's
    # (the values are never NaN; a signed zero changes no comparison, and y ≤ -0.0 stays so).
    flags = {"nnan", "nsz"}
    jit = numba.njit(cache=cache, nogil=True, error_model="numpy")
    return (
        numba.njit(cache=cache, nogil=True, error_model="numpy", fastmath=flags)(_pass_py),
        jit(_push_py),
        jit(_out_py),
    )


def others_max(ymax: np.ndarray, n_others: np.ndarray, off: np.ndarray, inv: float) -> np.ndarray:
    """An upper bound on the others' largest ŝ from their largest y = fl32(fl64(fl64(ŝ − off)·inv)): (m,).

    y is a non-decreasing function of ŝ, and every other's y ≤ -0.0 (ŝ < off). Each rounding is
    relative (float64 twice, float32 once: ≤ 2⁻²⁴ + 2⁻⁵¹ in all) or, below float32's normal range,
    absolute (≤ 2⁻¹⁵⁰), so ŝ − off ≤ y·(1 − 2⁻²¹)/inv + 2⁻¹⁴⁸/inv (with room for this sum's own
    float64 roundings); the sum off + that is rounded up. A y of -inf (below float32's range) is
    taken as −FLT_MAX. -inf where no other cell was counted.

    Examples
    --------
    >>> ymax = np.array([-0.5, -np.inf], np.float32)
    >>> b = others_max(ymax, np.array([3, 0]), np.array([2.0, 2.0]), 1.0)
    >>> bool(1.5 <= b[0] < 1.5 + 1e-6), float(b[1])
    (True, -inf)
    """
    y = np.maximum(ymax.astype(np.float64), -float(np.finfo(np.float32).max))  # (m,)  y ≤ -0.0
    with np.errstate(over="ignore"):
        w = (y * (1.0 - 2.0**-21)) / inv + 2.0**-148 / inv  # (m,)  ≥ ŝ − off
        bound = np.nextafter(off + w, np.inf)  # (m,)
    return np.where(n_others > 0, bound, -np.inf)


def _sums(row: np.ndarray, n_others: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounds on Σ_j e^{y_j} of each row of ``row`` (m, c) float32 y ≤ 0 (-inf: not counted): (m,), (m,).

    numpy's float32 exp and pairwise sum, widened by :data:`EXP32_SLACK` relative and, above, by
    2⁻¹²⁶ per counted term (a term whose exp underflows or is subnormal). ``row`` is overwritten.
    """
    with np.errstate(under="ignore"):
        np.exp(row, out=row)  # (m, c)  float32: numpy's SIMD exp
    total = row.sum(axis=1).astype(np.float64)  # (m,)
    lo = np.maximum(total * (1.0 - EXP32_SLACK) - n_others * TINY32, 0.0)
    hi = total * (1.0 + EXP32_SLACK) + n_others * TINY32
    return lo, hi


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

    ``buf``: float32 scratch of at least m·c cells to reuse (else one is allocated).
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
    if buf is None or buf.size < m * c or buf.dtype != np.float32:
        buf = np.empty(m * c, np.float32)
    row = buf.ravel()[: m * c].reshape(m, c)
    per = np.empty((m, 3))
    nh = np.empty(m, np.int64)
    ybits = np.empty(m, np.int32)
    cap = max(4096, m * k * 4)
    while True:
        hq, hc, hs = np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap)
        args = (ints, qs, ks, mode, al1, al2, bq, lo_min, floor, short, k, g, float(inv), row, hq, hc, hs, per, nh)
        p = int(fn(*args, ybits))
        if p <= cap:
            break
        cap = p  # the screen only raised ``floor`` (idempotent): run again with room for every hit
    n_allowed = per[:, 2].astype(np.int64)
    off = per[:, 1].copy()
    mx = others_max(ybits.view(np.float32), n_allowed - nh, off, inv)
    lo, hi = _sums(row, n_allowed - nh)
    return hq[:p], hc[:p], hs[:p], floor, nh, n_allowed, mx, off, lo, hi


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
        The hits (ŝ ≥ L − B_max = off), row-major.
    floor : ndarray of shape (m,)
    hits, n_allowed : ndarray of shape (m,), int64
    mx, off : ndarray of shape (m,), float64
        An upper bound on the other allowed cells' ŝ (-inf: none; :func:`others_max`), and the
        offset of the sums.
    total_lo, total_hi : ndarray of shape (m,), float64
        Bounds on Σ e^{(ŝ − off)/τ} over the other allowed cells.
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
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        y = base - lim[:, None]  # (m, c)  ≤ 0 (-inf: hits, not allowed)
        if inv != 1.0:
            y *= inv
    y32 = y.astype(np.float32)  # (m, c)
    hits = hit.sum(axis=1).astype(np.int64)
    ymax = y32.max(axis=1) if c else np.full(m, -np.inf, np.float32)  # (m,)
    mx = others_max(ymax, n_allowed - hits, lim, inv)
    lo, hi = _sums(y32, n_allowed - hits)
    return qi.astype(np.int64), col.astype(np.int64), s_hat, floor, hits, n_allowed, mx, lim, lo, hi
