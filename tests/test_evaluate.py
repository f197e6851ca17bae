"""Metric wiring (against a hand computation) and the BEIR pipeline on a slice."""

from __future__ import annotations

import math

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
