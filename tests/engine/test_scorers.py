"""Sparse (CSR) and block scorers against the dense kernel on ``.toarray()`` data.

Integer-valued keys, queries and block weights keep every float32 score exact, so
ties are real ties and hard / top-k rows must match exactly, in every reduction,
with masks, in both score layouts and for awkward chunk sizes.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from softdb.engine._kernel import run
from softdb.engine._scorers import BlockScorer, CsrScorer, DenseScorer, row_norm_max
from softdb.engine._states import finalize


@st.composite
def sparse_cases(draw):
    n = draw(st.integers(1, 120))
    m = draw(st.sampled_from([1, 3, 8, 13]))  # 8 and 13: top-k alone lays scores out by row
    d = draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    density = draw(st.sampled_from([0.0, 0.1, 0.5]))
    K = (rng.integers(-3, 4, (n, d)) * (rng.random((n, d)) < density)).astype(np.float32)
    Q = (rng.integers(-3, 4, (m, d)) * (rng.random((m, d)) < 0.6)).astype(np.float32)
    kind = draw(st.sampled_from(["none", "rows", "pairs"]))
    mask = None if kind == "none" else rng.random(n if kind == "rows" else (m, n)) < 0.6
    k = draw(st.integers(1, n))
    chunk = draw(st.sampled_from([None, 1, 7, n]))
    sparse_queries = draw(st.booleans())
    return K, Q, mask, k, chunk, sparse_queries


REDUCTIONS = [
    dict(hard=True),
    dict(k=True),  # alone: by row from 8 queries on
    dict(soft=True, k=True),  # search: top-k + log-sum-exp
    dict(soft=True, values=True, hard=True, k=True),
    dict(soft=True, values=True, stats=True, grid=(0.5, 3.0)),
    dict(soft=True, dense=True),
]


def _run(scorer, queries, n, m, opts, k, mask, chunk, V):
    dense = np.empty((m, n), np.float32) if opts.get("dense") else None
    st_ = run(
        scorer,
        queries,
        V if opts.get("values") else None,
        scale=0.5,
        soft=opts.get("soft", False),
        hard=opts.get("hard", False),
        k=k if opts.get("k") else 0,
        dense=dense,
        mask=mask,
        chunk=chunk,
        stats=opts.get("stats", False),
        grid=opts.get("grid", ()),
    )
    return finalize(st_), dense


def _same(a, b, da, db):
    for f in ("best_row", "top_rows"):
        if getattr(b, f) is not None:
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    for f in ("best_score", "top_scores"):
        if getattr(b, f) is not None:
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f))  # exact: integer scores
    for f in ("out", "lse", "lse_grid", "entropy", "effective_rows"):
        if getattr(b, f) is not None:
            np.testing.assert_allclose(getattr(a, f), getattr(b, f), rtol=1e-5, atol=1e-5)
    if db is not None:
        np.testing.assert_array_equal(da, db)


@settings(deadline=None, max_examples=60, derandomize=True)
@given(case=sparse_cases(), opts=st.sampled_from(REDUCTIONS))
def test_csr_keys_match_the_dense_kernel(case, opts):
    K, Q, mask, k, chunk, sparse_queries = case
    n, m = K.shape[0], Q.shape[0]
    V = np.arange(n * 2, dtype=np.float32).reshape(n, 2) % 5
    q = sp.csr_matrix(Q) if sparse_queries else Q
    got, dg = _run(CsrScorer(sp.csr_matrix(K)), q, n, m, opts, k, mask, chunk, V)
    ref, dr = _run(DenseScorer(K, row_norm_max(K)), Q, n, m, opts, k, mask, chunk, V)
    _same(got, ref, dg, dr)


@settings(deadline=None, max_examples=60, derandomize=True)
@given(
    case=sparse_cases(),
    opts=st.sampled_from(REDUCTIONS),
    weights=st.sampled_from([(1.0, 1.0), (2.0, 0.5), (-1.0, 3.0), (0.0, 1.0)]),
)
def test_blocks_match_the_dense_kernel_on_the_concatenated_keys(case, opts, weights):
    K1, Q1, mask, k, chunk, sparse_queries = case
    n, m = K1.shape[0], Q1.shape[0]
    rng = np.random.default_rng(n * 31 + m)
    K0 = rng.integers(-2, 3, (n, 3)).astype(np.float32)  # the dense block
    Q0 = rng.integers(-2, 3, (m, 3)).astype(np.float32)
    V = rng.integers(0, 4, (n, 3)).astype(np.float32)
    hybrid = BlockScorer([DenseScorer(K0, row_norm_max(K0)), CsrScorer(sp.csr_matrix(K1))], weights=weights)
    q1 = sp.csr_matrix(Q1) if sparse_queries else Q1
    got, dg = _run(hybrid, [Q0, q1], n, m, opts, k, mask, chunk, V)
    w0, w1 = np.float32(weights[0]), np.float32(weights[1])
    K = np.hstack([K0, K1])  # (n, 3 + d)
    Q = np.hstack([w0 * Q0, w1 * Q1])  # (m, 3 + d)
    ref, dr = _run(DenseScorer(K, row_norm_max(K)), Q, n, m, opts, k, mask, chunk, V)
    _same(got, ref, dg, dr)


def test_sparse_values_blend_like_dense_ones():
    rng = np.random.default_rng(0)
    K = rng.integers(-2, 3, (40, 5)).astype(np.float32)
    V = (rng.integers(0, 3, (40, 6)) * (rng.random((40, 6)) < 0.3)).astype(np.float32)
    Q = rng.integers(-2, 3, (4, 5)).astype(np.float32)
    a = finalize(run(DenseScorer(K), Q, sp.csr_matrix(V), scale=0.3, soft=True, chunk=7))
    b = finalize(run(DenseScorer(K), Q, V, scale=0.3, soft=True, chunk=7))
    np.testing.assert_allclose(a.out, b.out, rtol=1e-5, atol=1e-6)


def test_csr_chunks_are_views_not_copies():
    K = sp.random(50, 8, density=0.3, format="csr", dtype=np.float32, random_state=0)
    s = CsrScorer(K)
    view = s.rows(10, 20)
    assert np.shares_memory(view.data, K.data)
    np.testing.assert_array_equal(view.toarray(), K[10:20].toarray())


def test_scorer_errors_say_what_must_hold():
    with pytest.raises(TypeError, match=re.escape("CsrScorer takes a scipy.sparse matrix, got ndarray")):
        CsrScorer(np.eye(2))
    s = CsrScorer(sp.eye(3, format="csr", dtype=np.float32))
    with pytest.raises(ValueError, match=re.escape("queries have 2 columns but the sparse keys have 3")):
        s.bind(np.ones((1, 2), np.float32))
    with pytest.raises(ValueError, match=re.escape("every block must hold the same rows, got row counts [2, 3]")):
        BlockScorer([s, DenseScorer(np.eye(2, dtype=np.float32))])
    b = BlockScorer([s, s])
    with pytest.raises(ValueError, match=re.escape("takes a sequence of 2 query matrices, one per block")):
        b.bind(np.ones((1, 3), np.float32))


def test_the_plan_takes_sparse_keys_and_blocks_as_heads():
    from softdb.engine._plan import Ask, Head, answer

    rng = np.random.default_rng(7)
    K1 = (rng.integers(0, 3, (30, 6)) * (rng.random((30, 6)) < 0.4)).astype(np.float32)
    K0 = rng.integers(-2, 3, (30, 4)).astype(np.float32)
    V = rng.integers(0, 3, (30, 2)).astype(np.float32)
    Q0, Q1 = rng.integers(-2, 3, (5, 4)).astype(np.float32), rng.integers(0, 2, (5, 6)).astype(np.float32)
    ask = Ask(soft=True, hard=True, lse=True, k=4)
    dense = answer([Head(np.hstack([K0, 2 * K1]), V)], np.hstack([Q0, Q1]), ask, tau=0.5)
    hybrid = BlockScorer([DenseScorer(K0), CsrScorer(sp.csr_matrix(K1))], weights=[1.0, 2.0])
    via_blocks = answer([Head(hybrid, V)], [Q0, sp.csr_matrix(Q1)], ask, tau=0.5, dtype=np.float32)
    np.testing.assert_array_equal(via_blocks.rows, dense.rows)
    np.testing.assert_array_equal(via_blocks.hard, dense.hard)
    np.testing.assert_allclose(via_blocks.soft, dense.soft, rtol=1e-5)
    via_csr = answer([Head(sp.csr_matrix(K1), V)], Q1, ask, tau=0.5)
    ref = answer([Head(K1, V)], Q1, ask, tau=0.5)
    np.testing.assert_array_equal(via_csr.rows, ref.rows)


@pytest.mark.parametrize("same", [True, False])
def test_one_query_blend_in_cache_sized_chunks_matches_float64(monkeypatch, same):
    # one query with a soft answer over dense values takes the unthreaded, cache-sized path
    import softdb.engine._kernel as kernel

    monkeypatch.setattr(kernel, "BLEND_CHUNK_BYTES", 1)  # 256-row chunks: many of them
    rng = np.random.default_rng(7)
    K = rng.standard_normal((1000, 6)).astype(np.float32)
    V = K if same else rng.standard_normal((1000, 3)).astype(np.float32)
    q = rng.standard_normal((1, 6)).astype(np.float32)
    mask = rng.random(1000) < 0.7
    r = finalize(run(DenseScorer(K), q, V, scale=2.0, soft=True, hard=True, k=5, mask=mask, stats=True))
    s = np.where(mask, (q.astype(np.float64) @ K.T.astype(np.float64))[0] * 2.0, -np.inf)  # (n,)
    w = np.exp(s - s.max())
    w /= w.sum()
    np.testing.assert_allclose(r.out[0], w @ V, rtol=1e-4, atol=1e-5)
    assert r.lse[0] == pytest.approx(s.max() + np.log(np.exp(s - s.max()).sum()), rel=1e-5)
    assert r.best_row[0] == np.argmax(s)
    np.testing.assert_array_equal(r.top_rows[0], np.argsort(-s, kind="stable")[:5])
