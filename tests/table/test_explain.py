"""softdb.table._explain: one pass, against a float64 oracle; projected tables (d_out ≠ d_v)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy.special import softmax

from softdb import Projection, SoftTable
from softdb.explain import explain, snippet


def test_plain_table_against_a_float64_oracle():
    rng = np.random.default_rng(0)
    K = rng.standard_normal((300, 5)).astype(np.float32)
    V = rng.standard_normal((300, 4)).astype(np.float32)
    t = SoftTable(K, V, ids=[f"r{i}" for i in range(300)], payloads=[f"text {i}" for i in range(300)], temperature=0.8)
    q = rng.standard_normal(5).astype(np.float32)
    e = explain(t, q, k=4)
    s = K.astype(np.float64) @ q.astype(np.float64)  # (n,)
    w = softmax(s / 0.8)
    order = np.argsort(-s, kind="stable")[:4]
    assert e.ids == [f"r{i}" for i in order]
    assert e.payloads == [f"text {i}" for i in order]
    np.testing.assert_allclose(e.scores, s[order], rtol=1e-5)
    np.testing.assert_allclose(e.weights, w[order], rtol=1e-4)
    assert e.entropy == pytest.approx(float(-(w * np.log(w)).sum()), rel=1e-4)
    assert e.effective_rows == pytest.approx(float(1 / (w @ w)), rel=1e-4)
    assert e.covered == pytest.approx(float(w[order].sum()), rel=1e-4)
    np.testing.assert_allclose(e.soft, w @ V, atol=1e-5)
    np.testing.assert_array_equal(e.hard, V[order[0]])
    assert e.temperature == 0.8 and not e.projected


@pytest.mark.parametrize("proj_kw", [dict(d_out=1), dict(d_k=4, d_out=4, heads=2, init="random")])
def test_projected_tables_report_projected_soft_and_hard_side_by_side(proj_kw):
    # d_v = 3 and d_out differs: the old explain compared the projected soft answer with
    # the raw values (and raised on the shapes)
    rng = np.random.default_rng(1)
    K = rng.standard_normal((40, 6)).astype(np.float32)
    V = rng.standard_normal((40, 3)).astype(np.float32)
    t = SoftTable(K, V, temperature=0.5, projection=Projection(6, **proj_kw))
    q = rng.standard_normal(6).astype(np.float32)
    e = explain(t, q, k=3)
    d_out = t.projection.d_out
    assert e.soft.shape == (d_out,) and e.hard.shape == (d_out,)
    np.testing.assert_allclose(e.soft, t.lookup(q), rtol=1e-6)
    np.testing.assert_array_equal(e.hard, t.lookup(q, mode="hard"))
    assert e.projected and "soft answer (projected values)" in str(e)
    hits = t.search(q, k=3)
    assert e.ids == list(hits.ids)
    np.testing.assert_allclose(e.weights, hits.weights, rtol=1e-6)
    assert e.soft_nearest in e.ids


def test_soft_nearest_is_the_shown_row_closest_to_the_soft_answer():
    V = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]], np.float32)
    t = SoftTable(np.eye(3, dtype=np.float32), V, ids=["x", "y", "both"], temperature=1.0)
    e = explain(t, [1.0, 1.0, 0.0], k=3)  # x and y tie: the blend points at "both"
    assert e.soft_nearest == "both"
    assert "nearest" not in str(e)  # small answers are printed in full instead


def test_explain_takes_one_query():
    t = SoftTable(np.eye(2, dtype=np.float32))
    with pytest.raises(ValueError, match=re.escape("explain takes one query of shape (d,), got shape (2, 2)")):
        explain(t, np.eye(2))


def test_snippet_shortens_and_picks_fields():
    assert snippet({"title": "T", "text": "T\nbody"}) == "T body"  # a chunk's text (its title first) shows
    assert snippet("a  b\nc", width=60) == "a b c"
    assert snippet("x" * 100, width=10) == "x" * 9 + "…"
    assert snippet(None) == ""
