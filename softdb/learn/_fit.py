"""Fitting a projection on arrays: targets, options, validation, early stopping, the report.

:func:`fit_arrays` takes keys, values, queries, targets and the starting weights as
arrays and returns the fitted weights; :meth:`softdb.SoftTable.fit` only wires a
table to it (prepares the queries and targets, writes the weights back).
The losses and their gradients live in :mod:`softdb.learn._losses`; the flat-vector
objective (learned parts ↔ θ, the regularisation λ Σ ‖W − W₀‖²) in
:mod:`softdb.learn._objective`; the optimisers, shared with the blend fit, in
:mod:`softdb.learn._optimize`. This module runs one and keeps the best weights.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from softdb.engine._plan import Ask, Head, answer
from softdb.learn._losses import as_extras, target_mass, values_loss
from softdb.learn._objective import Objective
from softdb.learn._optimize import adam, lbfgs

__all__ = ["FitReport", "Objective", "as_targets", "check_options", "fit_arrays"]

LOSSES = ("rows", "values")
OPTIMIZERS = ("auto", "lbfgs", "adam")
#: optimizer="auto" uses full-batch L-BFGS up to this many (query, row) scores per evaluation.
AUTO_LBFGS_MAX = 20_000_000


@dataclass(frozen=True)
class FitReport:
    """What :meth:`SoftTable.fit` did.

    Attributes
    ----------
    loss_history : tuple of float
        Training loss (without the regulariser) before the fit, then after each
        iteration (L-BFGS) or the mean mini-batch loss of each epoch (Adam).
    iterations : int
        L-BFGS iterations or Adam epochs run.
    seconds : float
        Wall time of the fit.
    val_metric_history : tuple of float
        Validation metric after each iteration (empty without validation):
        recall@1 for loss="rows" (higher is better), MSE for loss="values" (lower).
    best_val_metric : float or None
        The best of them; the projection keeps the weights that reached it.
    optimizer : str
        "lbfgs" or "adam".
    converged : bool
        The optimiser met its own tolerance (not stopped by max_iter or patience).
    stopped_early : bool
        Stopped because the validation metric did not improve for ``patience`` iterations.
    val_metric : str or None
        "recall@1" or "mse".
    """

    loss_history: tuple
    iterations: int
    seconds: float
    val_metric_history: tuple
    best_val_metric: float | None
    optimizer: str
    converged: bool
    stopped_early: bool = False
    val_metric: str | None = None

    def _repr_html_(self) -> str:
        from softdb.render import fit_report_html

        return fit_report_html(self)

    def __repr__(self) -> str:
        """A one-line summary: first and last loss, not the whole history.

        Examples
        --------
        >>> FitReport(tuple(np.linspace(2.0, 0.5, 50)), 49, 1.0, (), None, "lbfgs", True)
        FitReport(optimizer='lbfgs', iterations=49, loss 2 → 0.5 (50 values in loss_history), converged=True, seconds=1)
        """
        loss = (
            (
                f"loss {self.loss_history[0]:.4g} → {self.loss_history[-1]:.4g} "
                f"({len(self.loss_history)} values in loss_history)"
            )
            if self.loss_history
            else "no loss recorded"
        )
        val = ""
        if self.val_metric_history and self.best_val_metric is not None:
            val = (
                f", best {self.val_metric or 'validation metric'} {self.best_val_metric:.4g} "
                f"({len(self.val_metric_history)} values in val_metric_history)"
            )
        early = ", stopped_early=True" if self.stopped_early else ""
        return (
            f"FitReport(optimizer={self.optimizer!r}, iterations={self.iterations}, {loss}{val}, "
            f"converged={self.converged}{early}, seconds={self.seconds:.3g})"
        )


# ------------------------------------------------------------------ targets
def as_targets(targets: Any, m: int, index: dict, name: str = "targets") -> tuple[np.ndarray, np.ndarray]:
    """Row-id targets → CSR (indptr (m + 1,), rows (t,)); unknown ids are an error."""
    if isinstance(targets, np.ndarray) and targets.ndim == 2:
        targets = targets.tolist()
    if isinstance(targets, str | bytes) or not isinstance(targets, Sequence | np.ndarray):
        raise TypeError(
            f"{name} must be a sequence with one row id (or a list of ids) per query, got "
            f"{type(targets).__name__}; hint: e.g. targets=['a', 'b'] or [['a', 'c'], ['b']]"
        )
    if len(targets) != m:
        raise ValueError(
            f"{name} has {len(targets)} entries but there are {m} queries; "
            "hint: give one target id (or list of ids) per query"
        )
    indptr = np.zeros(m + 1, np.int64)
    cols: list[int] = []
    for i, t in enumerate(targets):
        ids = [t] if isinstance(t, str | int | np.integer) else list(t)
        if not ids:
            raise ValueError(f"{name}[{i}] is empty; hint: every query needs at least one target id")
        found = []
        for j in ids:
            try:
                found.append(index[j])
            except (KeyError, TypeError):
                raise ValueError(
                    f"{name}[{i}] names id {j!r}, which is not in the table; hint: targets are row ids (see table.ids)"
                ) from None
        found = sorted(set(found))
        cols.extend(found)
        indptr[i + 1] = indptr[i] + len(found)
    return indptr, np.asarray(cols, np.int64)


def _subset(targets: tuple[np.ndarray, np.ndarray], idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    indptr, cols = targets
    counts = np.diff(indptr)[idx]  # (b,)
    new_ptr = np.concatenate([[0], np.cumsum(counts)])  # (b + 1,)
    take = np.concatenate([np.arange(indptr[i], indptr[i + 1]) for i in idx]) if len(idx) else np.zeros(0)  # (t_b,)
    return new_ptr, cols[np.asarray(take, np.int64)]


# ---------------------------------------------------------------- validation
def _validate(obj: Objective, theta: np.ndarray, X: np.ndarray, target: Any) -> tuple[float, float]:
    """(metric, tie-break loss): rows → (recall@1, mean −log w̄); values → (MSE, MSE)."""
    W_Q, W_K, W_V, log_tau = obj.weights(theta)
    ex = obj.extras(theta)
    if obj.loss == "rows":
        return _rows_eval(X, obj.K, target, W_Q, W_K, log_tau, obj.heads, ex["b_Q"], ex["b_K"])
    if obj.V is None or W_V is None:
        raise ValueError("loss='values' needs the table's values and W_V")
    mse = values_loss(X, obj.K, obj.V, target, W_Q, W_K, W_V, log_tau, heads=obj.heads, **as_extras(ex))[0]
    return mse, mse


def _rows_eval(
    X: np.ndarray,
    K: np.ndarray,
    targets: tuple[np.ndarray, np.ndarray],
    W_Q: np.ndarray,
    W_K: np.ndarray,
    log_tau: float,
    heads: int,
    b_Q: np.ndarray | None = None,
    b_K: np.ndarray | None = None,
) -> tuple[float, float]:
    """recall@1 (top row by mean head weight is a target) and mean −log Σ_T w̄, via the plan."""
    indptr, cols = targets
    m, dh = X.shape[0], W_Q.shape[1] // heads
    kp = K @ W_K if b_K is None else K @ W_K + b_K  # (n, d_k)
    hs = [
        Head(
            np.ascontiguousarray(kp[:, a * dh : (a + 1) * dh]),
            None,
            np.ascontiguousarray(W_Q[:, a * dh : (a + 1) * dh]),
            b_q=None if b_Q is None else b_Q[a * dh : (a + 1) * dh],
        )
        for a in range(heads)
    ]
    tau = math.exp(log_tau)
    res = answer(hs, X, Ask(k=1, lse=True), tau)  # one streaming pass per head (+ one for heads > 1)
    top, lse = res.rows, res.lse  # (m, 1), (m,)
    if top is None or lse is None:
        raise RuntimeError("the plan answered Ask(k=1, lse=True) without rows or lse")
    counts = np.diff(indptr)  # (m,)  every query has >= 1 target
    qi = np.repeat(np.arange(m), counts)  # (t,)
    hits = np.zeros(m, bool)
    np.logical_or.at(hits, qi, cols == top[qi, 0])
    qa = X @ W_Q if b_Q is None else X @ W_Q + b_Q  # (m, d_k)
    s = np.einsum("thd,thd->th", qa[qi].reshape(-1, heads, dh), kp[cols].reshape(-1, heads, dh))  # (t, h)
    logw = s / tau - lse[qi]  # (t, h)  log w^a of each target
    mx, _, p_a = target_mass(logw.T, indptr[:-1], qi)  # (m,), (h, t), (h, m)
    nll = -(mx + np.log(p_a.sum(axis=0)) - math.log(heads))  # (m,)  −log Σ_T w̄
    return float(hits.mean()), float(nll.mean())


# ------------------------------------------------------------------ tracking
class _Tracker:
    """Loss/validation history, best weights and the patience rule."""

    def __init__(
        self,
        obj: Objective,
        validation: tuple[np.ndarray, Any] | None,
        patience: int,
        higher_better: bool,
        verbose: bool,
    ) -> None:
        self.obj, self.validation, self.patience = obj, validation, patience
        self.sign = -1.0 if higher_better else 1.0
        self.verbose = verbose
        self.losses: list[float] = []
        self.vals: list[float] = []
        self.best_key: tuple[float, float] | None = None
        self.best_theta: np.ndarray | None = None
        self.since_best = 0
        self.stopped_early = False

    def step(self, theta: np.ndarray, loss: float) -> bool:
        """Record one iteration; True means stop (patience exhausted)."""
        self.losses.append(loss)
        msg = f"iter {len(self.losses) - 1:4d}  loss {loss:.6g}"
        if self.validation is not None:
            metric, tie = _validate(self.obj, theta, *self.validation)
            self.vals.append(metric)
            key = (self.sign * metric, tie)
            if self.best_key is None or key < self.best_key:
                self.best_key, self.best_theta, self.since_best = key, theta.copy(), 0
            else:
                self.since_best += 1
            msg += f"  val {metric:.6g}"
            if self.since_best >= self.patience and len(self.losses) > 1:
                self.stopped_early = True
        if self.verbose:
            print(msg, flush=True)
        return self.stopped_early


# ------------------------------------------------------------------ entry point
def check_options(loss: str, optimizer: str, max_iter: Any, batch_size: Any, patience: Any, reg: Any) -> None:
    """Raise on a bad fit option (before any work)."""
    if loss not in LOSSES:
        raise ValueError(
            f"loss must be one of {list(LOSSES)}, got {loss!r}; "
            "hint: 'rows' for target row ids, 'values' for target vectors"
        )
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {optimizer!r}")
    for name, val in (("max_iter", max_iter), ("batch_size", batch_size), ("patience", patience)):
        if isinstance(val, bool) or not isinstance(val, int | np.integer) or val < 1:
            raise ValueError(f"{name} must be a positive int, got {val!r}")
    if not (isinstance(reg, int | float) and math.isfinite(reg) and reg >= 0):
        raise ValueError(f"reg must be a finite number >= 0, got {reg!r}")


def fit_arrays(
    K: np.ndarray,
    V: np.ndarray | None,
    X: np.ndarray,
    target: Any,
    W_Q: np.ndarray,
    W_K: np.ndarray,
    W_V: np.ndarray | None,
    log_tau: float,
    *,
    loss: str = "rows",
    heads: int = 1,
    tied: bool = False,
    learn: Sequence[str] = ("q", "k", "v"),
    learn_temperature: bool = False,
    rank: int | None = None,
    optimizer: str = "auto",
    max_iter: int = 100,
    reg: float = 0.0,
    validation: tuple[np.ndarray, Any] | None = None,
    patience: int = 10,
    batch_size: int = 256,
    learning_rate: float = 0.01,
    seed: int = 0,
    verbose: bool = False,
    extras: dict[str, np.ndarray | None] | None = None,
) -> tuple[dict[str, Any], FitReport]:
    """Fit projection weights in float64 on arrays (see SoftTable.fit for the options).

    Parameters
    ----------
    K : ndarray of shape (n, d)
        Keys (unit rows for metric="cosine"), float64.
    V : ndarray of shape (n, d_v), optional
        Values (loss="values" only).
    X : ndarray of shape (m, d)
        Training queries, float64.
    target : (indptr, rows) or ndarray of shape (m, d_out)
        loss="rows": CSR row targets from :func:`as_targets`; loss="values": target answers.
    W_Q, W_K, W_V, log_tau
        The starting weights (W₀) and log τ.
    validation : (X_val, target_val), optional
    extras : dict, optional
        The projection's b_Q, b_K, b_V, W_O, b_O (None or missing: absent); ``learn``
        may name them.

    Returns
    -------
    update : dict
        Keyword arguments for ``Projection.set_weights`` (the learned parts only).
    report : FitReport

    Examples
    --------
    >>> x = np.eye(3)
    >>> update, report = fit_arrays(x, None, x, as_targets(["b", "c", "a"], 3, {"a": 0, "b": 1, "c": 2}),
    ...                             np.eye(3), np.eye(3), None, 0.0)
    >>> sorted(update), report.optimizer
    (['W_K', 'W_Q'], 'lbfgs')
    """
    t0 = time.perf_counter()
    check_options(loss, optimizer, max_iter, batch_size, patience, reg)
    obj = Objective(
        loss,
        K,
        V,
        W_Q,
        W_K,
        W_V,
        log_tau,
        heads=heads,
        tied=tied,
        learn=learn,
        learn_temperature=learn_temperature,
        rank=rank,
        reg=reg,
        seed=seed,
        extras=extras,
    )
    if optimizer == "auto":
        optimizer = "lbfgs" if len(X) * len(K) <= AUTO_LBFGS_MAX else "adam"
    tracker = _Tracker(obj, validation, patience, higher_better=loss == "rows", verbose=verbose)
    if optimizer == "lbfgs":
        sol = lbfgs(lambda theta: obj.evaluate(theta, X, target), obj.x0, max_iter=int(max_iter), step=tracker.step)
    else:

        def batch(theta: np.ndarray, idx: np.ndarray) -> tuple[float, np.ndarray]:
            return obj(theta, X[idx], _subset(target, idx) if loss == "rows" else target[idx])

        sol = adam(
            batch,
            obj.x0,
            len(X),
            start_loss=obj.evaluate(obj.x0, X, target)[2],
            step=tracker.step,
            max_iter=int(max_iter),
            batch_size=int(batch_size),
            learning_rate=float(learning_rate),
            seed=seed,
        )
    theta, iters, converged = sol
    if tracker.best_theta is not None:
        theta = tracker.best_theta
    W_Q, W_K, W_V, log_tau = obj.weights(theta)
    update: dict[str, Any] = {}
    if "q" in obj.parts:
        update["W_Q"] = W_Q
    if "k" in obj.parts:
        update["W_K"] = W_K
    if "v" in obj.parts:
        update["W_V"] = W_V
    ex = obj.extras(theta)
    update.update({name: ex[name] for name in obj.parts if name in ex})
    if obj.learn_tau:
        update["temperature"] = math.exp(log_tau)
    best = None
    if tracker.vals:
        best = max(tracker.vals) if loss == "rows" else min(tracker.vals)
    return update, FitReport(
        loss_history=tuple(tracker.losses),
        iterations=iters,
        seconds=time.perf_counter() - t0,
        val_metric_history=tuple(tracker.vals),
        best_val_metric=best,
        optimizer=optimizer,
        converged=converged,
        stopped_early=tracker.stopped_early,
        val_metric=None if validation is None else ("recall@1" if loss == "rows" else "mse"),
    )
