"""Rescored cells carry the fp32 search's scores bit for bit, in every call shape the kernel uses.

Oracle: the table's own fp32 ``search`` (every row: k = n), whose scores come from the kernel's
BLAS calls. A float32 dot product's last bit depends on the call that computed it (OpenBLAS's
small-matrix kernels and GEMV round by position), so rescoring must reproduce those calls: one
query by numpy's loop, big calls gathered per block of queries, small calls redone as they ran.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softdb import SoftTable
from softdb.engine import _rescore
from softdb.engine._rescore import rescore_cells


def _table(n: int, d: int, metric: str, tau: float, seed: int) -> tuple[SoftTable, np.ndarray]:
    """Two segments, near-ties and duplicate rows, a few rows removed."""
    rng = np.random.default_rng(seed)
    keys = rng.standard_normal((n, d)).astype(np.float32)
    keys[n // 3 : n // 3 + 20] = keys[:20]  # duplicates
    keys[-20:] = keys[:1] * (1 + rng.integers(-3, 4, (20, 1)) * 2.0**-23)  # near-ties
    t = SoftTable(keys[: n // 2], metric=metric, temperature=tau)
    t.add(keys[n // 2 :], ids=list(range(n // 2, n)))
    t.remove([1, 5, n // 2 + 3])
    return t, keys


def _fp32_scores(t: SoftTable, q: np.ndarray) -> np.ndarray:
    """Every live row's fp32 score as the search reports it: (m, n), by row."""
    full = t.search(q, k=len(t))
    out = np.empty(full.rows.shape, np.float32)
    np.put_along_axis(out, full.rows, full.scores, axis=1)
    return out


def _prepared(t: SoftTable, q: np.ndarray) -> np.ndarray:
    """The queries as the table's search takes them (cosine: normalised its way)."""
    return t.compress("bf16")._prepare(q, None, None)[0]


SHAPES = [  # (n, d, m): each of the kernel's call shapes
    (30000, 64, 1),  # one query: numpy's loop, two thread ranges
    (5000, 33, 1),  # one query, one range
    (300, 5, 3),  # small calls, redone as they ran
    (30000, 385, 5),  # big GEMM calls, gathered
    (9000, 385, 12),  # big by-row calls, one block
    (9000, 128, 70),  # big by-row calls, blocks of queries
    (200, 3, 40),  # small by-row calls
]


@pytest.mark.parametrize(("n", "d", "m"), SHAPES)
@pytest.mark.parametrize(("metric", "tau"), [("dot", 0.05), ("cosine", 1.0)])
def test_rescored_cells_equal_the_fp32_search_bit_for_bit(n: int, d: int, m: int, metric: str, tau: float) -> None:
    t, _keys = _table(n, d, metric, tau, seed=n + d + m)
    q = np.random.default_rng(m).standard_normal((m, d)).astype(np.float32)
    ref = _fp32_scores(t, q)  # (m, n_live)
    rng = np.random.default_rng(0)
    qi = rng.integers(0, m, 3000)  # random cells, and whole rows at the segment edges
    rows = rng.integers(0, len(t), 3000)
    edge = np.r_[0:8, len(t) // 2 - 8 : len(t) // 2 + 8, len(t) - 8 : len(t)]
    edge = edge[(edge >= 0) & (edge < len(t))]
    qi = np.r_[qi, np.repeat(np.arange(m), len(edge))]
    rows = np.r_[rows, np.tile(edge, m)]
    st_ = t._state
    got = rescore_cells(st_.rows.parts, _prepared(t, q), tau, qi, rows)
    np.testing.assert_array_equal(got.view(np.int32), ref[qi, rows].view(np.int32))


@pytest.mark.parametrize(("n", "d", "m"), SHAPES)
@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_compressed_search_equals_the_fp32_search_bit_for_bit(n: int, d: int, m: int, precision: str) -> None:
    t, _ = _table(n, d, "dot", 0.05, seed=7 * n + d + m)
    q = np.random.default_rng(m + 1).standard_normal((m, d)).astype(np.float32)
    a, b = t.search(q, k=10), t.compress(precision).search(q, k=10)
    np.testing.assert_array_equal(b.rows, a.rows)
    np.testing.assert_array_equal(b.scores.view(np.int32), a.scores.view(np.int32))
    assert b.certificate.holds.all() and not b.certificate.fallback.any()


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    st.integers(1, 60),
    st.sampled_from([1, 2, 3, 5, 17, 32, 33]),
    st.sampled_from([1, 2, 3, 7, 8, 9]),
    st.sampled_from([0.05, 1.0, 3.0]),
    st.integers(0, 2**31 - 1),
)
def test_small_tables_give_the_fp32_scores_bit_for_bit(n: int, d: int, m: int, tau: float, seed: int) -> None:
    """Tiny tables: OpenBLAS's small-matrix kernels round by position (a 3 x 3 table once differed by one ulp)."""
    rng = np.random.default_rng(seed)
    keys = rng.standard_normal((n, d)).astype(np.float32)
    q = rng.standard_normal((m, d)).astype(np.float32)
    t = SoftTable(keys, metric="dot", temperature=tau)
    k = min(n, 3)
    a, b = t.search(q, k=k), t.compress("int8").search(q, k=k)
    np.testing.assert_array_equal(b.rows, a.rows)
    np.testing.assert_array_equal(b.scores.view(np.int32), a.scores.view(np.int32))


def test_kernel_calls_follow_the_kernel() -> None:
    assert _rescore.kernel_calls(1, 1000, 4)[0] == "one"
    assert _rescore.kernel_calls(7, 1000, 4)[0] == "gemm"
    assert _rescore.kernel_calls(8, 1000, 4)[0] == "by_row"
    _how, ranges, rows = _rescore.kernel_calls(256, 100_000, 4)
    assert ranges[0][0] == 0 and ranges[-1][1] == 100_000 and rows >= 1


@pytest.mark.parametrize("tau", [1e-13, 1e13])
@pytest.mark.parametrize("m", [1, 3, 9])
def test_extreme_temperatures_give_the_fp32_scores_bit_for_bit(tau: float, m: int) -> None:
    """1/τ outside [1e-12, 1e12]: the kernel ranks and reports raw scores; the fallback must too."""
    rng = np.random.default_rng(m)
    keys = rng.standard_normal((700, 16)).astype(np.float32)
    keys[-10:] = keys[:1] * (1 + rng.integers(-3, 4, (10, 1)) * 2.0**-23)  # near-ties at the top
    q = (keys[:1] + 0.1 * rng.standard_normal((m, 16))).astype(np.float32)
    t = SoftTable(keys, metric="dot", temperature=tau)
    a, b = t.search(q, k=5), t.compress("int8").search(q, k=5)
    np.testing.assert_array_equal(b.rows, a.rows)
    np.testing.assert_array_equal(b.scores.view(np.int32), a.scores.view(np.int32))
    assert b.certificate.fallback.all() and "pre-scaled" in b.certificate.reason
