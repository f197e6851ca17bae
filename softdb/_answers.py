"""Turning kernel state into answers: dense weights, top-k hits, projected heads.

Pure functions over arrays, used by :class:`softdb.SoftTable`; every score still
comes from the one streaming kernel (:func:`softdb._kernel.stream`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _checks
from ._kernel import run, stream
from ._states import finalize

__all__ = ["lookup_projected", "dense_weights", "top_k", "top_k_heads"]


def lookup_projected(
    q: np.ndarray, proj: Any, mode: str, tau: float, mask: np.ndarray | None, dtype: np.dtype
) -> np.ndarray:
    outs = []
    if mode == "hard":
        for w_q, k, v in zip(proj.w_q, proj.keys, proj.values):
            r = stream(q @ w_q, k, hard=True, mask=mask)  # q @ w_q: (m, dh)
            outs.append(np.where((r.best_row >= 0)[:, None], v[np.maximum(r.best_row, 0)], 0))  # (m, dvh)
        return np.concatenate(outs, axis=1).astype(dtype, copy=False)  # (m, d_out)
    for w_q, k, v, nm in zip(proj.w_q, proj.keys, proj.values, proj.key_norm_max):
        r = stream(q @ w_q, k, v, scale=1.0 / tau, soft=True, mask=mask, key_norm_max=nm)
        outs.append(r.out)  # (m, dvh)
    out = np.concatenate(outs, axis=1)  # (m, d_out)
    _checks.check_finite_result(out, "soft lookup", tau)
    return out


def dense_weights(
    q: np.ndarray, keys: np.ndarray, tau: float, mask: np.ndarray | None, key_norm_max: float | None,
    dtype: np.dtype,
) -> np.ndarray:
    """softmax(q keysᵀ / τ) of every row through the kernel: (m, n), rows sum to 1 (or all 0).

    ``keys`` is a dense array or a kernel scorer (sparse or block keys)."""
    m = q.shape[0]
    if isinstance(keys, np.ndarray):
        w = np.empty((m, len(keys)), dtype)  # (m, n)
        r = stream(q, keys, scale=1.0 / tau, dense=w, mask=mask, key_norm_max=key_norm_max)
    else:
        w = np.empty((m, keys.n), dtype)  # (m, n)
        r = finalize(run(keys, q, scale=1.0 / tau, dense=w, mask=mask))
    with np.errstate(invalid="ignore", over="ignore"):
        w -= np.where(r.lse == -np.inf, 0, r.lse)[:, None]  # no match: stays -inf → 0
        np.exp(w, out=w)
        total = w.sum(axis=1, keepdims=True)  # (m, 1)  1 up to float32 rounding of lse
        w /= np.where(total == 0, 1, total)  # exact sums; no match stays all 0
    return w


def top_k(
    q: np.ndarray, keys: np.ndarray, k: int, tau: float, mask: np.ndarray | None,
    key_norm_max: float | None, dtype: np.dtype,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k rows by score, raw scores, and full-table weights, each (m, k).

    ``keys`` is a dense array or a kernel scorer (sparse or block keys)."""
    if isinstance(keys, np.ndarray):
        r = stream(q, keys, scale=1.0 / tau, soft=True, k=k, mask=mask, key_norm_max=key_norm_max)
    else:
        r = finalize(run(keys, q, scale=1.0 / tau, soft=True, k=k, mask=mask))
    found = r.top_rows >= 0  # (m, k)
    with np.errstate(over="ignore", invalid="ignore"):
        logits = r.top_scores / np.asarray(tau, dtype)  # (m, k)
        w = np.where(found, np.exp(logits - np.where(found, r.lse[:, None], 0)), 0)
    return r.top_rows, r.top_scores, w.astype(dtype, copy=False)

def top_k_heads(
    q: np.ndarray, proj: Any, k: int, tau: float, mask: np.ndarray | None, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """heads > 1: top-k rows by mean head weight; score = log(mean weight).

    The mean of softmaxes is no function of one score, so each chunk of
    queries gets its dense per-head weights from the kernel (memory
    O(chunk × n)), then argpartition and a sort of only the k.
    """
    m, n = len(q), proj.keys[0].shape[0]
    top_rows = np.full((m, k), -1, np.int64)  # (m, k)
    top_logw = np.full((m, k), -np.inf, np.float64)  # (m, k)
    step = max(1, (32 << 20) // (8 * max(n, 1)))  # queries per chunk: ≤ 32 MiB of weights
    for s0 in range(0, m, step):
        s1 = min(m, s0 + step)
        mb = mask if mask is None or mask.ndim == 1 else mask[s0:s1]  # (n,) or (b, n)
        logw = np.full((s1 - s0, n), -np.inf)  # (b, n)  log Σ_heads w, in log space: no underflow
        for w_q, keys, nm in zip(proj.w_q, proj.keys, proj.key_norm_max):
            s = np.empty((s1 - s0, n), dtype)  # (b, n)  scores / τ, -inf where masked
            r = stream(q[s0:s1] @ w_q, keys, scale=1.0 / tau, dense=s, mask=mb, key_norm_max=nm)
            with np.errstate(invalid="ignore"):
                s -= np.where(r.lse == -np.inf, 0, r.lse)[:, None]  # (b, n)  log w_a
            np.logaddexp(logw, s, out=logw)
        logw -= np.log(len(proj.keys))  # (b, n)  log mean weight; -inf: masked
        if k < n:
            part = np.argpartition(-logw, k - 1, axis=1)[:, :k]  # (b, k)  unordered best k
        else:
            part = np.broadcast_to(np.arange(n), (s1 - s0, n))  # (b, n)
        cand = np.take_along_axis(logw, part, axis=1)  # (b, k)
        order = np.lexsort((part, -cand), axis=1)  # (b, k)  weight desc, then row asc
        rows_b = np.take_along_axis(part, order, axis=1)  # (b, k)
        logw_b = np.take_along_axis(cand, order, axis=1)  # (b, k)
        top_rows[s0:s1] = np.where(logw_b > -np.inf, rows_b, -1)
        top_logw[s0:s1] = logw_b
    w = np.exp(top_logw)  # (m, k)  0 where no match
    return top_rows, top_logw.astype(dtype), w.astype(dtype)
