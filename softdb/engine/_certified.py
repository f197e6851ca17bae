"""Certified exact top-k and certified weights from compressed keys.

One pass streams every part (segment) of a head's rows in chunks: compressed scores and their
bounds (:func:`softdb.engine._compressed.chunk_bounds`) feed a mergeable
:class:`~softdb.engine._certstate.CertState`. The candidates left (rows whose upper bound reaches
the k-th best lower bound) are rescored once in fp32, through the *same* arithmetic as softdb's
fp32 search (:func:`reference_scores`: the query scaled by 1/τ, the same BLAS call shape per part,
the score scaled back by τ), so ids **and** scores equal the fp32 search's, ties to the lowest row.

The certificate of each query (:class:`Certificate`) holds only if

- every rescored score lies inside its interval [ŝ − B, ŝ + B] (the bound was not broken), and
- the margin L − max hi over the rows not rescored is positive (nothing left out could enter);

otherwise (and when the candidates pass their cap, or τ is outside the kernel's pre-scaled range)
the caller runs the full fp32 pass and the certificate says so (``fallback``).

Weights: the full-table log-sum-exp lies in [LSE_lo, LSE_hi], from the exact scores of the
rescored rows and the lower (upper) bounds of all others; a hit's weight exp(s/τ − LSE) then lies
in [exp(s/τ − LSE_hi), exp(s/τ − LSE_lo)]. :func:`tighten` rescores more rows, the largest bound
contributions e^{hi/τ} − e^{lo/τ} first, until every interval is narrower than a tolerance.

Examples
--------
>>> import numpy as np
>>> from softdb.engine._compressed import compress_keys
>>> from softdb.engine._segmented import Part, Parts
>>> K = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
>>> parts = Parts([Part(K, None, 1.0, None)])
>>> out = certified_search(parts, [compress_keys(K, "int8")], K[:2], k=3, tau=1.0)
>>> ref = np.argsort(-(K[:2] @ K.T), axis=1, kind="stable")[:, :3]  # fp32 top-3
>>> bool((out.rows == ref).all()), bool(out.cert.holds.all()), out.cert.rescored.tolist()
(True, True, [3, 3])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from softdb.engine import _certjit, _parallel
from softdb.engine._certstate import CertState, lse_merge
from softdb.engine._compressed import (
    CompressedKeys,
    QueryCode,
    cell_bounds,
    chunk_bounds,
    chunk_max_bound,
    chunk_scores,
    compress_queries,
)
from softdb.engine._kernel import chunk_rows
from softdb.engine._lowp import dot_int8
from softdb.engine._segmented import Parts, _part_mask
from softdb.engine._topk import ROW_LAYOUT_MIN

__all__ = [
    "CAP_PER_HIT",
    "Certificate",
    "CertifiedTopK",
    "certified_search",
    "lse_slack",
    "reference_scores",
    "tighten",
    "weight_interval",
]

#: The pass gives up (full fp32 pass) past this many candidate cells per query and hit (at least CAP_MIN in all).
CAP_PER_HIT = 64
CAP_MIN = 65536
#: Score cells (queries × rows) of one chunk of compressed scores.
CHUNK_CELLS = 1 << 19
#: Rescored rows are scored in BLAS calls of at least this many rows (zero-padded): OpenBLAS's
#: small-matrix kernels round some dot products differently from the big calls of the fp32 pass.
PAD_ROWS = 4096
#: Relative slack of the float64 exp of the weight intervals.
W_SLACK = 1e-12


def lse_slack(n: int, lse: np.ndarray) -> np.ndarray:
    """Bound on the float64 error of a log-sum-exp of n terms summed online: (2n + 64)·2⁻⁵²·(1 + |lse|)."""
    with np.errstate(invalid="ignore"):
        return (2.0 * n + 64.0) * 2.0**-52 * (1.0 + np.abs(np.where(np.isfinite(lse), lse, 0.0)))


@dataclass
class Certificate:
    """What certifies each query's answer (all (m,) arrays).

    Attributes
    ----------
    rescored : ndarray of int64
        Rows rescored in fp32 (n when a full fp32 pass ran).
    margin : ndarray of float64
        k-th best lower bound minus the largest upper bound of a row not rescored
        (+inf when every row was rescored); > 0 whenever the certificate holds.
    fallback : ndarray of bool
        True where a full fp32 pass answered instead.
    holds : ndarray of bool
        The certificate holds (always True for a returned answer).
    reason : str
        Why a fallback ran ("" when none did).
    """

    rescored: np.ndarray
    margin: np.ndarray
    fallback: np.ndarray
    holds: np.ndarray
    reason: str = ""


@dataclass
class CertifiedTopK:
    """Rows (m, k), fp32 scores (m, k), LSE interval (m,) each, and the certificate."""

    rows: np.ndarray
    scores: np.ndarray
    lse_lo: np.ndarray
    lse_hi: np.ndarray
    cert: Certificate
    state: CertState | None = None
    exact: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # (qi, rows, fp32 score) rescored cells


def _method(m: int, n_part: int, itemsize: int) -> tuple[str, int]:
    """How softdb's fp32 search scores a part of n_part rows for m queries, and its chunk's rows (kernel.run)."""
    ranges = _parallel.split(n_part, _parallel.threads_for(m, n_part, None)) if n_part else [(0, 0)]
    longest = max(b - a for a, b in ranges)
    rows = chunk_rows(m, longest, itemsize, None, len(ranges))
    if m >= ROW_LAYOUT_MIN:
        return "by_row", rows
    if m == 1 and len(ranges) > 1:
        return "one", rows
    return "gemm", rows


def pre_scaled(tau: float) -> bool:
    """The fp32 search scales the queries by 1/τ (else it scales scores: not reproduced here)."""
    return 1e-12 <= 1.0 / tau <= 1e12


def reference_scores(parts: Parts, q: np.ndarray, tau: float, rows: np.ndarray) -> np.ndarray:
    """Scores of global live ``rows`` (u,) for every query, exactly as the fp32 search computes them: (m, u).

    The query is scaled by 1/τ in float32, each part's rows are scored by the BLAS call shape the
    kernel uses for that part (by row from ROW_LAYOUT_MIN queries on, numpy's loop for one query
    split over threads, else a GEMM), and the scores are scaled back by τ, as
    :func:`softdb.engine._states.finalize` does.
    """
    dt = q.dtype
    scale = 1.0 / tau
    qs = q * dt.type(scale)  # (m, d)
    unscale = dt.type(1.0 / scale)
    m, u = q.shape[0], len(rows)
    out = np.empty((m, u), dt)  # (m, u)
    if not u:
        return out
    which, local = parts.locate(rows)
    step = max(PAD_ROWS, CHUNK_CELLS // max(m, 1))
    for i in np.unique(which):
        at = np.flatnonzero(which == i)  # (u_i,)
        part = parts.parts[i]
        how, ref_rows = _method(m, part.n_phys, dt.itemsize)
        pad = min(PAD_ROWS, max(ref_rows, 1))  # rows of the BLAS call: a kernel chunk's, up to PAD_ROWS
        for a in range(0, len(at), step):
            sel = at[a : a + step]
            c = len(sel)
            if how == "one":
                out[0, sel] = np.einsum("cd,d->c", part.keys[local[sel]], qs[0])  # (c,)  per element as the kernel's
                continue
            kk = np.zeros((max(c, pad), q.shape[1]), dt)  # (c', d)  the BLAS call shape of a kernel chunk
            kk[:c] = part.keys[local[sel]]  # gathered full-precision rows
            if how == "by_row":
                out[:, sel] = np.matmul(kk, qs.T)[:c].T  # (m, c)
            else:
                out[:, sel] = np.matmul(qs, kk.T)[:, :c]  # (m, c)
    out *= unscale
    return out


def scan(
    parts: Parts, cks: Sequence[CompressedKeys], qc: QueryCode, k: int, tau: float, mask: np.ndarray | None
) -> CertState:
    """One pass of compressed scores over every part: the merged :class:`CertState`."""
    m = qc.codes.shape[0]
    cap = max(CAP_MIN, CAP_PER_HIT * m * k)
    state = CertState.empty(m, k, tau=tau, cap=cap)
    step = max(256, CHUNK_CELLS // max(m, 1))
    for i, (part, ck) in enumerate(zip(parts.parts, cks)):
        a0, b0 = int(parts.starts[i]), int(parts.starts[i + 1])
        if a0 == b0:
            continue
        pm = _part_mask(mask, a0, b0, part)  # (n_p,) | (m, n_p) | None
        glob = a0 + part.rank  # (n_p,)  global live row of each physical row
        for a in range(0, part.n_phys, step):
            b = min(a + step, part.n_phys)
            bq = chunk_max_bound(ck, qc, a, b, tau)  # (m,)
            allowed = None if pm is None else pm[..., a:b]
            if ck.precision == "int8" and _certjit.available():
                assert qc.scale is not None and ck.scale is not None
                ints = dot_int8(qc.codes, ck.codes[a:b])  # (m, c) int32, exact

                def exact3(
                    qi: np.ndarray, col: np.ndarray, sh: np.ndarray, a: int = a, ck: CompressedKeys = ck
                ) -> np.ndarray:
                    return cell_bounds(ck, qc, qi, col + a, sh, tau)

                qs, ks = qc.scale.astype(np.float64), ck.scale[a:b].astype(np.float64)
                if state.feed_codes(ints, qs, ks, bq, allowed, glob[a:b], exact3):
                    if state.overflow:
                        return state
                    continue
            s_hat = chunk_scores(ck, qc, a, b)  # (m, c)

            def exact(
                qi: np.ndarray, col: np.ndarray, a: int = a, ck: CompressedKeys = ck, s_hat: np.ndarray = s_hat
            ) -> np.ndarray:
                return cell_bounds(ck, qc, qi, col + a, s_hat[qi, col], tau)

            state.feed(s_hat, bq, allowed, glob[a:b], exact)
            if state.overflow:
                return state
    state.finish()
    return state


def _best_k(qi: np.ndarray, rows: np.ndarray, scores: np.ndarray, m: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query, the k best (score desc, row asc) of cells: rows (m, k) (-1 pads), scores (m, k)."""
    order = np.lexsort((rows, -scores.astype(np.float64), qi))  # by query, score desc, row asc
    qi, rows, scores = qi[order], rows[order], scores[order]
    first = np.searchsorted(qi, np.arange(m))  # (m,)
    rank = np.arange(len(qi)) - first[qi]  # (p,)
    take = rank < k
    out_r = np.full((m, k), -1, np.int64)
    out_s = np.full((m, k), -np.inf, scores.dtype)
    out_r[qi[take], rank[take]] = rows[take]
    out_s[qi[take], rank[take]] = scores[take]
    return out_r, out_s


def certified_search(
    parts: Parts,
    cks: Sequence[CompressedKeys],
    q: np.ndarray,
    *,
    k: int,
    tau: float,
    mask: np.ndarray | None = None,
) -> CertifiedTopK:
    """Certified exact top-k of float32 queries ``q`` (m, d) over the parts, compressed as ``cks``.

    Returns a :class:`CertifiedTopK` whose certificate holds for every query, or marks the queries
    that need the full fp32 pass (``cert.fallback``; their rows are -1): the caller runs it.
    """
    m = q.shape[0]
    if not pre_scaled(tau):
        return _give_up(m, k, q.dtype, f"τ={tau:g} is outside the fp32 kernel's pre-scaled range")
    qc = compress_queries(q, cks[0].precision)
    state = scan(parts, cks, qc, k, tau, mask)
    if state.overflow:
        return _give_up(m, k, q.dtype, f"more than {state.cap} candidate rows: the bounds are too wide for this data")
    u, inv = np.unique(state.rows, return_inverse=True)
    ref = reference_scores(parts, q, tau, u)  # (m, u)
    exact = ref[state.qi, inv]  # (p,)  fp32 score of each candidate cell
    e64 = exact.astype(np.float64)
    inside = (e64 >= state.s_hat - state.bound) & (e64 <= state.s_hat + state.bound)  # (p,)
    broken = np.zeros(m, bool)
    np.logical_or.at(broken, state.qi, ~inside)
    finite = np.isfinite(exact)
    bad = np.zeros(m, bool)
    np.logical_or.at(bad, state.qi, ~finite)
    rows, scores = _best_k(state.qi, state.rows, exact, m, k)
    out_hi = state.out_hi  # (m,)  -inf: every allowed row was rescored
    with np.errstate(invalid="ignore"):
        margin = np.where(out_hi == -np.inf, np.inf, state.threshold() - out_hi)  # (m,)
    rescored = np.bincount(state.qi, minlength=m).astype(np.int64)
    fallback = broken | bad | ~(margin > 0)
    lse_lo, lse_hi = _lse_bounds(state, e64, m)
    reason = ""
    if fallback.any():
        reason = "a rescored score fell outside its bound" if broken.any() else "non-finite fp32 scores"
        rows[fallback], scores[fallback] = -1, -np.inf
    cert = Certificate(rescored, margin, fallback, ~fallback, reason)
    return CertifiedTopK(rows, scores, lse_lo, lse_hi, cert, state, (state.qi, state.rows, exact))


def _give_up(m: int, k: int, dt: np.dtype, reason: str) -> CertifiedTopK:
    fb = np.ones(m, bool)
    cert = Certificate(np.zeros(m, np.int64), np.full(m, np.nan), fb, fb.copy(), reason)
    rows, scores = np.full((m, k), -1, np.int64), np.full((m, k), -np.inf, dt)
    return CertifiedTopK(rows, scores, np.full(m, np.nan), np.full(m, np.nan), cert)


def _lse_bounds(state: CertState, exact: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """[LSE_lo, LSE_hi] of scores / τ: exact candidates + the non-candidates' bound sums: (m,), (m,)."""
    x = exact / state.tau  # (p,)
    mx = np.full(m, -np.inf)
    np.maximum.at(mx, state.qi, x)
    safe = np.where(np.isfinite(mx), mx, 0.0)
    s = np.zeros(m)
    np.add.at(s, state.qi, np.exp(x - safe[state.qi]))
    lo_m, lo_s = lse_merge(mx, s, state.lo_max, state.lo_sum)
    hi_m, hi_s = lse_merge(mx, s, state.hi_max, state.hi_sum)
    with np.errstate(divide="ignore"):
        lse_lo = lo_m + np.log(lo_s)
        lse_hi = hi_m + np.log(hi_s)
    n = int(state.out_n.max(initial=0)) + len(state.qi)
    return lse_lo - lse_slack(n, lse_lo), lse_hi + lse_slack(n, lse_hi)


def weight_interval(scores: np.ndarray, rows: np.ndarray, lse_lo: np.ndarray, lse_hi: np.ndarray, tau: float) -> tuple:
    """[lo, hi] (m, k) of each hit's exact full-table weight from the LSE interval; 0 for no match."""
    x = scores.astype(np.float64) / tau  # (m, k)
    found = rows >= 0
    with np.errstate(over="ignore", invalid="ignore"):
        lo = np.exp(x - lse_hi[:, None]) * (1 - W_SLACK)  # (m, k)
        hi = np.minimum(np.exp(x - lse_lo[:, None]) * (1 + W_SLACK), 1.0)  # (m, k)
    return np.where(found, lo, 0.0), np.where(found, hi, 0.0)


def tighten(
    parts: Parts,
    cks: Sequence[CompressedKeys],
    q: np.ndarray,
    res: CertifiedTopK,
    *,
    tau: float,
    tol: float,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Rescore rows, largest bound contributions first, until every weight interval is below ``tol``.

    For each query whose widest interval exceeds ``tol``: with Z_lo = e^{LSE_lo} and N rows not
    rescored, one more compressed pass rescores every row whose contribution e^{hi/τ} − e^{lo/τ}
    reaches θ = tol·Z_lo / (2N), so what stays unrescored adds at most tol·Z_lo / 2 to the width
    (width ≤ (Z_hi − Z_lo) / Z_lo). Updates ``res`` in place; returns the queries that still need
    the full fp32 pass (their candidates passed the cap): (m,) bool.
    """
    state = res.state
    assert state is not None and res.exact is not None
    lo_w, hi_w = weight_interval(res.scores, res.rows, res.lse_lo, res.lse_hi, tau)
    need = ((hi_w - lo_w).max(axis=1) > tol) & ~res.cert.fallback  # (m,)
    if not need.any():
        return np.zeros(len(need), bool)
    qc = compress_queries(q, cks[0].precision)
    n_out = np.maximum(state.out_n, 1).astype(np.float64)
    log_theta = res.lse_lo + np.log(tol / (2.0 * n_out))  # (m,)  log θ, in units of e^{·/τ}
    cap = max(CAP_MIN, CAP_PER_HIT * len(need) * state.k)
    qi_l, row_l = [res.exact[0]], [res.exact[1]]
    step = max(256, CHUNK_CELLS // max(len(need), 1))
    got = 0
    for i, (part, ck) in enumerate(zip(parts.parts, cks)):
        a0, b0 = int(parts.starts[i]), int(parts.starts[i + 1])
        if a0 == b0:
            continue
        pm = _part_mask(mask, a0, b0, part)
        glob = a0 + part.rank
        for a in range(0, part.n_phys, step):
            b = min(a + step, part.n_phys)
            s_hat, bound = chunk_bounds(ck, qc, a, b, tau)  # (m, c)
            lo, hi = (s_hat - bound) / tau, (s_hat + bound) / tau  # (m, c)
            with np.errstate(over="ignore", invalid="ignore"):
                contrib = hi + np.log1p(-np.exp(lo - hi))  # (m, c)  log(e^hi − e^lo)
            pick = need[:, None] & (contrib >= log_theta[:, None])  # (m, c)
            if pm is not None:
                pick &= np.broadcast_to(pm[..., a:b], pick.shape)
            if part.live is not None:
                pick &= part.live[a:b]
            qi, col = np.nonzero(pick)
            got += len(qi)
            if got > cap:
                res.cert.reason = f"more than {cap} rows to rescore for the weight tolerance"
                return need
            qi_l.append(qi.astype(np.int64))
            row_l.append(glob[a:b][col].astype(np.int64))
    qi_all, row_all = np.concatenate(qi_l), np.concatenate(row_l)
    key = qi_all * (parts.n + 1) + row_all
    _, first = np.unique(key, return_index=True)
    qi_all, row_all = qi_all[first], row_all[first]
    _relse(parts, cks, q, res, qi_all, row_all, tau, mask)
    return np.zeros(len(need), bool)


def _relse(
    parts: Parts,
    cks: Sequence[CompressedKeys],
    q: np.ndarray,
    res: CertifiedTopK,
    qi: np.ndarray,
    rows: np.ndarray,
    tau: float,
    mask: np.ndarray | None,
) -> None:
    """The LSE interval again: exact scores of cells (qi, rows), bounds for every other allowed row."""
    m = q.shape[0]
    u, inv = np.unique(rows, return_inverse=True)
    exact = reference_scores(parts, q, tau, u)[qi, inv].astype(np.float64)  # (p,)
    qc = compress_queries(q, cks[0].precision)
    key = np.sort(qi * (parts.n + 1) + rows)
    st = CertState.empty(m, 1, tau=tau, cap=0)
    step = max(256, CHUNK_CELLS // max(m, 1))
    for i, (part, ck) in enumerate(zip(parts.parts, cks)):
        a0, b0 = int(parts.starts[i]), int(parts.starts[i + 1])
        if a0 == b0:
            continue
        pm = _part_mask(mask, a0, b0, part)
        glob = a0 + part.rank
        for a in range(0, part.n_phys, step):
            b = min(a + step, part.n_phys)
            s_hat, bound = chunk_bounds(ck, qc, a, b, tau)
            ok = np.ones(s_hat.shape, bool) if pm is None else np.broadcast_to(pm[..., a:b], s_hat.shape).copy()
            if part.live is not None:
                ok &= part.live[a:b]
            cell = np.arange(m)[:, None] * (parts.n + 1) + glob[a:b][None, :]  # (m, c)
            pos = np.searchsorted(key, cell)
            hit = key[np.minimum(pos, len(key) - 1)] == cell if len(key) else np.zeros(cell.shape, bool)
            st._out(s_hat - bound, s_hat + bound, ok & ~hit)
    st.qi = qi
    res.lse_lo, res.lse_hi = _lse_bounds(st, exact, m)
    res.cert.rescored = np.maximum(res.cert.rescored, np.bincount(qi, minlength=m))
