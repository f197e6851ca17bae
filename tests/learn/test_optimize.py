"""The shared fitting pieces: the multi-target loss core, the packer, the L-BFGS and Adam drivers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import check_grad
from scipy.special import logsumexp

from softdb.learn._blend import blend_loss
from softdb.learn._fit import as_targets
from softdb.learn._losses import rows_loss, targets_nll
from softdb.learn._optimize import Packer, adam, lbfgs, ridge


def _targets(m: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = [rng.choice(n, rng.integers(1, 4), replace=False).tolist() for _ in range(m)]
    return as_targets(ids, m, {i: i for i in range(n)})


def _core(Z: np.ndarray, targets: tuple[np.ndarray, np.ndarray], s0: int, s1: int, m: int) -> tuple[float, np.ndarray]:
    """targets_nll on raw logits Z (h, b, n): the loss / m and dL/dZ."""
    S = Z - Z.max(axis=2, keepdims=True)  # (h, b, n)
    E = np.exp(S)  # (h, b, n)
    return targets_nll(S, E, targets, s0, s1, m) / m, E


@pytest.mark.parametrize("heads", [1, 2, 3])
def test_targets_nll_matches_oracle_and_finite_differences(heads):
    m, n, s0, s1 = 9, 12, 2, 7  # a chunk in the middle of the queries
    targets = _targets(m, n, heads)
    rng = np.random.default_rng(heads)
    Z = 3 * rng.standard_normal((heads, s1 - s0, n))  # (h, b, n)
    loss, G = _core(Z, targets, s0, s1, m)
    indptr, cols = targets
    logw = Z - logsumexp(Z, axis=2, keepdims=True)  # (h, b, n)
    want = -sum(
        logsumexp(logw[:, i - s0, cols[indptr[i] : indptr[i + 1]]]) - np.log(heads) for i in range(s0, s1)
    )  # −log (1/h) Σ_a Σ_T w_a, summed over the chunk
    assert loss == pytest.approx(want / m, rel=1e-12)

    def f(z: np.ndarray) -> float:
        return _core(z.reshape(Z.shape), targets, s0, s1, m)[0]

    def g(z: np.ndarray) -> np.ndarray:
        return _core(z.reshape(Z.shape), targets, s0, s1, m)[1].ravel()

    assert np.linalg.norm(G) > 1e-3
    assert check_grad(f, g, Z.ravel(), epsilon=1e-7) / np.linalg.norm(G) <= 1e-6


def test_targets_nll_is_finite_where_every_weight_underflows():
    targets = (np.array([0, 1]), np.array([1]))
    S = np.array([[[0.0, -2000.0, -1.0]]])  # (1, 1, 3)  the target's weight is e^-2000
    loss, G = _core(S, targets, 0, 1, 1)
    assert loss == pytest.approx(2000 + np.log1p(np.exp(-1)), rel=1e-12)  # log-softmax, not log(softmax)
    assert np.isfinite(G).all()


def test_one_dense_block_is_rows_loss_of_one_head():
    """The blend and the projection fit share the core: with one block they are the same loss."""
    rng = np.random.default_rng(5)
    X, K = rng.standard_normal((8, 4)), rng.standard_normal((15, 4))
    W_Q = rng.standard_normal((4, 4))
    targets = _targets(8, 15, 5)
    loss_b, g_b = blend_loss(X, K, [], [], targets, np.array([1.0]), 0.3, W_Q, batch=3)
    loss_r, g_r = rows_loss(X, K, targets, W_Q, np.eye(4), 0.3, batch=3)
    assert loss_b == pytest.approx(loss_r, rel=1e-12)
    np.testing.assert_allclose(g_b["W_Q"], g_r["W_Q"], rtol=1e-10, atol=1e-14)
    assert g_b["log_tau"] == pytest.approx(g_r["log_tau"], rel=1e-10)


def test_packer_splits_and_joins_in_block_order():
    pk = Packer({"b": np.arange(6.0).reshape(2, 3), "a": [7.0], "c": np.zeros((0, 2))})
    np.testing.assert_array_equal(pk.x0, [0, 1, 2, 3, 4, 5, 7])
    blocks = pk.split(pk.x0 * 2)
    assert list(blocks) == ["b", "a", "c"] and blocks["b"].shape == (2, 3) and blocks["c"].shape == (0, 2)
    np.testing.assert_array_equal(
        pk.join({"a": 1.5, "b": blocks["b"], "c": blocks["c"], "extra": 9}), [*range(0, 12, 2), 1.5]
    )
    assert "a" in pk and "extra" not in pk


def test_ridge_gradient():
    rng = np.random.default_rng(0)
    W0 = rng.standard_normal((3, 2))
    W = rng.standard_normal((3, 2))
    pen, grad = ridge(W, W0, 0.3)
    assert pen == pytest.approx(0.3 * np.sum((W - W0) ** 2))
    err = check_grad(
        lambda w: ridge(w.reshape(3, 2), W0, 0.3)[0], lambda w: ridge(w.reshape(3, 2), W0, 0.3)[1].ravel(), W.ravel()
    )
    assert err / np.linalg.norm(grad) <= 1e-6


def _quadratic(theta: np.ndarray) -> tuple[float, np.ndarray, float]:
    target = np.arange(len(theta), dtype=float)
    diff = theta - target
    return float(diff @ diff) + 1.0, 2 * diff, float(diff @ diff)  # objective, gradient, "data loss"


def test_lbfgs_tells_step_the_start_and_every_iteration_and_can_stop():
    seen: list[float] = []

    def record(theta: np.ndarray, loss: float) -> bool:
        seen.append(loss)
        return False

    sol = lbfgs(_quadratic, np.zeros(4), max_iter=50, step=record)
    assert sol.converged and len(seen) == sol.iterations + 1
    np.testing.assert_allclose(sol.theta, np.arange(4.0), atol=1e-6)
    assert seen[0] == 14.0 and seen[-1] < 1e-10  # data losses, without the objective's + 1

    def stop_after_one(theta: np.ndarray, loss: float) -> bool:
        seen.append(loss)
        return len(seen) == 2  # the start, then the first iteration

    seen.clear()
    stopped = lbfgs(_quadratic, np.zeros(4) + 10, max_iter=50, step=stop_after_one)
    assert not stopped.converged and stopped.iterations == 1 and len(seen) == 2


def test_adam_converges_on_a_quadratic_and_stops_when_told():
    def batch(theta: np.ndarray, idx: np.ndarray) -> tuple[float, np.ndarray]:
        loss, grad, _ = _quadratic(theta)
        return loss, grad

    seen: list[float] = []
    kw = dict(start_loss=14.0, max_iter=3000, batch_size=4, learning_rate=0.05, seed=0)
    sol = adam(batch, np.zeros(4), 8, step=lambda theta, loss: bool(seen.append(loss)), **kw)
    assert sol.converged and len(seen) == sol.iterations + 1 and seen[0] == 14.0
    np.testing.assert_allclose(sol.theta, np.arange(4.0), atol=1e-2)
    early = adam(batch, np.zeros(4), 8, step=lambda theta, loss: loss < 10, **kw)
    assert not early.converged and early.iterations < 3000
