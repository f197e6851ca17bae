"""The running per-query state of one kernel pass, fed one chunk of scores at a time.

:class:`Reducer` keeps what the pass's :class:`~softdb.engine._config.PassConfig` asks
for and turns it into the mergeable :class:`~softdb.engine._states.KernelState` of its
rows:

- soft:  running max ``mx``, running sum of exp ``se``, running weighted sum ``o``
         (the online softmax that FlashAttention uses), giving the soft answer and
         the log-sum-exp of every query; optionally Σ e·(l − mx) and Σ e² for the
         entropy and the effective number of rows of the weights;
- hard:  running best score and row (ties go to the lowest row);
- top-k: :class:`~softdb.engine._topk.TopK`;
- grid:  the log-sum-exp at extra temperatures (:class:`_Lse`), in the same pass.

A query whose rows are all masked gets "no match": row -1, score -inf, log-sum-exp
-inf and a zero soft answer, never NaN.

Examples
--------
>>> import numpy as np
>>> from softdb.engine._config import PassConfig
>>> r = Reducer(1, PassConfig(dtype=np.dtype(np.float64), step=3, soft=True, hard=True))
>>> e = r.reduce(np.array([[0.0, 2.0, 1.0]]), start=0, row0=0)
>>> st = r.state(0, 3)
>>> int(st.hard.row[0]), round(float(st.soft.lse[0]), 4)
(1, 2.4076)
"""

from __future__ import annotations

import numpy as np

from softdb.engine._config import PassConfig
from softdb.engine._states import HardState, KernelState, SoftState, TopKState
from softdb.engine._topk import TopK

__all__ = ["Reducer"]


class _Lse:
    """Running log-sum-exp of scores × ``ratio`` (a grid temperature), with a running max."""

    def __init__(self, m: int, dt: np.dtype, ratio: float) -> None:
        self.ratio = dt.type(ratio)
        self.mx = np.full(m, -np.inf, dt)  # (m,)
        self.se = np.zeros(m, dt)  # (m,)
        self.buf = np.empty(0, dt)  # (≥ m·c,)  grown to the largest chunk

    def feed(self, s: np.ndarray) -> None:
        if self.buf.size < s.size:
            self.buf = np.empty(s.size, s.dtype)  # (m·c,)
        t = np.multiply(s, self.ratio, out=self.buf[: s.size].reshape(s.shape))  # (m, c)
        new_mx = np.maximum(self.mx, t.max(axis=1))  # (m,)
        shift = np.where(new_mx == -np.inf, 0, new_mx).astype(t.dtype)  # (m,)
        self.se *= np.exp(self.mx - shift)  # (m,)
        t -= shift[:, None]
        self.se += np.exp(t, out=t).sum(axis=1)  # (m,)
        self.mx[:] = new_mx


class Reducer:
    """Running per-query state of a pass's reductions; ``reduce`` feeds it one chunk.

    Parameters
    ----------
    m : int
        Number of queries.
    cfg : PassConfig
        The reductions to keep (``soft``, ``hard``, ``k``, ``stats``, ``grid``), the
        mask and ``dense`` output, and the dtype.
    """

    def __init__(self, m: int, cfg: PassConfig) -> None:
        dt = cfg.dtype
        self.dt, self.dense, self.hard, self.mask, self.fast = dt, cfg.dense, cfg.hard, cfg.mask, cfg.fast
        self.post_scale = None
        if cfg.post_scale is not None:
            with np.errstate(over="ignore"):
                self.post_scale = dt.type(cfg.post_scale)
        self.mx: np.ndarray | None = None  # (m,)  running max (fixed 0 if fast)
        self.se: np.ndarray | None = None  # (m,)  running Σ exp(s - mx)
        self.o: np.ndarray | None = None  # (m, d_v)  running Σ exp(s - mx) v
        self.ent: np.ndarray | None = None  # (m,)  running Σ exp(s - mx) (s - mx)
        self.sq: np.ndarray | None = None  # (m,)  running Σ exp(s - mx)²
        if cfg.soft:
            self.mx = np.full(m, 0.0 if cfg.fast else -np.inf, dt)  # (m,)
            self.se = np.zeros(m, dt)  # (m,)
            if cfg.d_v is not None:
                self.o = np.zeros((m, cfg.d_v), dt)  # (m, d_v)
                self.o_chunk = np.empty_like(self.o)  # (m, d_v)
            if cfg.stats:
                self.ent, self.sq = np.zeros(m, dt), np.zeros(m, dt)  # (m,), (m,)
        self.grid = [_Lse(m, dt, g) for g in cfg.grid]
        self.ebuf = np.empty(0, dt)  # (≥ m·c,)  exp of a chunk, with stats
        if cfg.hard:
            self.best_s = np.full(m, -np.inf, dt)  # (m,)
            self.best_r = np.full(m, -1, np.int64)  # (m,)
        self.top = TopK(m, cfg.k, dt) if cfg.k else None
        self.m = m

    def state(self, a: int, b: int) -> KernelState:
        """The mergeable state of rows a..b (global rows; scales are set by ``run``)."""
        res = KernelState()
        if self.mx is not None and self.se is not None:
            mask, m, some = self.mask, self.m, b > a
            allowed = np.full(m, some) if mask is None else mask[..., a:b].any(axis=-1) & np.full(m, some)  # (m,)
            res.soft = SoftState(self.mx, self.se, self.o, allowed, self.ent, self.sq)
        if self.hard:
            res.hard = HardState(self.best_s, self.best_r)
        if self.top is not None:
            self.top.merge()
            res.top = TopKState(self.top.s, self.top.r)
        res.grid = tuple(SoftState(g.mx, g.se) for g in self.grid)
        return res

    def mask_rows(self, start: int, stop: int) -> np.ndarray | None:
        """The one query's allowed local rows start..stop, (c,) bool; None without a mask."""
        if self.mask is None:
            return None
        return self.mask[start:stop] if self.mask.ndim == 1 else self.mask[0, start:stop]

    def apply_mask(self, s: np.ndarray, start: int) -> None:
        """Set the masked cells of chunk scores ``s`` (m, c) of local rows start.. to -inf."""
        if self.mask is not None:
            mask, c = self.mask, s.shape[1]
            mc = mask[start : start + c] if mask.ndim == 1 else mask[:, start : start + c]  # (c,) | (m, c)
            np.copyto(s, -np.inf, where=~mc)

    def reduce(self, s: np.ndarray, start: int, row0: int) -> np.ndarray | None:
        """Feed one chunk's scores (m, c) of local rows start.. (global row0..) to every reduction.

        Returns exp(s - mx) (in ``s`` itself unless ``stats``), or None without soft.
        """
        self.apply_mask(s, start)
        if self.hard:
            idx = s.argmax(axis=1)  # (m,)  first max: lowest row in the chunk
            cs = np.take_along_axis(s, idx[:, None], axis=1)[:, 0]  # (m,)
            better = cs > self.best_s  # (m,)  strict: earlier chunks win ties
            self.best_s[better] = cs[better]
            self.best_r[better] = idx[better] + row0
        if self.top is not None:
            self.top.feed(s, row0)
        if self.post_scale is not None and (self.se is not None or self.grid):
            s *= self.post_scale
        for g in self.grid:
            g.feed(s)
        mx, se = self.mx, self.se  # (m,), (m,)  updated in place
        if mx is None or se is None:
            return None
        if self.dense is not None:
            self.dense[:, start : start + s.shape[1]] = s
        if self.fast:
            np.exp(s, out=s)  # (m, c)  |s| <= FAST_BOUND: no shift needed
            se += s.sum(axis=1)
            return s
        new_mx = np.maximum(mx, s.max(axis=1))  # (m,)
        shift = np.where(new_mx == -np.inf, 0, new_mx).astype(s.dtype)  # (m,)  all masked: 0
        alpha = np.exp(mx - shift)  # (m,)  rescale of old state; 0 while empty
        s -= shift[:, None]
        e = s
        ent, sq = self.ent, self.sq  # (m,), (m,)  updated in place, with stats
        if ent is not None and sq is not None:
            if self.ebuf.size < s.size:
                self.ebuf = np.empty(s.size, s.dtype)  # (m·c,)
            e = np.exp(s, out=self.ebuf[: s.size].reshape(s.shape))  # (m, c)
            np.copyto(s, 0, where=e == 0)  # masked: 0·(-inf) would be NaN
            ent[:] = np.where(se == 0, 0, alpha * (ent + (mx - shift) * se))  # (m,)  rebase onto shift
            ent += np.einsum("ij,ij->i", e, s)  # (m,)  Σ e (l - shift)
            sq *= alpha * alpha
            sq += np.einsum("ij,ij->i", e, e)  # (m,)  Σ e²
        else:
            np.exp(s, out=s)  # (m, c)
        se *= alpha
        se += e.sum(axis=1)
        if self.o is not None:
            self.o *= alpha[:, None]  # (m, d_v)
        mx[:] = new_mx
        return e

    def reduce_rows(self, s: np.ndarray, start: int, row0: int) -> None:
        """``reduce`` for scores laid out by row, ``s`` (c, m): top-k, then the log-sum-exp."""
        c = s.shape[0]
        if self.mask is not None:
            mask = self.mask
            mc = mask[start : start + c, None] if mask.ndim == 1 else mask[:, start : start + c].T  # (c, 1)|(c, m)
            np.copyto(s, -np.inf, where=~mc)
        if self.top is not None:  # always: the row layout is top-k's
            self.top.feed_rows(s, row0)
        mx, se = self.mx, self.se  # (m,), (m,)  updated in place
        if mx is None or se is None:
            return
        if self.post_scale is not None:
            s *= self.post_scale
        if not self.fast:
            new_mx = np.maximum(mx, s.max(axis=0))  # (m,)
            shift = np.where(new_mx == -np.inf, 0, new_mx).astype(s.dtype)  # (m,)  all masked: 0
            se *= np.exp(mx - shift)  # (m,)  rescale of old state; 0 while empty
            s -= shift
            mx[:] = new_mx
        np.exp(s, out=s)  # (c, m)
        se += _column_sums(s)  # (m,)


def _column_sums(s: np.ndarray, block: int = 1024) -> np.ndarray:
    """Σ over rows of ``s`` (c, m): sums of ``block`` rows each, then the sum of those.

    One float32 chain over all c rows would lose ~c·eps; this keeps ~block·eps. Each
    block's rows are added by numpy's vectorised reduction over the middle axis (no BLAS
    call: a multithreaded call per block costs a barrier each, slow on a loaded machine).
    """
    c, m = s.shape
    full = c // block * block
    total = s[:full].reshape(-1, block, m).sum(axis=1).sum(axis=0) if full else np.zeros(m, s.dtype)  # (m,)
    if full < c:
        total += s[full:].sum(axis=0)  # (m,)
    return total  # (m,)
