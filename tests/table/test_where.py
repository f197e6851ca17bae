"""where=: the semantics spelled out case by case, the error messages pinned, the columns' life."""

from __future__ import annotations

import re

import numpy as np
import pytest

from softdb import SoftTable
from softdb.table import _columns, _prefilter
from softdb.table._columns import Columns
from softdb.table._where import evaluate, parse_where

PAYS = [
    {"year": 2020, "lang": "en", "text": "gzip compresses"},  # 0
    {"year": 2021.5, "lang": "de"},  # 1  a float year
    {"year": "2022", "lang": "en"},  # 2  a string year: not a number
    {"year": True},  # 3  a bool: not the number 1
    {"lang": None},  # 4  present, not comparable
    "plain text about zlib",  # 5  a str payload: text, no fields
    None,  # 6
    {"year": 2**62, "flag": False},  # 7  a big int
]
HINT = 'hint: {"year": {"$gte": 2020}}, {"lang": {"$in": ["en", "de"]}}, {"$and": [...]}'


def rows(where: dict | str) -> list[int]:
    cols = Columns.build(PAYS)
    return np.flatnonzero(evaluate(parse_where(where, cols.fields), cols)).tolist()


@pytest.mark.parametrize(
    ("where", "want"),
    [
        ({"year": 2020}, [0]),
        ({"year": 2020.0}, [0]),  # int and float compare by value
        ({"year": {"$gt": 2020}}, [1, 7]),  # not the string "2022", not True
        ({"year": {"$gte": 2020}}, [0, 1, 7]),
        ({"year": {"$lt": 2021.5}}, [0]),
        ({"year": {"$lte": 2021.5}}, [0, 1]),
        ({"year": 1}, []),  # True is not 1
        ({"year": True}, [3]),
        ({"year": "2022"}, [2]),
        ({"year": {"$ne": 2020}}, [1, 2, 3, 4, 5, 6, 7]),  # rows without the field match $ne
        ({"year": {"$in": [2020, "2022"]}}, [0, 2]),
        ({"year": {"$nin": [2020, "2022"]}}, [1, 3, 4, 5, 6, 7]),  # ... and $nin
        ({"lang": {"$ne": "en"}}, [1, 3, 4, 5, 6, 7]),  # a None value is not "en"
        ({"year": {"$gt": 2**61}}, [7]),
        ({"year": {"$gt": 2**70}}, []),  # beyond int64: compared as a float
        ({"flag": False}, [7]),
        ({"$contains": "zlib"}, [5]),  # a str payload's text
        ({"$contains": "gzip"}, [0]),  # a dict payload's "text"
        ({"$contains": ""}, [0, 5]),  # rows with a text
        ({"$or": [{"lang": "de"}, {"$contains": "zlib"}]}, [1, 5]),
        ({"$and": [{"lang": "en"}, {"year": {"$gte": 2020}}]}, [0]),
        ({"lang": "en", "year": 2020}, [0]),  # several fields: their $and
        ({"year": {"$gte": 2020, "$lt": 2021}}, [0]),  # several operators: their $and
        ('{"lang": {"$in": ["de"]}}', [1]),  # JSON text
    ],
)
def test_semantics(where: dict | str, want: list[int]) -> None:
    assert rows(where) == want


ERRORS = [
    (
        {"yaer": 2020},
        ValueError,
        f"where= names field 'yaer', which no row has; fields that exist: 'lang', 'year'; {HINT}",
    ),
    (
        {"year": {"$regex": "20"}},
        ValueError,
        "unknown operator '$regex' on field 'year'; field operators: $eq $ne $gt $gte $lt $lte $in $nin; "
        'hint: {"year": {"$gte": 2020}}',
    ),
    (
        {"$not": {"year": 2020}},
        ValueError,
        "unknown operator '$not' in where=; operators: $eq $ne $gt $gte $lt $lte $in $nin $and $or $contains; "
        'hint: an operator goes inside a field: {"year": {"$gte": 2020}}',
    ),
    (
        {"year": {"$gt": "2020"}},
        TypeError,
        "$gt on field 'year' needs a number, got str '2020'; "
        "hint: order compares numbers; $eq, $ne, $in and $nin take strings and booleans",
    ),
    (
        {"year": [2020, 2021]},
        TypeError,
        "$eq on field 'year' needs a number, a string or a boolean, got list [2020, 2021]; "
        'hint: {"year": {"$eq": 2020}}',
    ),
    (
        {"year": {"$in": 2020}},
        TypeError,
        '$in on field \'year\' needs a non-empty list of values, got int 2020; hint: {"year": {"$in": ["en", "de"]}}',
    ),
    (
        {"$or": {"year": 2020}},
        TypeError,
        "$or needs a non-empty list of filters, got dict {'year': 2020}; "
        'hint: {"$or": [{"year": 2020}, {"lang": "en"}]}',
    ),
    (
        {"$contains": 3},
        TypeError,
        '$contains needs a string (searched in the payload text), got int 3; hint: {"$contains": "gzip"}',
    ),
    ({}, ValueError, f"where= must name at least one field or operator, got {{}}; {HINT}"),
    ([{"year": 2020}], TypeError, f"where= must be a dict (a filter), got list [{{'year': 2020}}]; {HINT}"),
    (
        {"year": {"$gte": float("nan")}},
        ValueError,
        "$gte on field 'year' needs a finite number, got nan; hint: a filter compares finite numbers",
    ),
    (
        "{year: 2020}",
        ValueError,
        "where= must be a JSON object, got malformed JSON '{year: 2020}' (Expecting property name enclosed in "
        "double quotes: line 1 column 2 (char 1)); "
        'hint: --where \'{"year": {"$gte": 2020}}\' (double quotes inside, single quotes around)',
    ),
    (
        '{"year": NaN}',
        ValueError,
        "where= must be a JSON object, got malformed JSON '{\"year\": NaN}' (NaN is not JSON); "
        'hint: --where \'{"year": {"$gte": 2020}}\' (double quotes inside, single quotes around)',
    ),
]


@pytest.mark.parametrize(("where", "kind", "msg"), ERRORS)
def test_errors_name_what_was_wrong(where: object, kind: type, msg: str) -> None:
    t = SoftTable(np.eye(2, dtype=np.float32), payloads=[{"year": 2020, "lang": "en"}, "text"])
    with pytest.raises(kind, match=re.escape(msg)):
        t.search([1.0, 0.0], k=1, where=where)


def test_a_table_without_payload_fields() -> None:
    t = SoftTable(np.eye(2, dtype=np.float32))
    msg = (
        "where= names field 'a', which no row has; the rows have no payload fields "
        f"(payloads that are dicts have fields); {HINT}"
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        t.lookup([1.0, 0.0], where={"a": 1})
    assert t.search([1.0, 0.0], k=2, where={"$contains": "x"}).rows.tolist() == [-1, -1]


def test_where_is_a_mask_anded_with_mask_and_defines_no_match() -> None:
    k = np.eye(4, dtype=np.float32)
    pays = [{"y": i} for i in range(4)]
    t = SoftTable(k, [[0.0], [1.0], [2.0], [3.0]], payloads=pays, temperature=1.0)
    q = [[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 5.0]]
    mask = np.array([[True, True, False, True], [True, True, True, True]])
    old = _prefilter.PREFILTER_BELOW, _prefilter.PREFILTER_BELOW_MANY
    for path in (-1.0, 1.0):  # the mask path, then the prefilter path
        _prefilter.PREFILTER_BELOW = _prefilter.PREFILTER_BELOW_MANY = path
        try:
            w = t.weights(q, where={"y": {"$gte": 1}}, mask=mask)
            np.testing.assert_allclose(w[0], [0, 0.5, 0, 0.5], rtol=1e-6)  # renormalised over rows 1 and 3
            assert w[1, 0] == 0 and w[1].sum() == pytest.approx(1)
            hits = t.search(q, k=4, where={"y": {"$gte": 1}}, mask=mask)
            assert hits.rows.tolist() == [[1, 3, -1, -1], [3, 1, 2, -1]]  # exactly the rows that pass
            assert hits.ids[0, 2] is None and hits.scores[0, 2] == -np.inf and hits.weights[0, 2] == 0
            none = {"y": 99}
            np.testing.assert_array_equal(t.lookup(q, where=none), np.zeros((2, 1), np.float32))
            np.testing.assert_array_equal(t.weights(q, where=none), np.zeros((2, 4), np.float32))
            assert t.search(q[0], k=2, where=none).rows.tolist() == [-1, -1]
            assert t.lookup(q[1], mode="hard", where={"y": {"$lt": 3}}).tolist() == [0.0]  # a tie: lowest row
        finally:
            _prefilter.PREFILTER_BELOW, _prefilter.PREFILTER_BELOW_MANY = old


def test_explain_takes_where() -> None:
    t = SoftTable(np.eye(3, dtype=np.float32), ids=["a", "b", "c"], payloads=[{"y": 1}, {"y": 2}, {"y": 3}])
    e = t.explain([1.0, 0.5, 0.2], k=3, where={"y": {"$gte": 2}})
    assert e.ids[:2] == ["b", "c"] and e.ids[2] is None
    assert sum(e.weights) == pytest.approx(1, rel=1e-6)


def test_columns_follow_writes() -> None:
    """A sealed segment keeps its columns; the growing one's follow adds; removed rows never pass."""
    t = SoftTable(np.eye(3, dtype=np.float32), ids=[0, 1, 2], payloads=[{"y": 1}, {"y": 2}, {"y": 3}])
    seg = t._state.rows.views[0].seg
    assert t.search([1.0, 1.0, 1.0], k=3, where={"y": {"$gte": 2}}).ids.tolist() == [1, 2, None]
    assert _columns.columns_of(seg, 3, None) is _columns.columns_of(seg, 3, None)  # built once
    t.add(np.eye(3, dtype=np.float32), ids=[3, 4, 5], payloads=[{"y": 4}, {"z": "new"}, "a text"])
    assert t.search([1.0, 1.0, 1.0], k=6, where={"y": {"$gte": 2}}).ids.tolist()[:3] == [1, 2, 3]
    assert t.search([1.0, 0.0, 0.0], k=1, where={"z": "new"}).ids.tolist() == [4]  # a field only new rows have
    t.add(np.eye(3, dtype=np.float32)[:1], ids=[6], payloads=[{"z": "new"}])
    assert t.search([1.0, 1.0, 1.0], k=2, where={"z": "new"}).ids.tolist() == [4, 6]  # a tie: lowest row
    t.remove([4])
    assert t.search([1.0, 0.0, 0.0], k=2, where={"z": "new"}).ids.tolist() == [6, None]
    t.compact()
    assert t.search([1.0, 0.0, 0.0], k=2, where={"$contains": "text"}).ids.tolist() == [5, None]


@pytest.mark.parametrize("encoder", ["bm25", "hybrid-hash"])
def test_text_tables_sparse_and_block_keys_agree_on_both_paths(encoder) -> None:
    """CSR (BM25) and block (hybrid) keys, a growing vocabulary included: prefilter == mask path."""
    pytest.importorskip("bm25s")
    from softdb.text import BM25Encoder, HashEncoder, HybridEncoder

    texts = [f"{w} file number {i}" for i, w in enumerate(["gzip", "zlib", "tar", "csv", "json"] * 6)]
    pays = [{"text": s, "i": i, "even": i % 2 == 0} for i, s in enumerate(texts)]
    enc = BM25Encoder() if encoder == "bm25" else HybridEncoder(HashEncoder(16), BM25Encoder())
    t = SoftTable.from_texts(texts[:20], payloads=pays[:20], encoder=enc)
    t.add_texts(texts[20:], payloads=pays[20:])  # a second segment; BM25 statistics grow
    where = {"$and": [{"even": True}, {"i": {"$lt": 24}}]}
    got = {}
    old = _prefilter.PREFILTER_BELOW, _prefilter.PREFILTER_BELOW_MANY
    for path in (-1.0, 1.0):
        _prefilter.PREFILTER_BELOW = _prefilter.PREFILTER_BELOW_MANY = path
        try:
            got[path] = t.search(["gzip file", "csv number"], k=5, where=where), t.weights("tar", where=where)
        finally:
            _prefilter.PREFILTER_BELOW, _prefilter.PREFILTER_BELOW_MANY = old
    (a, la), (b, lb) = got[-1.0], got[1.0]
    np.testing.assert_array_equal(a.rows, b.rows)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
    np.testing.assert_allclose(a.weights, b.weights, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(la, lb, rtol=1e-5, atol=1e-6)
    assert all(pays[r]["even"] and r < 24 for r in a.rows.ravel())


def test_columns_of_an_older_version_of_the_growing_segment() -> None:
    """Columns built for more rows of a growing segment serve an older, shorter version (sliced)."""
    t = SoftTable(np.eye(2, dtype=np.float32), payloads=[{"y": 1}, {"y": 2}])
    t.add(np.eye(2, dtype=np.float32), payloads=[{"y": 3}, {"z": "x"}])
    v = t._state.rows.views[-1]
    full = _columns.columns_of(v.seg, v.n, v.payloads)
    old = _columns.columns_of(v.seg, 1, v.payloads)
    assert old.n == 1 and full.n == v.n
    assert old.compare("y", "$eq", full.fields["y"].num[0]).tolist() == [True]
