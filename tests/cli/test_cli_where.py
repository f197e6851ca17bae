"""``softdb search --where`` and ``softdb explain --where``: the hits pass the filter; mistakes exit 2."""

from __future__ import annotations

import json

import pytest

from softdb import SoftTable
from softdb.cli import main

pytest.importorskip("bm25s")

ROWS = [
    {"id": "a", "text": "compress files with gzip", "year": 2019, "lang": "en"},
    {"id": "b", "text": "gzip and zlib compression streams", "year": 2021, "lang": "en"},
    {"id": "c", "text": "read csv files", "year": 2022, "lang": "de"},
    {"id": "d", "text": "compression of tar archives", "year": 2023, "lang": "fr"},
]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def table(tmp_path, capsys):
    src = tmp_path / "docs.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    out = tmp_path / "t"
    assert run(capsys, "index", src, "--model", "bm25", "--id-column", "id", "-o", out)[0] == 0
    return out


def test_search_where_keeps_only_the_rows_that_pass_and_matches_python(table, capsys):
    where = '{"$and": [{"year": {"$gte": 2020}}, {"lang": {"$ne": "de"}}]}'
    code, out, _ = run(capsys, "search", "compression gzip", "--table", table, "-k", "4", "--where", where, "--json")
    assert code == 0
    rec = json.loads(out)
    t = SoftTable.load(table)
    want = t.search("compression gzip", k=4, where=where)
    assert [h["id"] for h in rec["hits"]] == [i for i in want.ids.tolist() if i is not None] == ["b", "d"]
    assert [h["weight"] for h in rec["hits"]] == pytest.approx(want.weights[:2].tolist(), rel=1e-5)
    assert sum(h["weight"] for h in rec["hits"]) == pytest.approx(1.0, rel=1e-5)  # renormalised over b and d


def test_search_where_that_nothing_passes_prints_no_hits(table, capsys):
    code, out, _ = run(capsys, "search", "gzip", "--table", table, "-k", "2", "--where", '{"year": 1900}', "--json")
    assert code == 0 and json.loads(out)["hits"] == []


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (
            '{"yaer": 2020}',
            "softdb: error: where= names field 'yaer', which no row has; "
            "fields that exist: 'doc', 'lang', 'span', 'text', 'year'; "
            'hint: {"year": {"$gte": 2020}}, {"lang": {"$in": ["en", "de"]}}, {"$and": [...]}',
        ),
        (
            "{year: 2020}",
            "softdb: error: where= must be a JSON object, got malformed JSON '{year: 2020}' (Expecting property "
            "name enclosed in double quotes: line 1 column 2 (char 1)); "
            'hint: --where \'{"year": {"$gte": 2020}}\' (double quotes inside, single quotes around)',
        ),
        (
            '{"year": {"$after": 2020}}',
            "softdb: error: unknown operator '$after' on field 'year'; "
            'field operators: $eq $ne $gt $gte $lt $lte $in $nin; hint: {"year": {"$gte": 2020}}',
        ),
        (
            '{"lang": {"$gt": "en"}}',
            "softdb: error: $gt on field 'lang' needs a number, got str 'en'; "
            "hint: order compares numbers; $eq, $ne, $in and $nin take strings and booleans",
        ),
    ],
)
def test_bad_filters_exit_2_with_the_message_and_no_traceback(table, capsys, where, message):
    code, out, err = run(capsys, "search", "gzip", "--table", table, "-k", "2", "--where", where)
    assert code == 2 and out == ""
    assert err.strip().splitlines()[-1] == message
    assert "Traceback" not in err
