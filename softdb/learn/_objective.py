"""A projection's learned parts as one flat vector θ: the objective :func:`fit_arrays` minimises.

The learned parts (full matrices, tied W_Q = W_K, low-rank updates W₀ + A Bᵀ,
log τ) are named blocks of a :class:`softdb.learn._optimize.Packer`; the
objective at θ is the loss (:func:`rows_loss` or :func:`values_loss`) plus
λ Σ ‖W − W₀‖², with its gradient pulled back to θ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from softdb.learn._losses import rows_loss, values_loss
from softdb.learn._optimize import Packer, ridge

__all__ = ["Objective"]


class Objective:
    """Flat-vector view of a projection's learned parts, with regularisation.

    ``objective(theta, X, target)`` returns ``(loss + λ Σ‖W − W₀‖², gradient)``
    for ``scipy.optimize.minimize(jac=True)``. ``target`` is CSR row targets
    (loss="rows") or a (m, d_out) array (loss="values").
    """

    def __init__(
        self,
        loss: str,
        K: np.ndarray,
        V: np.ndarray | None,
        W_Q: np.ndarray,
        W_K: np.ndarray,
        W_V: np.ndarray | None,
        log_tau: float,
        *,
        heads: int = 1,
        tied: bool = False,
        learn: Sequence[str] = ("q", "k", "v"),
        learn_temperature: bool = False,
        rank: int | None = None,
        reg: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.loss, self.K, self.V, self.heads, self.tied = loss, K, V, heads, tied
        self.reg, self.rank = float(reg), rank
        self.W_Q0, self.W_K0 = W_Q, W_K
        self.base = {"q": W_Q, "k": W_K, "v": W_V}  # starting matrices W₀
        self.log_tau0 = float(log_tau)
        parts = [p for p in learn if p in ("q", "k") or (p == "v" and loss == "values")]
        if tied and ("q" in parts or "k" in parts):
            parts = ["q"] + [p for p in parts if p == "v"]
        self.parts = parts
        self.learn_tau = learn_temperature
        rng = np.random.default_rng(seed)
        start: dict[str, np.ndarray] = {}
        for p in parts:
            r_, c_ = self._base(p).shape
            if rank is None:
                start[p] = np.zeros((r_, c_))  # offsets from W₀
            else:  # LoRA init: A random, B = 0
                start[p + ".A"] = rng.standard_normal(r_ * rank).reshape(r_, rank) / np.sqrt(r_)
                start[p + ".B"] = np.zeros((c_, rank))
        if learn_temperature:
            start["tau"] = np.zeros(1)
        if not start:
            raise ValueError(
                f"nothing to fit: learn={tuple(learn)} selects no matrix that loss={loss!r} depends on "
                "and learn_temperature=False; hint: loss='rows' fits W_Q and W_K, loss='values' also W_V"
            )
        self.packer = Packer(start)
        self.x0 = self.packer.x0  # (p,)

    def _base(self, part: str) -> np.ndarray:
        W0 = self.base[part]
        if W0 is None:
            raise ValueError(f"W_{part.upper()} is not set; hint: attach the projection to a table first")
        return W0

    def weights(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, float]:
        """(W_Q, W_K, W_V, log τ) at ``theta``."""
        blk = self.packer.split(theta)
        moved = {}
        for p in self.parts:
            delta = blk[p] if self.rank is None else blk[p + ".A"] @ blk[p + ".B"].T  # (rows, cols)
            moved[p] = self._base(p) + delta
        W_Q = moved.get("q", self.W_Q0)  # (d, d_k)
        W_K = W_Q if self.tied else moved.get("k", self.W_K0)  # (d, d_k)
        log_tau = self.log_tau0 + (float(blk["tau"][0]) if self.learn_tau else 0.0)
        return W_Q, W_K, moved.get("v", self.base["v"]), log_tau

    def evaluate(self, theta: np.ndarray, X: np.ndarray, target: Any) -> tuple[float, np.ndarray, float]:
        """(loss + penalty, gradient (p,), loss without the penalty) at ``theta``."""
        W_Q, W_K, W_V, log_tau = self.weights(theta)
        if self.loss == "rows":
            loss, g = rows_loss(X, self.K, target, W_Q, W_K, log_tau, heads=self.heads)
        else:
            if self.V is None or W_V is None:
                raise ValueError("loss='values' needs the table's values and W_V")
            loss, g = values_loss(X, self.K, self.V, target, W_Q, W_K, W_V, log_tau, heads=self.heads)
        grads: dict[str, Any] = {"q": g["W_Q"], "k": g["W_K"], "v": g.get("W_V")}
        if self.tied:
            grads["q"] = grads["q"] + grads["k"]
        blk = self.packer.split(theta)
        data_loss = float(loss)
        out: dict[str, Any] = {}
        now = {"q": W_Q, "k": W_K, "v": W_V}
        for p in self.parts:
            W = now[p]
            if W is None:  # W_V of loss="rows": never a learned part
                continue
            penalty, g_pen = ridge(W, self._base(p), self.reg)
            gw = grads[p] + g_pen  # (rows, cols)
            if self.rank is None:
                out[p] = gw
            else:
                A, B = blk[p + ".A"], blk[p + ".B"]  # (rows, r), (cols, r)
                out[p + ".A"], out[p + ".B"] = gw @ B, gw.T @ A
            loss += penalty
        out["tau"] = g["log_tau"]
        return float(loss), self.packer.join(out), data_loss

    def __call__(self, theta: np.ndarray, X: np.ndarray, target: Any) -> tuple[float, np.ndarray]:
        loss, grad, _ = self.evaluate(theta, X, target)
        return loss, grad
