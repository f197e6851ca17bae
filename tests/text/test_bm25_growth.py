"""BM25 that grows exactly: after any adds and removes, scores equal bm25s built from scratch on the live documents."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

bm25s = pytest.importorskip("bm25s")
Stemmer = pytest.importorskip("Stemmer")

from softdb import SoftTable  # noqa: E402 - after the importorskip above
from softdb.eval._metrics import trec_eval  # noqa: E402
from softdb.table import _segments  # noqa: E402
from softdb.text import HashEncoder, HybridEncoder, beir_corpus, beir_qrels, beir_queries  # noqa: E402
from softdb.text import _bm25 as bm25_module  # noqa: E402

SCIFACT = Path(__file__).resolve().parents[1] / "data" / "scifact"
GOLDEN = Path(__file__).resolve().parents[1] / "store" / "data" / "format_v1"


def _bm25s_scores(docs, queries, k1=1.2, b=0.75):
    """(m, n) float64 scores of bm25s.BM25(method="lucene").get_scores on an index built from ``docs``."""
    stem = Stemmer.Stemmer("english")
    retriever = bm25s.BM25(k1=k1, b=b, method="lucene")
    retriever.index(bm25s.tokenize(docs, stopwords="en", stemmer=stem, show_progress=False), show_progress=False)
    toks = bm25s.tokenize(queries, stopwords="en", stemmer=stem, return_ids=False, show_progress=False)
    out = np.zeros((len(queries), len(docs)))
    for i, t in enumerate(toks):
        if any(w in retriever.vocab_dict for w in t):
            out[i] = retriever.get_scores(t)
    return out


def _table_scores(table, queries):
    """(m, n) every row's score, in row order, from one search over the whole table.

    A query with no known term is a no-match (no hits): it scores 0 on every row.
    """
    hits = table.search(queries, k=len(table))
    found = ~np.atleast_1d(hits.no_match)  # (m,)
    part = np.zeros((int(found.sum()), len(table)))
    np.put_along_axis(part, hits.rows[found], hits.scores[found].astype(np.float64), axis=1)
    out = np.zeros((len(queries), len(table)))
    out[found] = part
    return out


def _assert_close(ours, ref):
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(ref).max()))


def _ndcg(scores, doc_ids, query_ids, qrels):
    run = {q: {d: float(s) for d, s in zip(doc_ids, row) if s > 0} for q, row in zip(query_ids, scores)}
    per = trec_eval({q: qrels[q] for q in query_ids}, run)
    return np.array([per[q]["ndcg@10"] for q in query_ids])


@pytest.fixture
def small_segments(monkeypatch):
    """Segments of 16 rows merged 4 at a time: the growth below crosses many seals and merges."""
    monkeypatch.setattr(_segments, "SEAL_ROWS", 16)
    monkeypatch.setattr(_segments, "MERGE_FACTOR", 4)


def test_scifact_grown_one_document_at_a_time_then_thinned_equals_bm25s_from_scratch(small_segments):
    corpus = beir_corpus(SCIFACT)
    docs, ids = list(corpus.texts), list(corpus.ids)
    half = len(docs) // 2
    table = SoftTable.from_texts(docs[:half], ids=ids[:half], encoder="bm25")
    first_vocab = set(table.encoder.vocabulary)
    for d, i in zip(docs[half:], ids[half:]):
        assert table.add_texts([d], ids=[i]) == [i]
    rng = np.random.default_rng(21)
    gone = list(rng.choice(ids, size=len(ids) // 10, replace=False))
    table.remove(gone)
    live = [i for i in ids if i not in set(gone)]
    assert len(table._state.rows.views) > 2  # sealed segments of different vocabularies, a growing one
    assert list(table.ids) == live and len(live) == len(ids) - len(ids) // 10
    live_docs = [docs[ids.index(i)] for i in live]

    test_q, train_q = beir_queries(SCIFACT, "test"), beir_queries(SCIFACT, "train")
    queries, qids = test_q.texts + train_q.texts, test_q.ids + train_q.ids
    ours, ref = _table_scores(table, queries), _bm25s_scores(live_docs, queries)
    assert (ref > 0).sum() > 1000  # many matching pairs compared
    _assert_close(ours, ref)  # every score
    qrels = beir_qrels(SCIFACT, "test")
    n_test = len(test_q.ids)
    ndcg_ours = _ndcg(ours[:n_test], live, qids[:n_test], qrels)
    ndcg_ref = _ndcg(ref[:n_test], live, qids[:n_test], qrels)
    np.testing.assert_allclose(ndcg_ours, ndcg_ref, atol=1e-12)
    assert ndcg_ours.mean() > 0.3  # a real retrieval run, not all zeros

    # a word first seen in an added document (still live) is found, with bm25s's score
    stem = Stemmer.Stemmer("english")

    def stems(text):
        return bm25s.tokenize([text], stopwords="en", stemmer=stem, return_ids=False, show_progress=False)[0]

    doc = next(docs[ids.index(i)] for i in live[half:] if any(t not in first_vocab for t in stems(docs[ids.index(i)])))
    word = next(w for w in re.findall(r"\w\w+", doc) if stems(w) and stems(w)[0] not in first_vocab)
    hit = table.search(word, k=1)
    assert hit.scores[0] > 0 and stems(word)[0] in stems(hit.payloads[0])
    _assert_close(_table_scores(table, [word]), _bm25s_scores(live_docs, [word]))


_words = st.sampled_from(["cat", "cats", "dog", "the", "running", "runs", "fish", "swim", "zebra", "naïve", "q1"])
_text = st.lists(_words, min_size=1, max_size=8).map(" ".join)
_step = st.one_of(
    st.tuples(st.just("add"), st.lists(_text, min_size=1, max_size=3)),
    st.tuples(st.just("remove"), st.integers(0, 10**6)),
    st.tuples(st.just("reload"), st.booleans()),
    st.tuples(st.just("compact"), st.just(None)),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=st.lists(_text, min_size=1, max_size=20), steps=st.lists(_step, max_size=12))
def test_any_sequence_of_adds_removes_and_reloads_scores_as_bm25s_from_scratch(tmp_path, small_segments, start, steps):
    table = SoftTable.from_texts(start, encoder="bm25")
    live = list(start)
    for i, (op, arg) in enumerate(steps):
        if op == "add":
            table.add_texts(arg)
            live += arg
        elif op == "remove" and len(live) > 1:
            j = arg % len(live)
            table.remove([table.ids[j]])
            del live[j]
        elif op == "compact":
            table.compact()
        elif op == "reload":
            table.save(tmp_path / f"t{i}")
            table = SoftTable.load(tmp_path / f"t{i}", mmap=arg)
    assert list(table.payloads) == live
    assume(any(bm25s.tokenize(live, stopwords="en", return_ids=False, show_progress=False)))
    queries = ["cat dog", "running fish", "zebra", "naïve q1 swims"]
    _assert_close(_table_scores(table, queries), _bm25s_scores(live, queries))


def test_a_hybrid_table_grows_its_bm25_block_exactly():
    dense = HashEncoder(16)
    docs = ["red fox jumps", "blue hen lays eggs", "red wine"]
    table = SoftTable.from_texts(docs, encoder=HybridEncoder(dense=dense, weight=0.5))
    table.add_texts(["zebra crossing", "a red zebra"])
    table.remove([1])
    live = ["red fox jumps", "red wine", "zebra crossing", "a red zebra"]
    q = ["red zebra"]
    expect = dense.encode(q) @ dense.encode(live).T + 0.5 * _bm25s_scores(live, q)  # (1, n)
    _assert_close(_table_scores(table, q), expect)
    assert table.encoder.sparse.n_docs == 4


def test_tables_saved_before_growth_score_as_before_and_refuse_to_grow():
    table = SoftTable.load(GOLDEN / "bm25")
    assert not table.encoder.growing
    q = table.encoder.encode(["red fox"])  # (1, V)
    expect = (table.keys @ q.T).toarray().T  # (1, n)  the stored weights, as before
    _assert_close(_table_scores(table, ["red fox"]), expect)
    msg = "this BM25 encoder's statistics are frozen (fitted by encode_corpus, or saved by a softdb before BM25 grew)"
    with pytest.raises(ValueError, match=re.escape(msg)):
        table.add_texts(["a new fox"])
    assert len(table) == 5


def test_errors_of_growing_writes_are_pinned(monkeypatch):
    table = SoftTable.from_texts(["red fox", "blue hen"], ids=["a", "b"], encoder="bm25")
    v = table.encoder.dim
    with pytest.raises(
        ValueError, match=re.escape("cannot add rows: 1 duplicate ids already in the table, e.g. ['a']")
    ):
        table.add_texts(["green frog"], ids=["a"])
    assert table.encoder.dim == v and len(table) == 2  # nothing changed
    with pytest.raises(ValueError, match=re.escape("cannot remove rows: 1 unknown ids ['zz']; hint: table.ids")):
        table.remove(["zz"])
    with pytest.raises(ValueError, match=re.escape("new keys are csr of widths [7] but the table's are csr of widths")):
        table.add(sp.csr_matrix(np.ones((1, 7), np.float32)))
    with pytest.raises(ValueError, match=re.escape("a growing BM25 table's sparse keys are term counts")):
        table.add(sp.csr_matrix(np.full((1, v), 0.5, np.float32)))
    with pytest.raises(ValueError, match=re.escape("new keys are dense of widths [3]")):
        table.add(np.ones((1, 3), np.float32))
    monkeypatch.setattr(bm25_module, "MAX_TERMS", v + 1)
    msg = f"these texts bring 2 new terms to a vocabulary of {v}, more than the {v + 1} terms a BM25 index holds"
    with pytest.raises(ValueError, match=re.escape(msg)):
        table.add_texts(["green frog"])
    monkeypatch.setattr(bm25_module, "MAX_COUNT", 2)
    msg = "document 0 holds the term 'fox' 3 times, more than the 2 a BM25 index counts exactly"
    with pytest.raises(ValueError, match=re.escape(msg)):
        table.add_texts(["fox fox fox"])
    assert len(table) == 2 and table.encoder.n_docs == 2  # every refused write left the table as it was


def test_a_reader_holding_an_old_version_keeps_answering_while_the_vocabulary_grows():
    table = SoftTable.from_texts(["red fox", "blue hen"], encoder="bm25")
    snap = table._state
    table.add_texts(["zebra crossing"])
    q, _ = table._queries(["zebra fox"], snap)  # encoded with the old version's vocabulary
    assert q.shape[1] == snap.dim < table.dim
