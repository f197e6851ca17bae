"""BEIR evaluation (kept at this path; the code lives in :mod:`softdb.eval`)."""

from softdb.eval._evaluate import BeirFit, BeirReport, evaluate_beir, fit_beir_projection
from softdb.eval._metrics import Metrics, summarize, trec_eval, unseen_queries
from softdb.eval._rank import SplitReport, evaluate_table, rank

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
