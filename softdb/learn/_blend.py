"""Fitting a blend of score blocks: block weights, τ and optionally W_Q on the dense block.

A hybrid table scores row j for query i as Σ_b β_b s^b_ij, one score per key
block (block 0 dense, ``(x_i W_Q)·k_j``; the others fixed, e.g. BM25), and its
weights are softmax(score / τ). :func:`blend_loss` is the retrieval loss
−log Σ_{j∈T_i} w_ij (mean over queries; the multi-target core it shares with
``rows_loss``, :func:`softdb.learn._losses.targets_nll`) with its analytic
gradient in every parameter, beside it (see STYLE.md); :class:`BlendObjective`
packs the parameters chosen by ``learn`` into one vector, and :func:`fit_blend`
runs the shared L-BFGS driver (:mod:`softdb.learn._optimize`) on it.

β and τ are only defined up to a common scale (score / τ is what counts), so
the weight of block 0 is never learned: ``learn`` picks from "tau" (log τ),
"weights" (β_1, …) and "q" (W_Q, regularised by λ‖W_Q − W₀‖²).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from softdb.learn._losses import FIT_BYTES, _batch_size, _chunks, _shift_exp, targets_nll
from softdb.learn._optimize import Packer, lbfgs, ridge

__all__ = ["LEARNABLE", "BlendFit", "BlendObjective", "BlendParams", "blend_loss", "fit_blend"]

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
        s: Any = q[s0:s1] @ k.T  # (b, n)  sparse · sparseᵀ, or dense
        out.append(np.asarray(s, np.float64) if isinstance(s, np.ndarray) else s.toarray())
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
    m, n = X.shape[0], K.shape[0]
    beta = math.exp(-log_tau)
    nb = 1 + len(fixed_k)
    b = batch or _batch_size(n, nb + 2, FIT_BYTES)
    g_w = np.zeros(nb)  # (n_blocks,)
    g_tau = 0.0
    acc = None if W_Q is None else np.zeros((X.shape[1], n))  # (d, n)  Σ Xᵀ G
    total = 0.0
    for s0, s1 in _chunks(m, b):
        xb = X[s0:s1]  # (b, d)
        dense = (xb if W_Q is None else xb @ W_Q) @ K.T  # (b, n)
        if cache is not None and (s0, s1) in cache:
            fixed = cache[(s0, s1)]
        else:
            fixed = _fixed_scores(list(fixed_q), list(fixed_k), s0, s1)  # nb - 1 × (b, n)
            if cache is not None:
                cache[(s0, s1)] = fixed
        S = weights[0] * dense  # (b, n)
        for w, s in zip(weights[1:], fixed):
            S += w * s
        S *= beta  # (b, n)  logits
        G = _shift_exp(S)  # (b, n)  the shift: rows of G sum to 0, so no gradient changes
        total += targets_nll(S[None], G[None], targets, s0, s1, m)  # G is now dL/dlogits
        g_tau -= float(np.vdot(G, S))  # dlogits/dlog τ = −logits (the shift is harmless)
        for i, s in enumerate([dense, *fixed]):
            g_w[i] += beta * float(np.vdot(G, s))
        if acc is not None:
            acc += xb.T @ G  # (d, n)
    grads: dict[str, np.ndarray | float] = {"weights": g_w, "log_tau": g_tau}
    if acc is not None:
        grads["W_Q"] = beta * weights[0] * (acc @ K)  # (d, d)
    return total / m, grads


class BlendObjective:
    """The blend loss (+ λ‖W_Q − W₀‖² with "q") as a function of one flat vector θ.

    θ holds the parts chosen by ``learn``, in the order "tau" (an offset of
    log τ), "weights" (β_1, …; β_0 stays fixed), "q" (an offset of W_Q).
    ``objective(θ)`` returns ``(loss, gradient)`` for ``minimize(jac=True)``.
    """

    def __init__(
        self,
        X: np.ndarray,
        K: np.ndarray,
        fixed_q: Sequence,
        fixed_k: Sequence,
        targets: tuple[np.ndarray, np.ndarray],
        start: BlendParams,
        learn: Sequence[str],
        reg: float = 0.0,
        *,
        batch: int | None = None,
    ) -> None:
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
        d = X.shape[1]
        self.q0 = np.eye(d) if start.W_Q is None else np.asarray(start.W_Q, np.float64)  # (d, d)
        self.apply_q = "q" in self.learn or not np.array_equal(self.q0, np.eye(d))
        first = {"tau": np.zeros(1), "weights": self.w0[1:], "q": np.zeros((d, d))}
        self.packer = Packer({p: first[p] for p in self.learn})
        self.x0 = self.packer.x0  # (p,)
        self.data = (X, K, fixed_q, fixed_k, targets)
        self.reg, self.batch = float(reg), batch
        self.cache: dict = {}  # the fixed blocks' score chunks: computed once per fit

    def params(self, theta: np.ndarray) -> tuple[np.ndarray, float, np.ndarray | None]:
        """(β (n_blocks,), log τ, W_Q (d, d) or None for the identity) at θ."""
        blk = self.packer.split(theta)
        w = self.w0.copy()  # (n_blocks,)
        if "weights" in blk:
            w[1:] = blk["weights"]
        log_tau = self.log_tau0 + float(blk["tau"][0]) if "tau" in blk else self.log_tau0
        q = self.q0 + blk["q"] if "q" in blk else self.q0  # (d, d)
        return w, log_tau, q if self.apply_q else None

    def evaluate(self, theta: np.ndarray) -> tuple[float, np.ndarray, float]:
        """(loss + penalty, gradient (p,), loss without the penalty) at θ."""
        w, log_tau, q = self.params(theta)
        loss, g = blend_loss(*self.data, w, log_tau, q, batch=self.batch, cache=self.cache)
        data = loss
        grads = {"tau": g["log_tau"], "weights": np.asarray(g["weights"])[1:]}
        if "q" in self.packer and q is not None:
            penalty, g_pen = ridge(q, self.q0, self.reg)
            loss += penalty
            grads["q"] = g["W_Q"] + g_pen
        return loss, self.packer.join(grads), data

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        loss, grad, _ = self.evaluate(theta)
        return loss, grad


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
    obj = BlendObjective(X, K, fixed_q, fixed_k, targets, start, learn, reg)
    losses: list[float] = []

    def step(theta: np.ndarray, loss: float) -> bool:
        losses.append(loss)
        return False

    sol = lbfgs(obj.evaluate, obj.x0, max_iter=max_iter, step=step)
    w, lt, q = obj.params(sol.theta)
    params = BlendParams(tuple(float(v) for v in w), math.exp(lt), q)
    return BlendFit(
        params, tuple(losses), sol.iterations, sol.converged, time.perf_counter() - t0, obj.learn, float(reg)
    )
