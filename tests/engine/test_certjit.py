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
    for name in ("qi", "rows", "s_hat", "bound", "out_n"):
        np.testing.assert_array_equal(getattr(ref, name), getattr(jit, name), err_msg=name)
    # out_hi: the compiled pass bounds the others' largest ŝ from its float32 y, from above
    assert np.all(jit.out_hi >= ref.out_hi), (jit.out_hi, ref.out_hi)
    np.testing.assert_allclose(jit.out_hi, ref.out_hi, rtol=0, atol=2.0**-12)
    with np.errstate(divide="ignore", invalid="ignore"):  # the sums: float32 bounds of the numpy path's float64 ones
        for side, sign in (("lo", 1.0), ("hi", -1.0)):
            a = getattr(ref, f"{side}_max") + np.log(getattr(ref, f"{side}_sum"))
            b = getattr(jit, f"{side}_max") + np.log(getattr(jit, f"{side}_sum"))
            assert np.all((a == b) | (sign * (b - a) <= 2.0**-10)), (side, a, b)  # a bound on the same side
            # as close where float32's terms did not underflow (else the bound widens to 0 terms)
            normal = getattr(jit, f"{side}_sum") > 2.0**-100
            np.testing.assert_allclose(b[normal], a[normal], rtol=0, atol=2.0**-10, err_msg=side)
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
    hi_top = np.where(out, full + cells, -np.inf).max(axis=1) if n else np.full(m, -np.inf)  # (m,) float64
    assert np.all(jit.out_hi >= hi_top), (jit.out_hi, hi_top)  # no non-candidate above out_hi


def test_many_hits_rerun_with_room() -> None:
    """More hits than the first buffer holds (every cell ties): the pass runs again, nothing is lost."""
    m, n = 2, 5000
    ints = np.ones((m, n), np.int32)
    qs, ks = np.ones(m), np.ones(n)
    ref, jit = _states(ints, qs, ks, np.full((m, n), 0.5), [None], 3, 1.0, n)
    assert len(jit.qi) == m * n
    np.testing.assert_array_equal(ref.rows, jit.rows)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    st.integers(0, 2**31 - 1),
    st.integers(1, 5),
    st.integers(1, 400),
    st.integers(1, 12),
    st.sampled_from([1e-3, 0.05, 1.0, 30.0]),
    st.sampled_from([None, "row", "cell"]),
)
def test_compiled_pass_equals_its_numpy_twin(seed: int, m: int, c: int, k: int, tau: float, mask: str | None) -> None:
    """Every output of :func:`chunk_pass` equals :func:`chunk_pass_numpy`'s, bit for bit; the sums bound float64's."""
    rng = np.random.default_rng(seed)
    ints = rng.integers(-16000, 16001, (m, c)).astype(np.int32)
    qs, ks = rng.uniform(1e-4, 1e-2, m), rng.choice([1e-3, 2e-3, 0.0], c)
    allowed = None if mask is None else rng.random(c if mask == "row" else (m, c)) < 0.7
    bq = rng.uniform(0, 0.05, m)
    lo_min = np.where(rng.random(m) < 0.3, -np.inf, rng.uniform(-0.2, 0.3, m))
    floor, short = np.full(m, -np.inf), rng.random(m) < 0.5
    k = min(k, c)
    a = _certjit.chunk_pass_numpy(ints, qs, ks, allowed, bq, lo_min.copy(), floor.copy(), short, k, 1.0 / tau)
    b = _certjit.chunk_pass(ints, qs, ks, allowed, bq, lo_min.copy(), floor.copy(), short, k, 1.0 / tau)
    assert b is not None
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    s_hat = np.multiply.outer(qs, ks) * ints  # (m, c) float64
    ok = np.ones((m, c), bool) if allowed is None else np.broadcast_to(allowed, (m, c))
    other = ok.copy()
    other[a[0], a[1]] = False
    off, lo, hi = a[7], a[8], a[9]
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):  # off: -max float64 where no other
        y = np.where(other, (s_hat - off[:, None]) / tau, -np.inf)  # (m, c)
        exact = np.exp(y).sum(axis=1)  # (m,) float64
    assert np.all(lo <= exact) and np.all(exact <= hi), (lo, exact, hi)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=8),
    st.floats(-1e6, 1e6),
    st.sampled_from([1e-30, 1e-3, 0.05, 1.0, 3.0, 1e30]),
)
def test_others_max_bounds_the_largest_score_from_float32_y(xs: list[float], off: float, tau: float) -> None:
    """From y = fl32(fl64(fl64(ŝ − off)·inv)) of the others (ŝ < off), the bound is ≥ every ŝ, and tight."""
    inv = 1.0 / tau
    s = np.array([x for x in xs if x < off])  # the others: below off
    with np.errstate(over="ignore", under="ignore"):
        y = ((s - off) * inv).astype(np.float32)  # (p,)  as the pass writes them (-inf past float32's range)
    ymax = np.array([y.max() if len(y) else -np.inf], np.float32)
    got = _certjit.others_max(ymax, np.array([len(s)]), np.array([off]), inv)[0]
    if not len(s):
        assert got == -np.inf
        return
    assert got >= s.max()
    if np.isfinite(y.max()) and y.max() < -1e-30:  # away from float32's limits: within its rounding
        assert got - s.max() <= 2.0**-20 * (off - s.max()) + 2.0 * np.spacing(abs(off) + abs(s.max()))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.integers(0, 2**31 - 1), st.integers(1, 6), st.integers(1, 12), st.integers(0, 200))
def test_push_lower_keeps_the_k_best_values_as_the_topk_merge_does(seed: int, m: int, k: int, p: int) -> None:
    """The compiled insertion keeps the same k best values (ties included) and bound as TopK's merge."""
    from softdb.engine._topk import TopK

    rng = np.random.default_rng(seed)
    ref = TopK(m, k, np.dtype(np.float64))
    s, bound = np.full((m, k), -np.inf), np.full(m, -np.inf)
    for _ in range(3):  # three pushes, as chunks come
        qi = rng.integers(0, m, p)
        lo = rng.choice([-1.0, 0.0, 0.5, 1.0, 2.0], p) + rng.integers(0, 3, p) * rng.random(p)
        ref._push(qi, np.arange(p), lo)
        ref.merge()
        assert _certjit.push_lower(s, bound, qi, lo)
        np.testing.assert_array_equal(s, ref.s)
        np.testing.assert_array_equal(bound, ref.bound)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.integers(0, 2**31 - 1), st.integers(1, 6), st.integers(1, 300), st.sampled_from([0.05, 1.0, 3.0]))
def test_compiled_out_cells_equals_numpys_sums(seed: int, m: int, p: int, tau: float) -> None:
    """Cells into the non-candidates' sums: the compiled online steps give numpy's sums (to rounding),
    the same largest upper bound and count; both bound the float64 log-sum-exps."""
    rng = np.random.default_rng(seed)
    qi = rng.integers(0, m, p)
    lo = rng.normal(0, 3, p)
    hi = lo + rng.uniform(0, 1, p)
    states = []
    for enabled in (False, True):
        st_ = CertState.empty(m, 2, tau=tau, cap=10)
        _certjit.ENABLED = enabled
        try:
            for part in np.array_split(np.arange(p), 3):  # three calls, as chunks come
                st_._out_cells(qi[part], lo[part], hi[part])
        finally:
            _certjit.ENABLED = True
        states.append(st_)
    ref, jit = states
    np.testing.assert_array_equal(ref.out_hi, jit.out_hi)
    np.testing.assert_array_equal(ref.out_n, jit.out_n)
    for side, x in (("lo", lo), ("hi", hi)):
        with np.errstate(divide="ignore"):
            a = getattr(ref, f"{side}_max") + np.log(getattr(ref, f"{side}_sum"))
            b = getattr(jit, f"{side}_max") + np.log(getattr(jit, f"{side}_sum"))
        exact = _lse(np.broadcast_to(x / tau, (m, p)), qi[None, :] == np.arange(m)[:, None])
        np.testing.assert_allclose(b, a, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(b, exact, rtol=1e-12, atol=1e-12)
