"""Hybrid tables: a query whose every BM25 score is 0 and whose best dense cosine is weak is a weak match."""

from __future__ import annotations

import numpy as np
import pytest

from softdb import SoftTable
from softdb.table._explain import WEAK_MATCH_COSINE
from softdb.text import HashEncoder, HybridEncoder

pytest.importorskip("bm25s")

DOCS = ["red fox in the snow", "a blue hen lays an egg", "lazy dog sleeps", "the fox and the hen", "snow on the roof"]
QUERIES = ["zebra", "the the and", "the fox", "on the roof of a", "fox", "quokka ukulele", "an egg", "a the"]


@pytest.fixture(scope="module")
def hybrid():
    return SoftTable.from_texts(DOCS, encoder=HybridEncoder(dense=HashEncoder(64)))


def test_weak_match_needs_no_known_term_and_a_weak_best_cosine(hybrid):
    dense = HashEncoder(64)
    cos = (dense.encode(QUERIES) @ dense.encode(DOCS).T).astype(np.float64)  # (m, n) the dense block, float64
    sparse = hybrid.encoder.sparse.encode(QUERIES)  # (m, V) the query's known terms
    bm25 = (hybrid.keys[1] @ sparse.T).toarray().T if sparse.nnz else np.zeros((len(QUERIES), len(DOCS)))
    no_terms = np.asarray(abs(sparse).sum(axis=1)).ravel() == 0  # (m,)
    expect = no_terms & (cos.max(axis=1) < WEAK_MATCH_COSINE)
    assert expect.any() and (no_terms & ~expect).any() and (~no_terms).any()  # every branch is exercised
    for j, q in enumerate(QUERIES):
        e = hybrid.explain(q, k=2)
        assert e.no_terms == no_terms[j], q
        assert e.weak_match == expect[j], (q, cos[j].max())
        assert not e.no_match  # a hybrid table still ranks by meaning: its hits stand
        if no_terms[j]:
            assert (bm25[j] == 0).all()  # the premise: no known term scores 0 on the BM25 block
            assert e.scores[0] == pytest.approx(cos[j].max(), abs=1e-5)  # the score is the dense cosine (weight 1)
    assert "weak match" in str(hybrid.explain("zebra", k=2))
    assert "weak match" not in str(hybrid.explain("fox", k=2))


@pytest.mark.slow
def test_with_the_real_model_on_the_scifact_slice(minilm):
    from pathlib import Path

    from softdb.text import beir_corpus, beir_queries

    scifact = Path(__file__).resolve().parents[1] / "data" / "scifact"
    corpus = beir_corpus(scifact)
    table = SoftTable.from_texts(corpus.texts, ids=corpus.ids, encoder=HybridEncoder(dense=minilm))
    bm25 = SoftTable.from_texts(corpus.texts, ids=corpus.ids, encoder="bm25")
    related = beir_queries(scifact, "test").texts[:20]
    nonsense = ["zxqv wplk", "qwertyuiop asdfgh", "blorft snazzle"]  # no term the abstracts hold
    cos = (minilm.encode(related + nonsense) @ minilm.encode(corpus.texts).T).max(axis=1)  # (m,) best cosine
    for j, q in enumerate(related + nonsense):
        e = table.explain(q, k=3)
        no_terms = bm25.encoder.encode([q]).nnz == 0
        assert e.no_terms == no_terms, q
        assert e.weak_match == (no_terms and cos[j] < WEAK_MATCH_COSINE), (q, cos[j])
        assert bm25.search(q, k=3).no_match == no_terms, q
    assert not any(table.explain(q, k=3).weak_match for q in related)  # real questions are never weak
    assert all(table.explain(q, k=3).weak_match for q in nonsense)  # made-up words are (cosine < 0.3 measured)
