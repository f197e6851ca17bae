"""The certified top-k's mergeable state: k best lower bounds, candidate cells, bound sums.

Fed chunk by chunk with compressed scores ŝ and their bounds B (lower bound lo = ŝ − B,
upper bound hi = ŝ + B, float64), a :class:`CertState` keeps per query

- the k best lower bounds (``lo``), whose smallest is the running threshold L;
- every *candidate* cell (query, row, ŝ, B) whose upper bound reaches L (hi ≥ L): only these
  can be in the exact top-k, since the k rows of the best lower bounds score at least L;
- over the other allowed cells (hi < L, never candidates again: L only grows), the online
  log-sum-exp of lo / τ and of hi / τ, their count, and the largest hi (for the margin).

Two states of disjoint rows merge exactly (k best of both, candidates of both pruned by the new
L, sums merged), in any order, so chunks, segments and threads give the same candidates.
A state whose candidates pass ``cap`` gives up (``overflow``): the caller runs the full fp32 pass.

Examples
--------
>>> import numpy as np
>>> st = CertState.empty(1, 1, tau=1.0, cap=100)
>>> st.feed(np.array([[3.0, 1.0, 2.9]]), np.full((1, 3), 0.1), None, np.arange(3))
>>> st.finish()
>>> st.rows.tolist(), st.threshold().tolist()  # row 1 (hi 1.1 < L 2.9) is out
([0, 2], [2.9])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from softdb.engine import _certjit, _certsettle
from softdb.engine._topk import TopK, _true_cells

__all__ = ["CertState", "lse_merge"]

#: Column groups of a chunk whose maxima give a first threshold (:meth:`CertState._screen`).
SCREEN_GROUPS = 64


def lse_merge(m1: np.ndarray, s1: np.ndarray, m2: np.ndarray, s2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge two online log-sum-exp states (max, Σ exp(x − max)), float64; -inf max = empty."""
    mx = np.maximum(m1, m2)
    safe = np.where(np.isfinite(mx), mx, 0.0)
    with np.errstate(invalid="ignore", over="ignore"):
        a = np.where(np.isfinite(m1), s1 * np.exp(m1 - safe), 0.0)
        s = a + np.where(np.isfinite(m2), s2 * np.exp(m2 - safe), 0.0)
    return mx, s


def _lse_pair(lo: np.ndarray, hi: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Online log-sum-exp states of the cells of ``lo`` ≤ ``hi`` (m, c) where ``keep``: one max, two sums.

    Both sums are taken relative to max(hi): Σ exp(lo − max) may only underflow downwards,
    which keeps it a lower bound.
    """
    him = np.where(keep, hi, -np.inf)  # (m, c)
    mx = him.max(axis=1) if him.shape[1] else np.full(him.shape[0], -np.inf)  # (m,)
    safe = np.where(np.isfinite(mx), mx, 0.0)[:, None]  # (m, 1)
    with np.errstate(invalid="ignore", over="ignore"):
        s_hi = np.exp(him - safe).sum(axis=1)  # (m,)
        s_lo = np.exp(np.where(keep, lo, -np.inf) - safe).sum(axis=1)  # (m,)
    return mx, s_lo, s_hi


@dataclass
class CertState:
    """Per-query certified top-k state (see the module docstring); m queries, k hits."""

    k: int
    tau: float
    cap: int
    lo: np.ndarray  # (m, k) the k best lower bounds (-inf pads)
    qi: np.ndarray  # (p,) int64 candidate cells: query
    rows: np.ndarray  # (p,) int64 candidate cells: global row
    s_hat: np.ndarray  # (p,) float64
    bound: np.ndarray  # (p,) float64
    lo_max: np.ndarray  # (m,) online log-sum-exp of lo / τ over non-candidates: max
    lo_sum: np.ndarray  # (m,) … and Σ exp(· − max)
    hi_max: np.ndarray  # (m,) the same for hi / τ
    hi_sum: np.ndarray  # (m,)
    out_hi: np.ndarray  # (m,) largest hi of a non-candidate (-inf: none)
    out_n: np.ndarray  # (m,) int64 number of allowed non-candidates
    overflow: bool = False
    top: TopK | None = None  # the lower bounds while chunks stream (softdb.engine._topk)
    pend: list = field(default_factory=list)  # candidate chunks not yet joined to qi/rows/s_hat/bound
    n_cand: int = 0  # candidates, joined or pending
    kept: int = 0  # candidates left by the last prune of a chunk (the next prune waits for twice as many)
    buf: np.ndarray | None = None  # float32 scratch of the compiled chunk pass (:meth:`feed_codes`)

    @classmethod
    def empty(cls, m: int, k: int, *, tau: float, cap: int) -> CertState:
        ninf = np.full(m, -np.inf)
        f, i = np.zeros(0), np.zeros(0, np.int64)
        return cls(
            k, tau, cap, np.full((m, k), -np.inf), i, i, f, f, ninf, np.zeros(m), ninf.copy(), np.zeros(m),
            ninf.copy(), np.zeros(m, np.int64),
        )  # fmt: skip

    @property
    def m(self) -> int:
        return int(self.lo.shape[0])

    def threshold(self) -> np.ndarray:
        """L: a lower bound of the k-th best lower bound of each query, (m,) (-inf while fewer than k).

        Exactly the k-th best so far once :meth:`finish` ran; while chunks stream, the kernel's
        top-k bound (a stale bound is still a bound: it only lets more candidates in).
        """
        t = self.lo.min(axis=1)  # (m,)
        return t if self.top is None else np.maximum(t, self.top.bound)

    def finish(self) -> None:
        """Fold the streamed lower bounds into ``lo`` (the k best) and prune with the exact L."""
        if self.top is not None:
            self.top.merge()
            both = np.concatenate([self.lo, self.top.s], axis=1)  # (m, 2k)
            self.lo = np.partition(both, self.k, axis=1)[:, self.k :]  # (m, k)
            self.top = None
        self.prune()

    def _out(self, lo: np.ndarray, hi: np.ndarray, keep: np.ndarray) -> None:
        """Add cells (m, c) where ``keep`` to the non-candidates' sums."""
        inv = 1.0 / self.tau
        mx, s_lo, s_hi = _lse_pair(lo * inv, hi * inv, keep)
        self.lo_max, self.lo_sum = lse_merge(self.lo_max, self.lo_sum, mx, s_lo)
        self.hi_max, self.hi_sum = lse_merge(self.hi_max, self.hi_sum, mx, s_hi)
        top = np.where(keep, hi, -np.inf).max(axis=1) if hi.shape[1] else self.out_hi  # (m,)
        self.out_hi = np.maximum(self.out_hi, top)
        self.out_n += keep.sum(axis=1)

    def _out_cells(self, qi: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        """Add single cells (query ``qi``, bounds ``lo`` / ``hi``; all (p,)) to the non-candidates' sums."""
        if not len(qi) or (_certjit.available() and _certjit.out_cells(self, qi, lo, hi)):
            return
        m, inv = self.m, 1.0 / self.tau
        for x, name in ((lo * inv, "lo"), (hi * inv, "hi")):
            mx = np.full(m, -np.inf)
            np.maximum.at(mx, qi, x)  # (m,)
            safe = np.where(np.isfinite(mx), mx, 0.0)
            sm = np.zeros(m)
            with np.errstate(invalid="ignore", over="ignore"):
                np.add.at(sm, qi, np.exp(x - safe[qi]))  # (m,)
            got = lse_merge(getattr(self, f"{name}_max"), getattr(self, f"{name}_sum"), mx, sm)
            setattr(self, f"{name}_max", got[0])
            setattr(self, f"{name}_sum", got[1])
        np.maximum.at(self.out_hi, qi, hi)
        self.out_n += np.bincount(qi, minlength=m)

    def feed(
        self,
        s_hat: np.ndarray,
        bound: np.ndarray,
        allowed: np.ndarray | None,
        rows: np.ndarray,
        exact: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    ) -> None:
        """One chunk: ŝ (m, c), bounds, ``allowed`` (m, c) or (c,) or None, global ``rows`` (c,).

        ``bound`` is B per cell (m, c), or per query (m,) a bound of every cell's B, with
        ``exact(qi, col)`` giving the cells' own B: then only cells that could reach the threshold
        (ŝ + B_max ≥ L) get their own bound, and the others join the sums through
        e^{(ŝ ∓ B_max)/τ}, one exp per cell. ``s_hat`` is overwritten.
        """
        if self.overflow:
            return
        m, c = s_hat.shape
        if bound.ndim == 2:
            cells = bound
            bq = cells.max(axis=1) if c else np.zeros(m)  # (m,)
            exact = lambda qi, col: cells[qi, col]  # noqa: E731
        else:
            bq = bound
        assert exact is not None
        base = s_hat if allowed is None else np.where(np.broadcast_to(allowed, (m, c)), s_hat, -np.inf)  # (m, c)
        if self.top is None:
            self.top = TopK(m, self.k, np.dtype(np.float64))
        self._screen(base, bq)
        lim = np.maximum(self.threshold() - bq, np.finfo(np.float64).min)  # (m,)  masked (-inf) cells never pass
        hit = self.top._mask(m, c)  # (m, ≥c)  a reused buffer, padded to whole words
        np.greater_equal(base, lim[:, None], out=hit[:, :c])  # (m, c)
        qi, col = _true_cells(hit)  # (p,)  the only cells whose hi or lo can reach L (few: words first)
        sh = base[qi, col]  # (p,)
        b = exact(qi, col)  # (p,)
        self._push_lower(qi, col.astype(np.int64), sh - b)  # the k best exact lower bounds
        thr = self.threshold()  # (m,)
        cand = sh + b >= thr[qi]  # (p,)
        self._add(qi[cand], rows[col[cand]], sh[cand], b[cand])
        near = ~cand
        self._out_cells(qi[near], sh[near] - b[near], sh[near] + b[near])
        base[qi, col] = -np.inf  # the rest: ŝ − B_max ≤ lo_j, hi_j ≤ ŝ + B_max
        if allowed is None or allowed.ndim == 1:  # (m,)  allowed cells per query
            n_allowed = np.full(m, c if allowed is None else int(np.count_nonzero(allowed)), np.int64)
        else:
            n_allowed = np.count_nonzero(allowed, axis=1)
        self._out_chunk(base, bq, n_allowed - np.bincount(qi, minlength=m))
        self._prune_when_doubled()

    def feed_codes(
        self,
        ints: np.ndarray,
        qs: np.ndarray,
        ks: np.ndarray,
        bq: np.ndarray,
        allowed: np.ndarray | None,
        rows: np.ndarray,
        exact: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
        inputs: tuple | None = None,
    ) -> bool:
        """:meth:`feed` of an int8 chunk (ŝ = I·(t·s)) through one compiled pass (softdb.engine._certjit).

        ``ints`` (m, c) int32, scales ``qs`` (m,) and ``ks`` (c,) float64, ``bq`` (m,) B_max,
        ``exact(qi, col, ŝ)`` the cells' own B, or ``inputs`` (int8 keys: :func:`softdb.engine._certsettle.settle`'s)
        to settle the hits in one compiled loop. The same candidates and lower bounds as :meth:`feed`;
        the others' sums are float32 bounds of the same sums (:func:`softdb.engine._certjit._sums`).
        False (nothing done) when the compiled pass is not available.
        """
        if not _certjit.available():
            return False
        if self.overflow:
            return True
        m = ints.shape[0]
        if self.top is None:
            self.top = TopK(m, self.k, np.dtype(np.float64))
        short = self.top.s[:, -1] == -np.inf  # (m,)
        if self.buf is None or self.buf.size < ints.size:
            self.buf = np.empty(ints.size, np.float32)  # the pass's scratch, reused by the next chunks
        got = _certjit.chunk_pass(
            ints, qs, ks, allowed, bq, self.lo.min(axis=1), self.top.bound, short, self.k, 1.0 / self.tau, self.buf
        )
        if got is None:
            return False
        qi, col, sh, _, hits, n_allowed, mx, off, total_lo, total_hi = got
        done = None if inputs is None else _certsettle.settle(self, qi, col, sh, inputs, rows)
        if done is not None:  # the same steps as below, compiled (softdb.engine._certsettle)
            self._add(*done[0])
            self._out_cells(*done[1])
        else:
            b = exact(qi, col, sh)  # (p,)
            self._push_lower(qi, col, sh - b)
            thr = self.threshold()  # (m,)
            cand = sh + b >= thr[qi]  # (p,)
            self._add(qi[cand], rows[col[cand]], sh[cand], b[cand])
            near = ~cand
            self._out_cells(qi[near], sh[near] - b[near], sh[near] + b[near])
        inv = 1.0 / self.tau
        some = np.isfinite(mx)  # (m,)  some other allowed cell: then off is finite
        top = np.where(some, np.where(some, off, 0.0) * inv, -np.inf)  # (m,)  the sums' offset, / τ
        self.lo_max, self.lo_sum = lse_merge(self.lo_max, self.lo_sum, top - bq * inv, total_lo)
        self.hi_max, self.hi_sum = lse_merge(self.hi_max, self.hi_sum, top + bq * inv, total_hi)
        self.out_hi = np.maximum(self.out_hi, np.where(some, mx + bq, -np.inf))
        self.out_n += n_allowed - hits
        self._prune_when_doubled()
        return True

    def _push_lower(self, qi: np.ndarray, col: np.ndarray, lo: np.ndarray) -> None:
        """A chunk's exact lower bounds into the k best: only those reaching L (the others cannot be
        among the k best: L is at most the k-th best), merged at once (few), so L rises chunk by chunk."""
        assert self.top is not None
        up = lo >= self.threshold()[qi]  # (p,)
        if up.any() and not (_certjit.available() and _certjit.push_lower(self.top.s, self.top.bound, qi[up], lo[up])):
            self.top._push(qi[up], col[up], lo[up])
            self.top.merge()

    def _prune_when_doubled(self) -> None:
        """Prune once the candidates doubled since the last prune (O(p) work per chunk at most), or pass the cap."""
        if self.n_cand > min(max(4096, 4 * self.m * self.k, self.kept), self.cap):
            self.prune()
            self.kept = 2 * self.n_cand

    def _screen(self, base: np.ndarray, bq: np.ndarray) -> None:
        """Raise the threshold of queries short of k lower bounds from the chunk itself (cheap, float64).

        The g disjoint column groups' maxima of ŝ are attained by g distinct rows, and every row's
        lower bound is at least ŝ − B_max, so the k-th best group maximum minus B_max bounds the
        k-th best lower bound from below: a valid threshold before any cell's own bound is known.
        """
        assert self.top is not None
        m, c = base.shape
        k = self.k
        short = np.flatnonzero(self.top.s[:, -1] == -np.inf)  # (f,)  no k merged lower bounds yet
        if not short.size or c < k:
            return
        g = max(k, SCREEN_GROUPS)
        sf = base[short] if short.size < m else base  # (f, c)
        gm = sf[:, : c // g * g].reshape(sf.shape[0], g, -1).max(axis=2) if c >= 2 * g else sf  # (f, g) | (f, c)
        kth = np.partition(gm, gm.shape[1] - k, axis=1)[:, -k]  # (f,)
        with np.errstate(invalid="ignore"):
            got = kth - bq[short]  # (f,)  -inf stays -inf
        self.top.bound[short] = np.maximum(self.top.bound[short], np.where(np.isnan(got), -np.inf, got))

    def _out_chunk(self, base: np.ndarray, bq: np.ndarray, n_in: np.ndarray) -> None:
        """Cells of ``base`` (m, c; -inf where not counted; ``n_in`` (m,) counted) join the sums through ŝ ∓ B_max.

        One exp per cell; ``base`` is overwritten.
        """
        inv = 1.0 / self.tau
        mx = base.max(axis=1) if base.shape[1] else np.full(base.shape[0], -np.inf)  # (m,)
        some = np.isfinite(mx)
        safe = np.where(some, mx, 0.0)  # (m,)
        base -= safe[:, None]  # (m, c)  ≤ 0 (-inf where not counted)
        if inv != 1.0:
            base *= inv
        with np.errstate(invalid="ignore", over="ignore", under="ignore"):
            np.exp(base, out=base)  # (m, c)  e^{(ŝ − max)/τ}
        total = base.sum(axis=1)  # (m,)
        top = np.where(some, safe * inv, -np.inf)  # (m,)
        self.lo_max, self.lo_sum = lse_merge(self.lo_max, self.lo_sum, top - bq * inv, total)
        self.hi_max, self.hi_sum = lse_merge(self.hi_max, self.hi_sum, top + bq * inv, total)
        self.out_hi = np.maximum(self.out_hi, np.where(some, mx + bq, -np.inf))
        self.out_n += n_in

    def _add(self, qi: np.ndarray, rows: np.ndarray, s_hat: np.ndarray, bound: np.ndarray) -> None:
        """Queue a chunk's candidates (joined at the next prune: no copy of all candidates per chunk)."""
        if len(qi):
            self.pend.append((qi.astype(np.int64), rows.astype(np.int64), s_hat, bound))
            self.n_cand += len(qi)

    def _join(self) -> None:
        """Join the queued candidate chunks to ``qi``, ``rows``, ``s_hat``, ``bound``."""
        if self.pend:
            cols = list(zip(*self.pend))
            self.qi = np.concatenate([self.qi, *cols[0]])
            self.rows = np.concatenate([self.rows, *cols[1]])
            self.s_hat = np.concatenate([self.s_hat, *cols[2]])
            self.bound = np.concatenate([self.bound, *cols[3]])
            self.pend = []

    def prune(self) -> None:
        """Drop candidates below the current threshold (into the sums); give up past ``cap``."""
        self._join()
        thr = self.threshold()  # (m,)
        hi = self.s_hat + self.bound  # (p,)
        keep = hi >= thr[self.qi]  # (p,)
        if not keep.all():
            gone = ~keep
            self._out_cells(self.qi[gone], (self.s_hat - self.bound)[gone], hi[gone])
            self.qi, self.rows = self.qi[keep], self.rows[keep]
            self.s_hat, self.bound = self.s_hat[keep], self.bound[keep]
        self.n_cand = len(self.qi)
        if len(self.qi) > self.cap:
            self.overflow = True

    def merge(self, other: CertState) -> CertState:
        """The state of both parts' rows (exact; any order)."""
        self.finish()
        other.finish()
        both = np.concatenate([self.lo, other.lo], axis=1)  # (m, 2k)
        out = CertState(
            self.k, self.tau, self.cap, np.partition(both, self.k, axis=1)[:, self.k :],
            np.concatenate([self.qi, other.qi]), np.concatenate([self.rows, other.rows]),
            np.concatenate([self.s_hat, other.s_hat]), np.concatenate([self.bound, other.bound]),
            *lse_merge(self.lo_max, self.lo_sum, other.lo_max, other.lo_sum),
            *lse_merge(self.hi_max, self.hi_sum, other.hi_max, other.hi_sum),
            np.maximum(self.out_hi, other.out_hi), self.out_n + other.out_n,
            self.overflow or other.overflow,
        )  # fmt: skip
        out.prune()
        return out
