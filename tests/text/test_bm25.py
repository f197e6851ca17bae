"""BM25Encoder against bm25s itself: same scores, same vocabulary, state that round-trips."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import assume, given, settings
from hypothesis import strategies as st

bm25s = pytest.importorskip("bm25s")
Stemmer = pytest.importorskip("Stemmer")

from softdb.text import BM25Encoder, beir_corpus, beir_queries  # noqa: E402 - after the importorskip above

SCIFACT = Path(__file__).resolve().parents[1] / "data" / "scifact"  # the real slice shipped in the repo


def _bm25s_scores(docs, queries, k1=1.2, b=0.75):
    """(m, n) float64 scores of bm25s.BM25(method="lucene").get_scores, the reference."""
    stem = Stemmer.Stemmer("english")
    retriever = bm25s.BM25(k1=k1, b=b, method="lucene")
    retriever.index(bm25s.tokenize(docs, stopwords="en", stemmer=stem, show_progress=False), show_progress=False)
    toks = bm25s.tokenize(queries, stopwords="en", stemmer=stem, return_ids=False, show_progress=False)
    out = np.zeros((len(queries), len(docs)))
    for i, t in enumerate(toks):
        if any(w in retriever.vocab_dict for w in t):
            out[i] = retriever.get_scores(t)
    return out


def _ours(docs, queries, **kw):
    enc = BM25Encoder(**kw)
    keys = enc.encode_corpus(docs)  # (n, V)
    return enc, keys, (enc.encode(queries) @ keys.T).toarray()  # (m, n)


def _assert_close(ours, ref):
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(ref).max()))


def test_scores_equal_bm25s_on_the_scifact_slice():
    corpus = beir_corpus(SCIFACT)
    queries = beir_queries(SCIFACT, "test").texts + beir_queries(SCIFACT, "train").texts
    enc, keys, ours = _ours(corpus.texts, queries)
    ref = _bm25s_scores(corpus.texts, queries)
    assert (ref > 0).sum() > 1000  # the comparison covers many matching pairs
    _assert_close(ours, ref)
    assert sp.isspmatrix_csr(keys) and keys.dtype == np.float32 and keys.shape == (len(corpus), enc.dim)


def test_top_10_equals_bm25s_retrieve_on_the_slice():
    corpus = beir_corpus(SCIFACT)
    queries = beir_queries(SCIFACT, "test").texts
    _, _, ours = _ours(corpus.texts, queries)
    ref = _bm25s_scores(corpus.texts, queries)
    for o, r in zip(ours, ref):  # same sets of the 10 best scores (ties may order differently)
        np.testing.assert_allclose(np.sort(o)[-10:], np.sort(r)[-10:], rtol=1e-5)


_words = st.sampled_from(
    [
        "cat",
        "cats",
        "dog",
        "dogging",
        "the",
        "a",
        "running",
        "runs",
        "ran",
        "x",
        "fish",
        "FISH",
        "swim",
        "swims",
        "of",
        "and",
        "q1",
        "zebra",
        "é",
        "naïve",
    ]
)
_text = st.lists(_words, max_size=12).map(" ".join)


@settings(max_examples=40, deadline=None)
@given(
    docs=st.lists(_text, min_size=1, max_size=8),
    queries=st.lists(_text, min_size=1, max_size=4),
    k1=st.sampled_from([0.9, 1.2, 2.0]),
    b=st.sampled_from([0.0, 0.4, 0.75, 1.0]),
)
def test_scores_equal_bm25s_on_synthetic_texts(docs, queries, k1, b):
    assume(any(bm25s.tokenize(docs, stopwords="en", return_ids=False, show_progress=False)))  # bm25s needs a token
    _, _, ours = _ours(docs, queries, k1=k1, b=b)
    _assert_close(ours, _bm25s_scores(docs, queries, k1=k1, b=b))


def test_queries_count_repeated_terms_and_drop_unknown_ones():
    enc = BM25Encoder()
    enc.encode_corpus(["red fox", "red hen", "blue sky"])
    q = enc.encode(["red red unknownword", "the of"]).toarray()  # (2, V)
    assert q[0, enc.vocabulary.index("red")] == 2 and q[0].sum() == 2
    assert q[1].sum() == 0  # stopwords only: an empty query scores every row 0


def test_state_round_trips_and_encodes_identically():
    corpus = beir_corpus(SCIFACT)
    enc = BM25Encoder(k1=1.5, b=0.6)
    keys = enc.encode_corpus(corpus.texts)
    config, arrays = enc.get_state()
    back = BM25Encoder.from_state(config, arrays)
    assert back.vocabulary == enc.vocabulary and (back.k1, back.b) == (1.5, 0.6)
    np.testing.assert_array_equal(back.encode_documents(corpus.texts).toarray(), keys.toarray())
    q = ["gene expression in stem cells"]
    np.testing.assert_array_equal(back.encode(q).toarray(), enc.encode(q).toarray())
    assert all(a.dtype.kind in "fU" for a in arrays.values())  # plain arrays, no pickled objects


def test_errors_name_the_fix():
    with pytest.raises(ValueError, match=re.escape("BM25Encoder.encode needs a fitted encoder")):
        BM25Encoder().encode(["query"])
    with pytest.raises(ValueError, match=re.escape("k1 must be a finite number > 0, got -1")):
        BM25Encoder(k1=-1)
    with pytest.raises(ValueError, match=re.escape("stemmer 'klingon' is not a PyStemmer algorithm")):
        BM25Encoder(stemmer="klingon").encode_corpus(["a text"])
    with pytest.raises(TypeError, match=re.escape("wrap one text in a list")):
        BM25Encoder().encode_corpus("one text")
