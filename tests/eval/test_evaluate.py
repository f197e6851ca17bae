"""Metric wiring (against a hand computation) and the BEIR pipeline on a slice."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from softdb import SoftTable
from softdb.evaluate import evaluate_table, summarize, trec_eval, unseen_queries


def test_ndcg_recall_mrr_match_hand_computation():
    qrels = {"q1": {"d1": 1, "d3": 1}, "q2": {"d9": 1}}
    run = {"q1": {"d0": 3.0, "d1": 2.0, "d2": 1.0, "d3": 0.5}, "q2": {"d0": 1.0}}
    per_query = trec_eval(qrels, run)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)  # relevant at ranks 2 and 4
    idcg = 1 + 1 / math.log2(3)
    assert per_query["q1"]["ndcg@10"] == pytest.approx(dcg / idcg, abs=1e-4)
    assert per_query["q1"]["recall@100"] == pytest.approx(1.0)
    assert per_query["q1"]["mrr@10"] == pytest.approx(0.5)
    assert per_query["q2"] == {"ndcg@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    m = summarize(per_query)
    assert m.queries == 2 and m.ndcg_at_10 == pytest.approx(dcg / idcg / 2, abs=1e-4)


def test_mrr_is_cut_at_10():
    qrels = {"q": {"d11": 1}}
    run = {"q": {f"d{i}": float(100 - i) for i in range(20)}}  # relevant at rank 12
    assert trec_eval(qrels, run)["q"]["mrr@10"] == 0.0
    assert trec_eval(qrels, run)["q"]["recall@100"] == 1.0


def test_unseen_queries():
    test = {"a": {"d1": 1}, "b": {"d2": 1, "d3": 1}, "c": {"d4": 1}}
    train = {"t1": {"d1": 1}, "t2": {"d3": 1, "d5": 0}}
    assert unseen_queries(test, train) == ["c"]


def test_soft_and_hard_rankings_agree_on_a_toy_table():
    rng = np.random.default_rng(0)
    keys = rng.standard_normal((50, 8)).astype(np.float32)
    table = SoftTable(keys, ids=[f"d{i}" for i in range(50)], metric="cosine")
    q = keys[:5] + 0.1 * rng.standard_normal((5, 8)).astype(np.float32)
    qids = [f"q{i}" for i in range(5)]
    qrels = {f"q{i}": {f"d{i}": 1} for i in range(5)}
    soft = evaluate_table(table, q, qids, qrels, mode="soft")
    hard = evaluate_table(table, q, qids, qrels, mode="hard")
    assert soft.subsets["all"] == hard.subsets["all"]
    assert soft.subsets["all"].ndcg_at_10 == pytest.approx(1.0)


SCIFACT = Path(__file__).resolve().parents[1] / "data" / "scifact"  # the real slice shipped in the repo


def _hand_ndcg10(ranked: list[str], relevant: dict[str, int]) -> float:
    dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sorted(relevant.values(), reverse=True)[:10]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg


@pytest.mark.slow
def test_beir_pipeline_on_a_scifact_slice(minilm):
    from softdb.evaluate import evaluate_beir
    from softdb.text import beir_corpus, beir_qrels, beir_queries

    qrels, train_qrels = beir_qrels(SCIFACT, "test"), beir_qrels(SCIFACT, "train")
    unseen = unseen_queries(qrels, train_qrels)
    assert 0 < len(unseen) < len(qrels)  # the slice keeps both kinds of test query
    report = evaluate_beir(str(SCIFACT), split="test", fit="train", encoder=minilm)
    out = report.to_dict()
    assert set(out) == {"model", "baseline", "fitted", "slice", "seconds"} and out["model"] == "dense"
    for model in ("baseline", "fitted"):
        assert set(out[model]) == {"all", "unseen"}
        assert out[model]["all"]["queries"] == len(qrels)
        assert out[model]["unseen"]["queries"] == len(unseen)
        for subset in ("all", "unseen"):
            for name in ("ndcg@10", "recall@100", "mrr@10"):
                assert 0 <= out[model][subset][name] <= 1
    # the pipeline's baseline equals an independent brute-force cosine ranking scored by hand:
    # float64 cosine of the same model's embeddings, computed apart from the pipeline
    q = beir_queries(SCIFACT, "test")
    corpus = beir_corpus(SCIFACT)
    D = minilm.encode(list(corpus.texts)).astype(np.float64)  # (n_docs, d)
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    Qv = minilm.encode(list(q.texts[:5])).astype(np.float64)  # (5, d)
    per_query = report.baseline.per_query
    for qid, v in zip(q.ids[:5], Qv):
        ranked = [corpus.ids[i] for i in np.argsort(-(D @ (v / np.linalg.norm(v))), kind="stable")]
        run = report.baseline.run[qid]
        assert sorted(run, key=lambda d: -run[d])[:10] == ranked[:10]
        assert per_query[qid]["ndcg@10"] == pytest.approx(_hand_ndcg10(ranked, qrels[qid]), abs=1e-4)
    # the "unseen" figure is the mean over exactly the unseen queries
    want = np.mean([report.baseline.per_query[qid]["ndcg@10"] for qid in unseen])
    assert out["baseline"]["unseen"]["ndcg@10"] == pytest.approx(want, abs=1e-12)
    # soft and hard rankings agree, on the whole slice and on a cut of it
    for cut in ({}, {"max_docs": 150, "max_queries": 10}):
        soft = evaluate_beir(str(SCIFACT), split="test", encoder=minilm, mode="soft", **cut)
        hard = evaluate_beir(str(SCIFACT), split="test", encoder=minilm, mode="hard", **cut)
        assert hard.baseline.subsets["all"] == soft.baseline.subsets["all"]
    # the fit was checked on held-out train queries and then refit on all of them
    assert report.fit_report.final.iterations >= 1
    assert report.fit_report.final.loss_history[-1] < report.fit_report.final.loss_history[0]


def _beir_folder(root, rng) -> tuple[list, list, dict]:
    """A small BEIR folder: 80 documents of random words, train and test queries."""
    import json

    words = [f"w{i}" for i in range(400)]
    docs = [(f"d{i}", " ".join(rng.choice(words, 2)), " ".join(rng.choice(words, 8))) for i in range(80)]
    queries, qrels = [], {"train": [], "test": []}
    for i in range(24):
        split = "test" if i % 2 else "train"
        d = docs[int(rng.integers(0, 80))]
        queries.append((f"q{i}", " ".join(rng.choice((d[1] + " " + d[2]).split(), 4))))
        qrels[split].append((f"q{i}", d[0]))
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("\n".join(json.dumps({"_id": i, "title": t, "text": x}) for i, t, x in docs))
    (root / "queries.jsonl").write_text("\n".join(json.dumps({"_id": i, "text": x}) for i, x in queries))
    for split, pairs in qrels.items():
        (root / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in pairs)
        )
    return docs, queries, {q: {d: 1} for q, d in qrels["test"]}


class _WordVectors:
    """A deterministic encoder with continuous embeddings (sum of seeded word vectors): no ties."""

    name, dim = "test-word-vectors", 32

    def encode(self, texts, **kw):
        rows = []
        for t in texts:
            v = sum(np.random.default_rng([int(w[1:])]).standard_normal(self.dim) for w in t.split())
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows, np.float32).reshape(len(rows), self.dim)


def test_beir_pipeline_equals_an_independent_brute_force_ranking(tmp_path):
    from softdb.evaluate import evaluate_beir

    enc = _WordVectors()
    docs, queries, test_qrels = _beir_folder(tmp_path / "beir", np.random.default_rng(5))
    report = evaluate_beir(str(tmp_path / "beir"), split="test", fit="train", encoder=enc)
    out = report.to_dict()
    assert {"baseline", "fitted", "seconds"} <= set(out)
    for model in ("baseline", "fitted"):
        assert set(out[model]) == {"all", "unseen"} and out[model]["all"]["queries"] == len(test_qrels)
    # brute force, apart from the pipeline: float64 cosine of the encoded texts, stable order
    D = enc.encode([(t + " " + x).strip() for _, t, x in docs]).astype(np.float64)  # (80, d)
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    by_id = dict(queries)
    for qid, rel in test_qrels.items():
        qv = enc.encode([by_id[qid]])[0].astype(np.float64)
        s = D @ (qv / np.linalg.norm(qv))  # (80,)
        ranked = [docs[i][0] for i in np.argsort(-s, kind="stable")]
        run = report.baseline.run[qid]
        assert len(set(run.values())) == len(run)  # no tied weights: trec_eval would order ties by id
        assert sorted(run, key=lambda d: -run[d])[:10] == ranked[:10]
        assert report.baseline.per_query[qid]["ndcg@10"] == pytest.approx(_hand_ndcg10(ranked, rel), abs=1e-4)
    soft = evaluate_beir(str(tmp_path / "beir"), split="test", encoder=enc, mode="soft")
    hard = evaluate_beir(str(tmp_path / "beir"), split="test", encoder=enc, mode="hard")
    assert hard.baseline.subsets["all"] == soft.baseline.subsets["all"]
    # the fit was checked on held-out train queries and then refit on all of them
    assert report.fit_report.final.iterations >= 1
    assert report.fit_report.final.loss_history[-1] < report.fit_report.final.loss_history[0]


def test_eval_json_has_exactly_the_documented_shape(tmp_path, capsys, monkeypatch):
    """`softdb eval --json` on a tiny BEIR folder, with a deterministic encoder."""
    import json

    from softdb.cli import main
    from softdb.text import HashEncoder

    monkeypatch.setattr("softdb.text.default_encoder", lambda: HashEncoder(32))
    root = tmp_path / "beir"
    (root / "qrels").mkdir(parents=True)
    docs = [
        ("d1", "cats", "cats chase mice"),
        ("d2", "dogs", "dogs chase cats"),
        ("d3", "fish", "fish swim"),
        ("d4", "birds", "birds fly south"),
        ("d5", "cows", "cows eat grass"),
    ]
    (root / "corpus.jsonl").write_text("\n".join(json.dumps({"_id": i, "title": t, "text": x}) for i, t, x in docs))
    qs = [("q1", "what do cats chase"), ("q2", "where do birds fly"), ("q3", "what swims"), ("q4", "dogs chase")]
    (root / "queries.jsonl").write_text("\n".join(json.dumps({"_id": i, "text": x}) for i, x in qs))
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\r\nq3\td3\t1\r\nq4\td2\t1\r\n")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\r\nq1\td1\t1\r\nq2\td4\t1\r\n")
    assert main(["eval", str(root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # a train split exists, so the unseen-document figures are there without --fit too
    assert set(out) == {"model", "baseline", "slice", "seconds"} and set(out["baseline"]) == {"all", "unseen"}
    assert out["slice"] is None  # the whole split
    assert set(out["baseline"]["all"]) == {"ndcg@10", "recall@100", "mrr@10", "queries"}
    assert out["baseline"]["all"]["queries"] == 2
    assert main(["eval", str(root), "--fit", "train", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"model", "baseline", "fitted", "slice", "seconds"}
    assert set(out["fitted"]) == {"all", "unseen"} and out["fitted"]["unseen"]["queries"] == 2
    # the hybrid adds what it chose on train, with every candidate's cross-validated score
    assert main(["eval", str(root), "--model", "hybrid", "--folds", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"model", "baseline", "chosen", "slice", "seconds"} and out["model"] == "hybrid"
    assert set(out["baseline"]) == {"all", "unseen"} and set(out["chosen"]) == {"baseline"}
    chosen = out["chosen"]["baseline"]
    assert chosen["folds"] == 2 and chosen["beta"] in [c["options"]["beta"] for c in chosen["cv"]]
