"""Certified exact top-k and certified weights from compressed keys.

One pass streams every part (segment) of a head's rows in chunks: compressed scores and their
bounds (:func:`softdb.engine._compressed.chunk_bounds`) feed a mergeable
:class:`~softdb.engine._certstate.CertState`. The candidates left (rows whose upper bound reaches
the k-th best lower bound) are rescored once in fp32, through the *same* arithmetic as softdb's
fp32 search (:mod:`softdb.engine._rescore`: the query scaled by 1/τ, the same BLAS call shape per part,
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

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from softdb.engine import _certjit, _parallel
from softdb.engine._certstate import CertState, lse_merge
from softdb.engine._compressed import (
    CompressedKeys,
    QueryCode,
    bound_constants,
    cell_bounds,
    chunk_bounds,
    chunk_max_bound,
    chunk_scores,
    compress_queries,
)
from softdb.engine._lowp import dot_int8
from softdb.engine._lowp_simd import one_torch_thread
from softdb.engine._rescore import pre_scaled, rescore_cells, unscale
from softdb.engine._segmented import Parts, _part_mask

__all__ = [
    "CAP_PER_HIT",
    "Certificate",
    "CertifiedTopK",
    "certified_search",
    "lse_slack",
    "tighten",
    "weight_interval",
]

#: The pass gives up (full fp32 pass) past this many candidate cells per query and hit (at least CAP_MIN in all).
CAP_PER_HIT = 64
CAP_MIN = 65536
#: Score cells (queries × rows) of one chunk of compressed scores.
CHUNK_CELLS = 1 << 20
#: A pass over few queries still gives each thread at least this many chunks (with one query,
#: more chunks cost more than their balance gains: 27 against 23 ms at 1M rows, 4 chunks vs 2).
CHUNKS_PER_THREAD = 1
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
        k-th best lower bound minus the largest upper bound of a row not rescored, or an upper
        bound of it (+inf when every row was rescored); > 0 whenever the certificate holds.
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
    scaled: np.ndarray | None = None  # (m, k) the hits' scores of the query scaled by 1/τ: what the kernel ranks


def scan(
    parts: Parts, cks: Sequence[CompressedKeys], qc: QueryCode, k: int, tau: float, mask: np.ndarray | None
) -> CertState:
    """One pass of compressed scores over every part: the merged :class:`CertState`.

    The parts' rows are cut into chunks; with enough work, every thread takes the next chunk not
    yet taken (so a slower thread takes fewer) and streams it into its own state (dot products on
    its own thread); the states merge exactly, whatever chunks each took.
    """
    m = qc.codes.shape[0]
    cap = max(CAP_MIN, CAP_PER_HIT * m * k)
    n_phys = sum(p.n_phys for p in parts.parts)
    threads = _parallel.threads_for(m, n_phys, None)
    # CHUNK_CELLS score cells a chunk, and at least CHUNKS_PER_THREAD chunks a thread (few queries)
    step = max(256, min(CHUNK_CELLS // max(m, 1), -(-n_phys // (CHUNKS_PER_THREAD * threads))))
    chunks = [
        (i, a, min(a + step, part.n_phys))
        for i, part in enumerate(parts.parts)
        if parts.starts[i] < parts.starts[i + 1]
        for a in range(0, part.n_phys, step)
    ]
    feeds = _Feeds(parts, mask)
    if threads == 1:
        state = _scan_chunks(parts, cks, qc, k, tau, cap, feeds, iter(chunks).__next__, None)
    else:
        lock, it = threading.Lock(), iter(chunks)
        stop = threading.Event()  # a thread's candidates passed the cap: the others stop too

        def take() -> tuple[int, int, int]:
            with lock:
                if stop.is_set():
                    raise StopIteration
                return next(it)

        def one(t: int, _: int) -> CertState:
            got = _scan_chunks(parts, cks, qc, k, tau, cap, feeds, take, 1)
            if got.overflow:
                stop.set()
            return got

        with one_torch_thread():
            states = _parallel.map_ranges(one, [(t, t + 1) for t in range(threads)])
        state = states[0]
        for other in states[1:]:
            state = state.merge(other)
    if not state.overflow:
        state.finish()
    return state


class _Feeds:
    """Per part, read-only: its mask (``_part_mask``) and the global live row of each physical row."""

    def __init__(self, parts: Parts, mask: np.ndarray | None) -> None:
        self.masks, self.globs = [], []
        for i, part in enumerate(parts.parts):
            a0, b0 = int(parts.starts[i]), int(parts.starts[i + 1])
            self.masks.append(_part_mask(mask, a0, b0, part) if a0 < b0 else None)  # (n_p,) | (m, n_p) | None
            self.globs.append(a0 + part.rank)  # (n_p,)


def _scan_chunks(
    parts: Parts,
    cks: Sequence[CompressedKeys],
    qc: QueryCode,
    k: int,
    tau: float,
    cap: int,
    feeds: _Feeds,
    take: Callable[[], tuple[int, int, int]],
    threads: int | None,
) -> CertState:
    """The state of the chunks (part i, physical rows a..b) that ``take`` gives until it raises
    StopIteration, dots on ``threads``."""
    m = qc.codes.shape[0]
    state = CertState.empty(m, k, tau=tau, cap=cap)
    ibuf = np.empty(0, np.int32)  # the dot products' buffer, reused by every chunk of this thread
    g, tiny_c = bound_constants(qc.dim, tau)  # as cell_bounds makes them
    while True:
        try:
            i, a, b = take()
        except StopIteration:
            return state
        ck, pm, glob = cks[i], feeds.masks[i], feeds.globs[i]
        bq = chunk_max_bound(ck, qc, a, b, tau)  # (m,)
        allowed = None if pm is None else pm[..., a:b]
        if ck.precision == "int8" and _certjit.available():
            assert qc.scale is not None and ck.scale is not None
            if ibuf.size < m * (b - a):
                ibuf = np.empty(m * (b - a), np.int32)
            ints = ibuf[: m * (b - a)].reshape(m, b - a)  # (m, c)
            ints = dot_int8(qc.codes, ck.codes[a:b], threads=threads, out=ints)  # (m, c) int32, exact

            def exact3(
                qi: np.ndarray, col: np.ndarray, sh: np.ndarray, a: int = a, ck: CompressedKeys = ck
            ) -> np.ndarray:
                return cell_bounds(ck, qc, qi, col + a, sh, tau)

            qs, ks = qc.scale.astype(np.float64), ck.scale[a:b].astype(np.float64)
            inputs = (ck.rho[a:b], ck.hat_norm[a:b], ck.key_norm[a:b], qc.norm, qc.resid, g, tiny_c)
            if state.feed_codes(ints, qs, ks, bq, allowed, glob[a:b], exact3, inputs):
                if state.overflow:
                    return state
                continue
        s_hat = chunk_scores(ck, qc, a, b, threads)  # (m, c)

        def exact(
            qi: np.ndarray, col: np.ndarray, a: int = a, ck: CompressedKeys = ck, s_hat: np.ndarray = s_hat
        ) -> np.ndarray:
            return cell_bounds(ck, qc, qi, col + a, s_hat[qi, col], tau)

        state.feed(s_hat, bq, allowed, glob[a:b], exact)
        if state.overflow:
            return state


def _best_k(qi: np.ndarray, rows: np.ndarray, scores: np.ndarray, m: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query, the k best (score desc, row asc) of cells: rows (m, k) (-1 pads), scores (m, k).

    The cells sorted by (query, row) through one unique integer key (numpy's SIMD sort), laid
    out one query per row of a padded matrix, then each row sorted by score, stably (ties: the
    lower row first).
    """
    p = len(qi)
    out_r = np.full((m, k), -1, np.int64)
    out_s = np.full((m, k), -np.inf, scores.dtype)
    if not p:
        return out_r, out_s
    o = np.argsort(qi * (int(rows.max()) + 1) + rows)  # (p,)  by query, then row: unique keys
    qi, rows, scores = qi[o], rows[o], scores[o]
    counts = np.bincount(qi, minlength=m)  # (m,)
    pos = np.arange(p) - (np.cumsum(counts) - counts)[qi]  # (p,)  place within its query
    pad = np.full((m, int(counts.max())), -np.inf)  # (m, w)
    pad[qi, pos] = scores
    best = np.argsort(-pad, axis=1, kind="stable")[:, :k]  # (m, ≤k)  score desc, then row asc
    got = np.take_along_axis(pad, best, axis=1)  # (m, ≤k)
    at = np.full(pad.shape, -1, np.int64)
    at[qi, pos] = rows
    found = got > -np.inf
    w = best.shape[1]
    out_r[:, :w] = np.where(found, np.take_along_axis(at, best, axis=1), -1)
    out_s[:, :w] = got.astype(scores.dtype)
    return out_r, out_s


def certified_search(
    parts: Parts,
    cks: Sequence[CompressedKeys],
    q: np.ndarray,
    *,
    k: int,
    tau: float,
    mask: np.ndarray | None = None,
    hard: bool = False,
) -> CertifiedTopK:
    """Certified exact top-k of float32 queries ``q`` (m, d) over the parts, compressed as ``cks``.

    ``hard``: rescore in the calls of a hard lookup (which scores raw: pass τ = 1).

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
    xs = rescore_cells(parts, q, tau, state.qi, state.rows, scaled=True, hard=hard)  # (p,)  the kernel's ranking scores
    exact = unscale(xs, tau)  # (p,)  fp32 score of each candidate cell
    e64 = exact.astype(np.float64)
    inside = (e64 >= state.s_hat - state.bound) & (e64 <= state.s_hat + state.bound)  # (p,)
    broken = np.zeros(m, bool)
    np.logical_or.at(broken, state.qi, ~inside)
    finite = np.isfinite(exact)
    bad = np.zeros(m, bool)
    np.logical_or.at(bad, state.qi, ~finite)
    rows, scaled = _best_k(state.qi, state.rows, xs, m, k)  # ranked as the kernel ranks: by scaled score
    scores = unscale(scaled, tau)
    out_hi = state.out_hi  # (m,)  -inf: every allowed row was rescored
    with np.errstate(invalid="ignore"):
        margin = np.where(out_hi == -np.inf, np.inf, state.threshold() - out_hi)  # (m,)
    rescored = np.bincount(state.qi, minlength=m).astype(np.int64)
    fallback = broken | bad | ~(margin > 0)
    lse_lo, lse_hi = _lse_bounds(state, e64, m)
    reason = ""
    if fallback.any():
        reason = "a rescored score fell outside its bound" if broken.any() else "non-finite fp32 scores"
        rows[fallback], scores[fallback], scaled[fallback] = -1, -np.inf, -np.inf
    cert = Certificate(rescored, margin, fallback, ~fallback, reason)
    return CertifiedTopK(rows, scores, lse_lo, lse_hi, cert, state, (state.qi, state.rows, exact), scaled)


def _give_up(m: int, k: int, dt: np.dtype, reason: str) -> CertifiedTopK:
    fb = np.ones(m, bool)
    cert = Certificate(np.zeros(m, np.int64), np.full(m, np.nan), fb, fb.copy(), reason)
    rows, scores = np.full((m, k), -1, np.int64), np.full((m, k), -np.inf, dt)
    return CertifiedTopK(rows, scores, np.full(m, np.nan), np.full(m, np.nan), cert, scaled=scores.copy())


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
    relative: bool = False,
) -> np.ndarray:
    """Rescore rows, largest bound contributions first, until every weight interval is below ``tol``.

    For each query whose widest interval exceeds ``tol``: with Z_lo = e^{LSE_lo} and N rows not
    rescored, one more compressed pass rescores every row whose contribution e^{hi/τ} − e^{lo/τ}
    reaches θ = tol·Z_lo / (2N), so what stays unrescored adds at most tol·Z_lo / 2 to the width
    (width ≤ (Z_hi − Z_lo) / Z_lo). Updates ``res`` in place; returns the queries that still need
    the full fp32 pass (their candidates passed the cap): (m,) bool.

    ``relative``: tighten each query whose (Z_hi − Z_lo) / Z_lo exceeds tol / 2 instead (the same
    θ), whatever its hits' intervals: one shard of a sharded table, whose hits' weights are taken
    against the sum of every shard's Z. Each shard at (Z_hi,s − Z_lo,s) / Z_lo,s ≤ tol / 2 bounds
    the merged (Z_hi − Z_lo) / Z_lo by tol / 2 (a sum of numerators over a sum of denominators is
    at most the largest ratio), and so every hit's width, e^{s/τ}·(1/Z_lo − 1/Z_hi) with e^{s/τ}
    inside Z_lo, below tol.
    """
    state = res.state
    assert state is not None and res.exact is not None
    if relative:
        need = (res.lse_hi - res.lse_lo > np.log1p(tol / 2.0)) & ~res.cert.fallback  # (m,)
    else:
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
    exact = rescore_cells(parts, q, tau, qi, rows).astype(np.float64)  # (p,)
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
