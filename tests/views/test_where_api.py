"""``/api/search?where=…``: JSON filters pass through to the table; a bad one is a JSON 400."""

from __future__ import annotations

import http.client
import json
import urllib.parse

import pytest

from softdb import SoftTable
from softdb.text import HashEncoder
from softdb.views._server import start_server

TEXTS = ["read rows from a csv file", "compress data with gzip", "gzip a folder", "parse json text"]
PAYS = [{"text": t, "year": 2018 + i, "lang": ["en", "de"][i % 2]} for i, t in enumerate(TEXTS)]


@pytest.fixture(scope="module")
def table():
    return SoftTable.from_texts(TEXTS, ids=[f"doc{i}" for i in range(4)], payloads=PAYS, encoder=HashEncoder())


@pytest.fixture(scope="module")
def server(table):
    srv = start_server(table, port=0)
    try:
        yield srv
    finally:
        srv.shutdown()


def api(server, **params) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        conn.request("GET", "/api/search?" + urllib.parse.urlencode(params))
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_where_filters_the_hits_as_the_table_does(server, table):
    where = '{"year": {"$gte": 2019}}'
    status, body = api(server, q="gzip", k=4, where=where)
    assert status == 200
    want = table.search("gzip", k=4, where=where)
    assert [h["id"] for h in body["hits"]] == [i for i in want.ids.tolist() if i is not None]
    assert len(body["hits"]) == 3 and all(h["payload"]["year"] >= 2019 for h in body["hits"])
    assert sum(h["weight"] for h in body["hits"]) == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ('{"yr": 1}', "where= names field 'yr', which no row has; fields that exist: 'lang', 'text', 'year'"),
        ("{not json", "where= must be a JSON object, got malformed JSON '{not json'"),
        ('{"year": {"$like": 1}}', "unknown operator '$like' on field 'year'"),
        ('{"year": {"$in": 2020}}', "$in on field 'year' needs a non-empty list of values, got int 2020"),
        ('{"year": Infinity}', "where= must be a JSON object, got malformed JSON '{\"year\": Infinity}'"),
    ],
)
def test_a_bad_filter_is_a_json_400_naming_what_was_wrong(server, where, message):
    status, body = api(server, q="gzip", where=where)
    assert status == 400 and body["status"] == 400
    assert body["error"].startswith(message)
