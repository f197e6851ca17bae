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
>>> st.rows.tolist(), st.threshold().tolist()  # row 1 (hi 1.1 < L 2.9) is out
([0, 2], [2.9])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CertState", "lse_merge"]


def lse_merge(m1: np.ndarray, s1: np.ndarray, m2: np.ndarray, s2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge two online log-sum-exp states (max, Σ exp(x − max)), float64; -inf max = empty."""
    mx = np.maximum(m1, m2)
    safe = np.where(np.isfinite(mx), mx, 0.0)
    with np.errstate(invalid="ignore", over="ignore"):
        a = np.where(np.isfinite(m1), s1 * np.exp(m1 - safe), 0.0)
        s = a + np.where(np.isfinite(m2), s2 * np.exp(m2 - safe), 0.0)
    return mx, s


def _lse_of(x: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Online log-sum-exp state of the cells of ``x`` (m, c) where ``keep``: (m,), (m,)."""
    xm = np.where(keep, x, -np.inf)  # (m, c)
    mx = xm.max(axis=1) if xm.shape[1] else np.full(xm.shape[0], -np.inf)  # (m,)
    safe = np.where(np.isfinite(mx), mx, 0.0)  # (m,)
    with np.errstate(invalid="ignore", over="ignore"):
        s = np.exp(xm - safe[:, None]).sum(axis=1)  # (m,)
    return mx, s


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
        """L: the k-th best lower bound of each query so far, (m,) (-inf while fewer than k)."""
        return self.lo.min(axis=1)

    def _out(self, lo: np.ndarray, hi: np.ndarray, keep: np.ndarray) -> None:
        """Add cells (m, c) where ``keep`` to the non-candidates' sums."""
        inv = 1.0 / self.tau
        self.lo_max, self.lo_sum = lse_merge(self.lo_max, self.lo_sum, *_lse_of(lo * inv, keep))
        self.hi_max, self.hi_sum = lse_merge(self.hi_max, self.hi_sum, *_lse_of(hi * inv, keep))
        top = np.where(keep, hi, -np.inf).max(axis=1) if hi.shape[1] else self.out_hi  # (m,)
        self.out_hi = np.maximum(self.out_hi, top)
        self.out_n += keep.sum(axis=1)

    def _out_cells(self, qi: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        """Add single cells (query ``qi``, bounds ``lo`` / ``hi``; all (p,)) to the non-candidates' sums."""
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

    def feed(self, s_hat: np.ndarray, bound: np.ndarray, allowed: np.ndarray | None, rows: np.ndarray) -> None:
        """One chunk: ŝ and B (m, c), ``allowed`` (m, c) or (c,) or None, global ``rows`` (c,)."""
        if self.overflow:
            return
        m, c = s_hat.shape
        lo = s_hat - bound  # (m, c)
        hi = s_hat + bound  # (m, c)
        ok = np.ones((m, c), bool) if allowed is None else np.broadcast_to(allowed, (m, c))  # (m, c)
        lo_ok = np.where(ok, lo, -np.inf)  # (m, c)
        both = np.concatenate([self.lo, lo_ok], axis=1)  # (m, k + c)
        self.lo = np.partition(both, c, axis=1)[:, c:] if c else self.lo  # (m, k)
        thr = self.threshold()  # (m,)
        cand = ok & (hi >= thr[:, None])  # (m, c)
        self._out(lo, hi, ok & ~cand)
        qi, col = np.nonzero(cand)  # (p,), (p,)
        self._add(qi, rows[col], s_hat[qi, col], bound[qi, col])
        if len(self.qi) > max(4096, 4 * m * self.k):
            self.prune()

    def _add(self, qi: np.ndarray, rows: np.ndarray, s_hat: np.ndarray, bound: np.ndarray) -> None:
        self.qi = np.concatenate([self.qi, qi.astype(np.int64)])
        self.rows = np.concatenate([self.rows, rows.astype(np.int64)])
        self.s_hat = np.concatenate([self.s_hat, s_hat])
        self.bound = np.concatenate([self.bound, bound])

    def prune(self) -> None:
        """Drop candidates below the current threshold (into the sums); give up past ``cap``."""
        thr = self.threshold()  # (m,)
        hi = self.s_hat + self.bound  # (p,)
        keep = hi >= thr[self.qi]  # (p,)
        if not keep.all():
            gone = ~keep
            self._out_cells(self.qi[gone], (self.s_hat - self.bound)[gone], hi[gone])
            self.qi, self.rows = self.qi[keep], self.rows[keep]
            self.s_hat, self.bound = self.s_hat[keep], self.bound[keep]
        if len(self.qi) > self.cap:
            self.overflow = True

    def merge(self, other: CertState) -> CertState:
        """The state of both parts' rows (exact; any order)."""
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
