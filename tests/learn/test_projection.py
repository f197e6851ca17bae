"""Projected mode: gradients, identity, oracles, heads, caching, state, errors."""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest
from scipy.optimize import check_grad
from scipy.special import logsumexp, softmax

from softdb import Projection, SoftTable
from softdb.learn._fit import Objective, as_targets
from softdb.projection import rows_loss, values_loss

RNG = np.random.default_rng(1234)


# ----------------------------------------------------------- float64 oracles
def oracle_head_logw(X, K, W_Q, W_K, tau, heads):
    """(h, m, n) log softmax weights of each head, plain float64 numpy."""
    dh = W_Q.shape[1] // heads
    out = []
    for a in range(heads):
        sl = slice(a * dh, (a + 1) * dh)
        s = (X @ W_Q[:, sl]) @ (K @ W_K[:, sl]).T / tau  # (m, n)
        out.append(s - logsumexp(s, axis=1, keepdims=True))
    return np.stack(out)


def oracle_rows_loss(X, K, targets, W_Q, W_K, tau, heads):
    logw = oracle_head_logw(X, K, W_Q, W_K, tau, heads)  # (h, m, n)
    wbar = np.exp(logw).mean(axis=0)  # (m, n)
    return float(np.mean([-np.log(wbar[i, t].sum()) for i, t in enumerate(targets)]))


def oracle_answer(X, K, V, W_Q, W_K, W_V, tau, heads):
    logw = oracle_head_logw(X, K, W_Q, W_K, tau, heads)
    vp = V @ W_V  # (n, d_out)
    dvh = vp.shape[1] // heads
    return np.concatenate([np.exp(logw[a]) @ vp[:, a * dvh : (a + 1) * dvh] for a in range(heads)], axis=1)


@pytest.fixture
def small():
    rng = np.random.default_rng(0)
    m, n, d, dv = 7, 11, 4, 5
    X = rng.standard_normal((m, d))
    K = rng.standard_normal((n, d))
    V = rng.standard_normal((n, dv))
    targets = [[2], [0, 5], [1], [9], [3, 4], [7], [8, 10]]
    return X, K, V, targets


def csr(targets):
    return as_targets(targets, len(targets), {i: i for i in range(100)})


# ----------------------------------------------------------------- losses
@pytest.mark.parametrize("heads", [1, 2])
def test_rows_loss_matches_oracle_and_is_chunk_invariant(small, heads):
    X, K, _, targets = small
    W_Q, W_K = RNG.standard_normal((4, 4)), RNG.standard_normal((4, 4))
    want = oracle_rows_loss(X, K, targets, W_Q, W_K, np.exp(0.3), heads)
    full, g_full = rows_loss(X, K, csr(targets), W_Q, W_K, 0.3, heads=heads)
    chunked, g_chunk = rows_loss(X, K, csr(targets), W_Q, W_K, 0.3, heads=heads, batch=3)
    assert full == pytest.approx(want, rel=1e-12)
    assert chunked == pytest.approx(want, rel=1e-12)
    for name in g_full:
        np.testing.assert_allclose(g_chunk[name], g_full[name], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("heads", [1, 2])
def test_values_loss_matches_oracle(small, heads):
    X, K, V, _ = small
    W_Q, W_K, W_V = RNG.standard_normal((4, 4)), RNG.standard_normal((4, 4)), RNG.standard_normal((5, 4))
    Y = RNG.standard_normal((7, 4))
    pred = oracle_answer(X, K, V, W_Q, W_K, W_V, np.exp(-0.2), heads)
    loss, _ = values_loss(X, K, V, Y, W_Q, W_K, W_V, -0.2, heads=heads, batch=2)
    assert loss == pytest.approx(np.mean((pred - Y) ** 2), rel=1e-12)


def test_rows_loss_is_finite_for_huge_scores():
    X = np.eye(2) * 1e3
    loss, g = rows_loss(X, X, csr([[1], [0]]), np.eye(2), np.eye(2), 0.0)
    assert np.isfinite(loss) and loss == pytest.approx(1e6, rel=1e-9)  # log-softmax, not log(softmax)
    assert all(np.isfinite(v).all() for v in g.values())


VARIANTS = {
    "full": dict(),
    "heads": dict(heads=2),
    "tied": dict(tied=True),
    "tau": dict(learn_temperature=True),
    "rank": dict(rank=2),
    "q_only": dict(learn=("q",)),
    "d_k<d": dict(d_k=2),
    "all": dict(heads=2, tied=True, rank=2, learn_temperature=True),
}


@pytest.mark.parametrize("loss", ["rows", "values"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_gradients_match_finite_differences(small, loss, variant):
    """Every gradient (each W, log τ, tied, heads, low rank, regulariser) ≤ 1e-6 relative."""
    X, K, V, targets = small
    kw = dict(VARIANTS[variant])
    heads, d_k = kw.pop("heads", 1), kw.pop("d_k", 4)
    rng = np.random.default_rng(7)
    W_Q = rng.standard_normal((4, d_k))
    W_K = W_Q if kw.get("tied") else rng.standard_normal((4, d_k))
    W_V = rng.standard_normal((5, 2))
    obj = Objective(loss, K, V, W_Q, W_K, W_V, 0.3, heads=heads, reg=0.1, **kw)
    target = csr(targets) if loss == "rows" else rng.standard_normal((7, 2))
    x0 = obj.x0 + 0.3 * rng.standard_normal(obj.x0.shape)

    def f(t):
        return obj(t, X, target)[0]

    def g(t):
        return obj(t, X, target)[1]

    grad = g(x0)
    assert np.linalg.norm(grad) > 1e-3  # a test that can fail: the gradient is not trivially zero
    rel_fd = check_grad(f, g, x0, epsilon=1e-7) / np.linalg.norm(grad)  # forward differences
    assert rel_fd <= 1e-6
    eye = np.eye(len(x0)) * 1e-5
    central = np.array([(f(x0 + e) - f(x0 - e)) / 2e-5 for e in eye])  # (p,)
    assert np.linalg.norm(central - grad) / np.linalg.norm(grad) <= 1e-8


@pytest.mark.parametrize("heads,d", [(1, 4), (1, 3), (3, 3)])
def test_raw_gradients_of_each_matrix_and_tau(small, heads, d):
    """rows_loss / values_loss themselves, per W and log τ (d_k >= d takes the re-associated path)."""
    X, K, V, targets = small
    X, K = X[:, :d], K[:, :d]
    rng = np.random.default_rng(3)
    W = {"W_Q": rng.standard_normal((d, 3)), "W_K": rng.standard_normal((d, 3)), "W_V": rng.standard_normal((5, 3))}
    Y = rng.standard_normal((7, 3))
    for loss_name in ("rows", "values"):
        for name in ("W_Q", "W_K", "W_V", "log_tau"):
            if loss_name == "rows" and name == "W_V":
                continue
            x0 = np.array([0.4]) if name == "log_tau" else W[name].ravel()

            def run(x, name=name, loss_name=loss_name):
                args = dict(W, log_tau=0.4)
                args[name] = x[0] if name == "log_tau" else x.reshape(W[name].shape)
                if loss_name == "rows":
                    return rows_loss(X, K, csr(targets), args["W_Q"], args["W_K"], args["log_tau"], heads=heads)
                return values_loss(X, K, V, Y, args["W_Q"], args["W_K"], args["W_V"], args["log_tau"], heads=heads)

            grad = np.atleast_1d(run(x0)[1][name]).ravel()
            err = check_grad(
                lambda x, run=run: run(x)[0],
                lambda x, run=run, name=name: np.atleast_1d(run(x)[1][name]).ravel(),
                x0,
                epsilon=1e-7,
            )
            assert err / np.linalg.norm(grad) <= 1e-6, (loss_name, name)


# ---------------------------------------------------------------- identity
@pytest.mark.parametrize("metric", ["dot", "cosine"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_identity_projection_reproduces_plain_table(metric, dtype):
    rng = np.random.default_rng(5)
    K = rng.standard_normal((200, 16)).astype(dtype)
    V = rng.standard_normal((200, 3)).astype(dtype)
    Q = rng.standard_normal((9, 16)).astype(dtype)
    plain = SoftTable(K, V, metric=metric)
    proj = SoftTable(K, V, metric=metric, projection=Projection(16))
    assert proj.temperature == plain.temperature
    np.testing.assert_allclose(proj.weights(Q), plain.weights(Q), atol=1e-6, rtol=0)
    np.testing.assert_allclose(proj.lookup(Q), plain.lookup(Q), atol=1e-6, rtol=1e-6)
    np.testing.assert_array_equal(proj.lookup(Q, mode="hard"), plain.lookup(Q, mode="hard"))
    a, b = proj.search(Q, k=5), plain.search(Q, k=5)
    np.testing.assert_array_equal(a.rows, b.rows)
    np.testing.assert_allclose(a.weights, b.weights, atol=1e-6)


# ------------------------------------------------------------ projected oracles
@pytest.mark.parametrize("heads", [1, 2])
def test_projected_lookups_match_float64_oracle(heads):
    rng = np.random.default_rng(6)
    K = rng.standard_normal((150, 8))
    V = rng.standard_normal((150, 5))
    Q = rng.standard_normal((6, 8))
    p = Projection(8, d_k=4, d_out=6, heads=heads, init="random", seed=3, temperature=0.7)
    t = SoftTable(K, V, projection=p)  # float64 table
    logw = oracle_head_logw(Q, K, p.W_Q, p.W_K, 0.7, heads)  # (h, m, n)
    wbar = np.exp(logw).mean(axis=0)  # (m, n)
    np.testing.assert_allclose(t.weights(Q), wbar, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(t.lookup(Q), oracle_answer(Q, K, V, p.W_Q, p.W_K, p.W_V, 0.7, heads), rtol=1e-10)
    hits = t.search(Q, k=4)
    np.testing.assert_array_equal(hits.rows, np.argsort(-wbar, axis=1, kind="stable")[:, :4])
    np.testing.assert_allclose(hits.weights, np.sort(wbar, axis=1)[:, ::-1][:, :4], rtol=1e-10)
    # hard: each head's own best row (the τ → 0 limit of the soft answer), concatenated
    vp, dvh = V @ p.W_V, 6 // heads
    best = logw.argmax(axis=2)  # (h, m)
    want = np.concatenate([vp[best[a], a * dvh : (a + 1) * dvh] for a in range(heads)], axis=1)
    np.testing.assert_allclose(t.lookup(Q, mode="hard"), want)
    np.testing.assert_allclose(t.lookup(Q, temperature=1e-6), want, atol=1e-6)


def test_multihead_search_scores_are_log_mean_weights_and_masks_hold():
    rng = np.random.default_rng(8)
    K, Q = rng.standard_normal((40, 6)), rng.standard_normal((3, 6))
    t = SoftTable(K, projection=Projection(6, d_k=6, heads=3, init="random"))
    mask = np.zeros(40, bool)
    mask[[3, 17]] = True
    hits = t.search(Q, k=4, mask=mask)
    assert set(hits.rows[:, :2].ravel()) <= {3, 17}
    np.testing.assert_array_equal(hits.rows[:, 2:], -1)
    assert (hits.ids[:, 2:] == None).all()  # noqa: E711
    np.testing.assert_allclose(np.exp(hits.scores[:, :2]), hits.weights[:, :2], rtol=1e-6)
    np.testing.assert_allclose(hits.weights[:, :2].sum(axis=1), 1, rtol=1e-6)
    assert np.isneginf(hits.scores[:, 2:]).all() and (hits.weights[:, 2:] == 0).all()


def test_cosine_normalises_raw_inputs_then_projects():
    rng = np.random.default_rng(9)
    K, Q = rng.standard_normal((30, 5)), rng.standard_normal((4, 5))
    p = Projection(5, d_k=3, init="random", temperature=0.2)
    t = SoftTable(K, metric="cosine", projection=p)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    want = softmax((unit(Q) @ p.W_Q) @ (unit(K) @ p.W_K).T / 0.2, axis=1)
    np.testing.assert_allclose(t.weights(Q), want, rtol=1e-5, atol=1e-7)


def test_default_temperature_is_sqrt_dk_per_head_for_dot():
    K = np.eye(8, dtype=np.float32)
    assert SoftTable(K, projection=Projection(8, d_k=32, heads=2)).temperature == pytest.approx(4.0)
    assert SoftTable(K, temperature=0.3, projection=Projection(8, heads=2)).temperature == 0.3
    assert SoftTable(K, metric="cosine", projection=Projection(8)).temperature == 0.05
    assert SoftTable(K, projection=Projection(8, temperature=0.7)).temperature == pytest.approx(0.7)


# ------------------------------------------------------------------ caching
def test_projected_rows_are_cached_and_refreshed():
    rng = np.random.default_rng(10)
    K = rng.standard_normal((20, 4)).astype(np.float32)
    t = SoftTable(K, ids=[f"r{i}" for i in range(20)], projection=Projection(4))
    first = t._snapshot()[1]
    assert t._snapshot()[1] is first  # computed once per version
    t.projection.set_weights(W_K=2 * np.eye(4))
    second = t._snapshot()[1]
    assert second is not first
    np.testing.assert_allclose(second.keys[0], 2 * K, rtol=1e-6)
    t.add(np.ones((1, 4), np.float32), ids=["new"])
    third = t._snapshot()[1]
    assert third.keys[0].shape == (21, 4)
    assert t.search(np.ones(4) * 3, k=1).ids[0] == "new"
    t.remove(["new"])
    assert t._snapshot()[1].keys[0].shape == (20, 4)
    t.projection = None
    np.testing.assert_allclose(t.weights(K[:2]), SoftTable(K).weights(K[:2]), atol=1e-7)


def test_readers_see_one_projection_version_at_a_time():
    rng = np.random.default_rng(11)
    K = rng.standard_normal((300, 8))
    V = rng.standard_normal((300, 2))
    Q = rng.standard_normal((5, 8))
    p = Projection(8, temperature=1.0)
    t = SoftTable(K, V, projection=p)
    A, B = np.eye(8), np.diag(np.linspace(0.1, 2, 8))
    answers = [oracle_answer(Q, K, V, W, W, np.eye(2), 1.0, 1) for W in (A, B)]
    bad: list = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            out = t.lookup(Q)
            if not any(np.allclose(out, a, rtol=1e-9) for a in answers):
                bad.append(out)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for th in threads:
        th.start()
    for i in range(60):
        W = B if i % 2 == 0 else A
        p.set_weights(W_Q=W, W_K=W)
    stop.set()
    for th in threads:
        th.join()
    assert not bad


# ---------------------------------------------------------------- state
@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(d_k=4, heads=2, init="random", seed=4, d_v=3, d_out=2),
        dict(tied=True, learn=("q",), rank=3, learn_temperature=True, temperature=0.3),
    ],
)
def test_state_round_trip(kw):
    import json

    p = Projection(6, **kw)
    if p.W_V is None:
        p.bind(6, 5)
    p.set_weights(W_Q=p.W_Q + 0.5)
    config, arrays = p.get_state()
    config = json.loads(json.dumps(config))  # JSON-able
    q = Projection.from_state(config, {k: np.array(v) for k, v in arrays.items()})
    assert repr(q) == repr(p)
    assert q.temperature == p.temperature
    for name in ("W_Q", "W_K", "W_V"):
        np.testing.assert_array_equal(getattr(q, name), getattr(p, name))
    assert (q.W_Q is q.W_K) == p.tied
    assert set(arrays) == {"W_Q", "W_K", "W_V", "log_tau"} and arrays["log_tau"].shape == ()


def test_state_before_w_v_exists_and_bad_version():
    config, arrays = Projection(3).get_state()
    assert "W_V" not in arrays and np.isnan(arrays["log_tau"])
    q = Projection.from_state(config, arrays)
    assert q.W_V is None and q.temperature is None
    msg = "projection state version 99 is not supported (this softdb reads version 1); hint: upgrade softdb"
    with pytest.raises(ValueError, match=re.escape(msg)):
        Projection.from_state({**config, "version": 99}, arrays)


# ---------------------------------------------------------------- errors
def test_errors_name_the_numbers():
    K = np.zeros((3, 5), np.float32)
    K[:, 0] = 1
    msg = "the projection takes keys of width d=4 but the table's keys have 5; hint: Projection(5, ...)"
    with pytest.raises(ValueError, match=re.escape(msg)):
        SoftTable(K, projection=Projection(4))
    msg = "the projection's W_V takes values of width d_v=2 but the table's values have 5; hint: Projection(..., d_v=5)"
    with pytest.raises(ValueError, match=re.escape(msg)):
        SoftTable(K, projection=Projection(5, d_v=2))
    msg = "d_k=5 does not split evenly into heads=2; hint: choose d_k as a multiple of heads, e.g. d_k=4"
    with pytest.raises(ValueError, match=re.escape(msg)):
        Projection(5, heads=2)
    msg = "learn must be a subset of ['q', 'k', 'v', 'b_Q', 'b_K', 'b_V', 'W_O', 'b_O'], got ['x']"
    with pytest.raises(ValueError, match=re.escape(msg)):
        Projection(5, learn=("x",))
    with pytest.raises(TypeError, match=re.escape("projection must be a softdb.Projection or None, got ndarray")):
        SoftTable(K).projection = np.eye(5)
    with pytest.raises(ValueError, match=re.escape("W_Q must have shape (5, 5), got (5, 4)")):
        Projection(5).set_weights(W_Q=np.zeros((5, 4)))
