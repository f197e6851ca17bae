"""The kernel split over threads: the same answers as one thread, and BLAS left as found.

``run(..., threads=T)`` cuts the rows into T ranges, runs each on its own thread with a
one-thread BLAS and merges the states. Integer-valued data make the scores exact, so
ties are real: top-k and hard rows must be identical to the one-thread run (ties to the
lowest global row), soft answers equal up to float rounding.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_info, threadpool_limits

from softdb import SoftTable
from softdb.engine import _parallel
from softdb.engine._kernel import run
from softdb.engine._scorers import BlockScorer, CsrScorer, DenseScorer, row_norm_max
from softdb.engine._states import finalize


def _blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def _same(a, b, *, soft_rtol=1e-5) -> None:
    for name in ("top_rows", "top_scores", "best_row", "best_score"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            np.testing.assert_array_equal(x, y, err_msg=name)
    for name in ("out", "lse", "lse_grid", "entropy", "effective_rows"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            np.testing.assert_allclose(x, y, rtol=soft_rtol, atol=1e-6, err_msg=name)


@st.composite
def problems(draw):
    n = draw(st.integers(1, 120))
    m = draw(st.sampled_from([1, 3, 8, 13]))
    d = draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    Q = rng.integers(-2, 3, (m, d)).astype(np.float32)
    K = rng.integers(-2, 3, (n, d)).astype(np.float32)  # few distinct scores: ties across ranges
    V = rng.integers(0, 5, (n, 3)).astype(np.float32)
    kind = draw(st.sampled_from(["none", "rows", "pairs"]))
    mask = None if kind == "none" else rng.random(n if kind == "rows" else (m, n)) < 0.5
    opts = draw(
        st.sampled_from(
            [
                dict(hard=True, k=True),
                dict(k=True),  # laid out by row from 8 queries on
                dict(soft=True, k=True),  # search: top-k and its log-sum-exp
                dict(soft=True, values=True),  # one query: the blend path
                dict(soft=True, values=True, hard=True, k=True, stats=True, grid=(0.25, 2.0)),
                dict(dense=True, soft=True),
            ]
        )
    )
    return Q, K, V, mask, opts, draw(st.integers(1, n)), draw(st.integers(2, 5)), draw(st.sampled_from([None, 4]))


def _run(Q, K, V, mask, opts, k, threads, chunk):
    dense = np.full((len(Q), len(K)), np.nan, np.float32) if opts.get("dense") else None
    st_ = run(
        DenseScorer(K, row_norm_max(K)),
        Q,
        V if opts.get("values") else None,
        scale=0.5,  # exact: ties stay ties
        soft=opts.get("soft", False),
        hard=opts.get("hard", False),
        k=k if opts.get("k") else 0,
        dense=dense,
        mask=mask,
        chunk=chunk,
        stats=opts.get("stats", False),
        grid=opts.get("grid", ()),
        threads=threads,
    )
    return finalize(st_), dense


@settings(max_examples=150, deadline=None)
@given(problems())
def test_threads_give_the_one_thread_answers(p):
    Q, K, V, mask, opts, k, threads, chunk = p
    one, dense1 = _run(Q, K, V, mask, opts, k, 1, chunk)
    many, dense_t = _run(Q, K, V, mask, opts, k, threads, chunk)
    _same(one, many)
    if dense1 is not None:
        assert not np.isnan(dense_t).any()  # every cell written
        np.testing.assert_allclose(dense_t, dense1, rtol=1e-6, atol=1e-6)  # Q·τ⁻¹ rounds: GEMM vs GEMV order


def test_threads_match_a_float64_reference():
    rng = np.random.default_rng(1)
    K = rng.standard_normal((5000, 16)).astype(np.float32)
    V = rng.standard_normal((5000, 4)).astype(np.float32)
    Q = rng.standard_normal((7, 16)).astype(np.float32)
    r = finalize(run(DenseScorer(K), Q, V, scale=2.0, soft=True, k=5, threads=3))
    s = (Q.astype(np.float64) @ K.T.astype(np.float64)) * 2.0  # (m, n)
    w = np.exp(s - s.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(r.out, w @ V.astype(np.float64), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(r.top_rows, np.argsort(-s, axis=1, kind="stable")[:, :5])


@pytest.mark.parametrize("kind", ["csr", "blocks"])
def test_sparse_and_block_scorers_split_alike(kind):
    rng = np.random.default_rng(2)
    n, d = 700, 30
    dense_k = rng.integers(0, 3, (n, d)).astype(np.float32) * (rng.random((n, d)) < 0.2)
    q = rng.integers(0, 3, (9, d)).astype(np.float32)
    if kind == "csr":
        scorer, queries = CsrScorer(sp.csr_matrix(dense_k)), q
    else:
        emb = rng.integers(-2, 3, (n, 4)).astype(np.float32)
        scorer = BlockScorer([DenseScorer(emb), CsrScorer(sp.csr_matrix(dense_k))], [1.0, 0.5])
        queries = [rng.integers(-2, 3, (9, 4)).astype(np.float32), q]
    V = rng.standard_normal((n, 3)).astype(np.float32)
    for opts in (dict(k=6), dict(soft=True, k=6), dict(soft=True, hard=True, k=6)):
        values = V if opts.get("hard") else None
        one = finalize(run(scorer, queries, values, scale=0.5, threads=1, **opts))
        many = finalize(run(scorer, queries, values, scale=0.5, threads=4, **opts))
        _same(one, many)


@pytest.fixture
def split_small(monkeypatch):
    """Make every public call on a small table split over threads (as large ones do)."""
    monkeypatch.setattr(_parallel, "MIN_CELLS_PER_THREAD", 1)
    monkeypatch.setattr(_parallel, "MIN_ROWS_PER_THREAD", 1)
    monkeypatch.setattr(_parallel, "blas_threads", lambda: 3)
    monkeypatch.setattr(_parallel, "_cpus", lambda: 3)


def _public_answers(table: SoftTable, Q: np.ndarray) -> dict:
    res = table.search(Q, k=4)
    e = table.explain(Q[0], k=3)
    return {
        "soft": table.lookup(Q),
        "hard": table.lookup(Q, mode="hard"),
        "weights": table.weights(Q),
        "ids": res.ids,
        "scores": res.scores,
        "hit_weights": res.weights,
        "explain_ids": e.ids,
        "explain_soft": e.soft,
        "entropy": e.entropy,
    }


@pytest.mark.parametrize("heads", [1, 2])
def test_public_api_split_over_threads(split_small, monkeypatch, heads):
    """Through lookup, weights, search and explain (multi-head: the mean-weight pass too)."""
    from softdb import Projection

    rng = np.random.default_rng(3)
    K = rng.integers(-2, 3, (300, 6)).astype(np.float32)
    V = rng.standard_normal((300, 5)).astype(np.float32)
    Q = rng.integers(-2, 3, (10, 6)).astype(np.float32)
    proj = None if heads == 1 else Projection(6, d_k=4, d_out=4, heads=heads, init="random", seed=0)
    table = SoftTable(K, V, metric="dot", temperature=0.8, projection=proj)
    split = _public_answers(table, Q)
    monkeypatch.setattr(_parallel, "blas_threads", lambda: 1)
    serial = _public_answers(table, Q)
    for name, x in serial.items():
        if isinstance(x, np.ndarray) and x.dtype.kind == "f":
            np.testing.assert_allclose(split[name], x, rtol=1e-5, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(np.asarray(split[name], object), np.asarray(x, object), err_msg=name)


def test_blas_threads_restored_after_a_split_run():
    before = _blas_threads()
    K = np.random.default_rng(4).standard_normal((4000, 8)).astype(np.float32)
    run(DenseScorer(K), K[:3], k=2, threads=2)
    assert _blas_threads() == before


def test_blas_threads_restored_after_concurrent_and_failing_runs():
    """Overlapping split runs share one reference count; a failing range still restores."""
    before = _blas_threads()
    rng = np.random.default_rng(5)
    K = rng.standard_normal((6000, 8)).astype(np.float32)
    Q = rng.standard_normal((4, 8)).astype(np.float32)
    expected = finalize(run(DenseScorer(K), Q, k=3, threads=1)).top_rows
    seen, errors = [], []

    def worker() -> None:
        try:
            for _ in range(15):
                seen.append(finalize(run(DenseScorer(K), Q, k=3, threads=2)).top_rows)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(seen) == 60 and all((s == expected).all() for s in seen)
    assert _blas_threads() == before

    class Failing(DenseScorer):
        def bind(self, queries, scale=1.0):
            b = super().bind(queries, scale)
            inner = b.scores

            def scores(start, stop, out):
                if start >= 3000:
                    raise RuntimeError("disk gone")
                return inner(start, stop, out)

            b.scores = scores
            b.by_row = False
            return b

    with pytest.raises(RuntimeError, match="disk gone"):
        run(Failing(K), Q, hard=True, threads=2)
    assert _blas_threads() == before


def test_a_blas_limit_keeps_the_kernel_on_one_thread():
    """threadpool_limits(1) (a Dask worker's setting) means one thread for softdb too."""
    assert _parallel.threads_for(256, 1_000_000, None) >= min(_parallel._cpus(), max(_blas_threads()))
    with threadpool_limits(1, "blas"):
        assert _parallel.threads_for(256, 1_000_000, None) == 1


def test_small_passes_stay_on_the_calling_thread():
    assert _parallel.threads_for(1, 1000, None) == 1
    assert _parallel.threads_for(256, 3000, None) == 1


def test_threads_must_be_positive():
    K = np.eye(3, dtype=np.float32)
    with pytest.raises(
        ValueError,
        match=r"threads must be at least 1, got 0; hint: 1 runs the pass on the "
        r"calling thread",
    ):
        run(DenseScorer(K), K, k=1, threads=0)


def test_split_ranges_cover_the_rows():
    assert _parallel.split(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert _parallel.split(2, 2) == [(0, 1), (1, 2)]
    for n in range(1, 40):
        for parts in range(1, n + 1):
            r = _parallel.split(n, parts)
            assert r[0][0] == 0 and r[-1][1] == n and all(a < b for a, b in r)
            assert all(r[i][1] == r[i + 1][0] for i in range(len(r) - 1))


def _split_run_in_child(conn) -> None:
    K = np.arange(40000, dtype=np.float32).reshape(10000, 4) % 7
    rows = finalize(run(DenseScorer(K), K[:3], k=2, threads=2)).top_rows
    conn.send(rows.tolist())


def test_a_forked_child_gets_its_own_thread_pool():
    """After fork the parent's pool threads do not exist in the child: it must not wait on them."""
    import multiprocessing as mp

    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork start method on this platform")
    K = np.arange(40000, dtype=np.float32).reshape(10000, 4) % 7
    expected = finalize(run(DenseScorer(K), K[:3], k=2, threads=2)).top_rows.tolist()  # the pool exists now
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_split_run_in_child, args=(child,))
    p.start()
    p.join(60)
    if p.is_alive():
        p.kill()
        pytest.fail("the forked child hung in a split run")
    assert p.exitcode == 0
    assert parent.recv() == expected


@pytest.mark.parametrize("path", ["numpy", "fused"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("masked", ["none", "rows", "pairs", "all"])
def test_one_query_blend_in_cache_sized_chunks_matches_float64(monkeypatch, threads, masked, path):
    """explain's path: one query, a soft answer over values, |score / τ| bounded.

    numpy: values are blended per small chunk (shift 0) while the reductions run per big
    chunk; small chunk sizes force several of each. fused: softdb.engine._fused's compiled loop
    scores, softmaxes and blends each big chunk row by row (small blocks force several partial
    sums). Checked against float64 numpy.
    """
    from softdb.engine import _fused, _kernel, _pass

    monkeypatch.setattr(_kernel, "BLEND_CHUNK_BYTES", 1)  # 256 rows per blended chunk
    monkeypatch.setattr(_kernel, "CHUNK_BYTES", 4096)  # 1024 (or 512 per thread) rows per reduction chunk
    monkeypatch.setattr(_fused, "ENABLED", path == "fused")
    monkeypatch.setattr(_fused, "MIN_ROWS", 1)
    monkeypatch.setattr(_fused, "BLOCK", 100)
    calls, fused_calls = [], []
    inner = _pass.Pass._bounded_blend
    monkeypatch.setattr(_pass.Pass, "_bounded_blend", lambda self, a, b: calls.append((a, b)) or inner(self, a, b))
    inner_rows = _fused.online_rows
    monkeypatch.setattr(_fused, "online_rows", lambda *a: calls.append(a[3:]) or inner_rows(*a))
    inner_fused = _fused.online_blend
    monkeypatch.setattr(_fused, "online_blend", lambda *a: fused_calls.append(len(a[0])) or inner_fused(*a))
    rng = np.random.default_rng(6)
    n, d = 3000, 8
    K = rng.standard_normal((n, d)).astype(np.float32)
    K /= np.linalg.norm(K, axis=1, keepdims=True)
    V = K if path == "fused" else rng.standard_normal((n, 5)).astype(np.float32)  # the loop is for K = V
    q = K[:1] * np.float32(0.9) + np.float32(0.1) * rng.standard_normal((1, d)).astype(np.float32)
    q /= np.linalg.norm(q)
    mask = {"none": None, "rows": rng.random(n) < 0.6, "pairs": rng.random((1, n)) < 0.6, "all": np.zeros(n, bool)}[
        masked
    ]
    scale = 20.0  # τ = 0.05: |score / τ| <= 20
    st_ = run(DenseScorer(K, 1.0), q, V, scale=scale, soft=True, hard=True, k=7, stats=True, mask=mask, threads=threads)
    assert len(calls) == threads
    chunks = [1024, 1024, 952] if threads == 1 else [512, 512, 476] * 2  # rows per reduction chunk
    assert sorted(fused_calls) == ([] if path == "numpy" else sorted(chunks))
    r = finalize(st_)
    if masked == "all":  # no allowed row: "no match", never NaN
        assert r.best_row[0] == -1 and (r.top_rows[0] == -1).all() and r.lse[0] == -np.inf
        np.testing.assert_array_equal(r.out[0], 0)
        return
    allowed = np.ones(n, bool) if mask is None else mask.reshape(-1)
    s = (q.astype(np.float64) @ K.T.astype(np.float64))[0] * scale  # (n,)
    s[~allowed] = -np.inf
    w = np.exp(s - s.max())
    w /= w.sum()
    np.testing.assert_allclose(r.out[0], w @ V.astype(np.float64), rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(r.lse[0], np.log(np.exp(s - s.max()).sum()) + s.max(), rtol=1e-6)
    nz = w > 0
    np.testing.assert_allclose(r.entropy[0], -(w[nz] * np.log(w[nz])).sum(), rtol=1e-4)
    np.testing.assert_allclose(r.effective_rows[0], 1 / (w**2).sum(), rtol=1e-4)
    assert r.best_row[0] == int(np.argmax(s))
    np.testing.assert_array_equal(r.top_rows[0], np.argsort(-s, kind="stable")[:7])
