"""The certified top-k state merges exactly: any cut of the rows, any order, the same candidates and bounds."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from softdb.engine._certstate import CertState


def _run(s_hat: np.ndarray, bound: np.ndarray, cuts: list[int], k: int, order: list[int]) -> CertState:
    m, n = s_hat.shape
    edges = [0, *sorted(set(cuts)), n]
    states = []
    for a, b in itertools.pairwise(edges):
        stt = CertState.empty(m, k, tau=0.5, cap=10**9)
        for c0 in range(a, b, 3):  # chunks of 3 rows inside each part
            c1 = min(c0 + 3, b)
            stt.feed(s_hat[:, c0:c1].copy(), bound[:, c0:c1], None, np.arange(c0, c1))  # feed overwrites ŝ
        stt.finish()
        states.append(stt)
    out = states[order[0] % len(states)]
    rest = [s for i, s in enumerate(states) if i != order[0] % len(states)]
    for s in rest:
        out = out.merge(s)
    out.finish()
    return out


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    st.integers(0, 2**31 - 1),
    st.integers(1, 40),
    st.integers(1, 5),
    st.lists(st.integers(1, 39), max_size=6),
    st.lists(st.integers(0, 10), min_size=1, max_size=1),
)
def test_any_cut_and_order_gives_the_same_state(seed: int, n: int, k: int, cuts: list[int], order: list[int]) -> None:
    rng = np.random.default_rng(seed)
    m = 3
    s_hat = np.round(rng.standard_normal((m, n)) * 4) / 4  # ties on a grid
    bound = rng.choice([0.0, 0.125, 0.5], size=(m, n))
    k = min(k, n)
    one = _run(s_hat, bound, [], k, [0])
    cut = _run(s_hat, bound, [c for c in cuts if c < n], k, order)
    np.testing.assert_array_equal(np.sort(one.lo, axis=1), np.sort(cut.lo, axis=1))
    key = lambda s: sorted(zip(s.qi.tolist(), s.rows.tolist()))  # noqa: E731
    assert key(one) == key(cut)
    # the candidates are exactly the rows whose upper bound reaches the k-th best lower bound
    lo, hi = s_hat - bound, s_hat + bound
    kth = np.sort(lo, axis=1)[:, -k]
    want = sorted((i, j) for i in range(m) for j in range(n) if hi[i, j] >= kth[i])
    assert key(one) == want
    for state in (one, cut):  # the sums bound those of the non-candidates' own lo and hi
        out = np.ones((m, n), bool)
        out[state.qi, state.rows] = False
        with np.errstate(divide="ignore"):
            lo_exact = np.log(np.where(out, np.exp(lo / 0.5), 0).sum(axis=1))
            hi_exact = np.log(np.where(out, np.exp(hi / 0.5), 0).sum(axis=1))
            got_lo = state.lo_max + np.log(state.lo_sum)
            got_hi = state.hi_max + np.log(state.hi_sum)
        assert np.all((got_lo <= lo_exact + 1e-12) | (lo_exact == -np.inf))
        assert np.all(got_hi >= hi_exact - 1e-12)
    assert one.out_n.tolist() == cut.out_n.tolist() == (m * [n] - np.bincount(one.qi, minlength=m)).tolist()


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    st.integers(0, 2**31 - 1),
    st.integers(1, 400),
    st.integers(1, 12),
    st.sampled_from([5, 17, 130, 400]),
    st.booleans(),
)
def test_chunk_screen_never_passes_the_kth_lower_bound(seed: int, n: int, k: int, step: int, masked: bool) -> None:
    """Fed as the scan feeds it (one bound per query and chunk, cells' own bounds on request), any chunk size.

    At every step the threshold is at most the true k-th best lower bound of the allowed rows fed so
    far, and at the end the candidates are exactly the allowed rows whose upper bound reaches it.
    """
    rng = np.random.default_rng(seed)
    m, tau = 4, 0.5
    s_hat = np.round(rng.standard_normal((m, n)) * 8) / 8  # ties on a grid
    bound = rng.choice([0.0, 0.125, 0.5, 2.0], size=(m, n))
    allowed = rng.random((m, n)) < 0.7 if masked else np.ones((m, n), bool)
    k = min(k, n)
    state = CertState.empty(m, k, tau=tau, cap=10**9)
    lo, hi = np.where(allowed, s_hat - bound, -np.inf), np.where(allowed, s_hat + bound, -np.inf)
    for a in range(0, n, step):
        b = min(a + step, n)
        cells = bound[:, a:b]

        def exact(qi: np.ndarray, col: np.ndarray, cells: np.ndarray = cells) -> np.ndarray:
            return cells[qi, col]

        state.feed(s_hat[:, a:b].copy(), cells.max(axis=1), allowed[:, a:b] if masked else None, np.arange(a, b), exact)
        seen = np.sort(lo[:, :b], axis=1)[:, -k] if b >= k else np.full(m, -np.inf)  # (m,)
        assert np.all(state.threshold() <= seen)
    state.finish()
    kth = np.sort(lo, axis=1)[:, -k]
    want = sorted((i, j) for i in range(m) for j in range(n) if allowed[i, j] and hi[i, j] >= kth[i])
    assert sorted(zip(state.qi.tolist(), state.rows.tolist())) == want
    np.testing.assert_array_equal(state.threshold(), kth)
    assert state.out_n.tolist() == (allowed.sum(axis=1) - np.bincount(state.qi, minlength=m)).tolist()
    out = allowed.copy()
    out[state.qi, state.rows] = False
    with np.errstate(divide="ignore"):
        lo_exact = np.log(np.where(out, np.exp(lo / tau), 0).sum(axis=1))
        hi_exact = np.log(np.where(out, np.exp(hi / tau), 0).sum(axis=1))
        got_lo, got_hi = state.lo_max + np.log(state.lo_sum), state.hi_max + np.log(state.hi_sum)
    assert np.all((got_lo <= lo_exact + 1e-12) | (lo_exact == -np.inf))
    assert np.all(got_hi >= hi_exact - 1e-12)
