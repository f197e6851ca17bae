"""Exact merges of the kernel's per-query partial states, one per part of a table.

A table cut into parts (shards), each streamed through :func:`softdb._kernel.stream`,
leaves one small state per part and query. These functions fold them into the
state of the whole table, exactly (up to float rounding of the soft sum):

- soft:  the normalised answers ``out_i`` (m, d_v) and log-sum-exps ``lse_i`` (m,)
         give ``L = log Σ_i exp(lse_i)`` and ``out = Σ_i exp(lse_i - L) · out_i``;
- hard:  the best score wins; ties go to the lowest global row;
- top-k: the k best of the parts' k best by score, ties to the lowest global row.

Parts must carry *global* row numbers (part offset + local row); -1 means no match.
The merges are associative, so the parts may be merged in any grouping.
"""

from __future__ import annotations

import numpy as np

__all__ = ["merge_lse", "merge_soft", "merge_hard", "merge_top_k"]

_NO_ROW = np.iinfo(np.int64).max  # sorts "no match" (row -1) after every real row


def merge_lse(lses: list[np.ndarray]) -> np.ndarray:
    """log Σ_i exp(lse_i) per query: (m,) from a list of (m,); -inf where every part is empty.

    Examples
    --------
    >>> merge_lse([np.log(np.array([1.0, 2.0])), np.array([-np.inf, np.log(2.0)])]).round(6)
    array([0.      , 1.386294])
    """
    stack = np.stack(lses)  # (p, m)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.logaddexp.reduce(stack, axis=0).astype(stack.dtype, copy=False)  # (m,)


def merge_soft(outs: list[np.ndarray], lses: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Fold normalised soft answers: (out (m, d_v), lse (m,)); zeros where every part is empty.

    Examples
    --------
    >>> out, lse = merge_soft([np.array([[1.0]]), np.array([[3.0]])], [np.zeros(1), np.zeros(1)])
    >>> out, lse.round(4)
    (array([[2.]]), array([0.6931]))
    """
    lse = merge_lse(lses)  # (m,)
    shift = np.where(lse == -np.inf, 0, lse)  # (m,)  no match: every weight below is 0
    out = np.zeros_like(outs[0])  # (m, d_v)
    for o, l in zip(outs, lses):
        w = np.exp(l - shift).astype(o.dtype)  # (m,)  this part's share of the softmax mass
        out += w[:, None] * o  # (m, d_v)
    return out, lse


def merge_hard(scores: list[np.ndarray], rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The best part per query: (score (m,), global row (m,), part index (m,), -1 = no match).

    Parts are taken in the order given, which must be ascending global rows, so a
    strict comparison leaves ties with the lowest row.

    Examples
    --------
    >>> merge_hard([np.array([2.0, 1.0]), np.array([2.0, 5.0])], [np.array([0, 1]), np.array([7, 9])])
    (array([2., 5.]), array([0, 9]), array([0, 1]))
    """
    best_s = np.full(scores[0].shape, -np.inf, scores[0].dtype)  # (m,)
    best_r = np.full(scores[0].shape, -1, np.int64)  # (m,)
    part = np.full(scores[0].shape, -1, np.int64)  # (m,)
    for i, (s, r) in enumerate(zip(scores, rows)):
        better = (r >= 0) & (s > best_s)  # (m,)  strict: earlier parts (lower rows) keep ties
        best_s[better], best_r[better], part[better] = s[better], r[better], i
    return best_s, best_r, part


def merge_top_k(scores: list[np.ndarray], rows: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of the parts' hits: (rows (m, k), scores (m, k)), score descending, ties by row.

    Examples
    --------
    >>> r, s = merge_top_k([np.array([[3.0, 1.0]]), np.array([[3.0, 2.0]])], [np.array([[4, 0]]), np.array([[2, 9]])], 3)
    >>> r, s
    (array([[2, 4, 9]]), array([[3., 3., 2.]]))
    """
    s = np.concatenate(scores, axis=1)  # (m, Σk_i)
    r = np.concatenate(rows, axis=1)  # (m, Σk_i)
    m, width = s.shape
    if width < k:  # fewer candidate slots than k: pad with "no match"
        s = np.concatenate([s, np.full((m, k - width), -np.inf, s.dtype)], axis=1)  # (m, k)
        r = np.concatenate([r, np.full((m, k - width), -1, np.int64)], axis=1)  # (m, k)
    order = np.lexsort((np.where(r < 0, _NO_ROW, r), -s), axis=1)[:, :k]  # (m, k)  score desc, row asc
    top_r = np.take_along_axis(r, order, axis=1)  # (m, k)
    top_s = np.take_along_axis(s, order, axis=1)  # (m, k)
    return np.where(top_s > -np.inf, top_r, -1), top_s
