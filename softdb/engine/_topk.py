"""The kernel's top-k reduction: the k best scores and rows per query, fed chunk by chunk.

Only scores at or above a lower bound of the query's final k-th best are gathered
(found coarse to fine, :func:`_true_cells`) and merged in batches; see :class:`TopK`.
Scores come laid out by query, (m, c), or by row, (c, m) (``TopK.feed_rows``), which
the kernel uses for top-k from ROW_LAYOUT_MIN queries on.

Examples
--------
>>> import numpy as np
>>> top = TopK(1, 2, np.dtype(np.float32))
>>> top.feed(np.array([[1.0, 3.0, 2.0]], np.float32), start=10)
>>> top.merge()
>>> top.s.tolist(), top.r.tolist()
([[3.0, 2.0]], [[11, 12]])
"""

from __future__ import annotations

import numpy as np

__all__ = ["ROW_LAYOUT_MIN", "TopK"]

#: A query short of k hits bounds its candidates by the k-th best of the maxima of this
#: many (at least k) disjoint column groups: a lower bound of the chunk's own k-th best.
TOPK_GROUPS = 64
#: Laid out by query, top-k compares blocks of this many queries against the lowest
#: bound in the block (a scalar compare is ~3x a broadcast one); 1 below ROW_LAYOUT_MIN queries.
TOPK_BLOCK = 16
#: Top-k (alone or with the log-sum-exp of ``search``) lays scores out by row, (c, m), from
#: this many queries on: K·Qᵀ is the faster GEMM, and every query meets its own bound.
ROW_LAYOUT_MIN = 8
#: Laid out by row, the per-query bounds are repeated to rows of at least this many
#: elements, so the comparison runs in long inner loops.
TOPK_TILE = 8192
#: Candidates wait until at least this many (and m·k) have gathered before a merge.
TOPK_MERGE_MIN = 4096
#: Laid out by row, a short query's start-up bound is the k-th best of the maxima of
#: groups of this many rows (at least k groups).
TOPK_GROUP_ROWS = 16


def _true_cells(hit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of every True of ``hit`` (r, 8·w), in row-major order.

    Few are True, so the search goes in two steps: the nonzero uint64 words
    (8 cells each), then the bytes of those words only.
    """
    w = hit.shape[1] // 8  # words per row
    wi = np.flatnonzero(hit.view(np.uint64) != 0)  # (p_w,)  hit words, flat over (r, w)
    jw, byte = np.nonzero(hit.reshape(-1, 8)[wi])  # (p,), (p,)
    row, word = np.divmod(wi[jw], w)  # (p,), (p,)
    return row, word * 8 + byte


class TopK:
    """Running k best scores and rows per query, fed one chunk of scores at a time.

    Each chunk contributes only its *candidates*: scores at or above the query's
    bound, a lower bound of its final k-th best (the running k-th best, or while
    the query is short of k hits the k-th best of the maxima of disjoint column
    groups of the chunk). Late in the table they are few (see ``_true_cells``).
    Candidates wait in a small pending list and are merged into the running best
    only when about m·k have gathered (or at the end):
    a stale bound is still a valid bound, it just lets a few more candidates in.
    A merge sorts by (query, score descending, row ascending), so ties go to the
    lowest row whatever the chunk size.
    """

    def __init__(self, m: int, k: int, dt: np.dtype) -> None:
        self.k = k
        self.s = np.full((m, k), -np.inf, dt)  # (m, k)  merged k best, descending
        self.r = np.full((m, k), -1, np.int64)  # (m, k)  their rows, -1 = none
        self.bound = np.full(m, -np.inf, dt)  # (m,)  lower bound of each final k-th best
        self.pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (query, row, score)
        self.n_pending = 0
        self.limit = max(m * k, TOPK_MERGE_MIN)  # merge once this many candidates wait
        self.hit = np.empty(0, bool)  # comparison mask, grown to (m, 8·⌈c/8⌉) on first use

    def feed(self, s: np.ndarray, start: int) -> None:
        """Take the candidates of one chunk of scores ``s`` (m, c) starting at row ``start``."""
        m, c = s.shape
        k, bound = self.k, self.bound
        short = np.flatnonzero(self.s[:, -1] == -np.inf)  # (f,)  short of k merged hits
        if short.size and c >= k:
            g = max(k, TOPK_GROUPS)  # k-th best of g disjoint column groups' maxima
            sf = s[short] if short.size < m else s  # (f, c)
            gm = sf[:, : c // g * g].reshape(sf.shape[0], -1, g).max(axis=1) if c >= 2 * g else sf  # (f, g)|(f, c)
            gb = np.partition(gm, gm.shape[1] - k, axis=1)[:, -k]  # (f,)
            bound[short] = np.maximum(bound[short], gb)  # (f,)
        lim = np.maximum(bound, np.finfo(s.dtype).min)  # (m,)  masked (-inf) scores never enter
        hit = self._mask(m, c)  # (m, ≥c)
        bq = TOPK_BLOCK if m >= ROW_LAYOUT_MIN else 1  # queries per block
        lo = np.minimum.reduceat(lim, np.arange(0, m, bq))  # (⌈m/B⌉,)  bound of each block
        for i, b in zip(range(0, m, bq), lo):
            np.greater_equal(s[i : i + bq], b, out=hit[i : i + bq, :c])  # (B, c)
        qi, ci = _true_cells(hit)  # (p,), (p,)  row-major: columns ascend per query
        sc = s[qi, ci]  # (p,)
        keep = sc >= lim[qi]  # (p,)  the block's bound was weaker; >=: ties lose on row order at the merge
        if not keep.all():
            qi, ci, sc = qi[keep], ci[keep], sc[keep]
        self._push(qi, ci + start, sc)

    def feed_rows(self, s: np.ndarray, start: int) -> None:
        """``feed`` for scores laid out by row, ``s`` (c, m): every query against its own bound."""
        c, m = s.shape
        k, bound = self.k, self.bound
        short = np.flatnonzero(self.s[:, -1] == -np.inf)  # (f,)  short of k merged hits
        if short.size and c >= k:
            g = TOPK_GROUP_ROWS if c >= k * TOPK_GROUP_ROWS else 1  # rows per group
            gm = np.maximum.reduce(s[: c // g * g].reshape(-1, g, m), axis=1) if g > 1 else s  # (c/g, m)
            gm = gm[:, short] if short.size < m else gm  # (c/g, f)
            bound[short] = np.maximum(bound[short], np.partition(gm, gm.shape[0] - k, axis=0)[-k])  # (f,)
        lim = np.maximum(bound, np.finfo(s.dtype).min)  # (m,)  masked (-inf) scores never enter
        hit = self._mask(c, m)  # (c, ≥m)
        tile = max(1, TOPK_TILE // m)  # rows per tile of repeated bounds
        done = c // tile * tile if hit.shape[1] == m and c >= tile > 1 else 0  # rows compared in tiles
        if done:
            np.greater_equal(
                s[:done].reshape(-1, tile * m), np.tile(lim, tile), out=hit[:done].reshape(-1, tile * m)
            )  # (c/tile, tile·m)
        np.greater_equal(s[done:], lim, out=hit[done:, :m])  # (c - done, m)
        ri, qi = _true_cells(hit)  # (p,), (p,)  chunk row and query: rows ascend per query
        self._push(qi, ri + start, s[ri, qi])

    def _mask(self, rows: int, cols: int) -> np.ndarray:
        """A reused (rows, cols padded to whole 8-byte words) bool buffer, padding False."""
        width = -(-cols // 8) * 8
        if self.hit.size < rows * width:
            self.hit = np.empty(rows * width, bool)  # (rows·width,)  reused by every chunk: no fresh pages
        hit = self.hit[: rows * width].reshape(rows, width)
        hit[:, cols:] = False
        return hit

    def _push(self, qi: np.ndarray, rows: np.ndarray, scores: np.ndarray) -> None:
        """Queue candidates (query, table row, score); merge once enough wait."""
        if qi.size:
            self.pending.append((qi, rows, scores))
            self.n_pending += qi.size
            if self.n_pending >= self.limit:
                self.merge()

    def merge(self) -> None:
        """Fold the pending candidates into the running k best."""
        if not self.pending:
            return
        k = self.k
        qi, ri, sc = (np.concatenate(a) for a in zip(*self.pending))  # (p,) each
        self.pending, self.n_pending = [], 0
        key = qi.astype(np.int16) if self.s.shape[0] <= 1 << 15 else qi  # int16: a radix sort
        o = np.argsort(key, kind="stable")  # (p,)  by query; within one, rows ascend
        qi, ri, sc = qi[o], ri[o], sc[o]
        counts = np.bincount(qi, minlength=self.s.shape[0])  # (m,)
        rows = np.flatnonzero(counts)  # (r,)  queries with candidates
        counts = counts[rows]  # (r,)
        r, p = rows.size, qi.size
        rr = np.repeat(np.arange(r), counts)  # (p,)  pad row of each candidate
        slot = k + np.arange(p) - np.repeat(np.cumsum(counts) - counts, counts)  # (p,)  after the k best
        pad_s = np.full((r, k + counts.max()), -np.inf, sc.dtype)  # (r, k + p_max)
        pad_r = np.full(pad_s.shape, -1, np.int64)  # (r, k + p_max)
        pad_s[:, :k], pad_r[:, :k] = self.s[rows], self.r[rows]  # earlier rows than every candidate
        pad_s[rr, slot], pad_r[rr, slot] = sc, ri
        best = np.argsort(-pad_s, axis=1, kind="stable")[:, :k]  # (r, k)  score desc, then row asc
        self.s[rows] = np.take_along_axis(pad_s, best, axis=1)  # (r, k)
        self.r[rows] = np.take_along_axis(pad_r, best, axis=1)  # (r, k)
        np.maximum(self.bound, self.s[:, -1], out=self.bound)  # (m,)
