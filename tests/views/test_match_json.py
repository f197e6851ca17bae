"""Search JSON says no_match, weak_match and near_uniform as booleans for every kind of table; NaN is rejected."""

from __future__ import annotations

import json

import numpy as np
import pytest

from softdb import SoftTable
from softdb._json import dumps
from softdb.table._explain import WEAK_MATCH_COSINE
from softdb.table._match import weak_rule
from softdb.text import HashEncoder, HybridEncoder
from softdb.views import search_answers, search_record
from softdb.views._app import App

pytest.importorskip("bm25s")

DOCS = ["red fox in the snow", "a blue hen lays an egg", "lazy dog sleeps", "the fox and the hen", "snow on the roof"]
QUERIES = ["zebra", "fox in snow", "the the and", "quokka ukulele"]
FLAGS = ("no_match", "weak_match", "near_uniform")


def strict_loads(text: str):
    def reject(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=reject)


def _tables():
    dense = HashEncoder(64)
    cos = SoftTable.from_texts(DOCS, encoder=dense)  # cosine
    dot = SoftTable(dense.encode(DOCS), payloads=DOCS)  # the default metric: dot, at τ = √64
    dot.encoder = dense
    bm25 = SoftTable.from_texts(DOCS, encoder="bm25")
    hybrid = SoftTable.from_texts(DOCS, encoder=HybridEncoder(dense=HashEncoder(64)))
    return {"cosine": cos, "dot": dot, "bm25": bm25, "hybrid": hybrid}


@pytest.fixture(scope="module")
def tables():
    return _tables()


def _expected(kind, table, query):
    """The flags from float64 references: the dense cosines and the BM25 terms the table knows."""
    dense = HashEncoder(64)
    cos = float((dense.encode([query]) @ dense.encode(DOCS).T).max())
    sparse = table.encoder.sparse if kind == "hybrid" else table.encoder if kind == "bm25" else None
    no_terms = sparse is not None and sparse.encode([query]).nnz == 0
    no_match = kind == "bm25" and no_terms
    weak = {
        "cosine": cos < WEAK_MATCH_COSINE,
        "dot": False,
        "bm25": no_match,
        "hybrid": no_terms and cos < WEAK_MATCH_COSINE,
    }[kind]
    return no_match, weak


@pytest.mark.parametrize("kind", ["cosine", "dot", "bm25", "hybrid"])
def test_search_records_carry_boolean_flags_for_every_kind_of_table(tables, kind):
    table = tables[kind]
    answers = search_answers(table, QUERIES, k=3)
    seen = set()
    for q, a in zip(QUERIES, answers, strict=True):
        rec = strict_loads(dumps(search_record(a, q, table_rows=len(table), k=3, weak=weak_rule(table))))
        assert all(type(rec[f]) is bool for f in FLAGS), rec
        no_match, weak = _expected(kind, table, q)
        assert (rec["no_match"], rec["weak_match"]) == (no_match, weak), (q, rec)
        assert rec["weak_match_below"] == (None if kind in ("dot", "bm25") else WEAK_MATCH_COSINE)
        if no_match:
            assert rec["hits"] == [] and rec["best_score"] is None and rec["covered"] == 0
        else:
            assert len(rec["hits"]) == 3
        seen.add((rec["no_match"], rec["weak_match"]))
    if kind == "bm25":
        assert seen == {(True, True), (False, False)}  # both outcomes exercised
    if kind == "hybrid":
        assert (False, True) in seen and (False, False) in seen


def test_near_uniform_in_json_with_the_suggested_temperature(tables):
    table = tables["dot"]  # unit vectors at τ = √64 = 8: is the best row within 10% of uniform?
    a = search_answers(table, ["fox in snow"], k=2, temperature=500.0)[0]
    rec = strict_loads(dumps(search_record(a, "fox in snow", table_rows=len(table), weak=weak_rule(table))))
    w = table.weights(table.encoder.encode(["fox in snow"])[0], temperature=500.0).astype(np.float64)
    assert w.max() * len(table) - 1 <= 0.01  # the premise, from every weight in float64
    assert rec["near_uniform"] is True
    scores = table.keys.astype(np.float64) @ table.encoder.encode(["fox in snow"])[0].astype(np.float64)
    assert (scores.max() - scores.mean()) / rec["suggested_temperature"] == pytest.approx(np.log(5), rel=0.02)
    a = search_answers(table, ["fox in snow"], k=2, temperature=0.05)[0]
    rec = strict_loads(dumps(search_record(a, "fox in snow", table_rows=len(table), weak=weak_rule(table))))
    assert rec["near_uniform"] is False and rec["suggested_temperature"] is None


@pytest.mark.parametrize("kind", ["dot", "bm25"])  # the web app does not take hybrid tables (a list of query blocks)
def test_the_web_api_says_the_same(tables, kind):
    app = App(tables[kind])
    for q in QUERIES:
        status, _, body = app.handle("/api/search", f"q={q.replace(' ', '+')}&k=2")
        assert status == 200
        rec = strict_loads(body.decode())
        assert all(type(rec[f]) is bool for f in FLAGS), rec
        assert (rec["no_match"], rec["weak_match"]) == _expected(kind, tables[kind], q)
