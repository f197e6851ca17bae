"""Evaluation: IR metrics on BEIR data, the compared models, cross-validation, data sets."""

from softdb.eval._evaluate import (
    BeirFit,
    BeirReport,
    Metrics,
    SplitReport,
    evaluate_beir,
    evaluate_table,
    fit_beir_projection,
    rank,
    summarize,
    trec_eval,
    unseen_queries,
)

__all__ = [
    "BeirFit",
    "BeirReport",
    "Metrics",
    "SplitReport",
    "evaluate_beir",
    "evaluate_table",
    "fit_beir_projection",
    "rank",
    "summarize",
    "trec_eval",
    "unseen_queries",
]
