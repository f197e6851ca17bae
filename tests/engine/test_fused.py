"""softdb.engine._fused: the compiled online softmax (score, exp, blend) against float64 numpy.

``make test`` installs numba (the ``fast`` extra), so the compiled loop is what runs
here; ``ENABLED = False`` gives numpy's version of the same state for comparison.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from softdb import SoftTable
from softdb.engine import _fused
from softdb.engine._kernel import run
from softdb.engine._scorers import DenseScorer
from softdb.engine._states import SoftState, finalize
from softdb.explain import explain


def test_the_test_environment_has_numba():
    assert _fused.available(), 'numba is missing: make test installs it (pip install -e ".[fast]")'


def _data(c, d, dv, same, f64, dup, log_scale, seed):
    """Keys (c, d), values, a query with |score / τ| up to ~10**log_scale, a float dtype."""
    rng = np.random.default_rng(seed)
    dt = np.float64 if f64 else np.float32
    keys = rng.standard_normal((c, d)).astype(dt)
    if dup and c > 1:
        keys[1::2] = keys[: c // 2]  # ties: every odd row repeats an earlier one
    values = keys if same else rng.standard_normal((c, dv)).astype(dt)  # same: a K = V table
    q = (rng.standard_normal(d) * 10.0**log_scale / np.sqrt(d)).astype(dt)  # huge or tiny norms, any τ
    return keys, values, q, dt


def _softmax64(s, values, shift=None):
    """The float64 online-softmax state of scores ``s`` (c,) at ``shift`` (default: the max):
    [shift, Σe, Σe(s-shift), Σe²] and Σ e v, with e = exp(s - shift)."""
    s = s.astype(np.float64)
    m = s.max() if len(s) else -np.inf
    if m == -np.inf:
        return np.array([-np.inf, 0, 0, 0]), np.zeros(values.shape[1])
    m = m if shift is None else shift
    t = s - m
    e = np.exp(t)
    return np.array([m, e.sum(), (e[e > 0] * t[e > 0]).sum(), (e * e).sum()]), e @ values.astype(np.float64)


MASKS = ["none", "half", "all", "first"]


@settings(max_examples=80, deadline=None)
@example(c=1, d=3, dv=2, block=512, mask="none", same=False, f64=False, dup=False, log_scale=8.0, cut=0, seed=1)
@example(c=600, d=8, dv=4, block=7, mask="half", same=True, f64=False, dup=True, log_scale=-9.0, cut=300, seed=2)
@example(c=300, d=8, dv=4, block=512, mask="all", same=False, f64=False, dup=False, log_scale=2.0, cut=17, seed=3)
@given(
    c=st.integers(0, 700),
    d=st.integers(1, 40),
    dv=st.integers(1, 12),
    block=st.sampled_from([1, 7, 512]),
    mask=st.sampled_from(MASKS),
    same=st.booleans(),
    f64=st.booleans(),
    dup=st.booleans(),
    log_scale=st.floats(-9, 9),
    cut=st.integers(0, 700),
    seed=st.integers(0, 2**16),
)
@pytest.mark.parametrize("compiled", [True, False])
def test_online_blend_matches_float64(compiled, c, d, dv, block, mask, same, f64, dup, log_scale, cut, seed):
    """Any score scale (|score / τ| from 1e-9 to 1e9), masks (none, half, all, all but the
    last rows), ties, one row; fed in two calls (the state carries over) and, separately, as
    two states merged by SoftState.merge: each equals float64's softmax of the scores."""
    keys, values, q, dt = _data(c, d, dv, same, f64, dup, log_scale, seed)
    rng = np.random.default_rng(seed + 1)
    allowed = {
        "none": None,
        "half": rng.random(c) < 0.5,
        "all": np.zeros(c, bool),
        "first": np.arange(c) >= c // 2,  # the first half masked: the max starts at -inf for a while
    }[mask]
    cut = min(cut, c)
    old = _fused.BLOCK, _fused.ENABLED
    _fused.BLOCK, _fused.ENABLED = block, compiled
    try:
        s, o, acc = np.empty(c, dt), np.zeros(values.shape[1], dt), _fused.fresh()
        parts = []
        for a, b in ((0, cut), (cut, c)):
            mk = None if allowed is None else allowed[a:b]
            _fused.online_blend(keys[a:b], q, values[a:b], mk, s[a:b], o, acc)  # one state over both calls
            sp, op, ap = np.empty(b - a, dt), np.zeros(values.shape[1], dt), _fused.fresh()
            _fused.online_blend(keys[a:b], q, values[a:b], mk, sp, op, ap)  # a state of its own
            parts.append(SoftState(ap[:1], ap[1:2], op[None, :], None, ap[2:3], ap[3:4]))
    finally:
        _fused.BLOCK, _fused.ENABLED = old
    # scores: float64's dot product, up to the float rounding of Σ |k_t q_t|
    ref_s = keys.astype(np.float64) @ q.astype(np.float64)  # (c,)
    size = np.abs(keys.astype(np.float64)) @ np.abs(q.astype(np.float64))  # (c,)
    eps = np.finfo(dt).eps
    if allowed is not None:
        ref_s[~allowed] = -np.inf
        assert (s[~allowed] == -np.inf).all()
    ok = np.isfinite(ref_s)
    assert np.all(np.abs(s[ok] - ref_s[ok]) <= 4 * d * eps * size[ok] + 1e-300)
    # the softmax of those scores, in float64, at the loop's shift: sums to float64's rounding
    top = s.max() if c else -np.inf
    if top == -np.inf:
        assert acc.tolist() == [-np.inf, 0, 0, 0] and (o == 0).all()  # no allowed row: nothing added
    else:  # the shift is the max score or up to HEADROOM above it, exact in the dtype
        assert top <= acc[0] <= top + _fused.HEADROOM * (1 + 1e-6) and dt(acc[0]) == acc[0]
    want, want_o = _softmax64(s, values, acc[0])
    np.testing.assert_allclose(acc[1:], want[1:], rtol=1e-9, atol=1e-300)
    shift = acc[0] if np.isfinite(acc[0]) else 0.0
    bound = np.exp(s.astype(np.float64) - shift) @ np.abs(values.astype(np.float64))  # (d_v,)  Σ e |v|
    tol = 1e-12 if f64 else 3e-6
    assert np.all(np.abs(o - want_o) <= tol * bound + 1e-300), (o, want_o)
    merged = parts[0].merge(parts[1])  # two states of their own, merged: the same softmax
    wm, wm_o = _softmax64(s, values, merged.mx[0])
    np.testing.assert_allclose([merged.se[0], merged.ent[0], merged.sq[0]], wm[1:], rtol=1e-9, atol=1e-300)
    mbound = np.exp(s.astype(np.float64) - (merged.mx[0] if np.isfinite(merged.mx[0]) else 0.0)) @ np.abs(values)
    assert np.all(np.abs(merged.o[0] - wm_o) <= 2 * tol * mbound + 1e-300)
    if top > -np.inf:  # the soft answer itself (shift-free)
        _, ref_o = _softmax64(s, values)
        ref = ref_o / np.exp(s.astype(np.float64) - top).sum()  # (d_v,)
        size = np.exp(s.astype(np.float64) - top) @ np.abs(values) / np.exp(s.astype(np.float64) - top).sum()
        assert np.all(np.abs(o / acc[1] - ref) <= 2 * tol * size + 1e-300)
        assert np.all(np.abs(merged.o[0] / merged.se[0] - ref) <= 4 * tol * size + 1e-300)


def test_rows_in_rising_order_match_float64():
    """The worst order for a running max: every row beats the last (a rescale per HEADROOM of rise)."""
    n, d = 3000, 4
    keys = np.zeros((n, d), np.float32)
    keys[:, 0] = np.linspace(-1, 1, n, dtype=np.float32)
    keys[:, 1] = np.arange(n, dtype=np.float32) % 7
    q = np.array([400.0, 0.01, 0, 0], np.float32)  # scores from -400 to 400
    s, o, acc = np.empty(n, np.float32), np.zeros(d, np.float32), _fused.fresh()
    _fused.online_blend(keys, q, keys, None, s, o, acc)
    assert s[-1] == s.max() <= acc[0] <= s[-1] + _fused.HEADROOM
    want, want_o = _softmax64(s, keys, acc[0])
    np.testing.assert_allclose(acc[1:], want[1:], rtol=1e-9)
    np.testing.assert_allclose(o, want_o, rtol=3e-6, atol=1e-6 * want_o.max())


@settings(max_examples=25, deadline=None)
@given(
    log_scale=st.floats(-6, 3),
    norm=st.floats(0.01, 10),
    threads=st.sampled_from([1, 2]),
    masked=st.sampled_from(["none", "rows", "pairs", "all"]),
    kv=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_kernel_pass_by_the_loop_matches_float64(log_scale, norm, threads, masked, kv, seed):
    """explain's pass (soft, hard, top-k, entropy, effective rows) by the compiled loop, for
    query norms and τ whose |score / τ| runs from 1e-8 to 1e4, split over threads, with K = V
    or separate values: float64's answers (larger 1/τ·‖q‖ make float32's own score rounding
    the whole error: the test above covers those scales against the loop's scores)."""
    rng = np.random.default_rng(seed)
    n, d = 3000, 8
    K = rng.standard_normal((n, d)).astype(np.float32)
    K /= np.linalg.norm(K, axis=1, keepdims=True)
    K[5] = K[2]  # a tie
    V = K if kv else rng.standard_normal((n, 5)).astype(np.float32)
    q = (K[:1] * np.float32(0.9) + np.float32(0.1) * rng.standard_normal((1, d)).astype(np.float32)) * np.float32(norm)
    mask = {"none": None, "rows": rng.random(n) < 0.6, "pairs": rng.random((1, n)) < 0.6, "all": np.zeros(n, bool)}[
        masked
    ]
    scale = 10.0**log_scale
    calls = []
    old = _fused.MIN_ROWS, _fused.online_rows
    _fused.MIN_ROWS = 1
    _fused.online_rows = lambda *a: calls.append(a[3:]) or old[1](*a)
    try:
        r = finalize(
            run(
                DenseScorer(K),
                q,
                V,
                scale=scale,
                soft=True,
                hard=True,
                k=7,
                stats=True,
                mask=mask,
                threads=threads,
                offset=1000,  # a segment whose first row is global row 1000
            )
        )
    finally:
        _fused.MIN_ROWS, _fused.online_rows = old
    assert len(calls) == threads  # every thread's rows went through the loop
    if masked == "all":  # no allowed row: "no match", never NaN
        assert r.best_row[0] == -1 and (r.top_rows[0] == -1).all() and r.lse[0] == -np.inf
        np.testing.assert_array_equal(r.out[0], 0)
        return
    allowed = np.ones(n, bool) if mask is None else mask.reshape(-1)
    raw = (q.astype(np.float64) @ K.T.astype(np.float64))[0]  # (n,)
    raw[~allowed] = -np.inf
    s = raw * scale  # (n,)
    w = np.exp(s - s.max())  # (n,)
    w /= w.sum()
    # float32 scores are off by up to ~d·eps·‖q‖ (unit keys): that times 1/τ in the weights' exponent
    err = 2 * 4 * d * np.finfo(np.float32).eps * float(np.linalg.norm(q)) * scale + 1e-5
    np.testing.assert_allclose(r.out[0], w @ V.astype(np.float64), atol=err * np.abs(V).max())
    np.testing.assert_allclose(r.lse[0], np.log(np.exp(s - s.max()).sum()) + s.max(), rtol=1e-6, atol=err)
    nz = w > 0
    np.testing.assert_allclose(r.entropy[0], -(w[nz] * np.log(w[nz])).sum(), rtol=1e-4, atol=err * 10)
    np.testing.assert_allclose(r.effective_rows[0], 1 / (w**2).sum(), rtol=1e-4 + err * 10)
    top = np.argsort(-raw, kind="stable")[:7]  # ties to the lowest row
    got_top, got_best = r.top_rows[0] - 1000, r.best_row[0] - 1000  # (7,), ()  local rows
    assert (got_top >= 0).all() and got_best >= 0
    close = np.abs(raw[got_top] - raw[top]) <= 1e-6 * max(1.0, float(np.abs(raw[top]).max()))
    assert close.all()  # float32 GEMV rounding may swap rows whose float64 scores are within an ulp
    assert np.abs(raw[got_best] - raw.max()) <= 1e-6 * max(1.0, float(np.abs(raw.max())))


def test_explain_on_a_large_dot_table_with_a_long_query_uses_the_loop(monkeypatch):
    """The issue's case: a dot table at τ = 0.05 queried with a vector of norm 2.2
    (|score / τ| up to 44, beyond FAST_BOUND): explain and lookup go through the loop and
    match float64; numpy's loop gives the same answers."""
    rng = np.random.default_rng(2)
    n = _fused.MIN_ROWS + 4321
    keys = rng.standard_normal((n, 24)).astype(np.float32)
    keys /= np.linalg.norm(keys, axis=1, keepdims=True)
    t = SoftTable(keys, metric="dot", temperature=0.05)
    q = keys[17] + 0.05 * rng.standard_normal(24).astype(np.float32)
    q *= np.float32(2.2) / np.linalg.norm(q)
    k64, q64 = keys.astype(np.float64), q.astype(np.float64)
    s = k64 @ q64 / 0.05
    assert s.max() > 40  # beyond the bound under which no running max is needed
    w = np.exp(s - s.max())
    w /= w.sum()
    ref = w @ k64  # (24,)
    calls = []
    inner = _fused.online_rows
    monkeypatch.setattr(_fused, "online_rows", lambda *a: calls.append(a[4] - a[3]) or inner(*a))
    fused = explain(t, q, k=5), t.lookup(q)
    assert sum(calls) == 2 * n  # every row went through the loop, in explain and in lookup
    np.testing.assert_allclose(fused[1], ref, atol=2e-5 * np.abs(ref).max())
    np.testing.assert_allclose(fused[0].soft, ref, atol=2e-5 * np.abs(ref).max())
    top = np.argsort(-s, kind="stable")[:5]
    assert list(fused[0].ids) == [t.ids[i] for i in top]
    np.testing.assert_allclose(fused[0].weights, w[top], rtol=1e-4)
    nz = w > 0
    np.testing.assert_allclose(fused[0].entropy, -(w[nz] * np.log(w[nz])).sum(), rtol=1e-4)
    np.testing.assert_allclose(fused[0].effective_rows, 1 / (w**2).sum(), rtol=1e-4)
    monkeypatch.setattr(_fused, "ENABLED", False)
    calls.clear()
    plain = explain(t, q, k=5), t.lookup(q)
    assert calls == []
    np.testing.assert_allclose(plain[1], fused[1], atol=5e-5 * np.abs(ref).max())
    assert fused[0].ids == plain[0].ids


def test_small_passes_never_import_numba(monkeypatch):
    monkeypatch.setattr(_fused, "online_rows", lambda *a: pytest.fail("a small pass used the compiled loop"))
    t = SoftTable(np.eye(4, dtype=np.float32), metric="cosine")
    assert t.lookup(np.array([1, 0, 0, 0], np.float32)).shape == (4,)


def test_a_numba_that_cannot_be_imported_warns_and_falls_back(monkeypatch):
    monkeypatch.setattr(_fused, "_loop", None)
    monkeypatch.setattr(_fused, "_have_numba", True)
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba -> ImportError
    keys = np.eye(3, dtype=np.float32)
    s, o, acc = np.empty(3, np.float32), np.zeros(3, np.float32), _fused.fresh()
    with pytest.warns(
        UserWarning,
        match=r"numba is installed but cannot be imported .*numpy's loop; "
        r'hint: pip install -U "softdb\[fast\]"',
    ):
        _fused.online_blend(keys, np.array([1, 0, 0], np.float32), keys, None, s, o, acc)
    np.testing.assert_allclose(o / acc[1], np.array([np.e, 1, 1]) / (np.e + 2), rtol=1e-6)
    assert acc[0] == 1 + _fused.HEADROOM and not _fused.available()


def test_separate_values_use_the_loop_and_match_float64(monkeypatch):
    """With separate values the loop reads a key row and a value row in turn: it measured
    faster than numpy's loop there (docs/performance.md), so the kernel uses it."""
    calls = []
    inner = _fused.online_rows
    monkeypatch.setattr(_fused, "online_rows", lambda *a: calls.append(a[4] - a[3]) or inner(*a))
    rng = np.random.default_rng(3)
    n = _fused.MIN_ROWS + 10
    keys = rng.standard_normal((n, 8)).astype(np.float32)
    values = rng.standard_normal((n, 8)).astype(np.float32)
    t = SoftTable(keys, values, metric="cosine")
    q = keys[3]
    k64 = t.keys.astype(np.float64)
    s = k64 @ (q / np.linalg.norm(q)).astype(np.float64) / 0.05
    w = np.exp(s - s.max())
    np.testing.assert_allclose(t.lookup(q), (w / w.sum()) @ values.astype(np.float64), rtol=1e-4, atol=1e-6)
    assert sum(calls) == n
