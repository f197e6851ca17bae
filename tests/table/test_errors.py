"""Every user-facing error of the core, pinned word for word."""

from __future__ import annotations

import re

import numpy as np
import pytest

from softdb import SoftTable


def raises(exc, msg):
    return pytest.raises(exc, match=re.escape(msg))


@pytest.fixture
def table():
    rng = np.random.default_rng(0)
    return SoftTable(
        rng.standard_normal((10, 4)).astype(np.float32),
        rng.standard_normal((10, 3)).astype(np.float32),
        ids=[f"r{i}" for i in range(10)],
    )


def test_wrong_query_width_says_both_widths(table):
    with raises(
        ValueError, "queries have 5 columns but the table's keys have 4; hint: were they encoded with the same model?"
    ):
        table.lookup(np.ones(5))
    with raises(ValueError, "new keys have 3 columns but the table's keys have 4"):
        table.add(np.ones((1, 3)), np.ones((1, 3)))
    with raises(ValueError, "new values have 2 columns but the table's values have 3"):
        table.add(np.ones((1, 4)), np.ones((1, 2)), ids=["x"])


def test_row_counts_must_agree():
    with raises(ValueError, "values has 2 rows but keys has 3; hint: give exactly one value per row of keys"):
        SoftTable(np.ones((3, 2)), np.ones((2, 2)))
    with raises(ValueError, "ids has 4 rows but keys has 3"):
        SoftTable(np.ones((3, 2)), ids=["a", "b", "c", "d"])
    with raises(ValueError, "payloads has 1 rows but keys has 3"):
        SoftTable(np.ones((3, 2)), payloads=["only one"])


def test_duplicate_and_unknown_ids(table):
    with raises(ValueError, "ids must be unique, but 1 id appears more than once: ['a']"):
        SoftTable(np.ones((3, 2)), ids=["a", "b", "a"])
    with raises(ValueError, "cannot add rows: 1 duplicate ids already in the table, e.g. ['r3']"):
        table.add(np.ones((1, 4)), np.ones((1, 3)), ids=["r3"])
    with raises(ValueError, "cannot remove rows: 2 unknown ids ['nope', 99]; hint: table.ids lists"):
        table.remove(["r1", "nope", 99])
    assert len(table) == 10  # a failed remove removes nothing
    with raises(TypeError, "ids must be str or int, got float 1.5"):
        SoftTable(np.ones((2, 2)), ids=[1.5, 2.5])


@pytest.mark.parametrize("bad, word", [(np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "inf")])
def test_nan_and_inf_are_named(table, bad, word):
    keys = np.ones((3, 2))
    keys[1, 1] = bad
    with pytest.raises(ValueError, match=f"keys must be finite, but it has .*{word}.*first at index \\(1, 1\\)"):
        SoftTable(keys)
    with pytest.raises(ValueError, match=f"values must be finite, but it has .*{word}"):
        SoftTable(np.ones((3, 2)), keys)
    q = np.ones(4)
    q[2] = bad
    with pytest.raises(ValueError, match=f"queries must be finite, but it has .*{word}"):
        table.lookup(q)


def test_float64_too_large_for_float32_is_named():
    with raises(ValueError, "keys must be finite, but it has values too large for float32 (1 became inf)"):
        SoftTable([[1e39, 0.0]])


@pytest.mark.parametrize("tau", [0, -1.0, np.nan, np.inf])
def test_temperature_must_be_positive_and_finite(table, tau):
    with raises(ValueError, f"temperature must be finite and > 0, got {float(tau)!r}"):
        table.lookup(np.ones(4), temperature=tau)
    with raises(ValueError, "temperature must be finite and > 0"):
        SoftTable(np.ones((2, 2)), temperature=tau)


def test_temperature_type(table):
    with raises(TypeError, "temperature must be a positive number, got str '1'"):
        table.weights(np.ones(4), temperature="1")


def test_k_bounds(table):
    with raises(ValueError, "k=11 but the table has 10 rows; hint: use k <= len(table)"):
        table.search(np.ones(4), k=11)
    with raises(ValueError, "k must be >= 1, got k=0"):
        table.search(np.ones(4), k=0)
    with raises(TypeError, "k must be an int, got float 2.0"):
        table.search(np.ones(4), k=2.0)


def test_empty_table_lookup(table):
    empty = SoftTable(np.empty((0, 4)))
    msg = "cannot look up in an empty table (0 rows); hint: add rows with table.add(keys, values)"
    for call in (empty.lookup, empty.weights, lambda q: empty.search(q, k=1)):
        with raises(ValueError, msg):
            call(np.ones(4))


def test_unknown_mode_and_metric(table):
    with raises(ValueError, "mode must be one of ['soft', 'hard'], got 'argmax'"):
        table.lookup(np.ones(4), mode="argmax")
    with raises(ValueError, "metric must be one of ['dot', 'cosine'], got 'l2'"):
        SoftTable(np.ones((2, 2)), metric="l2")


@pytest.mark.parametrize(
    "bad, msg",
    [
        (np.array([["a", "b"]]), "keys must hold real numbers, got dtype <U1"),
        (np.ones((2, 2), complex), "keys must hold real numbers, got complex dtype complex128"),
        (np.ones((2, 2), bool), "keys must hold real numbers, got dtype bool"),
        (np.array([[object(), 1]], dtype=object), "keys must hold real numbers, got dtype object"),
        (np.ones((2, 2, 2)), "keys must be 2-D (n, d), got 3-D with shape (2, 2, 2)"),
        (np.ones(3), "keys must be 2-D (n, d), got 1-D with shape (3,)"),
        ([[1.0, 2.0], [3.0]], "keys must be a rectangular array of numbers"),
    ],
)
def test_bad_dtypes_and_shapes(bad, msg):
    exc = ValueError if "-D" in msg or "rectangular" in msg else TypeError
    with raises(exc, msg):
        SoftTable(bad)


def test_bad_query_shapes(table):
    with raises(ValueError, "queries must be 1-D (d,) or 2-D (m, d), got 3-D with shape (1, 1, 4)"):
        table.lookup(np.ones((1, 1, 4)))
    with raises(TypeError, "string queries need a table built from texts"):
        table.search("hello", k=1)


def test_mask_errors(table):
    with raises(ValueError, "mask must have shape (10,) or (2, 10) for 2 queries and 10 rows, got (9,)"):
        table.lookup(np.ones((2, 4)), mask=np.ones(9, bool))
    with raises(TypeError, "mask must be a boolean array (True = row allowed), got dtype int64"):
        table.lookup(np.ones(4), mask=np.ones(10, int))


def test_cosine_zero_vector():
    with raises(ValueError, "keys has 1 zero vectors (first at row 1), which have no direction"):
        SoftTable(np.array([[1.0, 0], [0, 0]]), metric="cosine")
    t = SoftTable(np.eye(2), metric="cosine")
    with raises(ValueError, "queries has 1 zero vectors (first at row 0)"):
        t.lookup(np.zeros(2))


def test_add_values_rules():
    kv = SoftTable(np.eye(2))
    with raises(
        ValueError, "this table's values are its keys (it was built with values=None), so add() takes no values"
    ):
        kv.add(np.eye(2), np.eye(2))
    sep = SoftTable(np.eye(2), np.eye(2))
    with raises(ValueError, "add() needs values of width 2 for the 1 new rows"):
        sep.add(np.ones((1, 2)))
