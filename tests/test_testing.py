"""softdb.testing: assertions pass when the intuition holds, and fail with the retrieved rows."""

from __future__ import annotations

import re

import numpy as np
import pytest

from softdb import Projection, SoftTable
from softdb.testing import (
    assert_attends_more,
    assert_not_retrieves,
    assert_retrieves,
    assert_soft_close_to_hard,
    assert_weight_at_least,
)
from softdb.text import HashEncoder

pytest_plugins = ["pytester"]  # the pytester fixture: run a failing test in pytest and read its report

FRUIT = ["apple", "lemon", "banana", "lime", "mango", "kiwi", "plum"]


@pytest.fixture
def fruit():
    keys = np.array([[0.8, 0.3], [0.1, 0.9], [0.9, 0.1], [0.2, 1.0], [1.0, 0.2], [0.5, 0.5], [0.6, 0.4]], np.float32)
    prices = np.arange(1, 8, dtype=np.float32)[:, None]
    return SoftTable(
        keys, prices, ids=FRUIT, payloads=[f"{f}, sold by the kilo at the market" for f in FRUIT], metric="cosine"
    )


@pytest.fixture
def texts():
    docs = [
        "read a csv file into rows",
        "compress data with gzip",
        "parse command line arguments",
        "send an email message",
        "match a regular expression",
    ]
    return SoftTable.from_texts(docs, ids=["csv", "gzip", "argparse", "smtplib", "re"], encoder=HashEncoder())


def test_passing_assertions_return_none(fruit, texts):
    assert assert_retrieves(fruit, [1.0, 0.2], "mango") is None
    assert_retrieves(fruit, [0.95, 0.15], "banana", k=3)
    assert_weight_at_least(fruit, [1.0, 0.2], "mango", 0.3)
    assert_attends_more(fruit, [0.1, 1.0], "lime", "apple")
    assert_soft_close_to_hard(fruit, [[1.0, 0.2], [0.1, 0.9]], 0.5, temperature=1e-4)
    assert_retrieves(texts, "gzip compression of data", "gzip")
    assert_attends_more(texts, "parse the command line", "argparse", "csv")


def test_failing_assert_retrieves_shows_the_rows_it_did_retrieve(fruit):
    with pytest.raises(AssertionError) as info:
        assert_retrieves(fruit, [1.0, 0.2], "lemon", k=2)
    msg = str(info.value)
    w = fruit.weights([1.0, 0.2])
    hits = fruit.search([1.0, 0.2], k=5)
    lemon = fruit.row_of("lemon")
    rank = list(fruit.search([1.0, 0.2], k=len(fruit)).ids).index("lemon") + 1
    assert msg.startswith(
        f"expected 'lemon' in the top 2 for the query vector of shape (2,), but it ranked {rank} "
        f"with weight {w[lemon]:.4f}:\n  rank  id                           score   weight  payload\n"
    )
    # the rows it did retrieve, best first, with their scores, weights and payload snippets
    first = f"     1  'mango'                  {hits.scores[0]:>9.4g} {hits.weights[0]:>8.4f}  mango, sold by the kilo"
    assert first in msg
    for i, fid in enumerate(hits.ids):
        assert re.search(rf"^\s+{i + 1}\s+'{fid}'\s+\S+\s+{hits.weights[i]:.4f}\s", msg, re.M), fid
    assert re.search(rf"^\s+{rank}\s+'lemon'\s+\S+\s+{w[lemon]:.4f}\s+lemon, sold", msg, re.M)
    assert "(weights over all 7 rows at τ = 0.05)" in msg


def test_failing_assert_retrieves_with_a_text_query(texts):
    with pytest.raises(AssertionError, match=re.escape("expected 'smtplib' in the top 1 for 'gzip compression'")):
        assert_retrieves(texts, "gzip compression", "smtplib")


def test_long_payloads_are_cut_to_a_snippet(texts):
    long = SoftTable(
        np.eye(2, dtype=np.float32),
        ids=["a", "b"],
        payloads=[{"summary": "x " * 100, "module": "m"}, "line one\nline two"],
    )
    with pytest.raises(AssertionError) as info:
        assert_retrieves(long, [0.0, 1.0], "a")
    msg = str(info.value)
    assert "x x x" in msg and "…" in msg and "line one line two" in msg
    assert max(len(line) for line in msg.splitlines()[1:]) < 110


def test_failing_assert_weight_at_least(fruit):
    w = float(fruit.weights([1.0, 0.2])[fruit.row_of("mango")])
    with pytest.raises(
        AssertionError,
        match=re.escape(
            f"expected weight >= 0.99 on 'mango' for the query vector of shape (2,), got {w:.4f}:\n  rank  id"
        ),
    ):
        assert_weight_at_least(fruit, [1.0, 0.2], "mango", 0.99)


def test_failing_assert_attends_more_shows_both_rows(fruit):
    w = fruit.weights([1.0, 0.2])
    with pytest.raises(AssertionError) as info:
        assert_attends_more(fruit, [1.0, 0.2], "lime", "mango")
    msg = str(info.value)
    assert msg.startswith(
        "expected the query vector of shape (2,) to attend more to 'lime' than to 'mango', but their weights are "
        f"{w[fruit.row_of('lime')]:.4f} and {w[fruit.row_of('mango')]:.4f}:\n"
    )
    assert "'lime'" in msg.split("\n", 1)[1] and "'mango'" in msg.split("\n", 1)[1]


def test_attends_more_is_strict(fruit):
    twin = SoftTable(np.ones((2, 2), np.float32), ids=["a", "b"])
    with pytest.raises(AssertionError, match=re.escape("but their weights are 0.5000 and 0.5000")):
        assert_attends_more(twin, [1.0, 0.0], "a", "b")


def test_failing_assert_soft_close_to_hard_names_the_worst_query(fruit):
    queries = np.array([[0.1, 1.0], [1.0, 0.2], [0.55, 0.45]], np.float32)
    gaps = np.abs(fruit.lookup(queries) - fruit.lookup(queries, mode="hard")).max(1)
    worst = int(np.argmax(gaps))
    with pytest.raises(
        AssertionError,
        match=re.escape(
            f"soft answers differ from hard ones by more than tol=0.01 for {(gaps > 0.01).sum()} of 3 queries; "
            f"the worst is query {worst} (the query vector of shape (2,)) with max |soft − hard| = {gaps[worst]:.4g}"
        ),
    ):
        assert_soft_close_to_hard(fruit, queries, 0.01)
    assert_soft_close_to_hard(fruit, queries, 0.01, temperature=1e-5)  # one-hot weights: exact


def test_works_on_projected_tables():
    x = np.eye(3, dtype=np.float32)
    t = SoftTable(x, ids=["a", "b", "c"], temperature=0.1, projection=Projection(3, heads=1))
    assert_retrieves(t, x[0], "a")
    assert_weight_at_least(t, x[1], "b", 0.9)


@pytest.mark.parametrize(
    ("call", "exc", "msg"),
    [
        (
            lambda t: assert_retrieves(t, np.ones((2, 2)), "apple"),
            ValueError,
            "this assertion takes one query (a string or a vector of shape (2,)), got an array of shape (2, 2); "
            "hint: loop over the queries, or use assert_soft_close_to_hard for a batch",
        ),
        (
            lambda t: assert_weight_at_least(t, [1.0, 0.0], "apple", 1.5),
            ValueError,
            "w must be a weight between 0 and 1, got 1.5",
        ),
        (lambda t: assert_soft_close_to_hard(t, [[1.0, 0.0]], -1), ValueError, "tol must be a number >= 0, got -1"),
        (
            lambda t: assert_retrieves("not a table", [1.0, 0.0], "apple"),
            TypeError,
            "table must be a softdb.SoftTable, got str",
        ),
    ],
)
def test_misuse_is_not_an_assertion_failure(fruit, call, exc, msg):
    with pytest.raises(exc, match=re.escape(msg)):
        call(fruit)


# ------------------------------------------------- assert_not_retrieves and pytest tracebacks


def test_assert_not_retrieves_passes_when_the_row_is_below_k(fruit):
    order = list(fruit.search([1.0, 0.2], k=len(fruit)).ids)  # the reference ranking
    for k in range(1, len(fruit) + 1):
        for rank, rid in enumerate(order, 1):
            if rank > k:
                assert assert_not_retrieves(fruit, [1.0, 0.2], rid, k=k) is None
            else:
                with pytest.raises(AssertionError, match=re.escape(f"expected {rid!r} not in the top {k} for ")):
                    assert_not_retrieves(fruit, [1.0, 0.2], rid, k=k)


def test_failing_assert_not_retrieves_says_where_the_row_ranked(fruit):
    w = fruit.weights([1.0, 0.2])
    hits = fruit.search([1.0, 0.2], k=5)
    second = hits.ids[1]
    with pytest.raises(AssertionError) as info:
        assert_not_retrieves(fruit, [1.0, 0.2], second, k=3)
    msg = str(info.value)
    assert msg.startswith(
        f"expected {second!r} not in the top 3 for the query vector of shape (2,), but it ranked 2 "
        f"with weight {w[fruit.row_of(second)]:.4f}:\n  rank  id                           score   weight  payload\n"
    )
    for i, fid in enumerate(hits.ids):  # the rows it did retrieve, best first
        assert re.search(rf"^\s+{i + 1}\s+'{fid}'\s+\S+\s+{hits.weights[i]:.4f}\s", msg, re.M), fid
    assert msg.endswith("(weights over all 7 rows at τ = 0.05)")


def test_assert_not_retrieves_with_text_and_unknown_ids(texts):
    assert_not_retrieves(texts, "gzip compression of data", "smtplib")
    with pytest.raises(AssertionError, match=re.escape("expected 'gzip' not in the top 1 for 'gzip compression'")):
        assert_not_retrieves(texts, "gzip compression", "gzip")
    msg = "unexpected id 'zip' is not an id of the table (5 rows, ids ['csv', 'gzip', 'argparse', 'smtplib', 're'])"
    with pytest.raises(AssertionError, match=re.escape(msg)):
        assert_not_retrieves(texts, "gzip compression", "zip")
    with pytest.raises(ValueError, match=re.escape("this assertion takes one query")):
        assert_not_retrieves(texts, np.zeros((2, texts.dim)), "gzip")


_FAILING_TEST = """
import numpy as np
from softdb import SoftTable
from softdb.testing import {name}


def test_it():
    t = SoftTable(np.eye(3, dtype=np.float32), ids=["a", "b", "c"], payloads=["ay", "bee", "sea"], temperature=0.1)
    {call}
"""


@pytest.mark.parametrize(
    ("name", "call"),
    [
        ("assert_retrieves", 'assert_retrieves(t, [0.0, 1.0, 0.2], "a")'),
        ("assert_not_retrieves", 'assert_not_retrieves(t, [0.0, 1.0, 0.2], "b")'),
        ("assert_retrieves", 'assert_retrieves(t, [0.0, 1.0, 0.2], "zz")'),
        ("assert_weight_at_least", 'assert_weight_at_least(t, [0.0, 1.0, 0.2], "a", 0.5)'),
        ("assert_attends_more", 'assert_attends_more(t, [0.0, 1.0, 0.2], "a", "b")'),
        ("assert_soft_close_to_hard", "assert_soft_close_to_hard(t, [[0.0, 1.0, 0.9]], 1e-6)"),
    ],
)
def test_a_failure_in_pytest_shows_the_message_not_softdb_frames(pytester, name, call):
    pytester.makepyfile(_FAILING_TEST.format(name=name, call=call))
    result = pytester.runpytest("-p", "no:randomly", "-p", "no:cacheprovider", "--no-header")
    result.assert_outcomes(failed=1)
    out = result.stdout.lines
    start = next(i for i, line in enumerate(out) if "test_it" in line and "_" in line)  # "____ test_it ____"
    end = next(i for i, line in enumerate(out) if "short test summary" in line)
    report = out[start:end]
    assert len(report) < 25, "\n".join(report)
    assert not any("softdb/testing.py" in line or "raise AssertionError" in line for line in report), "\n".join(report)
    assert any(line.startswith("E   ") and "AssertionError: " in line for line in report), "\n".join(report)
    assert any(call in line for line in report)  # the caller's line stays
