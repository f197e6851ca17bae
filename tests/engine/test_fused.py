"""softdb.engine._fused: the compiled score + exp + blend loop against float64 numpy and numpy's loop.

``make test`` installs numba (the ``fast`` extra), so the compiled loop is what runs
here; ``ENABLED = False`` gives numpy's loop for comparison.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from softdb import SoftTable
from softdb.engine import _fused
from softdb.explain import explain


def test_the_test_environment_has_numba():
    assert _fused.available(), 'numba is missing: make test installs it (pip install -e ".[fast]")'


def _reference(keys, q, values, mask):
    s = keys.astype(np.float64) @ q.astype(np.float64)  # (c,)
    if mask is not None:
        s[~mask] = -np.inf
    return s, np.exp(s) @ values.astype(np.float64)  # (c,), (d_v,)


@settings(max_examples=60, deadline=None)
@example(c=92, d=6, dv=12, block=1, masked=False, same=False, f64=False, seed=343)  # cancellation
@given(
    c=st.integers(0, 700),
    d=st.integers(1, 40),
    dv=st.integers(1, 12),
    block=st.sampled_from([1, 7, 512]),
    masked=st.booleans(),
    same=st.booleans(),
    f64=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_score_blend_matches_float64(c, d, dv, block, masked, same, f64, seed):
    rng = np.random.default_rng(seed)
    dt = np.float64 if f64 else np.float32
    keys = rng.standard_normal((c, d)).astype(dt)
    values = keys if same else rng.standard_normal((c, dv)).astype(dt)  # same: a K = V table
    q = (rng.standard_normal(d) * 3 / np.sqrt(d)).astype(dt)  # |scores| ~ 3: exp in range
    mask = rng.random(c) < 0.5 if masked else None
    s, o = np.empty(c, dt), np.full(values.shape[1], 0.5, dt)  # o is added to
    old = _fused.BLOCK
    _fused.BLOCK = block
    try:
        _fused.score_blend(keys, q, values, mask, s, o)
    finally:
        _fused.BLOCK = old
    rs, ro = _reference(keys, q, values, mask)
    tol = 1e-12 if f64 else 2e-5
    np.testing.assert_allclose(s, rs, rtol=tol, atol=tol * 10)
    assert (s[~mask] == -np.inf).all() if masked else np.isfinite(s).all()
    # A sum's rounding is relative to the sum of its terms' sizes, not to the sum: terms of 1e5
    # that cancel to -1.2e3 leave an error of 0.1 in float32 (a hypothesis example did exactly that).
    size = np.exp(rs) @ np.abs(values.astype(np.float64))  # (d_v,)  Σ_j e^{s_j} |v_j|
    assert np.all(np.abs(o - (ro + 0.5)) <= tol * (size + 0.5) + tol * 10), (o, ro + 0.5, size)


def test_compiled_and_numpy_loops_agree_on_one_chunk(monkeypatch):
    rng = np.random.default_rng(1)
    keys = rng.standard_normal((5000, 64)).astype(np.float32)
    q = rng.standard_normal(64).astype(np.float32) / 4
    mask = rng.random(5000) < 0.7
    out = {}
    for enabled in (True, False):
        monkeypatch.setattr(_fused, "ENABLED", enabled)
        s, o = np.empty(5000, np.float32), np.zeros(64, np.float32)
        _fused.score_blend(keys, q, keys, mask, s, o)
        out[enabled] = s, o
    np.testing.assert_allclose(out[True][0], out[False][0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out[True][1], out[False][1], rtol=1e-5)


def test_explain_on_a_large_kv_table_uses_the_loop_and_matches_float64(monkeypatch):
    """A K = V table over MIN_ROWS rows (the text tables' case): one query's answers with
    the compiled loop match float64 numpy, and numpy's loop's answers."""
    rng = np.random.default_rng(2)
    n = _fused.MIN_ROWS + 4321
    keys = rng.standard_normal((n, 24)).astype(np.float32)
    t = SoftTable(keys, metric="cosine")  # τ = 0.05: |score / τ| <= 20, the bounded blend
    q = keys[17] + 0.3 * rng.standard_normal(24).astype(np.float32)
    k64, q64 = t.keys.astype(np.float64), q.astype(np.float64) / np.linalg.norm(q)
    s = k64 @ q64 / 0.05
    w = np.exp(s - s.max())
    w /= w.sum()
    ref = w @ k64  # (24,)
    calls = []
    inner = _fused.score_blend
    monkeypatch.setattr(_fused, "score_blend", lambda *a: calls.append(len(a[0])) or inner(*a))
    fused = explain(t, q, k=5), t.lookup(q)
    assert sum(calls) == 2 * n  # every row went through the loop, in explain and in lookup
    np.testing.assert_allclose(fused[1], ref, atol=2e-6 * np.abs(ref).max())  # blocked sums: ~1e-7 here
    np.testing.assert_allclose(fused[0].soft, ref, atol=2e-6 * np.abs(ref).max())
    top = np.argsort(-s, kind="stable")[:5]
    assert list(fused[0].ids) == [t.ids[i] for i in top]
    np.testing.assert_allclose(fused[0].weights, w[top], rtol=1e-5)
    monkeypatch.setattr(_fused, "ENABLED", False)
    calls.clear()
    plain = explain(t, q, k=5), t.lookup(q)
    assert calls == []
    np.testing.assert_allclose(plain[1], fused[1], atol=5e-5 * np.abs(ref).max())  # numpy's loop: ~1e-5 here
    assert fused[0].ids == plain[0].ids


def test_small_passes_never_import_numba(monkeypatch):
    monkeypatch.setattr(_fused, "score_blend", lambda *a: pytest.fail("a small pass used the compiled loop"))
    t = SoftTable(np.eye(4, dtype=np.float32), metric="cosine")
    assert t.lookup(np.array([1, 0, 0, 0], np.float32)).shape == (4,)


def test_a_numba_that_cannot_be_imported_warns_and_falls_back(monkeypatch):
    monkeypatch.setattr(_fused, "_loop", None)
    monkeypatch.setattr(_fused, "_have_numba", True)
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba -> ImportError
    keys = np.eye(3, dtype=np.float32)
    s, o = np.empty(3, np.float32), np.zeros(3, np.float32)
    with pytest.warns(
        UserWarning,
        match=r"numba is installed but cannot be imported .*numpy's loop; "
        r'hint: pip install -U "softdb\[fast\]"',
    ):
        _fused.score_blend(keys, np.array([1, 0, 0], np.float32), keys, None, s, o)
    np.testing.assert_allclose(o, [np.e, 1, 1])
    assert not _fused.available()


def test_separate_values_keep_numpy_loop(monkeypatch):
    """The loop is used for K = V tables only: with separate values, reading a key row and
    a value row in turn measured slower than numpy's chunks (softdb.engine._kernel._fusable)."""
    monkeypatch.setattr(_fused, "score_blend", lambda *a: pytest.fail("separate values used the compiled loop"))
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
