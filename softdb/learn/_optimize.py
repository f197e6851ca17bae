"""The one optimisation driver of every fit: a parameter packer, L-BFGS, Adam and a ridge penalty.

A fit names its parameters as blocks (``{"q": W_Q offsets, "tau": [0.0]}``);
:class:`Packer` maps them to one flat float64 vector θ and back. :func:`lbfgs`
runs ``scipy.optimize.minimize(jac=True)`` on a function of θ that returns the
objective, its gradient and the data loss (the objective without the penalty,
which is what a fit reports), and tells ``step`` the data loss at the start and
after every iteration; :func:`adam` does the same over mini-batches. The
projection fit (:mod:`softdb.learn._fit`) and the blend fit
(:mod:`softdb.learn._blend`) both run here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np
from scipy.optimize import minimize

__all__ = ["Packer", "Solution", "adam", "lbfgs", "ridge"]

#: θ → (objective, gradient (p,), data loss): what :func:`lbfgs` minimises.
Evaluate = Callable[[np.ndarray], tuple[float, np.ndarray, float]]
#: (θ, data loss) → True to stop: told the start and every iteration.
Step = Callable[[np.ndarray, float], bool]


class Solution(NamedTuple):
    """Where an optimiser stopped."""

    theta: np.ndarray  # (p,)
    iterations: int
    converged: bool


class Packer:
    """Named parameter blocks ↔ one flat float64 vector θ, in the order given.

    Parameters
    ----------
    start : mapping of str to array_like
        Each block's starting value (any shape); ``x0`` is their concatenation.

    Examples
    --------
    >>> pk = Packer({"w": np.zeros((2, 3)), "tau": [0.5]})
    >>> pk.x0.shape, pk.split(np.arange(7.0))["tau"]
    ((7,), array([6.]))
    >>> pk.join({"w": np.ones((2, 3)), "tau": 2.0})
    array([1., 1., 1., 1., 1., 1., 2.])
    """

    def __init__(self, start: Mapping[str, Any]) -> None:
        values = {name: np.asarray(v, np.float64) for name, v in start.items()}
        self.shapes: dict[str, tuple[int, ...]] = {name: v.shape for name, v in values.items()}
        self.x0 = np.concatenate([v.ravel() for v in values.values()]) if values else np.zeros(0)  # (p,)

    def __contains__(self, name: object) -> bool:
        return name in self.shapes

    def split(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """θ (p,) → each block as a view of its shape."""
        out, at = {}, 0
        for name, shape in self.shapes.items():
            size = int(np.prod(shape))
            out[name] = theta[at : at + size].reshape(shape)
            at += size
        return out

    def join(self, blocks: Mapping[str, Any]) -> np.ndarray:
        """Each block's value (e.g. its gradient) → θ-shaped (p,), in block order."""
        return np.concatenate([np.ravel(blocks[name]) for name in self.shapes])


def ridge(W: np.ndarray, W0: np.ndarray, reg: float) -> tuple[float, np.ndarray]:
    """The penalty λ ‖W − W₀‖² and its gradient 2 λ (W − W₀) (shape of W)."""
    diff = W - W0  # (rows, cols)
    return reg * float(np.vdot(diff, diff)), 2 * reg * diff


def lbfgs(fun: Evaluate, x0: np.ndarray, *, max_iter: int, step: Step) -> Solution:
    """Minimise ``fun`` from ``x0`` by full-batch L-BFGS-B (scipy, ``jac=True``).

    ``step(θ, data loss)`` is told the start and every iteration; when it returns
    True the run stops there (and does not count as converged).
    """
    last: list[Any] = [None, 0.0]  # θ and data loss of the latest evaluation

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        loss, grad, data = fun(theta)
        last[:] = [theta.copy(), data]
        return loss, grad

    def data_loss(theta: np.ndarray) -> float:
        if last[0] is None or not np.array_equal(last[0], theta):
            objective(theta)  # L-BFGS's accepted point is usually its latest evaluation: cached
        return float(last[1])

    step(x0, data_loss(x0))
    n_iter = 0
    stopped = False

    def callback(intermediate_result: Any) -> None:  # scipy passes it by this keyword
        nonlocal n_iter, stopped
        n_iter += 1
        theta = intermediate_result.x
        if step(theta, data_loss(theta)):
            stopped = True
            raise StopIteration

    res = minimize(objective, x0, jac=True, method="L-BFGS-B", callback=callback, options={"maxiter": max_iter})
    return Solution(res.x, n_iter, bool(res.success) and not stopped)


def adam(
    fun: Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    m: int,
    *,
    start_loss: float,
    step: Step,
    max_iter: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    tol: float = 1e-6,
) -> Solution:
    """Minimise by Adam over shuffled mini-batches of ``m`` queries; ``max_iter`` epochs.

    ``fun(θ, idx)`` is the objective and its gradient on the queries ``idx``;
    ``step`` is told ``start_loss`` at the start, then the mean mini-batch loss of
    each epoch. Converged: an epoch's loss moved by at most ``tol`` (relative).
    """
    rng = np.random.default_rng(seed)
    theta = x0.copy()  # (p,)
    mom, vel = np.zeros_like(theta), np.zeros_like(theta)  # (p,), (p,)
    b1, b2, eps = 0.9, 0.999, 1e-8
    t = 0
    step(theta, start_loss)
    prev = start_loss
    for epoch in range(max_iter):
        order = rng.permutation(m)  # (m,)
        total = 0.0
        for s0 in range(0, m, batch_size):
            idx = order[s0 : s0 + batch_size]  # (b,)
            loss, g = fun(theta, idx)
            total += loss * len(idx)
            t += 1
            mom = b1 * mom + (1 - b1) * g
            vel = b2 * vel + (1 - b2) * g * g
            theta = theta - learning_rate * (mom / (1 - b1**t)) / (np.sqrt(vel / (1 - b2**t)) + eps)
        if step(theta, total / m):
            return Solution(theta, epoch + 1, False)
        if abs(prev - total / m) <= tol * max(abs(prev), 1e-12):
            return Solution(theta, epoch + 1, True)
        prev = total / m
    return Solution(theta, max_iter, False)
