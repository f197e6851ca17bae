"""table.compress: certified top-k equal to the fp32 search's (ids and scores), weights inside their intervals.

Oracles: the table's own fp32 ``search`` (rows, ids, scores), and float64 softmax weights of the
fp32 scores of every row (``search(k=n)``).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

from softdb import Projection, SoftTable
from softdb.engine import _certified
from softdb.table._state import TableState

PRECISIONS = ["int8", "bf16"]


def _same(a, b) -> None:
    np.testing.assert_array_equal(a.rows, b.rows)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert a.ids.tolist() == b.ids.tolist()


def _weights_inside(t: SoftTable, q: np.ndarray, got, tau: float, mask=None) -> None:
    """Every hit's exact weight (float64 softmax of the fp32 scores of all rows) lies in its interval."""
    full = t.search(q, k=len(t), temperature=tau, mask=mask)  # every row's fp32 score, as search reports it
    s = np.where(full.rows >= 0, full.scores.astype(np.float64), -np.inf) / tau  # (m, n)
    lse = logsumexp(s, axis=1)  # (m,)
    m = q.shape[0]
    for i in range(m):
        if lse[i] == -np.inf:
            continue  # no allowed row: no hit to check
        by_row = dict(zip(full.rows[i].tolist(), (s[i] - lse[i]).tolist()))
        for j, r in enumerate(got.rows[i].tolist()):
            if r < 0:
                continue
            w = np.exp(by_row[r])
            assert got.weight_lo[i, j] <= w <= got.weight_hi[i, j], (w, got.weight_lo[i, j], got.weight_hi[i, j])
            lo32, hi32 = np.float32(got.weight_lo[i, j]), np.float32(got.weight_hi[i, j])  # rounding is monotone
            assert lo32 <= got.weights[i, j] <= hi32, (got.weights[i, j], lo32, hi32)  # float32: may underflow to 0


@st.composite
def grid_tables(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Keys and queries on a grid of quarters: every fp32 score is exact, whatever order sums it.

    Many exact ties and duplicate rows: the top-k must break them to the lowest row, as fp32 does.
    """
    seed = draw(st.integers(0, 2**31 - 1))
    d = draw(st.sampled_from([1, 2, 5, 33]))
    n = draw(st.integers(1, 300))
    rng = np.random.default_rng(seed)
    keys = rng.integers(-8, 9, (n, d)) / 4
    if draw(st.booleans()):
        keys = keys[rng.integers(0, max(1, n // 4), n)]  # duplicates
    q = rng.integers(-8, 9, (draw(st.sampled_from([1, 3, 9])), d)) / 4
    return keys.astype(np.float32), q.astype(np.float32)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(grid_tables(), st.sampled_from(PRECISIONS), st.integers(1, 12))
def test_compressed_topk_is_the_fp32_topk_on_exact_grids(table: tuple, precision: str, k: int) -> None:
    keys, q = table
    t = SoftTable(keys, temperature=1.0)
    k = min(k, len(t))
    got = t.compress(precision).search(q, k=k)
    _same(t.search(q, k=k), got)
    assert got.certificate.holds.all()
    _weights_inside(t, q, got, 1.0)


@st.composite
def float_tables(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, str]:
    """Random and adversarial float keys: near-ties, duplicates, huge and tiny norms, zero rows, d = 1, large d."""
    seed = draw(st.integers(0, 2**31 - 1))
    d = draw(st.sampled_from([1, 3, 64, 385]))
    n = draw(st.integers(1, 400))
    kind = draw(st.sampled_from(["gauss", "dupes", "scales", "zeros", "near_ties"]))
    rng = np.random.default_rng(seed)
    keys = rng.standard_normal((n, d))
    if kind == "dupes":
        keys = keys[rng.integers(0, max(1, n // 3), n)]
    elif kind == "scales":
        keys *= 10.0 ** rng.integers(-6, 6, (n, 1))
    elif kind == "zeros":
        keys[rng.random(n) < 0.5] = 0.0
    elif kind == "near_ties":  # scores within a few float32 ulps of each other
        keys = keys[:1] * (1 + rng.integers(-3, 4, (n, 1)) * 2.0**-23)
    m = draw(st.sampled_from([1, 2, 8]))
    q = rng.standard_normal((m, d))
    metric = draw(st.sampled_from(["dot", "cosine"]))
    if metric == "cosine":
        keys[np.abs(keys).sum(axis=1) == 0] = 1.0  # cosine needs non-zero rows
    return keys.astype(np.float32), q.astype(np.float32), metric, kind


@settings(max_examples=60, deadline=None, derandomize=True)
@given(float_tables(), st.sampled_from(PRECISIONS), st.integers(1, 10), st.sampled_from([None, 0.05, 3.0]))
def test_compressed_topk_is_the_fp32_topk_on_float_data(table: tuple, precision: str, k: int, tau: float) -> None:
    keys, q, metric, _kind = table
    t = SoftTable(keys, metric=metric, temperature=tau)
    k = min(k, len(t))
    got = t.compress(precision).search(q, k=k)
    _same(t.search(q, k=k), got)  # near-ties too: rescored in the kernel's own call shapes, ranked as it ranks
    assert got.certificate.holds.all()
    assert (got.certificate.margin > 0).all()
    _weights_inside(t, q, got, t.temperature)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(float_tables(), st.sampled_from(PRECISIONS), st.booleans(), st.booleans())
def test_hard_lookup_is_the_tables_hard_lookup(table: tuple, precision: str, split: bool, masked: bool) -> None:
    """Certified top-1 in the hard pass's arithmetic: the same value as the fp32 hard lookup, ties included."""
    keys, q, metric, _kind = table
    n = len(keys)
    values = np.arange(n * 2, dtype=np.float32).reshape(n, 2)  # each row's value names the row
    t = SoftTable(
        keys[: max(1, n // 2)] if split else keys, values[: max(1, n // 2)] if split else values, metric=metric
    )
    if split and n > 1:
        t.add(keys[n // 2 :], values[n // 2 :], ids=list(range(n // 2, n)))
        t.remove([0])
    mask = (np.arange(len(t)) % 3 != 1) if masked else None
    c = t.compress(precision)
    got = c.lookup(q, mode="hard", mask=mask)
    np.testing.assert_array_equal(got.answer, t.lookup(q, mode="hard", mask=mask))
    assert got.certificate.holds.all()
    one = c.lookup(q[0], mode="hard", mask=mask)
    np.testing.assert_array_equal(one.answer, t.lookup(q[0], mode="hard", mask=mask))


@pytest.mark.parametrize("precision", PRECISIONS)
def test_segments_deletions_and_masks(precision: str) -> None:
    rng = np.random.default_rng(3)
    t = SoftTable(rng.standard_normal((500, 16)).astype(np.float32), temperature=0.5)
    for _ in range(3):
        t.add(rng.standard_normal((5000, 16)).astype(np.float32))
    t.remove(list(range(0, 4000, 7)))
    assert len(t._state.rows.views) > 1
    q = rng.standard_normal((4, 16)).astype(np.float32)
    mask = rng.random((4, len(t))) < 0.5
    mask[2] = False  # a query with no allowed row: no match
    c = t.compress(precision)
    for kw in ({}, {"mask": mask}, {"mask": mask[0]}):
        got = c.search(q, k=7, **kw)
        _same(t.search(q, k=7, **kw), got)
        _weights_inside(t, q, got, 0.5, kw.get("mask"))
    got = c.search(q, k=7, mask=mask)
    assert got.rows[2].tolist() == [-1] * 7 and got.ids[2].tolist() == [None] * 7


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("tau", [0.05, 1.0, 30.0])
def test_weight_tolerance_narrows_every_interval(precision: str, tau: float) -> None:
    rng = np.random.default_rng(5)
    keys = rng.standard_normal((3000, 24)).astype(np.float32)
    t = SoftTable(keys, metric="cosine", temperature=tau)
    q = rng.standard_normal((3, 24)).astype(np.float32)
    got = t.compress(precision).search(q, k=5, weight_tolerance=1e-4)
    assert ((got.weight_hi - got.weight_lo) <= 1e-4).all()
    _same(t.search(q, k=5), got)
    _weights_inside(t, q, got, tau)


def test_fallback_runs_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(6)
    t = SoftTable(rng.standard_normal((2000, 8)).astype(np.float32), temperature=1.0)
    monkeypatch.setattr(_certified, "CAP_MIN", 0)
    monkeypatch.setattr(_certified, "CAP_PER_HIT", 0)
    q = rng.standard_normal((3, 8)).astype(np.float32)
    got = t.compress("int8").search(q, k=4)
    assert got.certificate.fallback.all() and got.certificate.holds.all()
    assert got.certificate.rescored.tolist() == [2000] * 3
    assert "candidate rows" in got.certificate.reason
    _same(t.search(q, k=4), got)
    _weights_inside(t, q, got, 1.0)


def test_one_query_gives_one_dimensional_hits_and_shares_the_table() -> None:
    keys = np.eye(4, dtype=np.float32)
    t = SoftTable(keys, [[1.0], [2.0], [3.0], [4.0]], ids=list("abcd"), payloads=list("wxyz"), temperature=1.0)
    c = t.compress("bf16")
    hits = c.search([0.0, 0.0, 3.0, 1.0], k=2)
    assert hits.ids.tolist() == ["c", "d"] and hits.payloads.tolist() == ["y", "z"]
    assert hits.weight_lo.shape == (2,)
    assert c._state.rows is t._state.rows  # ids, values, payloads and fp32 keys: shared, not copied
    assert c.nbytes < keys.nbytes * 2
    np.testing.assert_array_equal(c.lookup([0.0, 1.0, 0.0, 0.0]).answer, t.lookup([0.0, 1.0, 0.0, 0.0]))


def test_sealed_segments_keep_their_compressed_keys() -> None:
    rng = np.random.default_rng(7)
    t = SoftTable(rng.standard_normal((100, 4)).astype(np.float32))
    first = t.compress("int8").compressed_segments[0]
    t.add(rng.standard_normal((10, 4)).astype(np.float32))
    again = t.compress("int8").compressed_segments
    assert again[0] is first and len(again) == 2


# ---------------------------------------------------------------- bad input
def test_writes_are_refused() -> None:
    c = SoftTable(np.eye(2, dtype=np.float32)).compress("int8")
    msg = (
        "a compressed table is a read-only snapshot of one version of its table, so it has no add(); "
        "hint: table.add(...) on the table itself, then table.compress('int8') again "
        "(sealed segments keep their compressed keys)"
    )
    with pytest.raises(TypeError, match=re.escape(msg)):
        c.add(np.eye(2, dtype=np.float32))
    with pytest.raises(TypeError, match=re.escape("so it has no remove()")):
        c.remove([0])
    with pytest.raises(TypeError, match=re.escape("so it has no compact()")):
        c.compact()


def test_unknown_precision() -> None:
    t = SoftTable(np.eye(2, dtype=np.float32))
    msg = (
        "precision must be one of ['int8', 'bf16'], got 'int4'; "
        "hint: 'int8' keeps 1 byte per number (one scale per row), 'bf16' keeps 2"
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        t.compress("int4")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_keys(bad: float) -> None:
    keys = np.eye(3, dtype=np.float32)
    keys[1, 2] = bad  # as a table loaded with verify=False could hold
    t = SoftTable._from_state(TableState.build(keys, None, ids=None, payloads=None, metric="dot", temperature=None))
    msg = (
        "compress() needs finite keys whose norms fit in float32, but 1 of 3 rows are not (first: row 1); "
        "hint: remove those rows, or rescale the keys"
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        t.compress("int8")


def test_norm_overflowing_float32() -> None:
    t = SoftTable(np.array([[3e38, 3e38], [1.0, 0.0]], np.float32))
    with pytest.raises(ValueError, match=re.escape("but 1 of 2 rows are not (first: row 0)")):
        t.compress("bf16")


def test_tables_that_cannot_be_compressed() -> None:
    with pytest.raises(ValueError, match=re.escape("compress() needs dense keys, but this table's keys are csr")):
        SoftTable(sp.csr_matrix(np.eye(3, dtype=np.float32))).compress("int8")
    with pytest.raises(ValueError, match=re.escape("compress() needs float32 keys, got float64")):
        SoftTable(np.eye(3)).compress("int8")
    t = SoftTable(np.eye(3, dtype=np.float32), projection=Projection(3))
    with pytest.raises(ValueError, match=re.escape("compress() needs a table without a projection")):
        t.compress("int8")


def test_bad_weight_tolerance() -> None:
    c = SoftTable(np.eye(2, dtype=np.float32)).compress("int8")
    msg = "weight_tolerance must be finite and > 0, got -1.0; hint: the widest certified weight interval allowed"
    with pytest.raises(ValueError, match=re.escape(msg)):
        c.search([1.0, 0.0], k=1, weight_tolerance=-1)
