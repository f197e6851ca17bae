"""The compiled settling of a chunk's hits equals the numpy steps it replaces."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softdb.engine import _certified, _certjit, _certsettle
from softdb.engine._compressed import compress_keys, compress_queries
from softdb.engine._segmented import Part, Parts

pytestmark = pytest.mark.skipif(not _certjit.available(), reason="numba is not installed")


def _scan(parts: Parts, cks: list, q: np.ndarray, k: int, tau: float, mask: np.ndarray | None, compiled: bool):
    qc = compress_queries(q, "int8")
    keep, cells = _certsettle.compiled, _certified.CHUNK_CELLS
    if not compiled:
        _certsettle.compiled = lambda: None  # the numpy steps (CertState.feed_codes' own)
    _certified.CHUNK_CELLS = 1  # chunks of 256 rows: hits, candidates and prunes across chunks
    try:
        return _certified.scan(parts, cks, qc, k, tau, mask)
    finally:
        _certsettle.compiled, _certified.CHUNK_CELLS = keep, cells


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    st.integers(0, 2**31 - 1),
    st.integers(1, 9),
    st.integers(1, 3000),
    st.sampled_from([3, 16, 64]),
    st.integers(1, 12),
    st.sampled_from([0.05, 1.0, 8.0]),
    st.sampled_from([None, "row", "cell"]),
    st.booleans(),
)
def test_settled_state_equals_the_numpy_steps(
    seed: int, m: int, n: int, d: int, k: int, tau: float, mask: str | None, ties: bool
) -> None:
    """Candidates (cells, ŝ, B), the k best lower bounds, the largest upper bound and the count equal
    to the bit; the sums to float64 rounding."""
    rng = np.random.default_rng(seed)
    K = rng.standard_normal((n, d)).astype(np.float32)
    if ties:  # duplicate rows and near-ties
        K[1::2] = K[::2][: len(K[1::2])]
    q = rng.standard_normal((m, d)).astype(np.float32)
    k = min(k, n)
    msk = None if mask is None else rng.random(n if mask == "row" else (m, n)) < 0.7
    parts = Parts([Part(K, None, 1.0, None)])
    cks = [compress_keys(K, "int8")]
    ref = _scan(parts, cks, q, k, tau, msk, compiled=False)
    got = _scan(parts, cks, q, k, tau, msk, compiled=True)
    np.testing.assert_array_equal(np.sort(ref.lo, axis=1), np.sort(got.lo, axis=1))
    oa, ob = np.lexsort((ref.rows, ref.qi)), np.lexsort((got.rows, got.qi))
    for name in ("qi", "rows", "s_hat", "bound"):
        np.testing.assert_array_equal(getattr(ref, name)[oa], getattr(got, name)[ob], err_msg=name)
    np.testing.assert_array_equal(ref.out_hi, got.out_hi)
    np.testing.assert_array_equal(ref.out_n, got.out_n)
    with np.errstate(divide="ignore"):
        for side in ("lo", "hi"):
            a = getattr(ref, f"{side}_max") + np.log(getattr(ref, f"{side}_sum"))
            b = getattr(got, f"{side}_max") + np.log(getattr(got, f"{side}_sum"))
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12, err_msg=side)
