"""The blend loss of block tables: gradients by finite differences, and a float64 oracle."""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import check_grad
from scipy.special import logsumexp

from softdb import SoftTable
from softdb.learn._blend import BlendObjective, BlendParams, blend_loss, fit_blend


@pytest.fixture()
def small():
    rng = np.random.default_rng(0)
    m, n, d, V = 7, 13, 5, 9
    X, K = rng.standard_normal((m, d)), rng.standard_normal((n, d))
    Qs = sp.random(m, V, density=0.4, random_state=1, format="csr")
    Ks = sp.random(n, V, density=0.4, random_state=2, format="csr") * 4  # BM25-like: larger scores
    Q2, K2 = rng.standard_normal((m, 3)), rng.standard_normal((n, 3))  # a third, dense block
    counts = rng.integers(1, 3, m)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    cols = np.concatenate([np.sort(rng.choice(n, c, replace=False)) for c in counts])
    return X, K, [Qs, Q2], [Ks, K2], (indptr, cols.astype(np.int64))


def _oracle(X, K, fq, fk, targets, w, log_tau, W_Q):
    """The loss in plain float64 numpy, from the dense score matrix."""
    S = w[0] * (X @ W_Q) @ K.T + sum(
        wb * np.asarray((q @ k.T).todense() if sp.issparse(q) else q @ k.T) for wb, q, k in zip(w[1:], fq, fk)
    )  # (m, n)
    logw = S / np.exp(log_tau) - logsumexp(S / np.exp(log_tau), axis=1, keepdims=True)
    indptr, cols = targets
    return -np.mean([logsumexp(logw[i, cols[indptr[i] : indptr[i + 1]]]) for i in range(len(X))])


@pytest.mark.parametrize("learn", [("tau",), ("weights",), ("tau", "weights"), ("q",), ("tau", "weights", "q")])
def test_gradients_match_finite_differences(small, learn):
    X, K, fq, fk, targets = small
    obj = BlendObjective(X, K, fq, fk, targets, BlendParams((0.7, 0.3, -0.2), 0.5), learn, 0.1, batch=3)  # chunked

    def f(theta):
        return obj(theta)[0]  # the loss + 0.1 ‖W_Q − W₀‖² with "q"

    def g(theta):
        return obj(theta)[1]

    x0 = obj.x0 + 0.3 * np.random.default_rng(1).standard_normal(obj.x0.shape)
    grad = g(x0)
    assert np.linalg.norm(grad) > 1e-3  # the gradient is not trivially zero
    assert check_grad(f, g, x0, epsilon=1e-7) / np.linalg.norm(grad) <= 1e-5


def test_loss_equals_a_float64_oracle_even_where_weights_underflow(small):
    X, K, fq, fk, targets = small
    W_Q = np.eye(5) + 0.1 * np.random.default_rng(2).standard_normal((5, 5))
    for log_tau in (0.3, -6.0):  # at τ = e⁻⁶ most target weights underflow exp() in float64
        w = np.array([1.0, 0.5, 0.2])
        got = blend_loss(X, K, fq, fk, targets, w, log_tau, W_Q, batch=4)[0]
        assert np.isfinite(got)
        assert got == pytest.approx(_oracle(X, K, fq, fk, targets, w, log_tau, W_Q), rel=1e-10)


def test_fit_learns_the_block_that_knows_the_answer():
    """Dense keys are noise, the sparse block is an exact match: fit raises its weight."""
    rng = np.random.default_rng(3)
    n = 40
    dense = rng.standard_normal((n, 8)).astype(np.float32)
    exact = sp.csr_matrix(np.eye(n, dtype=np.float32))
    t = SoftTable([dense, exact], ids=[f"r{i}" for i in range(n)], block_weights=[1.0, 0.0], temperature=1.0)
    queries = [rng.standard_normal((n, 8)).astype(np.float32), exact]
    before = (t.search(queries, k=1).rows.ravel() == np.arange(n)).mean()
    fit = t.fit(queries, [f"r{i}" for i in range(n)])
    after = (t.search(queries, k=1).rows.ravel() == np.arange(n)).mean()
    assert before < 0.5 and after == 1.0 and t.block_weights[1] > 1
    assert fit.loss_history[-1] < fit.loss_history[0] and t.block_weights[0] == 1.0  # block 0 stays fixed


def test_fitted_w_q_is_applied_to_queries_saved_and_loaded(tmp_path):
    rng = np.random.default_rng(4)
    n = 30
    dense = rng.standard_normal((n, 6)).astype(np.float32)
    sparse = sp.random(n, 10, density=0.3, random_state=5, format="csr", dtype=np.float32)
    t = SoftTable([dense, sparse], block_weights=[1.0, 0.1], temperature=0.5)
    q = [dense[rng.permutation(n)], sparse]
    t.fit(q, list(range(n)), learn=("q",), reg=0.01, max_iter=30)
    assert t.query_projection is not None and t.query_projection.shape == (6, 6)
    want = t.block_weights[0] * (q[0] @ t.query_projection) @ dense.T + t.block_weights[1] * (sparse @ sparse.T)
    np.testing.assert_allclose(t.search(q, k=3).scores, -np.sort(-np.asarray(want), axis=1)[:, :3], rtol=1e-4)
    t.save(tmp_path / "t")
    back = SoftTable.load(tmp_path / "t", mmap=True)
    np.testing.assert_array_equal(back.query_projection, t.query_projection)
    np.testing.assert_array_equal(back.search(q, k=3).rows, t.search(q, k=3).rows)


def test_fit_blend_errors():
    X = np.eye(3)
    with pytest.raises(ValueError, match=re.escape("learn must be a non-empty subset of ['tau', 'weights', 'q']")):
        fit_blend(X, X, [], [], (np.arange(4), np.arange(3)), BlendParams((1.0,), 1.0), learn=("k",))
    with pytest.raises(ValueError, match=re.escape("learn='weights' needs at least two blocks")):
        fit_blend(X, X, [], [], (np.arange(4), np.arange(3)), BlendParams((1.0,), 1.0), learn=("weights",))
    t = SoftTable([sp.csr_matrix(X.astype(np.float32)), X.astype(np.float32)])
    with pytest.raises(ValueError, match=re.escape("fit() of a block table needs a dense first block")):
        t.fit([sp.csr_matrix(X), X], [0, 1, 2])
