"""SoftTable lookups against a plain float64 numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from softdb import SearchResult, SoftTable


def reference(q, K, V, tau, metric="dot", mask=None):
    """Float64 oracle: weights, soft answer, hard row, full ranking."""
    q, K, V = (np.asarray(a, np.float64) for a in (q, K, V))
    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=-1, keepdims=True)
        K = K / np.linalg.norm(K, axis=-1, keepdims=True)
    s = q @ K.T  # (m, n)
    z = s / tau
    if mask is not None:
        z = np.where(mask, z, -np.inf)
    w = softmax(z, axis=-1)
    order = np.argsort(-np.where(mask, s, -np.inf) if mask is not None else -s, axis=-1, kind="stable")
    return s, w, w @ V, order


@pytest.fixture
def data():
    rng = np.random.default_rng(42)
    K = rng.standard_normal((300, 24)).astype(np.float32)
    V = rng.standard_normal((300, 7)).astype(np.float32)
    Q = rng.standard_normal((11, 24)).astype(np.float32)
    return K, V, Q


@pytest.mark.parametrize("metric", ["dot", "cosine"])
@pytest.mark.parametrize("tau", [None, 0.05, 1.0, 30.0])
def test_soft_hard_weights_search_match_reference(data, metric, tau):
    K, V, Q = data
    t = SoftTable(K, V, metric=metric, temperature=tau)
    tau_used = t.temperature
    assert tau_used == (tau if tau else (0.05 if metric == "cosine" else np.sqrt(24)))
    s, w, soft, order = reference(Q, K, V, tau_used, metric)
    # float32 logits of size L carry rounding ~ L·6e-8, hence rtol 1e-4 at τ = 0.05
    np.testing.assert_allclose(t.weights(Q), w, rtol=1e-4, atol=2e-6)
    np.testing.assert_allclose(t.lookup(Q), soft, rtol=1e-4, atol=2e-5)
    np.testing.assert_array_equal(t.lookup(Q, mode="hard"), V[order[:, 0]])
    hits = t.search(Q, k=5)
    assert isinstance(hits, SearchResult)
    np.testing.assert_array_equal(hits.rows, order[:, :5])
    np.testing.assert_allclose(hits.scores, np.take_along_axis(s, order[:, :5], 1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(hits.weights, np.take_along_axis(w, order[:, :5], 1), rtol=1e-4, atol=2e-6)
    assert hits.ids.shape == (11, 5) and hits.payloads is None


def test_float64_kept_and_float32_default(data):
    K, V, Q = data
    t64 = SoftTable(K.astype(np.float64), V.astype(np.float64))
    assert t64.dtype == np.float64 and t64.lookup(Q).dtype == np.float64
    t32 = SoftTable(K.tolist(), V.tolist())
    assert t32.dtype == np.float32 and t32.lookup(Q).dtype == np.float32
    _, _, soft, _ = reference(Q, K, V, np.sqrt(24))
    np.testing.assert_allclose(t64.lookup(Q), soft, rtol=1e-10, atol=1e-12)


def test_single_query_gives_1d_results(data):
    K, V, Q = data
    t = SoftTable(K, V, ids=[f"r{i}" for i in range(300)], payloads=[f"text {i}" for i in range(300)])
    assert t.lookup(Q[0]).shape == (7,)
    assert t.lookup(Q[0], mode="hard").shape == (7,)
    assert t.weights(Q[0]).shape == (300,)
    hits = t.search(Q[0], k=3)
    assert hits.ids.shape == hits.scores.shape == hits.weights.shape == hits.payloads.shape == (3,)
    assert [f"text {r}" for r in hits.rows] == list(hits.payloads)
    assert [f"r{r}" for r in hits.rows] == list(hits.ids)
    np.testing.assert_allclose(t.lookup(Q[:1])[0], t.lookup(Q[0]))


def test_keys_as_values_and_inputs_never_mutated(data):
    K, _, Q = data
    K_before, Q_before = K.copy(), Q.copy()
    t = SoftTable(K, metric="cosine")
    t.lookup(Q)
    t.search(Q, k=3)
    np.testing.assert_array_equal(K, K_before)
    np.testing.assert_array_equal(Q, Q_before)
    assert K.flags.writeable  # the table froze its own copy, not ours
    unit = K / np.linalg.norm(K, axis=1, keepdims=True)
    np.testing.assert_allclose(t.values, unit, atol=1e-6)
    np.testing.assert_allclose(t.keys, unit, atol=1e-6)
    with pytest.raises(ValueError, match="read-only"):
        t.keys[0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        t.values[0, 0] = 1.0


def test_properties(data):
    K, V, _ = data
    t = SoftTable(K, V, ids=[f"x{i}" for i in range(300)])
    assert len(t) == 300 and t.dim == 24 and t.value_dim == 7
    assert t.ids[:2] == ("x0", "x1")
    with pytest.raises(AttributeError):
        t.ids = ()  # type: ignore[misc]
    assert "SoftTable(n=300, dim=24" in repr(t)


def test_hard_ties_go_to_lowest_row():
    K = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], np.float32)
    V = np.arange(4, dtype=np.float32)[:, None]
    t = SoftTable(K, V)
    assert t.lookup([1.0, 0.0], mode="hard")[0] == 0
    assert t.lookup([0.0, 1.0], mode="hard")[0] == 1
    assert t.search([0.0, 1.0], k=2).rows.tolist() == [1, 3]
    # chunk boundaries must not change the tie rule
    from softdb.engine._kernel import stream

    for chunk in (1, 2, 3):
        r = stream(np.array([[0, 1]], np.float32), K, hard=True, k=3, chunk=chunk)
        assert r.best_row.tolist() == [1]
        assert r.top_rows.tolist() == [[1, 3, 0]]


def test_search_weight_is_full_table_weight_not_renormalised(data):
    K, V, Q = data
    t = SoftTable(K, V, temperature=1.0)
    hits = t.search(Q, k=3)
    w64 = reference(Q, K, V, 1.0)[1]  # (m, n)  float64 full-table weights
    # logits here reach ~20, whose float32 rounding (~20·6e-8) moves a weight by ~1e-6 relative:
    # search and weights() round differently, so both are held to the float64 oracle
    np.testing.assert_allclose(hits.weights, np.take_along_axis(w64, hits.rows, 1), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(hits.weights, np.take_along_axis(t.weights(Q), hits.rows, 1), rtol=1e-5, atol=1e-7)
    assert (hits.weights.sum(axis=1) < 1).all()


def test_mask_row_and_per_query(data):
    K, V, Q = data
    rng = np.random.default_rng(1)
    mask = rng.random((11, 300)) < 0.3
    t = SoftTable(K, V)
    _, w, soft, order = reference(Q, K, V, t.temperature, mask=mask)
    np.testing.assert_allclose(t.weights(Q, mask=mask), w, atol=2e-6)
    np.testing.assert_allclose(t.lookup(Q, mask=mask), soft, atol=2e-5)
    np.testing.assert_array_equal(t.lookup(Q, mode="hard", mask=mask), V[order[:, 0]])
    hits = t.search(Q, k=4, mask=mask)
    np.testing.assert_array_equal(hits.rows, order[:, :4])
    one = mask[0]
    np.testing.assert_allclose(t.weights(Q, mask=one), reference(Q, K, V, t.temperature, mask=one)[1], atol=2e-6)


def test_fully_masked_query_is_a_defined_no_match(data):
    K, V, Q = data
    t = SoftTable(K, V, ids=[str(i) for i in range(300)], payloads=list(range(300)))
    mask = np.ones((11, 300), bool)
    mask[3] = False  # query 3 may see nothing
    mask[5] = False
    mask[5, 7] = True  # query 5 sees one row
    soft = t.lookup(Q, mask=mask)
    np.testing.assert_array_equal(soft[3], 0)
    np.testing.assert_allclose(soft[5], V[7], atol=1e-6)
    np.testing.assert_array_equal(t.lookup(Q, mode="hard", mask=mask)[3], 0)
    w = t.weights(Q, mask=mask)
    assert w[3].sum() == 0 and w[5, 7] == pytest.approx(1.0)
    np.testing.assert_allclose(np.delete(w.sum(axis=1), 3), 1, atol=1e-5)
    hits = t.search(Q, k=3, mask=mask)
    assert hits.ids[3].tolist() == [None] * 3 and hits.rows[3].tolist() == [-1] * 3
    assert np.isneginf(hits.scores[3]).all() and (hits.weights[3] == 0).all()
    assert hits.ids[5].tolist() == ["7", None, None] and hits.payloads[5].tolist() == [7, None, None]
    assert not np.isnan(hits.weights).any()


def test_temperature_limits(data):
    K, V, Q = data
    t = SoftTable(K, V)
    hard = t.lookup(Q, mode="hard")
    np.testing.assert_allclose(t.lookup(Q, temperature=1e-6), hard, atol=1e-5)
    np.testing.assert_allclose(t.lookup(Q, temperature=1e9), np.broadcast_to(V.mean(0), hard.shape), atol=1e-4)
    np.testing.assert_allclose(t.lookup(Q, temperature=1e300), np.broadcast_to(V.mean(0), hard.shape), atol=1e-4)


def test_large_scores_stay_finite():
    rng = np.random.default_rng(3)
    K = (rng.standard_normal((50, 8)) * 100).astype(np.float32)
    V = rng.standard_normal((50, 2)).astype(np.float32)
    t = SoftTable(K, V, temperature=1.0)
    Q = (rng.standard_normal((4, 8)) * 100).astype(np.float32)  # scores ~ ±1e5
    _, w, soft, order = reference(Q, K, V, 1.0)
    out = t.lookup(Q)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, soft, atol=1e-4)
    hits = t.search(Q, k=5)  # full-table weights of the hits: the kernel's log-sum-exp at ±1e5 scores
    np.testing.assert_allclose(hits.weights, np.take_along_axis(w, order[:, :5], 1), atol=1e-5)


def test_overflow_is_an_error_not_nan():
    K = np.full((3, 2), 1e30, np.float32)
    t = SoftTable(K, temperature=1.0)
    with pytest.raises(ValueError, match="overflowed"):
        t.lookup([1e30, 1e30])


def test_empty_batch_of_queries(data):
    K, V, _ = data
    t = SoftTable(K, V)
    assert t.lookup(np.empty((0, 24), np.float32)).shape == (0, 7)
    assert t.weights(np.empty((0, 24), np.float32)).shape == (0, 300)
    assert t.search(np.empty((0, 24), np.float32), k=2).ids.shape == (0, 2)


def test_add_and_remove(data):
    K, V, Q = data
    t = SoftTable(K[:200], V[:200], ids=[f"a{i}" for i in range(200)], payloads=list(range(200)))
    t.add(K[200:], V[200:], ids=[f"a{i}" for i in range(200, 300)], payloads=list(range(200, 300)))
    full = SoftTable(K, V)
    np.testing.assert_allclose(t.lookup(Q), full.lookup(Q), atol=1e-6)
    gone = [f"a{i}" for i in range(0, 300, 3)]
    t.remove(gone)
    keep = [i for i in range(300) if i % 3]
    ref = SoftTable(K[keep], V[keep])
    np.testing.assert_allclose(t.lookup(Q), ref.lookup(Q), atol=1e-6)
    assert t.ids == tuple(f"a{i}" for i in keep)
    assert t.payloads == tuple(keep)
    assert t.row_of("a4") == keep.index(4)


def test_add_default_ids_continue_and_empty_table_fills():
    t = SoftTable(np.empty((0, 3), np.float32))
    assert len(t) == 0
    t.add(np.eye(3, dtype=np.float32))
    t.add([[1.0, 1.0, 0.0]])
    assert t.ids == (0, 1, 2, 3)
    assert t.lookup([1.0, 1.0, 0.0], mode="hard").tolist() == [1.0, 1.0, 0.0]


def test_readers_keep_their_snapshot(data):
    K, V, _ = data
    t = SoftTable(K, V)
    before = t.keys
    t.remove([0, 1])
    assert before.shape == (300, 24)  # old arrays untouched, swapped not edited
    np.testing.assert_array_equal(before, K)


def test_a_refused_add_changes_nothing():
    # the payload flag used to be set before validation: a refused add(payloads=...) turned
    # a table without payloads into one with payloads (None, ...) for every later add
    t = SoftTable(np.eye(3, dtype=np.float32), ids=["a", "b", "c"])
    with pytest.raises(ValueError, match="already"):
        t.add([[1.0, 0.0, 0.0]], ids=["a"], payloads=["dup"])
    assert t.payloads is None
    t.add([[0.0, 1.0, 1.0]], ids=["d"])
    assert t.payloads is None and t.search([0.0, 1.0, 1.0], k=1).payloads is None
    t.add([[1.0, 1.0, 1.0]], ids=["e"], payloads=["all"])
    assert t.payloads == (None, None, None, None, "all")
