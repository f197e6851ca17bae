"""fp32 scores of chosen (query, row) cells, bit for bit as softdb's fp32 search computes them.

The certified compressed search (:mod:`softdb.engine._certified`) rescores its candidates in
fp32 and promises the fp32 search's scores, not merely close ones. A float32 dot product's last
bit depends on how the BLAS call that computed it was shaped, so each cell is scored through the
call the fp32 kernel (:func:`softdb.engine._kernel.run`) makes for its part:

- one query: numpy's ``einsum("cd,d->c")`` (the kernel's ``scores_one``), whose inner loop is the
  same for every row, so the candidate rows are simply gathered;
- several queries, in *big* calls (m·rows·d ≥ :data:`BIG_CALL` multiply-adds): OpenBLAS's GEMM
  accumulates each dot product in the same order wherever the row sits in the call and however
  many queries share it, so each block of queries scores the union of its candidate rows,
  gathered and zero-padded to a big call (by row, ``K @ qᵀ``, from ROW_LAYOUT_MIN queries on, as
  the kernel does; else ``q @ Kᵀ``);
- several queries in *small* calls: OpenBLAS's small-matrix kernels round by position, so each
  kernel chunk holding a candidate is scored again exactly as the kernel called it (the same
  slice of keys, all the batch's queries); small calls only arise for small parts.

The query is scaled by 1/τ in float32 first and the scores scaled back by τ, as the kernel and
:func:`softdb.engine._states.finalize` do; at extreme τ (1/τ outside [1e-12, 1e12]) the kernel
ranks and reports raw scores, and so does this.
``tests/engine/test_compressed.py`` checks scores bit for bit against the fp32 search.

Examples
--------
>>> import numpy as np
>>> from softdb.engine._segmented import Part, Parts
>>> K = np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32)
>>> q = K[:3]
>>> s = rescore_cells(Parts([Part(K, None, 1.0, None)]), q, 0.5, np.array([0, 2]), np.array([7, 39]))
>>> s.shape, s.dtype.name
((2,), 'float32')
"""

from __future__ import annotations

import numpy as np

from softdb.engine import _parallel
from softdb.engine._kernel import chunk_rows
from softdb.engine._segmented import Parts
from softdb.engine._topk import ROW_LAYOUT_MIN

__all__ = ["BIG_CALL", "QUERY_BLOCK", "kernel_calls", "pre_scaled", "rescore_cells", "unscale"]

#: Multiply-adds (queries × rows × d) from which a BLAS call rounds each dot product whatever the
#: row's position (OpenBLAS's small-matrix paths stop far below: about 10⁶ and 7·10⁶).
BIG_CALL = 1 << 24
#: Queries per gathered call (at least ROW_LAYOUT_MIN: the by-row layout of the kernel).
QUERY_BLOCK = 32


def kernel_calls(m: int, n_part: int, itemsize: int, hard: bool = False) -> tuple[str, list[tuple[int, int]], int]:
    """How the fp32 kernel scores a part of ``n_part`` rows for ``m`` queries (``hard``: for a hard lookup).

    Returns the method (``"one"``: numpy's einsum for one query; ``"by_row"``: ``K @ qᵀ``;
    ``"gemm"``: ``q @ Kᵀ``), the thread ranges of rows, and the rows of one chunk (one call).
    """
    ranges = _parallel.split(n_part, _parallel.threads_for(m, n_part, None)) if n_part else [(0, 0)]
    longest = max(b - a for a, b in ranges)
    rows = chunk_rows(m, longest, itemsize, None, len(ranges))
    if m == 1:
        return "one", ranges, rows
    return ("by_row" if m >= ROW_LAYOUT_MIN and not hard else "gemm"), ranges, rows


def _call(how: str, keys: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """One BLAS call of the kernel's shape: scores (m, c)."""
    if how == "by_row":
        return np.matmul(keys, qs.T).T  # (m, c)
    return np.matmul(qs, keys.T)  # (m, c)


def _exact_calls(
    how: str, keys: np.ndarray, ranges: list[tuple[int, int]], step: int, qs: np.ndarray, qi: np.ndarray, r: np.ndarray
) -> np.ndarray:
    """Cells (qi, local row r) of a part with small calls: each touched kernel chunk called again: (p,)."""
    starts = np.array([a for a, _ in ranges])
    ends = np.array([b for _, b in ranges])
    at = np.searchsorted(starts, r, side="right") - 1  # (p,)  the thread range of each row
    c0 = starts[at] + (r - starts[at]) // step * step  # (p,)  its kernel chunk's first row
    out = np.empty(len(r), qs.dtype)
    for s in np.unique(c0):
        sel = np.flatnonzero(c0 == s)
        e = min(int(s) + step, int(ends[at[sel[0]]]))
        got = _call(how, keys[int(s) : e], qs)  # (m, c)  the kernel's own call
        out[sel] = got[qi[sel], r[sel] - s]
    return out


def _gathered(how: str, keys: np.ndarray, qs: np.ndarray, qi: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Cells (qi, local row r) of a part with big calls: per block of queries, its rows gathered: (p,).

    The blocks run one per thread (BLAS on one thread each), as the kernel's chunks do.
    """
    m, d = qs.shape
    out = np.empty(len(r), qs.dtype)
    blocks = _parallel.split(m, max(1, m // QUERY_BLOCK)) if m >= ROW_LAYOUT_MIN else [(0, m)]
    edges = np.array([a for a, _ in blocks])
    blk = np.searchsorted(edges, qi, side="right") - 1  # (p,)
    order = np.argsort(blk, kind="stable")
    cuts = np.searchsorted(blk[order], np.arange(len(blocks) + 1))  # cells of block j: order[cuts[j]:cuts[j+1]]

    def block(j: int, buf: np.ndarray) -> np.ndarray:
        a, b = blocks[j]
        sel = order[cuts[j] : cuts[j + 1]]
        if not sel.size:
            return buf
        u, inv = np.unique(r[sel], return_inverse=True)
        rows = max(len(u), -(-BIG_CALL // ((b - a) * d)))  # a big call: zero rows pad it
        if buf.size < rows * d:
            buf = np.empty(rows * d, qs.dtype)
        kk = buf[: rows * d].reshape(rows, d)  # (rows, d)
        np.take(keys, u, axis=0, out=kk[: len(u)])
        kk[len(u) :] = 0
        got = _call(how, kk, qs[a:b])  # (b − a, rows)
        out[sel] = got[qi[sel] - a, inv]
        return buf

    groups = _parallel.split(len(blocks), min(len(blocks), _parallel.threads_for(m, len(r) * QUERY_BLOCK, None)))

    def group(g0: int, g1: int) -> None:
        buf = np.empty(0, qs.dtype)  # one gather buffer for the group's blocks: its pages fault in once
        for j in range(g0, g1):
            buf = block(j, buf)

    _parallel.map_ranges(group, groups)
    return out


def rescore_cells(
    parts: Parts,
    q: np.ndarray,
    tau: float,
    qi: np.ndarray,
    rows: np.ndarray,
    *,
    scaled: bool = False,
    hard: bool = False,
) -> np.ndarray:
    """fp32 scores of the cells (query ``qi``, global live row ``rows``), as the fp32 search gives them.

    Parameters
    ----------
    parts : Parts
        The table's segments (fp32 keys, in memory or memory-mapped).
    q : ndarray of shape (m, d), float32
        Every query of the batch (not scaled): the fp32 search's call shapes depend on m, so a
        subset of the batch is given as its cells, never as a smaller ``q``.
    tau : float
        The temperature (outside the kernel's pre-scaled range, 1/τ in [1e-12, 1e12], the kernel
        and this score raw).
    qi, rows : ndarray of shape (p,), int64
        The cells.
    scaled : bool
        Return the scores of the query scaled by 1/τ, which the kernel ranks by (two of them may
        give one score once scaled back: :func:`unscale`), instead of the scores.
    hard : bool
        The calls of a hard lookup (raw scores, τ = 1: never by row).

    Returns
    -------
    ndarray of shape (p,), q.dtype
    """
    dt = q.dtype
    qs = q * dt.type(1.0 / tau) if pre_scaled(tau) else q  # (m, d)  extreme τ: the kernel scores raw
    m, d = q.shape
    out = np.empty(len(qi), dt)
    if not len(qi):
        return out
    which, local = parts.locate(rows)  # (p,), (p,)
    for i in np.unique(which):
        at = np.flatnonzero(which == i)  # cells of part i
        part = parts.parts[i]
        r = local[at]
        how, ranges, step = kernel_calls(m, part.n_phys, dt.itemsize, hard)
        if how == "one":
            out[at] = np.einsum("cd,d->c", part.keys[r], qs[0])  # (p_i,)  per row as the kernel's loop
        elif m * step * d < BIG_CALL:
            out[at] = _exact_calls(how, part.keys, ranges, step, qs, qi[at], r)
        else:
            out[at] = _gathered(how, part.keys, qs, qi[at], r)
    return out if scaled else unscale(out, tau)


def pre_scaled(tau: float) -> bool:
    """Whether the fp32 kernel scales the queries by 1/τ (else, at extreme τ, it ranks raw scores)."""
    return 1e-12 <= 1.0 / tau <= 1e12


def unscale(x: np.ndarray, tau: float) -> np.ndarray:
    """Scores of the query scaled by 1/τ, scaled back as the kernel's results are: a new array.

    At extreme τ (not :func:`pre_scaled`) the kernel ranks and reports raw scores: a copy.
    """
    return x * x.dtype.type(1.0 / (1.0 / tau)) if pre_scaled(tau) else x.copy()
