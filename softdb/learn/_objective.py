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

from softdb.learn._losses import as_extras, rows_loss, values_loss
from softdb.learn._optimize import Packer, ridge

__all__ = ["Objective"]


_EXTRAS = ("b_Q", "b_K", "b_V", "W_O", "b_O")  # optional parameters, by their own names
_GRAD_NAME = {"q": "W_Q", "k": "W_K", "v": "W_V"}
_ROWS_PARTS = ("q", "k", "b_Q", "b_K")  # what loss="rows" depends on
_MATRICES = ("q", "k", "v", "W_O")  # low-rank updates apply to these; biases are learned whole


class Objective:
    """Flat-vector view of a projection's learned parts, with regularisation.

    ``objective(theta, X, target)`` returns ``(loss + λ Σ‖W − W₀‖², gradient)``
    for ``scipy.optimize.minimize(jac=True)``. ``target`` is CSR row targets
    (loss="rows") or a (m, d_o) array (loss="values"). ``extras`` holds the optional
    parameters (b_Q, b_K, b_V, W_O, b_O; None when absent); a learned one that is
    absent starts from 0 (W_O: the identity).
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
        extras: dict[str, np.ndarray | None] | None = None,
    ) -> None:
        self.loss, self.K, self.V, self.heads, self.tied = loss, K, V, heads, tied
        self.reg, self.rank = float(reg), rank
        self.W_Q0, self.W_K0 = W_Q, W_K
        self.fixed: dict[str, Any] = {name: (extras or {}).get(name) for name in _EXTRAS}
        self.base: dict[str, Any] = {"q": W_Q, "k": W_K, "v": W_V, **self.fixed}  # starting values W₀
        self.log_tau0 = float(log_tau)
        parts = [p for p in learn if p in _ROWS_PARTS or (loss == "values" and p in ("v", *_EXTRAS))]
        if tied:  # one shared matrix (and bias) for queries and keys
            parts = [{"k": "q", "b_K": "b_Q"}.get(p, p) for p in parts]
            parts = list(dict.fromkeys(parts))
        self.parts = parts
        self.learn_tau = learn_temperature
        for p in parts:
            if self.base[p] is None and p in _EXTRAS:
                self.base[p] = self._absent(p)
        rng = np.random.default_rng(seed)
        start: dict[str, np.ndarray] = {}
        for p in parts:
            shape = self._base(p).shape
            if rank is None or p not in _MATRICES:
                start[p] = np.zeros(shape)  # offsets from W₀
            else:  # LoRA init: A random, B = 0
                r_, c_ = shape
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

    def _absent(self, part: str) -> np.ndarray:
        """The starting value of a learned parameter the projection does not have: 0, or W_O = I."""
        d_k = self.W_Q0.shape[1]
        W_V = self.base["v"]
        d_out = d_k if W_V is None else W_V.shape[1]
        if part in ("b_Q", "b_K"):
            return np.zeros(d_k)  # (d_k,)
        if part == "W_O":
            return np.eye(d_out)  # (d_out, d_out)  the concatenated heads, unchanged
        W_O = self.base["W_O"]
        return np.zeros(d_out if part == "b_V" or W_O is None else W_O.shape[1])  # (d_out,) or (d_o,)

    def _base(self, part: str) -> np.ndarray:
        W0 = self.base[part]
        if W0 is None:
            raise ValueError(f"W_{part.upper()} is not set; hint: attach the projection to a table first")
        return W0

    def _moved(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        blk = self.packer.split(theta)
        moved = {}
        for p in self.parts:
            low_rank = self.rank is not None and p in _MATRICES
            delta = blk[p + ".A"] @ blk[p + ".B"].T if low_rank else blk[p]  # (rows, cols) or (cols,)
            moved[p] = self._base(p) + delta
        return moved

    def weights(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, float]:
        """(W_Q, W_K, W_V, log τ) at ``theta``."""
        moved = self._moved(theta)
        W_Q = moved.get("q", self.W_Q0)  # (d, d_k)
        W_K = W_Q if self.tied else moved.get("k", self.W_K0)  # (d, d_k)
        blk = self.packer.split(theta)
        log_tau = self.log_tau0 + (float(blk["tau"][0]) if self.learn_tau else 0.0)
        return W_Q, W_K, moved.get("v", self.base["v"]), log_tau

    def extras(self, theta: np.ndarray) -> dict[str, np.ndarray | None]:
        """b_Q, b_K, b_V, W_O, b_O at ``theta`` (None: absent and not learned)."""
        moved = self._moved(theta)
        out = {name: moved.get(name, self.fixed[name]) for name in _EXTRAS}
        if self.tied and "b_Q" in moved:
            out["b_K"] = out["b_Q"]
        return out

    def evaluate(self, theta: np.ndarray, X: np.ndarray, target: Any) -> tuple[float, np.ndarray, float]:
        """(loss + penalty, gradient (p,), loss without the penalty) at ``theta``."""
        W_Q, W_K, W_V, log_tau = self.weights(theta)
        ex = self.extras(theta)
        if self.loss == "rows":
            loss, g = rows_loss(X, self.K, target, W_Q, W_K, log_tau, heads=self.heads, b_Q=ex["b_Q"], b_K=ex["b_K"])
        else:
            if self.V is None or W_V is None:
                raise ValueError("loss='values' needs the table's values and W_V")
            loss, g = values_loss(X, self.K, self.V, target, W_Q, W_K, W_V, log_tau, heads=self.heads, **as_extras(ex))
        grads: dict[str, Any] = {p: g.get(_GRAD_NAME.get(p, p)) for p in ("q", "k", "v", *_EXTRAS)}
        if self.tied:
            grads["q"] = grads["q"] + grads["k"]
            if grads["b_Q"] is not None and grads["b_K"] is not None:
                grads["b_Q"] = grads["b_Q"] + grads["b_K"]
        blk = self.packer.split(theta)
        data_loss = float(loss)
        out: dict[str, Any] = {}
        now = {"q": W_Q, "k": W_K, "v": W_V, **ex}
        for p in self.parts:
            W = now[p]
            if W is None:  # W_V of loss="rows": never a learned part
                continue
            penalty, g_pen = ridge(W, self._base(p), self.reg)
            gw = grads[p] + g_pen  # (rows, cols) or (cols,)
            if self.rank is None or p not in _MATRICES:
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
