"""Losses of projected lookups, each with its analytic gradient beside it.

Each loss is one function returning ``(loss, grads)`` in float64 (micrograd
style), ready for ``scipy.optimize.minimize(jac=True)`` (see :mod:`softdb.learn._fit`).
Memory is bounded by chunking over queries: each chunk holds a few (batch, n)
float64 score matrices, at most :data:`FIT_BYTES` in all.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TypedDict

import numpy as np

__all__ = ["FIT_BYTES", "Extras", "as_extras", "rows_loss", "target_mass", "targets_nll", "values_loss"]

#: Bytes of float64 score matrices a loss evaluation may hold at once.
FIT_BYTES = 64 << 20


def _batch_size(n: int, arrays: int, budget: int = FIT_BYTES) -> int:
    """Queries per chunk so that ``arrays`` float64 (batch, n) matrices fit in ``budget``."""
    return max(1, budget // (8 * max(n, 1) * arrays))


def _chunks(m: int, b: int) -> Iterator[tuple[int, int]]:
    """(s0, s1) of each chunk of ``b`` queries out of ``m``."""
    for s0 in range(0, m, b):
        yield s0, min(m, s0 + b)


def _shift_exp(S: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Shift each row of the logits S (b, n) by its max, in place; return exp(S) (b, n)."""
    S -= S.max(axis=1, keepdims=True)
    return np.exp(S, out=out)


def target_mass(logw_t: np.ndarray, starts: np.ndarray, tq: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each query's weight on its targets, summed over heads, kept in log-space.

    Parameters
    ----------
    logw_t : ndarray of shape (h, t)
        log w_aj of each head a at each target j (targets grouped by query).
    starts : ndarray of shape (b,)
        Where each query's targets start in ``t`` (every query has at least one).
    tq : ndarray of shape (t,)
        The query of each target.

    Returns
    -------
    mx : ndarray of shape (b,)
        The shift of each query: its largest log weight at a target.
    e : ndarray of shape (h, t)
        exp(logw_t − mx): no query's terms can all underflow.
    p_a : ndarray of shape (h, b)
        Σ_{j∈T} w_aj · e^{−mx} per head; log Σ_a Σ_T w_aj = mx + log Σ_a p_a.
    """
    mx = np.maximum.reduceat(logw_t.max(axis=0), starts)  # (b,)
    e = np.exp(logw_t - mx[tq])  # (h, t)
    return mx, e, np.add.reduceat(e, starts, axis=1)


def targets_nll(
    S: np.ndarray, E: np.ndarray, targets: tuple[np.ndarray, np.ndarray], s0: int, s1: int, m: int
) -> float:
    """The multi-target loss of queries s0:s1 from their logits, and its gradient in place.

    The loss of query i is −log w̄(T_i), w̄(T_i) = (1/h) Σ_a Σ_{j∈T_i} w_aij with
    w_a = softmax(S_a): computed from log-softmax (log w = S − log Σ exp S), never
    log(softmax). Shared by :func:`rows_loss` (h heads) and the blend loss (h = 1).

    Parameters
    ----------
    S : ndarray of shape (h, b, n)
        Logits (scores / τ) of the b = s1 − s0 queries, each row shifted by its max.
    E : ndarray of shape (h, b, n)
        exp(S); overwritten with dL/dS_a, L being the mean loss over all ``m`` queries:
        (w_a · p_a / (h w̄(T)) − 1_T w_a / (h w̄(T))) / m.
    targets : (indptr, rows)
        CSR target rows of all m queries.
    s0, s1, m : int

    Returns
    -------
    float
        Σ over the chunk's queries of −log w̄(T_i) (not yet divided by m).
    """
    indptr, cols = targets
    heads = S.shape[0]
    counts = np.diff(indptr[s0 : s1 + 1])  # (b,)
    starts = indptr[s0:s1] - indptr[s0]  # (b,)
    tq = np.repeat(np.arange(s1 - s0), counts)  # (t,)  query of each target
    tc = cols[indptr[s0] : indptr[s1]]  # (t,)  row of each target
    log_se = np.log(E.sum(axis=2))  # (h, b)  log Σ_j exp(S)
    logw_t = S[:, tq, tc] - log_se[:, tq]  # (h, t)  log weight of each target, per head
    mx, e, p_a = target_mass(logw_t, starts, tq)  # (b,), (h, t), (h, b)
    p_sum = p_a.sum(axis=0)  # (b,)  h · w̄(T) · e^{-mx}
    r = p_a / p_sum / np.exp(log_se)  # (h, b)  p_a / (h p) / Σ exp(S_a)
    E *= (r / m)[:, :, None]  # (h, b, n)  r_a w_a / m
    E[:, tq, tc] -= e / (m * p_sum[tq])  # (h, t)  minus w_aj / (h p m) at the targets
    return -float((mx + np.log(p_sum) - math.log(heads)).sum())


def rows_loss(
    X: np.ndarray,
    K: np.ndarray,
    targets: tuple[np.ndarray, np.ndarray],
    W_Q: np.ndarray,
    W_K: np.ndarray,
    log_tau: float,
    *,
    heads: int = 1,
    batch: int | None = None,
    b_Q: np.ndarray | None = None,
    b_K: np.ndarray | None = None,
) -> tuple[float, dict[str, np.ndarray | float]]:
    """Retrieval loss −log Σ_{j∈T_i} w̄_ij (mean over queries) and its gradient.

    w̄ is the mean over heads of the heads' softmax weights over the *whole*
    table; with one target per query and one head this is InfoNCE with every
    other row as a negative.

    Parameters
    ----------
    X : ndarray of shape (m, d)
        Queries (float64).
    K : ndarray of shape (n, d)
        Raw keys (float64).
    targets : (indptr, rows)
        CSR target rows: query i targets ``rows[indptr[i]:indptr[i+1]]`` (non-empty,
        no duplicates); indptr (m + 1,), rows (t,).
    W_Q, W_K : ndarray of shape (d, d_k)
    log_tau : float
    heads : int
    batch : int, optional
        Queries per chunk; default keeps the (batch, n) matrices under FIT_BYTES.
    b_Q, b_K : ndarray of shape (d_k,), optional
        Biases: queries x W_Q + b_Q, keys k W_K + b_K.

    Returns
    -------
    loss : float
    grads : dict
        ``W_Q`` (d, d_k), ``W_K`` (d, d_k), ``log_tau`` (float), and ``b_Q``, ``b_K``
        (d_k,) when given (b_K's is 0 up to rounding: it shifts a query's scores evenly).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.eye(2); tgt = (np.array([0, 1, 2]), np.array([1, 0]))
    >>> loss, g = rows_loss(X, X, tgt, np.eye(2), np.eye(2), 0.0)
    >>> round(loss, 4), sorted(g)
    (1.3133, ['W_K', 'W_Q', 'log_tau'])
    """
    m, n, d, d_k = X.shape[0], K.shape[0], X.shape[1], W_Q.shape[1]
    dh = d_k // heads
    beta = math.exp(-log_tau)
    b = batch or _batch_size(n, 2 * heads + 1)
    # One head with d_k >= d: accumulate A = Σ_batches Xᵀ G (d, n) and finish with
    # C = A K, which saves one (m × n × d_k) GEMM against dQ = G K_p, dK_p = Gᵀ Q.
    reassoc = heads == 1 and d_k >= d and b_Q is None and b_K is None
    kp = K @ W_K if b_K is None else K @ W_K + b_K  # (n, d_k)
    acc = np.zeros((d, n)) if reassoc else np.zeros_like(kp)  # (d, n) A, or (n, d_k) dL/dK_p
    g_q = np.zeros_like(W_Q)  # (d, d_k)
    g_bq = np.zeros(d_k)  # (d_k,)
    g_tau = 0.0
    total = 0.0
    for s0, s1 in _chunks(m, b):
        xb = X[s0:s1]  # (b, d)
        qb = xb @ W_Q if b_Q is None else xb @ W_Q + b_Q  # (b, d_k)
        S = np.empty((heads, s1 - s0, n))  # (h, b, n)  scores / τ, shifted by their row max
        E = np.empty_like(S)  # (h, b, n)  exp(S)
        for a in range(heads):
            sl = slice(a * dh, (a + 1) * dh)
            np.matmul(qb[:, sl], kp[:, sl].T, out=S[a])  # (b, n)
            S[a] *= beta
            _shift_exp(S[a], out=E[a])
        total += targets_nll(S, E, targets, s0, s1, m)  # E is now G = dL/dS
        dq = np.empty_like(qb)  # (b, d_k)  unused when reassoc
        for a in range(heads):
            sl = slice(a * dh, (a + 1) * dh)
            G = E[a]  # (b, n)
            g_tau -= float(np.vdot(G, S[a]))  # dS/dlog τ = −S (rows of G sum to 0: the shift is harmless)
            if reassoc:
                acc += xb.T @ G  # (d, n)
            else:
                np.matmul(G, kp[:, sl], out=dq[:, sl])  # (b, dh)
                acc[:, sl] += G.T @ qb[:, sl]  # (n, dh)
        if not reassoc:
            g_q += xb.T @ dq  # (d, d_k)
            g_bq += dq.sum(axis=0)  # (d_k,)
    if reassoc:
        C = acc @ K  # (d, d)  Xᵀ G K
        g_q = C @ W_K  # (d, d_k)
        g_k = C.T @ W_Q  # (d, d_k)
    else:
        g_k = K.T @ acc  # (d, d_k)
    g_q *= beta
    g_k *= beta
    grads: dict[str, np.ndarray | float] = {"W_Q": g_q, "W_K": g_k, "log_tau": g_tau}
    if b_Q is not None:
        grads["b_Q"] = g_bq * beta  # (d_k,)
    if b_K is not None:
        grads["b_K"] = acc.sum(axis=0) * beta  # (d_k,)  Σ_j dL/dk'_j
    return total / m, grads


class Extras(TypedDict, total=False):
    """The optional parameters of a projection, as :func:`values_loss` takes them."""

    b_Q: np.ndarray | None
    b_K: np.ndarray | None
    b_V: np.ndarray | None
    W_O: np.ndarray | None
    b_O: np.ndarray | None


def as_extras(ex: dict[str, np.ndarray | None]) -> Extras:
    """``ex`` with the keys of :class:`Extras` only (for ``values_loss(..., **as_extras(ex))``)."""
    return Extras(b_Q=ex.get("b_Q"), b_K=ex.get("b_K"), b_V=ex.get("b_V"), W_O=ex.get("W_O"), b_O=ex.get("b_O"))


def values_loss(
    X: np.ndarray,
    K: np.ndarray,
    V: np.ndarray,
    Y: np.ndarray,
    W_Q: np.ndarray,
    W_K: np.ndarray,
    W_V: np.ndarray,
    log_tau: float,
    *,
    heads: int = 1,
    batch: int | None = None,
    b_Q: np.ndarray | None = None,
    b_K: np.ndarray | None = None,
    b_V: np.ndarray | None = None,
    W_O: np.ndarray | None = None,
    b_O: np.ndarray | None = None,
) -> tuple[float, dict[str, np.ndarray | float]]:
    """Mean squared error between the soft answers and target vectors, and its gradient.

    The soft answer of query i is the concatenation over heads of
    softmax(q_a K_aᵀ / τ) V_a (attention as kernel regression), then W_O (+ b_O)
    when given; q = x W_Q + b_Q, K = k W_K + b_K, V = v W_V + b_V.

    Parameters
    ----------
    X : ndarray of shape (m, d)
    K : ndarray of shape (n, d)
    V : ndarray of shape (n, d_v)
    Y : ndarray of shape (m, d_o)
        Target answers (d_o = d_out without W_O).
    W_Q, W_K : ndarray of shape (d, d_k)
    W_V : ndarray of shape (d_v, d_out)
    log_tau : float
    heads : int
    batch : int, optional
    b_Q, b_K : ndarray of shape (d_k,), optional
    b_V : ndarray of shape (d_out,), optional
    W_O : ndarray of shape (d_out, d_o), optional
    b_O : ndarray of shape (d_o,), optional
        Needs W_O.

    Returns
    -------
    loss : float
        mean over all m × d_o entries of the squared error.
    grads : dict
        ``W_Q``, ``W_K`` (d, d_k), ``W_V`` (d_v, d_out), ``log_tau`` (float), and the
        gradient of each optional parameter given, under its name.

    Examples
    --------
    >>> X = np.eye(2); V = np.array([[0.0], [1.0]])
    >>> loss, g = values_loss(X, X, V, V, np.eye(2), np.eye(2), np.eye(1), -5.0)  # τ = e⁻⁵
    >>> loss < 1e-6, g["W_V"].shape
    (True, (1, 1))
    """
    m, n, d_k = X.shape[0], K.shape[0], W_Q.shape[1]
    d_out = W_V.shape[1]
    d_o = d_out if W_O is None else W_O.shape[1]
    dh, dvh = d_k // heads, d_out // heads
    beta = math.exp(-log_tau)
    coef = 2.0 / (m * d_o)
    b = batch or _batch_size(n, heads + 2)
    kp = K @ W_K if b_K is None else K @ W_K + b_K  # (n, d_k)
    vp = V @ W_V if b_V is None else V @ W_V + b_V  # (n, d_out)
    d_kp = np.zeros_like(kp)  # (n, d_k)
    d_vp = np.zeros_like(vp)  # (n, d_out)
    g_q = np.zeros_like(W_Q)  # (d, d_k)
    g_bq = np.zeros(d_k)  # (d_k,)
    g_o = None if W_O is None else np.zeros_like(W_O)  # (d_out, d_o)
    g_bo = np.zeros(d_o)  # (d_o,)
    g_tau = 0.0
    total = 0.0
    for s0, s1 in _chunks(m, b):
        xb = X[s0:s1]  # (b, d)
        qb = xb @ W_Q if b_Q is None else xb @ W_Q + b_Q  # (b, d_k)
        S = np.empty((heads, s1 - s0, n))  # (h, b, n)  scores / τ
        P = np.empty_like(S)  # (h, b, n)  weights
        O = np.empty((s1 - s0, d_out))  # (b, d_out)  the heads' answers, side by side
        for a in range(heads):
            sl, vsl = slice(a * dh, (a + 1) * dh), slice(a * dvh, (a + 1) * dvh)
            np.matmul(qb[:, sl], kp[:, sl].T, out=S[a])  # (b, n)
            S[a] *= beta
            _shift_exp(S[a], out=P[a])  # the shift: rows of G sum to 0, so g_tau is unchanged
            P[a] /= P[a].sum(axis=1, keepdims=True)
            np.matmul(P[a], vp[:, vsl], out=O[:, vsl])  # (b, dvh)
        R = (O if W_O is None else O @ W_O) - Y[s0:s1]  # (b, d_o)  residual
        if b_O is not None:
            R += b_O
        total += float(np.vdot(R, R))
        R *= coef  # (b, d_o)  dL/dŶ
        g_bo += R.sum(axis=0)  # (d_o,)
        if W_O is None:
            dO = R  # (b, d_out)
        else:
            g_o += O.T @ R  # (d_out, d_o)
            dO = R @ W_O.T  # (b, d_out)
        dq = np.empty_like(qb)  # (b, d_k)
        for a in range(heads):
            sl, vsl = slice(a * dh, (a + 1) * dh), slice(a * dvh, (a + 1) * dvh)
            d_vp[:, vsl] += P[a].T @ dO[:, vsl]  # (n, dvh)
            G = dO[:, vsl] @ vp[:, vsl].T  # (b, n)  dL/dP_a
            G -= np.einsum("ij,ij->i", G, P[a])[:, None]
            G *= P[a]  # (b, n)  dL/dS_a: softmax backward
            g_tau -= float(np.vdot(G, S[a]))
            np.matmul(G, kp[:, sl], out=dq[:, sl])  # (b, dh)
            d_kp[:, sl] += G.T @ qb[:, sl]  # (n, dh)
        g_q += xb.T @ dq  # (d, d_k)
        g_bq += dq.sum(axis=0)  # (d_k,)
    g_q *= beta
    g_k = K.T @ d_kp  # (d, d_k)
    g_k *= beta
    g_v = V.T @ d_vp  # (d_v, d_out)
    grads: dict[str, np.ndarray | float] = {"W_Q": g_q, "W_K": g_k, "W_V": g_v, "log_tau": g_tau}
    for name, given, g in (
        ("b_Q", b_Q, g_bq * beta),
        ("b_K", b_K, d_kp.sum(axis=0) * beta),
        ("b_V", b_V, d_vp.sum(axis=0)),
        ("W_O", W_O, g_o),
        ("b_O", b_O, g_bo),
    ):
        if given is not None and g is not None:
            grads[name] = g
    return total / (m * d_o), grads
