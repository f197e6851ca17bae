"""The kernel's top-k in both score layouts, against a float64 oracle.

Queries laid out by query (m < ROW_LAYOUT_MIN, or with ``hard``) and by row (m >=
ROW_LAYOUT_MIN: top-k alone, or with the log-sum-exp that ``search`` needs) must give
the same rows: ties to the lowest row, masked rows never, -1 where a query runs out of
allowed rows, whatever the chunk size, tile width or merge cadence.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

from softdb.engine import _topk
from softdb.engine._kernel import stream


@st.composite
def cases(draw):
    """Integer-valued queries and keys: float32 scores are exact, so ties are real ties."""
    n = draw(st.integers(1, 300))
    m = draw(st.sampled_from([1, 3, 7, 8, 9, 16, 24, 33]))
    d = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lo, hi = draw(st.sampled_from([(-1, 2), (-3, 4), (-50, 51)]))  # few values: many ties
    Q = rng.integers(lo, hi, (m, d)).astype(np.float32)
    K = rng.integers(lo, hi, (n, d)).astype(np.float32)
    kind = draw(st.sampled_from(["none", "rows", "pairs", "empty query"]))
    mask = None
    if kind == "rows":
        mask = rng.random(n) < 0.6
    elif kind in ("pairs", "empty query"):
        mask = rng.random((m, n)) < 0.4
        if kind == "empty query":
            mask[0] = False
    k = draw(st.integers(1, n))
    chunk = draw(st.sampled_from([None, 1, 7, 64, n]))
    return Q, K, mask, k, chunk


def oracle(Q, K, mask, k):
    s = Q.astype(np.float64) @ K.T.astype(np.float64)  # (m, n)  exact for small integers
    if mask is not None:
        s = np.where(mask, s, -np.inf)
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]  # (m, k)  lowest row wins ties
    top = np.take_along_axis(s, order, 1)
    return np.where(top > -np.inf, order, -1), top, s


@pytest.fixture(params=["default", "tiny tiles, merge every chunk"])
def tuning(request, monkeypatch):
    if request.param != "default":
        monkeypatch.setattr(_topk, "TOPK_TILE", 8)  # tiles of 1 row (m >= 8)
        monkeypatch.setattr(_topk, "TOPK_MERGE_MIN", 1)
    return request.param


# the tuning fixture sets module constants once for every generated input, as intended
per_tuning = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None, max_examples=80, derandomize=True
)


@per_tuning
@given(case=cases())
def test_top_k_alone_matches_the_oracle(tuning, case):
    Q, K, mask, k, chunk = case
    rows, top, _ = oracle(Q, K, mask, k)
    r = stream(Q, K, k=k, mask=mask, chunk=chunk)
    np.testing.assert_array_equal(r.top_rows, rows)
    np.testing.assert_array_equal(r.top_scores, top.astype(np.float32))


@per_tuning
@given(case=cases(), tau=st.sampled_from([0.5, 2.0, 1e-13]))
def test_top_k_with_log_sum_exp_matches_the_oracle(tuning, case, tau):
    Q, K, mask, k, chunk = case
    rows, top, s = oracle(Q, K, mask, k)
    norm = float(np.linalg.norm(K, axis=1).max())
    try:
        r = stream(Q, K, scale=1 / tau, soft=True, k=k, mask=mask, key_norm_max=norm, chunk=chunk)
    except ValueError as e:  # τ = 1e-13: every score / τ of some query underflows
        assert "temperature" in str(e) and tau == 1e-13
        return
    np.testing.assert_array_equal(r.top_rows, rows)
    np.testing.assert_allclose(r.top_scores, top, rtol=1e-6)
    with np.errstate(divide="ignore"):
        lse = logsumexp(s / tau, axis=1)  # (m,)  -inf where every row is masked
    np.testing.assert_allclose(r.lse, lse, rtol=1e-5, atol=1e-5)


@settings(deadline=None, max_examples=80, derandomize=True)
@given(case=cases())
def test_both_layouts_agree_with_hard(case):
    Q, K, mask, k, chunk = case
    alone = stream(Q, K, k=k, mask=mask, chunk=chunk)  # by row when m >= 8
    with_hard = stream(Q, K, hard=True, k=k, mask=mask, chunk=chunk)  # always by query
    np.testing.assert_array_equal(alone.top_rows, with_hard.top_rows)
    np.testing.assert_array_equal(alone.top_rows[:, 0], with_hard.best_row)


def test_log_sum_exp_keeps_float32_accuracy_over_long_chunks():
    # one chunk of 65,536 rows: a single float32 chain of sums would drift by ~1e-4
    rng = np.random.default_rng(0)
    Q = rng.standard_normal((16, 32)).astype(np.float32)
    K = rng.standard_normal((100_000, 32)).astype(np.float32)
    r = stream(Q, K, soft=True, k=3, key_norm_max=float(np.linalg.norm(K, axis=1).max()))
    ref = logsumexp(Q.astype(np.float64) @ K.T.astype(np.float64), axis=1)
    np.testing.assert_allclose(r.lse, ref, atol=2e-5)


def test_candidates_stay_exact_when_query_bounds_differ_widely():
    # one query scores far above the rest: a shared (weakest) bound would flood the
    # merge, a per-query one must still give the exact top rows for every query
    rng = np.random.default_rng(1)
    K = rng.standard_normal((5_000, 16)).astype(np.float32)
    Q = rng.standard_normal((32, 16)).astype(np.float32) * 0.01
    Q[5] = K[123] * 10
    rows, _, _ = oracle(Q, K, None, 10)
    np.testing.assert_array_equal(stream(Q, K, k=10, chunk=700).top_rows, rows)
