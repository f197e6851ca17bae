"""No false hits: a BM25 query with no known term is a no-match; near-uniform weights are said, with a τ to try."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softdb import SoftTable
from softdb.table._match import NEAR_UNIFORM, near_uniform

bm25s = pytest.importorskip("bm25s")
Stemmer = pytest.importorskip("Stemmer")

DOCS = ["red fox in the snow", "a blue hen lays an egg", "lazy dog sleeps", "the fox and the hen", "snow on the roof"]
WORDS = ["fox", "hen", "snow", "egg", "dog", "roof", "blue", "red", "lazy", "sleeps"]
UNKNOWN = ["zebra", "xylophone", "quokka", "ukulele"]


@pytest.fixture(scope="module")
def bm25():
    return SoftTable.from_texts(DOCS, ids=[f"d{i}" for i in range(len(DOCS))], encoder="bm25")


def _reference_scores(docs, queries):
    """(m, n) float64 scores of bm25s.BM25(method="lucene").get_scores on an index built from ``docs``."""
    stem = Stemmer.Stemmer("english")
    retriever = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    retriever.index(bm25s.tokenize(docs, stopwords="en", stemmer=stem, show_progress=False), show_progress=False)
    toks = bm25s.tokenize(queries, stopwords="en", stemmer=stem, return_ids=False, show_progress=False)
    out = np.zeros((len(queries), len(docs)))
    for i, t in enumerate(toks):
        if any(w in retriever.vocab_dict for w in t):
            out[i] = retriever.get_scores(t)
    return out


def _same_result(a, b):
    for x, y in zip(a, b):
        if x is None or y is None:
            assert x is None and y is None
        elif x.dtype == object:
            assert x.tolist() == y.tolist()
        else:
            np.testing.assert_array_equal(x, y)


def test_a_query_with_no_known_term_is_the_no_match_of_an_all_false_mask(bm25):
    queries = ["zebra xylophone", "fox in snow", "quokka"]
    ref = _reference_scores(DOCS, queries)
    assert (ref[[0, 2]] == 0).all() and ref[1].max() > 0  # the premise: no term → every score 0
    hits = bm25.search(queries, k=3)
    np.testing.assert_array_equal(hits.no_match, [True, False, True])
    masked = bm25.search(queries, k=3, mask=np.array([[False] * 5, [True] * 5, [False] * 5]))  # (3, n)
    _same_result(hits, masked)  # ids None, scores -inf, weights 0, rows -1: exactly a fully masked query
    rows_mask = np.array([[False] * 5, [True] * 5, [False] * 5])
    np.testing.assert_array_equal(bm25.weights(queries), bm25.weights(queries, mask=rows_mask))
    np.testing.assert_array_equal(bm25.lookup(queries), bm25.lookup(queries, mask=rows_mask))
    w = bm25.weights(queries)  # (3, n)
    np.testing.assert_array_equal(w[[0, 2]], 0.0)
    tau = bm25.temperature
    s = ref[1] / tau
    np.testing.assert_allclose(w[1], np.exp(s - s.max()) / np.exp(s - s.max()).sum(), rtol=1e-5)  # float64 softmax
    np.testing.assert_array_equal(bm25.lookup(queries)[[0, 2]], 0.0)
    one = bm25.search("zebra", k=2)
    assert one.no_match is True and one.ids.tolist() == [None, None] and (one.weights == 0).all()
    assert bm25.search("fox", k=2).no_match is False


def test_explain_says_no_match(bm25):
    e = bm25.explain("zebra", k=3)
    assert e.no_match and e.weak_match and not e.near_uniform and e.ids == [None, None, None]
    assert str(e) == (
        "query: zebra\n\nno match: no row matches this query (it holds no term the table knows, or every row "
        "is masked); no hits, and the soft and hard answers are zeros"
    )
    e2 = bm25.explain("fox", k=3)
    assert not e2.no_match and not e2.weak_match and e2.ids[0] in ("d0", "d3")


@settings(max_examples=40, deadline=None)
@given(
    docs=st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=6), min_size=2, max_size=8),
    queries=st.lists(st.lists(st.sampled_from(WORDS + UNKNOWN), min_size=1, max_size=3), min_size=1, max_size=6),
    k=st.integers(1, 3),
)
def test_no_match_exactly_when_every_score_is_zero(docs, queries, k):
    corpus = [" ".join(d) for d in docs]
    table = SoftTable.from_texts(corpus, encoder="bm25")
    texts = [" ".join(q) for q in queries]
    ref = _reference_scores(corpus, texts)  # (m, n) float64
    k = min(k, len(table))
    hits = table.search(texts, k=k)
    np.testing.assert_array_equal(hits.no_match, (ref == 0).all(axis=1))
    for j in np.flatnonzero(~hits.no_match):
        order = np.lexsort((np.arange(len(table)), -ref[j]))[:k]  # score descending, lowest row first
        np.testing.assert_allclose(hits.scores[j], ref[j][order], rtol=1e-5, atol=1e-6)
        assert (hits.rows[j] >= 0).all()


def test_a_table_of_ones_own_csr_keys_keeps_softmax_answer_to_a_zero_query():
    import scipy.sparse as sp

    keys = sp.random(6, 9, density=0.4, format="csr", random_state=1, dtype=np.float32)
    t = SoftTable(keys, temperature=1.0)  # no BM25 encoder: sparse keys answer as dense ones
    zero = sp.csr_matrix((1, 9), dtype=np.float32)
    np.testing.assert_allclose(t.weights(zero), np.full((1, 6), 1 / 6), rtol=1e-6)
    assert not t.search(zero, k=2).no_match.any()


def test_dense_tables_are_never_a_no_match_unless_masked():
    rng = np.random.default_rng(0)
    keys = rng.normal(size=(20, 4)).astype(np.float32)
    for t in (SoftTable(keys), SoftTable(keys, metric="cosine")):
        q = np.vstack([np.zeros(4, np.float32) + (t.metric == "cosine"), rng.normal(size=4)])  # (2, 4)
        assert not t.search(q, k=3).no_match.any()
        assert t.search(q, k=3, mask=np.zeros(20, bool)).no_match.all()


# ------------------------------------------------------------------------- near-uniform weights
@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 300),
    seed=st.integers(0, 2**32 - 1),
    log_tau=st.floats(-1.0, 5.0),
    spread=st.floats(0.01, 10.0),
)
def test_near_uniform_is_judged_at_the_best_row_and_its_suggested_tau_separates_the_rows(n, seed, log_tau, spread):
    rng = np.random.default_rng(seed)
    keys = (rng.uniform(-spread, spread, size=(n, 1))).astype(np.float64)
    tau = float(10.0**log_tau)
    t = SoftTable(keys, temperature=tau)
    q = np.ones(1)
    hits = t.search(q, k=1)
    s = keys[:, 0]  # (n,) the scores, float64 reference
    w = np.exp((s - s.max()) / tau)
    w /= w.sum()  # (n,)
    u = near_uniform(float(hits.weights[0]), n, tau)
    top_excess = w.max() * n - 1
    if abs(top_excess - NEAR_UNIFORM) > 1e-4:  # away from the boundary the float32 weight decides the same
        assert u.near_uniform == (top_excess <= NEAR_UNIFORM)
    assert u.excess == pytest.approx(top_excess, abs=1e-4)
    if u.suggested_temperature is not None:
        assert u.near_uniform
        gap = (s.max() - s.mean()) / u.suggested_temperature  # best minus mean score, in units of τ'
        # the best row weighs about n mean rows (first order in the excess: within 10% at excess <= 0.1)
        assert np.log(n) * (1 - 1e-3) <= gap <= np.log(n) * 1.1
        assert not near_uniform(float(t.search(q, k=1, temperature=u.suggested_temperature).weights[0]), n, 1.0)[0]
    elif u.near_uniform:
        assert (s.max() - s.min()) / tau < 1e-4  # every row scores the same, to float32's precision


def test_explain_and_str_say_near_uniform_with_a_temperature():
    rng = np.random.default_rng(3)
    keys = rng.normal(size=(1000, 384)).astype(np.float32)
    keys /= np.linalg.norm(keys, axis=1, keepdims=True)  # unit embeddings
    hot = SoftTable(keys, temperature=200.0)
    e = hot.explain(keys[7], k=3)
    w = hot.weights(keys[7]).astype(np.float64)
    assert w.max() * 1000 - 1 <= NEAR_UNIFORM  # the premise, from every weight
    assert e.near_uniform and e.suggested_temperature is not None
    s = keys.astype(np.float64) @ keys[7].astype(np.float64)
    assert (s.max() - s.mean()) / e.suggested_temperature == pytest.approx(np.log(1000), rel=0.02)
    msg = (
        "near-uniform weights: at τ = 200 every weight is within 10% of uniform at the top (the best row weighs at "
        f"most 1.1/n); try temperature={e.suggested_temperature:.3g}, where the best row would weigh about as much "
        "as the rest"
    )
    assert msg in str(e)
    sharp = hot.explain(keys[7], k=3, temperature=e.suggested_temperature)
    assert not sharp.near_uniform and "near-uniform" not in str(sharp)
    flat = SoftTable(np.ones((4, 2)), temperature=1.0).explain([1.0, 1.0], k=2)
    assert flat.near_uniform and flat.suggested_temperature is None
    assert re.search("every row scores the same, so no temperature separates them", str(flat))
