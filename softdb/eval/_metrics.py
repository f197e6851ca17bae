"""IR metrics the way the field computes them: trec_eval's nDCG@10, Recall@100 and MRR@10.

The numbers come from the reference trec_eval implementation (``pytrec_eval``, package
``pytrec-eval-terrier``, in the ``eval`` extra); this module only shapes its input and
averages its output, over all queries or a subset (e.g. the "unseen-document" queries).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["MEASURES", "Metrics", "summarize", "trec_eval", "unseen_queries"]

MEASURES = {"ndcg@10": "ndcg_cut_10", "recall@100": "recall_100", "mrr@10": "recip_rank"}


def _pytrec_eval() -> Any:
    try:
        import pytrec_eval
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "evaluation needs pytrec_eval, the reference trec_eval implementation; "
            'install it with: pip install "softdb[eval]"'
        ) from None
    return pytrec_eval


@dataclass(frozen=True)
class Metrics:
    """Mean metrics over a set of queries (NaN over no query: the mean does not exist)."""

    ndcg_at_10: float
    recall_at_100: float
    mrr_at_10: float
    queries: int

    def to_dict(self) -> dict[str, float | int | None]:
        """The metrics as a JSON-ready dict; None (JSON null) for a metric over no query.

        Examples
        --------
        >>> Metrics(float("nan"), float("nan"), float("nan"), 0).to_dict()
        {'ndcg@10': None, 'recall@100': None, 'mrr@10': None, 'queries': 0}
        """

        def value(x: float) -> float | None:
            return x if np.isfinite(x) else None

        return {
            "ndcg@10": value(self.ndcg_at_10),
            "recall@100": value(self.recall_at_100),
            "mrr@10": value(self.mrr_at_10),
            "queries": self.queries,
        }


def trec_eval(
    qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]]
) -> dict[str, dict[str, float]]:
    """Per-query nDCG@10, Recall@100 and MRR@10 computed by pytrec_eval.

    MRR@10 is trec_eval's ``recip_rank`` on the run cut to its 10 best documents.

    Parameters
    ----------
    qrels : {query_id: {doc_id: relevance}}
    run : {query_id: {doc_id: score}}, higher score = better

    Returns
    -------
    {query_id: {"ndcg@10": …, "recall@100": …, "mrr@10": …}} for every query of
    ``qrels`` (a query missing from the run scores 0).

    Examples
    --------
    >>> qrels = {"q": {"d1": 1}}
    >>> trec_eval(qrels, {"q": {"d0": 2.0, "d1": 1.0}})["q"]["mrr@10"]
    0.5
    """
    pe = _pytrec_eval()
    qrels = {q: {d: int(r) for d, r in docs.items()} for q, docs in qrels.items()}
    run = {q: {d: float(s) for d, s in docs.items()} for q, docs in run.items()}
    top10 = {q: dict(sorted(docs.items(), key=lambda x: (-x[1], x[0]))[:10]) for q, docs in run.items()}
    main = pe.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100"}).evaluate(run)
    mrr = pe.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    out = {}
    for q in qrels:
        a, b = main.get(q, {}), mrr.get(q, {})
        out[q] = {
            "ndcg@10": a.get("ndcg_cut_10", 0.0),
            "recall@100": a.get("recall_100", 0.0),
            "mrr@10": b.get("recip_rank", 0.0),
        }
    return out


def summarize(per_query: Mapping[str, Mapping[str, float]], query_ids: Sequence[str] | None = None) -> Metrics:
    """Average per-query metrics over ``query_ids`` (default: all)."""
    ids = list(per_query) if query_ids is None else list(query_ids)
    if not ids:
        return Metrics(float("nan"), float("nan"), float("nan"), 0)
    vals = np.array([[per_query[q][m] for m in MEASURES] for q in ids], np.float64)  # (n_q, 3)
    mean = vals.mean(axis=0)
    return Metrics(float(mean[0]), float(mean[1]), float(mean[2]), len(ids))


def unseen_queries(
    test_qrels: Mapping[str, Mapping[str, int]], train_qrels: Mapping[str, Mapping[str, int]]
) -> list[str]:
    """Test queries none of whose relevant documents is relevant in train.

    Examples
    --------
    >>> unseen_queries({"a": {"d1": 1}, "b": {"d2": 1}}, {"t": {"d1": 1}})
    ['b']
    """
    seen = {d for docs in train_qrels.values() for d, r in docs.items() if r > 0}
    return [q for q, docs in test_qrels.items() if not any(d in seen for d, r in docs.items() if r > 0)]
