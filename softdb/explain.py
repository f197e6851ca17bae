"""The soft SELECT view of one query (kept at this path; the code lives in :mod:`softdb.table`)."""

from softdb.table._explain import WEAK_MATCH_COSINE, Explanation, explain, snippet, weight_stats

__all__ = ["WEAK_MATCH_COSINE", "Explanation", "explain", "snippet", "weight_stats"]
