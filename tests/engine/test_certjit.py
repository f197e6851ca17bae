"""The compiled chunk pass (softdb.engine._certjit) gives the numpy path's certified state, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softdb.engine import _certjit
from softdb.engine._certstate import CertState

pytestmark = pytest.mark.skipif(not _certjit.available(), reason="numba is not installed")


def _lse(x: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """log Σ e^x over ``keep`` per row, float64 (-inf: none)."""
    xm = np.where(keep, x, -np.inf)
    top = xm.max(axis=1)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return safe + np.log(np.exp(xm - safe[:, None]).sum(axis=1))


def _states(
    ints: np.ndarray, qs: np.ndarray, ks: np.ndarray, cells: np.ndarray, allowed: list, k: int, tau: float, step: int
) -> tuple[CertState, CertState]:
    """The same chunks fed through :meth:`CertState.feed` (numpy) and :meth:`CertState.feed_codes` (compiled)."""
    m, n = ints.shape
    ref = CertState.empty(m, k, tau=tau, cap=10**9)
    jit = CertState.empty(m, k, tau=tau, cap=10**9)
    for a in range(0, n, step):
        b = min(a + step, n)
        al = allowed[a // step]
        bc = cells[:, a:b]  # (m, c) the cells' own bounds
        bq = bc.max(axis=1)  # (m,)
        s_hat = np.multiply.outer(qs, ks[a:b]) * ints[:, a:b]  # ŝ = I·(t·s)
        ref.feed(s_hat, bq, al, np.arange(a, b) + 7, lambda qi, col, bc=bc: bc[qi, col])
        done = jit.feed_codes(
            ints[:, a:b], qs, ks[a:b], bq, al, np.arange(a, b) + 7, lambda qi, col, sh, bc=bc: bc[qi, col]
        )
        assert done
    ref.finish()
    jit.finish()
    return ref, jit


@settings(max_examples=80, deadline=None, derandomize=True)
@given(
    st.integers(0, 2**31 - 1),
    st.integers(1, 6),
    st.integers(1, 300),
    st.integers(1, 12),
    st.sampled_from([0.05, 0.5, 1.0, 3.0]),
    st.sampled_from([None, "row", "cell"]),
    st.sampled_from([3, 40, 129, 300]),
)
def test_compiled_and_numpy_paths_give_the_same_state(
    seed: int, m: int, n: int, k: int, tau: float, mask: str | None, step: int
) -> None:
    rng = np.random.default_rng(seed)
    ints = rng.integers(-40, 41, (m, n)).astype(np.int32) * rng.integers(1, 4)  # ties
    qs = rng.choice([0.5, 0.25, 0.0625], m)
    ks = rng.choice([1.0, 0.5, 0.125, 0.0], n)  # a zero scale: ŝ = 0 rows
    cells = rng.choice([0.0, 0.125, 0.5, 2.0], (m, n))
    k = min(k, n)
    chunks = range(0, n, step)
    if mask is None:
        allowed: list = [None for _ in chunks]
    elif mask == "row":
        allowed = [rng.random(min(step, n - a)) < 0.7 for a in chunks]
    else:
        allowed = [rng.random((m, min(step, n - a))) < 0.6 for a in chunks]
    ref, jit = _states(ints, qs, ks, cells, allowed, k, tau, step)
    np.testing.assert_array_equal(np.sort(ref.lo, axis=1), np.sort(jit.lo, axis=1))
    for name in ("qi", "rows", "s_hat", "bound", "lo_max", "lo_sum", "hi_max", "hi_sum", "out_hi", "out_n"):
        np.testing.assert_array_equal(getattr(ref, name), getattr(jit, name), err_msg=name)
    # the sums bound those of the non-candidates' own lo and hi (float64 reference)
    full = np.multiply.outer(qs, ks) * ints
    ok = np.concatenate(
        [np.broadcast_to(True if al is None else al, (m, min(step, n - a))) for al, a in zip(allowed, chunks)], axis=1
    )  # (m, n)
    out = ok.copy()
    out[jit.qi, jit.rows - 7] = False
    lo_exact, hi_exact = _lse((full - cells) / tau, out), _lse((full + cells) / tau, out)
    with np.errstate(divide="ignore"):
        got_lo = jit.lo_max + np.log(jit.lo_sum)
        got_hi = jit.hi_max + np.log(jit.hi_sum)
    none = lo_exact == -np.inf  # no non-candidate
    with np.errstate(invalid="ignore"):
        assert np.all(none | (got_lo <= lo_exact + 1e-9 * (1 + np.abs(lo_exact))))
        assert np.all(none | (got_hi >= hi_exact - 1e-9 * (1 + np.abs(hi_exact))))
    assert np.all(~none | ((jit.lo_sum == 0) & (jit.hi_sum == 0)))
    assert jit.out_n.tolist() == (ok.sum(axis=1) - np.bincount(jit.qi, minlength=m)).tolist()


def test_many_hits_rerun_with_room() -> None:
    """More hits than the first buffer holds (every cell ties): the pass runs again, nothing is lost."""
    m, n = 2, 5000
    ints = np.ones((m, n), np.int32)
    qs, ks = np.ones(m), np.ones(n)
    ref, jit = _states(ints, qs, ks, np.full((m, n), 0.5), [None], 3, 1.0, n)
    assert len(jit.qi) == m * n
    np.testing.assert_array_equal(ref.rows, jit.rows)
