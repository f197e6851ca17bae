"""Fitting a blend of score blocks: block weights, τ and optionally W_Q on the dense block.

A hybrid table scores row j for query i as Σ_b β_b s^b_ij, one score per key
block (block 0 dense, ``(x_i W_Q)·k_j``; the others fixed, e.g. BM25), and its
weights are softmax(score / τ). :func:`blend_loss` is the retrieval loss
−log Σ_{j∈T_i} w_ij (mean over queries) with its analytic gradient in every
parameter, beside it (see STYLE.md); :func:`fit_blend` packs the parameters
chosen by ``learn`` into one vector and runs scipy's L-BFGS-B.

β and τ are only defined up to a common scale (score / τ is what counts), so
the weight of block 0 is never learned: ``learn`` picks from "tau" (log τ),
"weights" (β_1, …) and "q" (W_Q, regularised by λ‖W_Q − W₀‖²).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize

from softdb.learn._losses import FIT_BYTES, _batch_size

__all__ = ["LEARNABLE", "BlendFit", "BlendParams", "blend_loss", "fit_blend"]

LEARNABLE = ("tau", "weights", "q")


@dataclass(frozen=True)
class BlendParams:
    """Weights of each block, τ and the dense block's W_Q (None: identity)."""

    weights: tuple[float, ...]
    temperature: float
    W_Q: np.ndarray | None = None


@dataclass(frozen=True)
class BlendFit:
    """What :func:`fit_blend` did: the result, the loss before and after, iterations."""

    params: BlendParams
    loss_history: tuple[float, ...]
    iterations: int
    converged: bool
    seconds: float
    learn: tuple[str, ...]
    reg: float


def _fixed_scores(Q: list, K: list, s0: int, s1: int) -> list[np.ndarray]:
    """(b, n) float64 scores of queries s0:s1 against each fixed (non-dense) block."""
    out = []
    for q, k in zip(Q, K):
        s = q[s0:s1] @ k.T  # (b, n)  sparse · sparseᵀ, or dense
        out.append(s.toarray() if sp.issparse(s) else np.asarray(s, np.float64))
    return [np.asarray(s, np.float64) for s in out]


def blend_loss(
    X: np.ndarray,
    K: np.ndarray,
    fixed_q: Sequence,
    fixed_k: Sequence,
    targets: tuple[np.ndarray, np.ndarray],
    weights: np.ndarray,
    log_tau: float,
    W_Q: np.ndarray | None = None,
    *,
    batch: int | None = None,
    cache: dict | None = None,
) -> tuple[float, dict[str, np.ndarray | float]]:
    """Retrieval loss of a block blend and its gradient.

    Parameters
    ----------
    X : ndarray of shape (m, d)
        Dense queries (float64; unit rows for a cosine table).
    K : ndarray of shape (n, d)
        Dense keys (block 0).
    fixed_q, fixed_k : sequences of matrices (m, d_b) and (n, d_b)
        The other blocks' queries and keys (scipy.sparse CSR or dense).
    targets : (indptr, rows)
        CSR target rows of each query, as in :func:`softdb.learn._projection.rows_loss`.
    weights : ndarray of shape (n_blocks,)
        β_b; block 0 first.
    log_tau : float
    W_Q : ndarray of shape (d, d), optional
        Query projection of the dense block (None: identity).
    batch : int, optional
        Queries per chunk; default keeps the (batch, n) float64 matrices under FIT_BYTES.
    cache : dict, optional
        Keeps the fixed blocks' score chunks between calls (same X and blocks).

    Returns
    -------
    loss : float
    grads : dict
        ``weights`` (n_blocks,), ``log_tau`` (float), ``W_Q`` (d, d) when W_Q is given.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> X = np.eye(2); Ks = sp.csr_matrix(3 * np.eye(2))  # the sparse block favours the targets
    >>> tgt = (np.array([0, 1, 2]), np.array([0, 1]))  # query i targets row i
    >>> loss, g = blend_loss(X, X, [sp.csr_matrix(X)], [Ks], tgt, np.array([1.0, 0.5]), 0.0)
    >>> bool(g["weights"][1] < 0), bool(g["log_tau"] > 0)  # more sparse weight, lower τ: lower loss
    (True, True)
    """
    indptr, cols = targets
    m, n = X.shape[0], K.shape[0]
    beta = math.exp(-log_tau)
    nb = 1 + len(fixed_k)
    b = batch or _batch_size(n, nb + 2, FIT_BYTES)
    kp = K  # (n, d)
    g_w = np.zeros(nb)  # (n_blocks,)
    g_tau = 0.0
    acc = None if W_Q is None else np.zeros((X.shape[1], n))  # (d, n)  Σ Xᵀ G
    total = 0.0
    for s0 in range(0, m, b):
        s1 = min(m, s0 + b)
        xb = X[s0:s1]  # (b, d)
        dense = (xb if W_Q is None else xb @ W_Q) @ kp.T  # (b, n)
        key = (s0, s1)
        if cache is not None and key in cache:
            fixed = cache[key]
        else:
            fixed = _fixed_scores(list(fixed_q), list(fixed_k), s0, s1)  # nb - 1 × (b, n)
            if cache is not None:
                cache[key] = fixed
        blocks = [dense, *fixed]
        S = weights[0] * dense  # (b, n)
        for w, s in zip(weights[1:], fixed):
            S += w * s
        S *= beta  # (b, n)  logits
        S -= S.max(axis=1, keepdims=True)  # shift: rows of G sum to 0, so no gradient changes
        E = np.exp(S)  # (b, n)
        se = E.sum(axis=1)  # (b,)
        counts = np.diff(indptr[s0 : s1 + 1])  # (b,)
        starts = indptr[s0:s1] - indptr[s0]  # (b,)
        tq = np.repeat(np.arange(s1 - s0), counts)  # (t,)
        tc = cols[indptr[s0] : indptr[s1]]  # (t,)
        lt = S[tq, tc]  # (t,)  the targets' shifted logits
        mt = np.maximum.reduceat(lt, starts)  # (b,)  their max per query: exp(lt - mt) cannot all underflow
        et = np.exp(lt - mt[tq])  # (t,)
        p = np.add.reduceat(et, starts)  # (b,)  Σ_T exp(S − mt)
        total -= float((mt + np.log(p) - np.log(se)).sum())  # Σ log Σ_T w
        G = E / (m * se)[:, None]  # (b, n)  w / m
        G[tq, tc] -= et / (m * p[tq])  # (b, n)  dL/dlogits = (w − 1_T w / Σ_T w) / m
        g_tau -= float(np.vdot(G, S))  # dlogits/dlog τ = −logits (the shift is harmless)
        for i, s in enumerate(blocks):
            g_w[i] += beta * float(np.vdot(G, s))
        if acc is not None:
            acc += xb.T @ G  # (d, n)
    grads: dict[str, np.ndarray | float] = {"weights": g_w, "log_tau": g_tau}
    if acc is not None:
        grads["W_Q"] = beta * weights[0] * (acc @ kp)  # (d, d)
    return total / m, grads


class _Packing:
    """Flat float64 vector ↔ (weights, log τ, W_Q) for the parts in ``learn``."""

    def __init__(self, start: BlendParams, learn: Sequence[str], d: int) -> None:
        bad = [p for p in learn if p not in LEARNABLE]
        if bad or not learn:
            raise ValueError(
                f"learn must be a non-empty subset of {list(LEARNABLE)}, got {list(learn)}; "
                "hint: e.g. learn=('tau', 'weights')"
            )
        self.learn = tuple(p for p in LEARNABLE if p in learn)
        self.w0 = np.asarray(start.weights, np.float64)  # (n_blocks,)
        if "weights" in self.learn and len(self.w0) < 2:
            raise ValueError("learn='weights' needs at least two blocks (block 0's weight is fixed)")
        self.log_tau0 = math.log(start.temperature)
        self.q0 = np.eye(d) if start.W_Q is None else np.asarray(start.W_Q, np.float64)  # (d, d)
        self.d = d
        parts = [np.zeros(1)] if "tau" in self.learn else []
        parts += [self.w0[1:]] if "weights" in self.learn else []
        parts += [np.zeros(d * d)] if "q" in self.learn else []
        self.x0 = np.concatenate(parts)  # (p,)

    def unpack(self, theta: np.ndarray) -> tuple[np.ndarray, float, np.ndarray | None]:
        at, w, lt, q = 0, self.w0.copy(), self.log_tau0, None
        if "tau" in self.learn:
            lt, at = self.log_tau0 + float(theta[0]), 1
        if "weights" in self.learn:
            w[1:] = theta[at : at + len(w) - 1]
            at += len(w) - 1
        if "q" in self.learn:
            q = self.q0 + theta[at:].reshape(self.d, self.d)  # (d, d)
        elif not np.array_equal(self.q0, np.eye(self.d)):
            q = self.q0
        return w, lt, q

    def pack_grad(self, g: dict, q: np.ndarray | None, reg: float) -> np.ndarray:
        parts = [np.array([g["log_tau"]])] if "tau" in self.learn else []
        parts += [g["weights"][1:]] if "weights" in self.learn else []
        if "q" in self.learn:
            parts.append((g["W_Q"] + 2 * reg * (q - self.q0)).ravel())
        return np.concatenate(parts)


def fit_blend(
    X: np.ndarray,
    K: np.ndarray,
    fixed_q: Sequence,
    fixed_k: Sequence,
    targets: tuple[np.ndarray, np.ndarray],
    start: BlendParams,
    *,
    learn: Sequence[str] = ("tau", "weights"),
    reg: float = 0.0,
    max_iter: int = 200,
) -> BlendFit:
    """Fit the parts of a blend named in ``learn`` by full-batch L-BFGS (float64).

    Parameters
    ----------
    X, K, fixed_q, fixed_k, targets
        As in :func:`blend_loss`.
    start : BlendParams
        Starting weights (block 0's stays fixed), τ and W_Q.
    learn : subset of {"tau", "weights", "q"}
    reg : float
        λ of λ‖W_Q − W₀‖² (only with "q").
    max_iter : int

    Returns
    -------
    BlendFit

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> rng = np.random.default_rng(0)
    >>> K = rng.standard_normal((20, 4)); X = K[:10] + rng.standard_normal((10, 4))
    >>> Ks = sp.csr_matrix(np.eye(20)); Xs = sp.csr_matrix(np.eye(20)[:10])  # an exact-match block
    >>> tgt = (np.arange(11), np.arange(10))
    >>> fit = fit_blend(X, K, [Xs], [Ks], tgt, BlendParams((1.0, 0.0), 1.0))
    >>> fit.params.weights[1] > 1, fit.loss_history[-1] < fit.loss_history[0]
    (True, True)
    """
    t0 = time.perf_counter()
    pk = _Packing(start, learn, X.shape[1])
    cache: dict = {}
    losses: list[float] = []

    last: list = [None, 0.0]  # theta and data loss (without λ) of the latest evaluation

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, lt, q = pk.unpack(theta)
        loss, g = blend_loss(X, K, fixed_q, fixed_k, targets, w, lt, q, cache=cache)
        last[:] = [theta.copy(), loss]
        if "q" in pk.learn:
            loss += reg * float(np.vdot(q - pk.q0, q - pk.q0))
        return loss, pk.pack_grad(g, q, reg)

    def data_loss(theta: np.ndarray) -> float:
        if last[0] is None or not np.array_equal(last[0], theta):
            objective(theta)  # L-BFGS's accepted point is usually its latest evaluation
        return float(last[1])

    losses.append(data_loss(pk.x0))
    n_iter = 0

    def callback(intermediate_result):  # noqa: ANN001  scipy's keyword
        nonlocal n_iter
        n_iter += 1
        losses.append(data_loss(intermediate_result.x))

    res = minimize(objective, pk.x0, jac=True, method="L-BFGS-B", callback=callback, options={"maxiter": max_iter})
    w, lt, q = pk.unpack(res.x)
    params = BlendParams(tuple(float(v) for v in w), math.exp(lt), q)
    return BlendFit(params, tuple(losses), n_iter, bool(res.success), time.perf_counter() - t0, pk.learn, float(reg))
