"""SoftTable.fit: the directed 3-cycles, kernel regression, optimisers, errors."""

from __future__ import annotations

import re

import numpy as np
import pytest

from softdb import FitReport, Projection, SoftTable


def cycles(seed: int = 0, n_cycles: int = 20, d: int = 32):
    """60 random unit tokens grouped into 20 directed 3-cycles a → b → c → a."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((3 * n_cycles, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    succ = np.empty(3 * n_cycles, np.int64)
    for a, b, c in rng.permutation(3 * n_cycles).reshape(n_cycles, 3):
        succ[a], succ[b], succ[c] = b, c, a
    return X, succ


def successor_accuracy(tied: bool, seed: int = 0) -> tuple[float, FitReport]:
    X, succ = cycles(seed)
    table = SoftTable(X, projection=Projection(32, tied=tied))
    report = table.fit(X, succ.tolist(), loss="rows", max_iter=200)
    return float((table.search(X, k=1).rows[:, 0] == succ).mean()), report


def test_separate_queries_and_keys_learn_directed_cycles():
    acc, report = successor_accuracy(tied=False)
    print(f"separate W_Q, W_K: successor found for {acc:.1%} of tokens")
    assert acc >= 0.99  # measured: 100% (seed 0, 15 L-BFGS iterations)
    assert report.loss_history[-1] < 0.01 * report.loss_history[0]


def test_tied_projection_cannot_learn_directed_cycles():
    # symmetric s: s(a,b) > s(a,c) = s(c,a) > s(c,b) = s(b,c) > s(b,a) = s(a,b), a contradiction,
    # so at most 2 of each 3 tokens can rank their successor first.
    acc, _ = successor_accuracy(tied=True)
    print(f"tied W_Q = W_K: successor found for {acc:.1%} of tokens")
    assert acc <= 2 / 3  # measured: 8.3% (a PSD score W Wᵀ also favours the token itself)


def test_learned_kernel_regression_beats_knn_on_held_out_queries():
    """Learn W_Q = W_K and W_V so the soft lookup returns a numeric attribute of the rows."""
    rng = np.random.default_rng(0)
    d, n = 16, 600

    def unit(a):
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    def attr(z):  # depends on 2 of the 16 directions only
        return np.sin(6 * z[:, 0]) + 3 * z[:, 1] ** 2

    K = unit(rng.standard_normal((n, d)))
    noise = rng.standard_normal((n, 3))
    V = np.column_stack([noise[:, :2], attr(K), noise[:, 2]])  # the attribute is column 2 of 4
    Q = unit(rng.standard_normal((300 + 150 + 400, d)))
    y = attr(Q)
    tr, va, te = slice(0, 300), slice(300, 450), slice(450, None)
    table = SoftTable(K, V, metric="cosine", projection=Projection(d, d_out=1, tied=True))
    report = table.fit(Q[tr], y[tr, None], loss="values", max_iter=150, validation=(Q[va], y[va, None]), patience=15)
    learned = float(np.mean((table.lookup(Q[te])[:, 0] - y[te]) ** 2))
    sims = Q[te] @ K.T  # (m, n)  cosine
    knn = {
        k: float(np.mean((attr(K)[np.argsort(-sims, axis=1)[:, :k]].mean(axis=1) - y[te]) ** 2))
        for k in (1, 3, 5, 10, 20, 40)
    }
    best_k = min(knn, key=knn.get)
    print(
        f"held-out MSE: learned kernel regression {learned:.4f}; best k-NN (k={best_k}) {knn[best_k]:.4f}; "
        f"variance {y[te].var():.4f}"
    )
    assert report.val_metric == "mse" and report.best_val_metric == min(report.val_metric_history)
    assert np.argmax(np.abs(table.projection.W_V[:, 0])) == 2  # W_V picked the attribute column
    assert learned < knn[best_k]  # k-NN cannot learn that 14 of the 16 directions are noise


def test_adam_with_validation_early_stopping_keeps_the_best_weights():
    X, succ = cycles(1)
    rng = np.random.default_rng(1)
    Q_tr = X + 0.4 * rng.standard_normal(X.shape) / np.sqrt(32)  # noisy views of each token
    Q_va = X + 0.4 * rng.standard_normal(X.shape) / np.sqrt(32)
    table = SoftTable(X, projection=Projection(32))
    report = table.fit(
        Q_tr,
        succ.tolist(),
        optimizer="adam",
        max_iter=60,
        batch_size=16,
        learning_rate=0.05,
        validation=(Q_va, succ.tolist()),
        patience=3,
        seed=0,
    )
    assert report.optimizer == "adam" and report.val_metric == "recall@1"
    assert len(report.val_metric_history) == report.iterations + 1  # plus the starting point
    assert len(report.loss_history) == report.iterations + 1
    assert report.stopped_early == (report.iterations < 60)
    assert report.best_val_metric == max(report.val_metric_history) >= 0.9
    val_acc = float((table.search(Q_va, k=1).rows[:, 0] == succ).mean())
    assert val_acc == report.best_val_metric  # the projection holds the best weights
    assert report.loss_history[-1] < report.loss_history[0]


def test_adam_and_lbfgs_both_solve_the_cycles_and_auto_picks_lbfgs():
    X, succ = cycles(2)
    table = SoftTable(X, projection=Projection(32))
    report = table.fit(X, succ.tolist(), optimizer="adam", max_iter=150, batch_size=30, learning_rate=0.05)
    assert (table.search(X, k=1).rows[:, 0] == succ).mean() >= 0.99
    table.projection = Projection(32)
    assert table.fit(X, succ.tolist(), max_iter=5).optimizer == "lbfgs"
    assert report.optimizer == "adam" and 1 <= report.iterations <= 150
    assert len(report.loss_history) == report.iterations + 1 and report.loss_history[-1] < report.loss_history[0]


def test_learn_subset_rank_and_temperature():
    X, succ = cycles(3)
    p = Projection(32, learn=("q",), learn_temperature=True)
    table = SoftTable(X, projection=p)
    table.fit(X, succ.tolist(), max_iter=100)
    np.testing.assert_array_equal(p.W_K, np.eye(32))  # frozen
    assert not np.allclose(p.W_Q, np.eye(32))
    assert p.temperature is not None and p.temperature != pytest.approx(np.sqrt(32))
    assert (table.search(X, k=1).rows[:, 0] == succ).mean() >= 0.99  # W_Q alone suffices here

    low = Projection(32, rank=4)
    table.projection = low
    table.fit(X, succ.tolist(), max_iter=100)
    assert np.linalg.matrix_rank(low.W_Q - np.eye(32), tol=1e-8) <= 4
    assert np.linalg.matrix_rank(low.W_K - np.eye(32), tol=1e-8) <= 4


def test_several_targets_per_query_and_heads():
    X, succ = cycles(4)
    ids = [f"t{i}" for i in range(60)]
    pred = np.argsort(succ)  # predecessor
    targets = [[ids[succ[i]], ids[pred[i]]] for i in range(60)]  # neighbours both ways
    table = SoftTable(X, ids=ids, projection=Projection(32, d_k=32, heads=2))
    report = table.fit(X, targets, max_iter=100, reg=1e-4)
    # −log Σ_{j∈T} w̄_j asks for the mass on the target *set*, not for every target in the top k
    top1 = table.search(X, k=1).ids[:, 0]
    assert np.mean([top1[i] in targets[i] for i in range(60)]) >= 0.95
    w = table.weights(X)  # (60, 60)  mean over the 2 heads
    mass = np.array([w[i, [table.row_of(t) for t in targets[i]]].sum() for i in range(60)])
    assert np.median(mass) >= 0.9
    assert report.loss_history[-1] < report.loss_history[0]


def test_fit_errors():
    X, succ = cycles(0)
    plain = SoftTable(X)
    msg = (
        "this table has no projection to fit; hint: table.projection = Projection(table.dim) "
        "(or SoftTable(..., projection=Projection(d)))"
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        plain.fit(X, succ.tolist())
    table = SoftTable(X, ids=[f"t{i}" for i in range(60)], projection=Projection(32))
    msg = "targets[1] names id 'nope', which is not in the table; hint: targets are row ids (see table.ids)"
    with pytest.raises(ValueError, match=re.escape(msg)):
        table.fit(X[:2], ["t1", "nope"])
    msg = "targets has 3 entries but there are 2 queries; hint: give one target id (or list of ids) per query"
    with pytest.raises(ValueError, match=re.escape(msg)):
        table.fit(X[:2], ["t1", "t2", "t3"])
    with pytest.raises(ValueError, match=re.escape("targets[0] is empty")):
        table.fit(X[:1], [[]])
    msg = (
        "targets must have shape (2, 32) (one answer of width d_out=32 per query), got (2, 3); "
        "hint: loss='values' targets are vectors, loss='rows' takes ids"
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        table.fit(X[:2], np.zeros((2, 3)), loss="values")
    with pytest.raises(ValueError, match=re.escape("loss must be one of ['rows', 'values'], got 'mse'")):
        table.fit(X[:2], ["t1", "t2"], loss="mse")
    with pytest.raises(ValueError, match=re.escape("optimizer must be one of ['auto', 'lbfgs', 'adam'], got 'sgd'")):
        table.fit(X[:2], ["t1", "t2"], optimizer="sgd")
    table.projection = Projection(32, learn=("v",))
    with pytest.raises(ValueError, match=re.escape("nothing to fit: learn=('v',) selects no matrix")):
        table.fit(X[:2], ["t1", "t2"])


def test_patience_stops_when_validation_cannot_improve():
    X, succ = cycles(5)
    table = SoftTable(X, projection=Projection(32))
    # successors of held-out tokens are arbitrary: nothing learned on the others transfers
    report = table.fit(
        X[:45],
        succ[:45].tolist(),
        optimizer="adam",
        max_iter=50,
        batch_size=15,
        validation=(X[45:], succ[45:].tolist()),
        patience=3,
        seed=0,
    )
    assert report.stopped_early and not report.converged and report.iterations < 50
    assert len(report.val_metric_history) == report.iterations + 1
