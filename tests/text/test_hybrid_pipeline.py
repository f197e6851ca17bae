"""The whole hybrid pipeline on the real SciFact slice in tests/data: keyword and meaning in one table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

bm25s = pytest.importorskip("bm25s")
Stemmer = pytest.importorskip("Stemmer")

from softdb import SoftTable  # noqa: E402 - after the importorskip above
from softdb.eval._evaluate import evaluate_beir  # noqa: E402 - after the importorskip above
from softdb.text import HybridEncoder, beir_corpus, beir_queries  # noqa: E402 - after the importorskip above

SCIFACT = Path(__file__).resolve().parents[1] / "data" / "scifact"  # the real slice shipped in the repo

pytestmark = pytest.mark.slow


def _bm25s_scores(docs, queries):
    stem = Stemmer.Stemmer("english")
    r = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    r.index(bm25s.tokenize(docs, stopwords="en", stemmer=stem, show_progress=False), show_progress=False)
    toks = bm25s.tokenize(queries, stopwords="en", stemmer=stem, return_ids=False, show_progress=False)
    return np.stack([r.get_scores(t) if any(w in r.vocab_dict for w in t) else np.zeros(len(docs)) for t in toks])


def test_hybrid_table_search_explain_save_load(minilm, tmp_path):
    corpus = beir_corpus(SCIFACT)
    queries = beir_queries(SCIFACT, "test").texts[:8]
    with pytest.warns(UserWarning, match="documents are longer than the encoder reads"):  # one row a text: the oracle's
        table = SoftTable.from_texts(corpus.texts, ids=corpus.ids, encoder=HybridEncoder(dense=minilm), chunk=False)
    assert table.key_kind == "blocks" and table.block_weights == (1.0, 0.05) and table.temperature == 0.05
    # the oracle: MiniLM cosine (float64) + 0.05 × bm25s's own Lucene scores
    cos = minilm.encode(queries).astype(np.float64) @ minilm.encode(corpus.texts).astype(np.float64).T  # (m, n)
    want = cos + 0.05 * _bm25s_scores(corpus.texts, queries)  # (m, n)
    hits = table.search(queries, k=10)  # text queries: each encoded by both blocks
    np.testing.assert_allclose(hits.scores, -np.sort(-want, axis=1)[:, :10], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(want[np.arange(8)[:, None], hits.rows], hits.scores, rtol=1e-4, atol=1e-5)
    one = table.search(queries[0], k=3)  # one text: 1-D answers
    assert one.ids.shape == (3,) and list(one.ids) == list(hits.ids[0, :3])
    # explain: each hit's score is the sum of its blocks' shares
    e = table.explain(queries[0], k=3)
    assert [name for name, _ in e.blocks] == ["dense", "bm25"]
    for score, parts in zip(e.scores, e.block_scores):
        assert score == pytest.approx(parts[0] + 0.05 * parts[1], rel=1e-4, abs=1e-5)
    assert "× " in str(e) and " bm25" in str(e)
    # saved and memory-mapped, it answers the same text queries (BM25 state travels in the table)
    table.save(tmp_path / "hybrid")
    back = SoftTable.load(tmp_path / "hybrid", mmap=True)
    np.testing.assert_array_equal(back.search(queries, k=10).rows, hits.rows)


def test_hybrid_eval_chooses_on_train_and_reports_unseen(minilm):
    fit_options = {
        "candidates": {
            "blend (β, τ)": {"learn": ("tau", "weights")},
            "W_Q, λ 0.3": {"learn": ("q",), "reg": 0.3, "max_iter": 15},
        }
    }
    hybrid = evaluate_beir(
        str(SCIFACT), model="hybrid", fit="train", folds=3, encoder=minilm, fit_options=fit_options
    ).to_dict()
    dense = evaluate_beir(str(SCIFACT), model="dense", encoder=minilm).to_dict()
    bm25 = evaluate_beir(str(SCIFACT), model="bm25").to_dict()
    for out in (hybrid, dense, bm25):
        assert set(out["baseline"]) == {"all", "unseen"} and out["baseline"]["unseen"]["queries"] == 20
    assert set(hybrid["fitted"]) == {"all", "unseen"}
    # keyword and meaning together beat each alone on the slice's test queries
    assert hybrid["baseline"]["all"]["ndcg@10"] > max(
        dense["baseline"]["all"]["ndcg@10"], bm25["baseline"]["all"]["ndcg@10"]
    )
    chosen = hybrid["chosen"]
    cv = {c["name"]: c for c in chosen["baseline"]["cv"]}
    best = max(cv.values(), key=lambda c: c["cv_ndcg@10"])
    assert chosen["baseline"]["beta"] == best["options"]["beta"]  # β: the best CV nDCG@10 on train
    fits = {c["name"]: c for c in chosen["fitted"]["cv"]}
    assert set(fits) == {"no fit", "blend (β, τ)", "W_Q, λ 0.3"}
    picked = fits[chosen["fitted"]["fit"]]
    allowed = [
        c for n, c in fits.items() if n != "no fit" and c["cv_ndcg@10_unseen"] >= fits["no fit"]["cv_ndcg@10_unseen"]
    ]
    assert picked == (max(allowed, key=lambda c: c["cv_ndcg@10"]) if allowed else fits["no fit"])
