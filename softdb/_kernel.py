"""The one streaming engine that turns scores into answers.

Every lookup walks the table in row chunks. Per chunk it does one GEMM for the
scores, then feeds them to the reductions the lookup needs, each of which keeps
only small running state per query:

- soft:  running max ``mx``, running sum of exp ``se``, running weighted sum ``o``
         (the online softmax that FlashAttention uses), giving the soft answer and
         the log-sum-exp of every query;
- hard:  running best score and row (ties go to the lowest row);
- top-k: running k best scores and rows, merged per chunk.

Memory is O(m × chunk), never O(m × n) (except ``dense``, whose output *is* m × n),
and the results do not depend on the chunk size beyond float rounding.
A query whose rows are all masked gets "no match": row -1, score -inf,
log-sum-exp -inf and a zero soft answer, never NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["KernelResult", "stream", "chunk_rows"]

#: Bytes of scores held per chunk: small enough for L2/L3, large enough for a fast GEMM.
CHUNK_BYTES = 4 << 20
#: With |scores / τ| <= FAST_BOUND, exp cannot overflow or underflow (float32), so the
#: soft reduction needs no running max: one exp pass per chunk instead of three.
FAST_BOUND = 40.0


@dataclass
class KernelResult:
    """Small per-query state left by the reductions (fields unused are None)."""

    out: np.ndarray | None = None  # (m, d_v) soft answer
    lse: np.ndarray | None = None  # (m,) log Σ exp(score / τ) over allowed rows
    best_row: np.ndarray | None = None  # (m,) int64, -1 = no match
    best_score: np.ndarray | None = None  # (m,) raw scores
    top_rows: np.ndarray | None = None  # (m, k) int64, -1 = no match
    top_scores: np.ndarray | None = None  # (m, k) raw scores, descending


def chunk_rows(m: int, n: int, itemsize: int, chunk: int | None = None) -> int:
    """Rows per chunk: ``chunk`` if given, else CHUNK_BYTES worth of scores."""
    if chunk is not None:
        return max(1, int(chunk))
    return int(min(max(n, 1), max(256, CHUNK_BYTES // (max(m, 1) * itemsize))))


def stream(
    queries: np.ndarray,
    keys: np.ndarray,
    values: np.ndarray | None = None,
    *,
    scale: float = 1.0,
    soft: bool = False,
    hard: bool = False,
    k: int = 0,
    dense: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    key_norm_max: float | None = None,
    chunk: int | None = None,
) -> KernelResult:
    """Stream ``keys`` in chunks and run the requested reductions.

    Parameters
    ----------
    queries : ndarray of shape (m, d)
    keys : ndarray of shape (n, d)
    values : ndarray of shape (n, d_v), optional
        With ``soft``, the values to blend; without them only the log-sum-exp is kept.
    scale : float
        1 / τ: soft scores are ``queries @ keys.T * scale``.
    soft, hard : bool
        Run the soft (online softmax) or hard (argmax) reduction.
    k : int
        Run the top-k reduction when ``k > 0``.
    dense : ndarray of shape (m, n), optional
        Receives the scaled scores; with ``soft`` the caller turns them into
        weights as ``exp(dense - lse[:, None])``.
    mask : ndarray of bool, shape (n,) or (m, n), optional
        True where a row is allowed.
    key_norm_max : float, optional
        max ‖k_j‖; lets the soft reduction skip the running max when the scores
        provably stay within ±FAST_BOUND.
    chunk : int, optional
        Rows per chunk (default: about 4 MiB of scores).

    Returns
    -------
    KernelResult

    Examples
    --------
    >>> import numpy as np
    >>> K = np.eye(3, dtype=np.float32)
    >>> r = stream(np.array([[0, 5, 0]], np.float32), K, K, soft=True, hard=True)
    >>> int(r.best_row[0]), r.out.round(3).tolist()
    (1, [[0.007, 0.987, 0.007]])
    """
    m, n = queries.shape[0], keys.shape[0]
    dt = np.result_type(queries.dtype, keys.dtype)
    step = chunk_rows(m, n, dt.itemsize, chunk)
    res = KernelResult()

    q_soft = None
    fast = False
    post_scale = None  # extreme τ: scale each chunk's scores instead of the queries
    if soft or dense is not None:
        if 1e-12 <= scale <= 1e12:
            q_soft = queries * dt.type(scale)  # (m, d)  scores come out already divided by τ
        else:
            q_soft = queries
            with np.errstate(over="ignore"):
                post_scale = dt.type(scale)
        if post_scale is None and key_norm_max is not None and m:
            bound = float(np.sqrt(np.einsum("ij,ij->i", q_soft, q_soft, dtype=np.float64)).max())
            fast = bound * key_norm_max <= FAST_BOUND
        mx = np.full(m, 0.0 if fast else -np.inf, dt)  # (m,)  running max (fixed 0 if fast)
        se = np.zeros(m, dt)  # (m,)  running Σ exp(s - mx)
        o = None if values is None or not soft else np.zeros((m, values.shape[1]), dt)  # (m, d_v)
    if hard:
        best_s = np.full(m, -np.inf, dt)  # (m,)
        best_r = np.full(m, -1, np.int64)  # (m,)
        rows_m = np.arange(m)
    if k:
        top_s = np.full((m, k), -np.inf, dt)  # (m, k)
        top_r = np.full((m, k), -1, np.int64)  # (m, k)

    q_use = queries if q_soft is None else q_soft  # one GEMM serves every reduction
    for start in range(0, n, step):
        stop = min(start + step, n)
        s = q_use @ keys[start:stop].T  # (m, c)  scores (divided by τ when soft)
        if mask is not None:
            mc = mask[start:stop] if mask.ndim == 1 else mask[:, start:stop]  # (c,) or (m, c)
            np.copyto(s, -np.inf, where=~mc)
        if hard:
            idx = s.argmax(axis=1)  # (m,)  first max: lowest row in the chunk
            cs = s[rows_m, idx]  # (m,)
            better = cs > best_s  # strict: earlier chunks win ties
            best_s = np.where(better, cs, best_s)
            best_r = np.where(better, idx + start, best_r)
        if k:
            top_s, top_r = _topk_merge(s, start, top_s, top_r, k)
        if q_soft is None:
            continue
        if post_scale is not None:
            with np.errstate(over="ignore", invalid="ignore"):
                s *= post_scale
        if dense is not None:
            dense[:, start:stop] = s
        if fast:
            np.exp(s, out=s)  # (m, c)  |s| <= 40: no shift needed
            se += s.sum(axis=1)
            if o is not None:
                o += s @ values[start:stop]  # (m, d_v)
        else:
            new_mx = np.maximum(mx, s.max(axis=1))  # (m,)
            shift = np.where(new_mx == -np.inf, 0.0, new_mx).astype(dt)  # (m,)  all masked: 0
            alpha = np.exp(mx - shift)  # (m,)  rescale of old state; 0 while empty
            s -= shift[:, None]
            np.exp(s, out=s)  # (m, c)
            se *= alpha
            se += s.sum(axis=1)
            if o is not None:
                o *= alpha[:, None]
                o += s @ values[start:stop]  # (m, d_v)
            mx = new_mx

    if q_soft is not None:
        empty = se == 0  # (m,)  no allowed row
        with np.errstate(divide="ignore"):
            res.lse = np.where(empty, -np.inf, mx + np.log(se)).astype(dt)  # (m,)
        if o is not None:
            res.out = o / np.where(empty, 1, se)[:, None]  # (m, d_v)  zeros for no match
    unscale = dt.type(1.0 if q_soft is None or post_scale is not None else 1.0 / scale)  # report raw scores
    if hard:
        res.best_row, res.best_score = best_r, best_s * unscale
    if k:
        res.top_rows, res.top_scores = top_r, top_s * unscale
    return res


def _topk_merge(
    s: np.ndarray, start: int, top_s: np.ndarray, top_r: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge chunk scores ``s`` (m, c) into the running top-k (m, k).

    Only entries that can enter the top-k are gathered: those above the running
    k-th best. While a query has fewer than k finite entries, the chunk's own
    k-th best bounds the candidates instead (np.partition, then sort only k).
    """
    m, c = s.shape
    thr = top_s[:, -1]  # (m,)  running k-th best
    if m and (thr == -np.inf).any():
        if c > k:
            kth = np.partition(s, c - k, axis=1)[:, c - k]  # (m,)  chunk's k-th best
        else:
            kth = s.min(axis=1)  # (m,)
        thr = np.maximum(thr, kth)
        cand = s >= thr[:, None]  # (m, c)  >=: keep ties at the chunk's k-th
        cand &= s > -np.inf
    else:
        cand = s > thr[:, None]  # (m, c)  strict: earlier rows win ties
    qi, ci = np.nonzero(cand)  # (p,), (p,)
    if qi.size == 0:
        return top_s, top_r
    all_q = np.concatenate([np.repeat(np.arange(m), k), qi])  # (m·k + p,)
    all_s = np.concatenate([top_s.ravel(), s[qi, ci]])  # (m·k + p,)
    all_r = np.concatenate([top_r.ravel(), ci.astype(np.int64) + start])  # (m·k + p,)
    # placeholders (row -1, score -inf) must sort after every real row
    key_r = np.where(all_r < 0, np.iinfo(np.int64).max, all_r)
    order = np.lexsort((key_r, -all_s, all_q))  # by query, score desc, row asc
    counts = np.bincount(all_q, minlength=m)  # (m,)  every query has >= k
    first = np.cumsum(counts) - counts  # (m,)
    rank = np.arange(order.size) - np.repeat(first, counts)  # position within its query
    keep = order[rank < k]  # (m·k,)
    return all_s[keep].reshape(m, k), all_r[keep].reshape(m, k)
