"""Biases b_Q, b_K, b_V and the output projection W_O (+ b_O): forward against float64 numpy,
gradients against finite differences, fit, saving, and their errors."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy.optimize import check_grad
from scipy.special import softmax

from softdb import Projection, SoftTable
from softdb.learn._fit import Objective
from softdb.learn._losses import rows_loss, values_loss

EXTRAS = ("b_Q", "b_K", "b_V", "W_O", "b_O")


def csr(targets):
    indptr = np.concatenate([[0], np.cumsum([len(t) for t in targets])])
    return indptr, np.concatenate([np.asarray(t) for t in targets])


@pytest.fixture
def small():
    rng = np.random.default_rng(11)
    X = rng.standard_normal((7, 4))
    K = rng.standard_normal((9, 4))
    V = rng.standard_normal((9, 5))
    targets = [[1], [2, 5], [0], [8], [3, 4, 7], [6], [1]]
    return X, K, V, targets


def random_extras(rng, d_k, d_out, d_o):
    return {
        "b_Q": rng.standard_normal(d_k),
        "b_K": rng.standard_normal(d_k),
        "b_V": rng.standard_normal(d_out),
        "W_O": rng.standard_normal((d_out, d_o)),
        "b_O": rng.standard_normal(d_o),
    }


def oracle(X, K, V, p, tau):
    """float64 numpy: each head's weights (h, m, n) and the answers after W_O."""
    h, dh, dvh = p.heads, p.d_k // p.heads, p.d_out // p.heads
    q = X @ p.W_Q + (0 if p.b_Q is None else p.b_Q)
    k = K @ p.W_K + (0 if p.b_K is None else p.b_K)
    v = V @ p.W_V + (0 if p.b_V is None else p.b_V)
    w = np.stack([softmax(q[:, a * dh : (a + 1) * dh] @ k[:, a * dh : (a + 1) * dh].T / tau, axis=1) for a in range(h)])
    ctx = np.concatenate([w[a] @ v[:, a * dvh : (a + 1) * dvh] for a in range(h)], axis=1)
    out = ctx if p.W_O is None else ctx @ p.W_O + (0 if p.b_O is None else p.b_O)
    return w, ctx, out, v


# ------------------------------------------------------------------- forward
@pytest.mark.parametrize("heads", [1, 2, 3])
@pytest.mark.parametrize("with_o", [False, True])
def test_lookup_weights_and_hard_match_float64_oracle(heads, with_o):
    rng = np.random.default_rng(heads + 10 * with_o)
    K, V, X = rng.standard_normal((40, 6)), rng.standard_normal((40, 5)), rng.standard_normal((8, 6))
    p = Projection(6, d_k=6, d_out=3 * heads, d_v=5, heads=heads, init="random", temperature=0.9)
    ex = random_extras(rng, 6, 3 * heads, 4)
    if not with_o:
        ex.pop("W_O"), ex.pop("b_O")
    p.set_weights(**ex)
    t = SoftTable(K, V, projection=p)
    w, _, out, v = oracle(X, K, V, p, 0.9)
    np.testing.assert_allclose(t.lookup(X), out, atol=1e-12, rtol=1e-12)
    np.testing.assert_allclose(t.weights(X, heads="each"), w, atol=1e-13)
    np.testing.assert_allclose(t.weights(X), w.mean(axis=0), atol=1e-13)
    assert t.weights(X[0], heads="each").shape == (heads, 40)
    np.testing.assert_allclose(t.weights(X[0], heads="each"), w[:, 0], atol=1e-13)
    # hard: each head's best row's projected value, concatenated, then W_O (+ b_O)
    dvh = 3
    best = w.argmax(axis=2)  # (h, m)
    hard = np.concatenate([v[best[a], a * dvh : (a + 1) * dvh] for a in range(heads)], axis=1)
    if with_o:
        hard = hard @ p.W_O + p.b_O
    np.testing.assert_allclose(t.lookup(X, mode="hard"), hard, atol=1e-12)
    # a fully masked query: "no match" stays all zero, even with b_V and b_O
    assert not t.lookup(X, mask=np.zeros(40, bool)).any()
    assert not t.lookup(X, mask=np.zeros(40, bool), mode="hard").any()


def test_explain_one_head_is_that_head():
    rng = np.random.default_rng(3)
    K, V, q = rng.standard_normal((30, 6)), rng.standard_normal((30, 4)), rng.standard_normal(6)
    p = Projection(6, d_k=6, d_out=4, d_v=4, heads=2, init="random", temperature=0.7)
    p.set_weights(**random_extras(rng, 6, 4, 3))
    t = SoftTable(K, V, ids=[f"r{i}" for i in range(30)], projection=p)
    w, ctx, out, v = oracle(q[None], K, V, p, 0.7)
    for h in range(2):
        e = t.explain(q, k=4, head=h)
        order = np.argsort(-w[h, 0], kind="stable")[:4]
        assert e.ids == [f"r{i}" for i in order]
        np.testing.assert_allclose(e.weights, w[h, 0, order], atol=1e-12)
        np.testing.assert_allclose(e.soft, ctx[0, 2 * h : 2 * h + 2], atol=1e-12)  # before W_O
        np.testing.assert_allclose(e.hard, v[order[0], 2 * h : 2 * h + 2], atol=1e-12)
        ent = -(w[h, 0] * np.log(w[h, 0])).sum()
        assert e.entropy == pytest.approx(ent, abs=1e-10)
        assert e.head == h and f"(head {h})" in str(e)
    e = t.explain(q, k=4)  # all heads: answers after W_O
    np.testing.assert_allclose(e.soft, out[0], atol=1e-12)
    msg = "head must be an int in [0, 2) (this table has 2 heads), got 2; hint: table.projection.heads is the number"
    with pytest.raises(ValueError, match=re.escape(msg)):
        t.explain(q, head=2)
    with pytest.raises(ValueError, match=re.escape("head must be an int in [0, 1) (this table has 1 head), got -1")):
        SoftTable(K).explain(q, head=-1)
    msg = "heads must be 'mean' or 'each', got 'all'; hint: 'each' gives every head's weights, shape (heads, m, n)"
    with pytest.raises(ValueError, match=re.escape(msg)):
        t.weights(q, heads="all")


def test_plain_table_each_is_one_head():
    rng = np.random.default_rng(4)
    K, X = rng.standard_normal((12, 3)).astype(np.float32), rng.standard_normal((5, 3)).astype(np.float32)
    t = SoftTable(K, temperature=0.5)
    np.testing.assert_array_equal(t.weights(X, heads="each"), t.weights(X)[None])
    assert t.weights(X[0], heads="each").shape == (1, 12)


# ----------------------------------------------------------------- gradients
@pytest.mark.parametrize("heads", [1, 3])
@pytest.mark.parametrize("name", EXTRAS)
def test_raw_gradient_of_each_new_parameter(small, heads, name):
    """rows_loss / values_loss: each new parameter's analytic gradient vs scipy's check_grad."""
    X, K, V, targets = small
    rng = np.random.default_rng(5)
    W = {"W_Q": rng.standard_normal((4, 6)), "W_K": rng.standard_normal((4, 6)), "W_V": rng.standard_normal((5, 6))}
    ex = random_extras(rng, 6, 6, 2)
    Y = rng.standard_normal((7, 2))
    losses = ["values"] + (["rows"] if name in ("b_Q", "b_K") else [])
    for loss_name in losses:

        def run(x, loss_name=loss_name):
            e = dict(ex, **{name: x.reshape(ex[name].shape)})
            if loss_name == "rows":
                return rows_loss(X, K, csr(targets), W["W_Q"], W["W_K"], 0.4, heads=heads, b_Q=e["b_Q"], b_K=e["b_K"])
            return values_loss(X, K, V, Y, W["W_Q"], W["W_K"], W["W_V"], 0.4, heads=heads, **e)

        x0 = ex[name].ravel()
        grad = np.ravel(run(x0)[1][name])
        err = check_grad(lambda x, run=run: run(x)[0], lambda x, run=run: np.ravel(run(x)[1][name]), x0, epsilon=1e-7)
        if name == "b_K":  # b_K adds q·b_K to all of a query's scores: no weight changes, gradient 0
            assert np.abs(grad).max() < 1e-12 and err < 1e-6
            continue
        assert np.linalg.norm(grad) > 1e-3, (loss_name, name)
        assert err / np.linalg.norm(grad) <= 1e-6, (loss_name, name, err)


@pytest.mark.parametrize(
    "kw",
    [
        dict(learn=("q", "b_Q", "b_V", "W_O", "b_O")),
        dict(learn=("q", "k", "b_Q", "b_K"), tied=True),
        dict(learn=("v", "W_O", "b_O", "b_V"), rank=2),
        dict(learn=("b_Q", "b_K", "W_O"), heads=2, learn_temperature=True),
    ],
)
@pytest.mark.parametrize("loss", ["rows", "values"])
def test_objective_gradient_with_new_parameters(small, kw, loss):
    """The flat θ objective (tied biases, low rank, absent W_O starting at I): check_grad ≤ 1e-6."""
    X, K, V, targets = small
    kw = dict(kw)
    heads = kw.pop("heads", 1)
    rng = np.random.default_rng(9)
    W_Q = rng.standard_normal((4, 4))
    W_K = W_Q if kw.get("tied") else rng.standard_normal((4, 4))
    W_V = rng.standard_normal((5, 4))
    extras = {"b_Q": rng.standard_normal(4), "b_V": rng.standard_normal(4)}  # b_K, W_O, b_O absent
    if kw.get("tied"):
        extras["b_K"] = extras["b_Q"]
    if loss == "rows" and not {"q", "k", "b_Q", "b_K"} & set(kw["learn"]):
        with pytest.raises(ValueError, match=re.escape("nothing to fit: learn=('v', 'W_O', 'b_O', 'b_V') selects")):
            Objective(loss, K, V, W_Q, W_K, W_V, 0.2, heads=heads, extras=extras, **kw)
        return
    obj = Objective(loss, K, V, W_Q, W_K, W_V, 0.2, heads=heads, reg=0.05, extras=extras, **kw)
    target = csr(targets) if loss == "rows" else rng.standard_normal((7, 4))
    x0 = obj.x0 + 0.3 * rng.standard_normal(obj.x0.shape)
    grad = obj(x0, X, target)[1]
    assert np.linalg.norm(grad) > 1e-3
    err = check_grad(lambda t: obj(t, X, target)[0], lambda t: obj(t, X, target)[1], x0, epsilon=1e-7)
    assert err / np.linalg.norm(grad) <= 1e-6


def test_fit_learns_biases_and_output_projection():
    """loss='values' with learn=b_Q, b_V, W_O, b_O: the loss falls and the learned parts are set."""
    rng = np.random.default_rng(21)
    K, V = rng.standard_normal((50, 6)), rng.standard_normal((50, 4))
    X = K[:30] + 0.1 * rng.standard_normal((30, 6))
    teacher = Projection(6, d_out=4, d_v=4, heads=2, init="random", seed=1, temperature=1.0)
    teacher.set_weights(**random_extras(rng, 6, 4, 4))
    Y = SoftTable(K, V, projection=teacher).lookup(X)  # (30, 4)
    learn = ("b_Q", "b_V", "W_O", "b_O")
    p = Projection(6, d_out=4, d_v=4, heads=2, init="random", seed=2, temperature=1.0, learn=learn)
    t = SoftTable(K, V, projection=p)
    assert p.W_O is None  # absent: fit starts it at the identity
    report = t.fit(X, Y, loss="values", max_iter=200)
    assert report.loss_history[-1] < 0.2 * report.loss_history[0]
    assert p.W_O.shape == (4, 4) and p.b_O.shape == (4,) and p.b_V.shape == (4,) and p.b_Q.shape == (6,)
    assert p.b_K is None  # not learned, stays absent
    np.testing.assert_allclose(np.mean((t.lookup(X) - Y) ** 2), report.loss_history[-1], rtol=1e-6)


# ------------------------------------------------------------ saving, errors
def test_extras_save_and_load(tmp_path):
    rng = np.random.default_rng(8)
    K, V, X = rng.standard_normal((10, 4)), rng.standard_normal((10, 3)), rng.standard_normal((3, 4))
    p = Projection(4, d_out=4, d_v=3, heads=2, init="random", temperature=0.6, tied=True)
    p.set_weights(**random_extras(rng, 4, 4, 2) | {"b_K": None})
    t = SoftTable(K, V, projection=p)
    t.save(tmp_path / "t")
    u = SoftTable.load(tmp_path / "t")
    for name in EXTRAS:
        np.testing.assert_array_equal(getattr(u.projection, name), getattr(p, name))
    assert u.projection.b_K is u.projection.b_Q  # tied stays tied
    np.testing.assert_array_equal(u.lookup(X), t.lookup(X))
    files = sorted(f.name for f in (tmp_path / "t").iterdir() if f.name.startswith("projection."))
    assert files == sorted(f"projection.{n}.npy" for n in ("W_Q", "W_K", "W_V", "log_tau", *EXTRAS))
    plain = SoftTable(K, V, projection=Projection(4, d_v=3))
    plain.save(tmp_path / "plain")
    files = sorted(f.name for f in (tmp_path / "plain").iterdir() if f.name.startswith("projection."))
    assert files == ["projection.W_K.npy", "projection.W_Q.npy", "projection.W_V.npy", "projection.log_tau.npy"]


def test_extras_errors_name_the_numbers():
    p = Projection(4, d_k=2, d_out=2, d_v=3, heads=2)
    with pytest.raises(ValueError, match=re.escape("b_Q must have shape (2,), got (4,)")):
        p.set_weights(b_Q=np.zeros(4))
    with pytest.raises(ValueError, match=re.escape("b_V must have shape (2,), got (3,)")):
        p.set_weights(b_V=np.zeros(3))
    msg = "b_O needs an output projection W_O; hint: set_weights(W_O=..., b_O=...)"
    with pytest.raises(ValueError, match=re.escape(msg)):
        p.set_weights(b_O=np.zeros(2))
    with pytest.raises(ValueError, match=re.escape("W_O must have shape (2, 5), got (3, 5)")):
        p.set_weights(W_O=np.zeros((3, 5)))
    with pytest.raises(ValueError, match=re.escape("W_O must be 2-D (d_out, d_o), got shape (2,)")):
        p.set_weights(W_O=np.zeros(2))
    with pytest.raises(ValueError, match=re.escape("b_K must be finite; hint: the fit may have diverged")):
        p.set_weights(b_K=[np.nan, 0])
    tied = Projection(4, tied=True)
    msg = "this projection is tied (b_Q = b_K) but b_Q and b_K differ; hint: give one of them"
    with pytest.raises(ValueError, match=re.escape(msg)):
        tied.set_weights(b_Q=np.zeros(4), b_K=np.ones(4))
    p.set_weights(W_O=np.ones((2, 5)), b_O=np.zeros(5))
    msg = "the new W_O has 3 columns but b_O has shape (5,); hint: give b_O too"
    with pytest.raises(ValueError, match=re.escape(msg)):
        p.set_weights(W_O=np.ones((2, 3)))
