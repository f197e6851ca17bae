"""Documents in a table: chunk rows that know their document, and search(by="document") against float64 numpy."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softdb import SoftTable
from softdb.table import _documents
from softdb.text import Chunker, HashEncoder, TokenCounter, chunk_texts


def _table(rng, n, d, n_docs, tau=0.5):
    """A dot table of n chunk rows spread over n_docs documents (every document has a row), rows shuffled."""
    doc = np.concatenate([np.arange(n_docs), rng.integers(0, n_docs, n - n_docs)])
    rng.shuffle(doc)
    keys = rng.standard_normal((n, d)).astype(np.float32)
    pays = [{"text": f"row {i}", "doc": f"D{int(g)}", "span": [0, 1]} for i, g in enumerate(doc)]
    return SoftTable(keys, payloads=pays, metric="dot", temperature=tau), keys, doc


def _reference(keys, doc, q, tau, mask=None):
    """float64 numpy: each document's summed weight and best chunk (score, row) per query."""
    s = q.astype(np.float64) @ keys.astype(np.float64).T  # (m, n)
    if mask is not None:
        s = np.where(mask, s, -np.inf)
    z = s / tau
    w = np.exp(z - z.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)  # (m, n)
    n_docs = int(doc.max()) + 1
    dw = np.stack([np.bincount(doc, weights=w[i], minlength=n_docs) for i in range(len(q))])  # (m, n_docs)
    best = np.full((len(q), n_docs), -np.inf)
    for i in range(len(q)):
        np.maximum.at(best[i], doc, s[i])
    return dw, best


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 60), n_docs_frac=st.floats(0.05, 1.0), m=st.integers(1, 5))
def test_document_weights_are_the_sum_of_their_chunks_weights(seed, n, n_docs_frac, m):
    rng = np.random.default_rng(seed)
    n_docs = max(1, int(n * n_docs_frac))
    t, keys, doc = _table(rng, n, 6, n_docs)
    q = rng.standard_normal((m, 6)).astype(np.float32)
    k = int(rng.integers(1, n_docs + 1))
    dw, best = _reference(keys, doc, q, 0.5)
    for rank in ("score", "weight"):
        hits = t.search(q, k, by="document", rank=rank)
        assert hits.ids.shape == (m, k) and all(i is not None for i in hits.ids.ravel())  # exactly k documents
        got = np.array([[int(i[1:]) for i in row] for row in hits.ids])  # (m, k) document numbers
        np.testing.assert_allclose(hits.weights, np.take_along_axis(dw, got, 1), rtol=2e-5, atol=1e-7)
        np.testing.assert_allclose(hits.scores, np.take_along_axis(best, got, 1), rtol=1e-5, atol=1e-5)
        assert np.all(doc[hits.rows] == got)  # the hit shows a chunk of its document ...
        np.testing.assert_allclose(  # ... its best one
            np.take_along_axis(q.astype(np.float64) @ keys.T.astype(np.float64), hits.rows, 1),
            hits.scores,
            rtol=1e-5,
            atol=1e-5,
        )
        key = best if rank == "score" else dw
        ranked = np.take_along_axis(key, got, 1)
        assert np.all(np.diff(ranked, axis=1) <= 1e-6 * np.abs(ranked[:, :-1]) + 1e-12)  # best first
        kth = np.sort(key, axis=1)[:, -k]  # no document left out ranks above the k-th
        assert np.all(ranked[:, -1] >= kth - 1e-5 * np.abs(kth) - 1e-12)


def test_many_query_blocks_and_a_mask_give_the_same_documents(monkeypatch):
    rng = np.random.default_rng(3)
    t, keys, doc = _table(rng, 50, 8, 12)
    q = rng.standard_normal((9, 8)).astype(np.float32)
    mask = rng.random((9, 50)) < 0.3
    whole = t.search(q, 4, by="document", mask=mask)
    monkeypatch.setattr(_documents, "BLOCK_WEIGHTS", 50 * 2)  # two queries a block
    blocked = t.search(q, 4, by="document", mask=mask)
    for name in ("ids", "rows", "payloads"):
        np.testing.assert_array_equal(getattr(whole, name), getattr(blocked, name))
    np.testing.assert_allclose(whole.scores, blocked.scores, rtol=1e-6)  # GEMM shapes may round the last bit
    np.testing.assert_allclose(whole.weights, blocked.weights, rtol=1e-5)
    dw, best = _reference(keys, doc, q, 0.5, mask)
    for i in range(9):  # masked: only allowed chunks count; a document with none is not a hit
        allowed = np.flatnonzero(np.isfinite(best[i]))
        n_hits = min(4, len(allowed))
        assert sum(x is not None for x in blocked.ids[i]) == n_hits
        got = [int(x[1:]) for x in blocked.ids[i][:n_hits]]
        np.testing.assert_allclose(blocked.weights[i][:n_hits], dw[i, got], rtol=2e-5, atol=1e-7)
        assert set(got) <= set(allowed.tolist())


def test_rows_that_are_documents_search_as_chunks_do():
    t = SoftTable(np.eye(4, dtype=np.float32), ids=list("abcd"), payloads=list("ABCD"), temperature=0.3)
    q = np.array([[0.1, 0.9, 0.5, 0.0]], np.float32)
    a, b = t.search(q, 3), t.search(q, 3, by="document")
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_errors_name_the_documents():
    t = SoftTable.from_texts(["a b c d e f", "g h"], encoder=HashEncoder(), chunk=Chunker(4, 0))
    with pytest.raises(ValueError, match=re.escape("k=3 but the table has 2 documents (in 3 rows); hint: use 1 <= k")):
        t.search("a", 3, by="document")
    with pytest.raises(ValueError, match=re.escape("by must be 'chunk' or 'document', got 'file'")):
        t.search("a", 1, by="file")
    with pytest.raises(ValueError, match=re.escape("rank must be 'score' or 'weight', got 'sum'")):
        t.search("a", 1, by="document", rank="sum")
    with pytest.raises(TypeError, match=re.escape("chunk must be None, True, False or a softdb.text.Chunker, got int")):
        SoftTable.from_texts(["a"], encoder=HashEncoder(), chunk=3)


# ---------------------------------------------------------------- documents through from_texts / add_texts
DOCS = ["cats purr softly on warm laps " * 6, "dogs bark at the mail carrier", "fish swim in cold water " * 5]


def test_from_texts_cuts_documents_into_rows_that_know_them(tmp_path):
    enc = HashEncoder(256)
    t = SoftTable.from_texts(
        DOCS,
        ids=["cats", "dogs", "fish"],
        titles=["Cats", None, "Fish"],
        payloads=[{"year": 2020}, None, "x"],
        encoder=enc,
        chunk=Chunker(12, 3),
    )
    pays = t.payloads
    cut = chunk_texts(DOCS, TokenCounter(), Chunker(12, 3), titles=["Cats", None, "Fish"])
    n_cats, n_fish = int((cut.doc == 0).sum()), int((cut.doc == 2).sum())
    assert n_cats > 1 and n_fish > 1 and int((cut.doc == 1).sum()) == 1
    assert [p["doc"] for p in pays] == ["cats"] * n_cats + ["dogs"] + ["fish"] * n_fish
    assert t.ids[: n_cats + 1] == (*(f"cats#{i}" for i in range(n_cats)), "dogs")  # one chunk: the document's id
    for p in pays:
        s, e = p["span"]
        text = DOCS[["cats", "dogs", "fish"].index(p["doc"])]
        title = {"cats": "Cats", "dogs": None, "fish": "Fish"}[p["doc"]]
        assert p["text"] == (f"{title}\n" if title else "") + text[s:e]
        assert p.get("title") == title
    assert pays[0]["year"] == 2020 and pays[-1]["payload"] == "x"
    hit = t.search("purr on warm laps", 1, by="document")
    assert hit.ids[0] == "cats" and hit.payloads[0]["doc"] == "cats"
    t.save(tmp_path / "t")
    back = SoftTable.load(tmp_path / "t")
    assert back.ids == t.ids and back.payloads == t.payloads  # document ids and spans persist
    b = back.search("purr on warm laps", 2, by="document")
    a = t.search("purr on warm laps", 2, by="document")
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_allclose(a.weights, b.weights)


def test_documents_are_added_and_removed_by_their_ids():
    enc = HashEncoder(256)
    t = SoftTable.from_texts(DOCS, encoder=enc, chunk=Chunker(12, 3))
    added = t.add_texts(["zebras graze on the open plain " * 4], chunk=Chunker(12, 3))
    assert len(added) > 1 and added[0] == "3#0"  # document 3: after the largest integer document id
    assert t.search("zebras graze", 1, by="document").ids[0] == 3
    n0 = sum(p["doc"] == 0 for p in t.payloads)
    assert t.remove_documents([0, 3]) == n0 + len(added)
    assert sorted(set(_documents.document_ids(t).tolist())) == [1, 2]
    fresh = SoftTable.from_texts(DOCS[1:], ids=[1, 2], encoder=enc, chunk=Chunker(12, 3))
    q = ["fish water", "mail"]
    a, b = t.search(q, 2, by="document"), fresh.search(q, 2, by="document")
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_allclose(a.weights, b.weights, rtol=1e-6)
    with pytest.raises(KeyError, match=re.escape("no document has id '7'")):
        t.remove_documents(["7"])


def test_short_texts_stay_one_row_each_as_before():
    t = SoftTable.from_texts(["read a csv file", "compress with gzip"], encoder=HashEncoder())
    assert t.ids == (0, 1) and t.payloads == ("read a csv file", "compress with gzip")


def test_values_of_a_document_answer_for_each_of_its_chunks():
    vals = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], np.float32)  # one value per document
    t = SoftTable.from_texts(DOCS, values=vals, encoder=HashEncoder(256), chunk=Chunker(12, 3))
    docs = [p["doc"] for p in t.payloads]
    np.testing.assert_array_equal(t.values, vals[docs])
    with pytest.raises(ValueError, match=re.escape("values must have one row per text: got shape (2, 2) for 3 texts")):
        SoftTable.from_texts(DOCS, values=vals[:2], encoder=HashEncoder(256), chunk=Chunker(12, 3))


def test_search_by_document_takes_where_as_its_mask():
    """where= with by="document" answers as the same rows given as a mask (both filters and documents)."""
    rng = np.random.default_rng(7)
    keys = rng.standard_normal((12, 4)).astype(np.float32)
    pays = [{"text": f"t{i}", "doc": f"D{i // 3}", "span": [0, 1], "year": 2018 + i % 4} for i in range(12)]
    t = SoftTable(keys, payloads=pays, temperature=1.0)
    q = rng.standard_normal((3, 4)).astype(np.float32)
    allowed = np.array([p["year"] >= 2020 for p in pays])
    for rank in ("score", "weight"):
        a = t.search(q, k=3, by="document", rank=rank, where={"year": {"$gte": 2020}})
        b = t.search(q, k=3, by="document", rank=rank, mask=allowed)
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.rows, b.rows)
        np.testing.assert_allclose(a.weights, b.weights, rtol=1e-6)
        assert all(pays[r]["year"] >= 2020 for r in a.rows.ravel() if r >= 0)
