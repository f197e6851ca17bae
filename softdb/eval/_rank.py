"""A table's run on a split: rank every query through the table, score the run with trec_eval."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from softdb.eval._metrics import Metrics, summarize, trec_eval

if TYPE_CHECKING:  # pragma: no cover
    from softdb.table._table import SoftTable

__all__ = ["SplitReport", "evaluate_table", "rank"]


def rank(
    table: SoftTable, queries: Any, query_ids: Sequence[str], *, k: int = 100, mode: str = "soft", batch: int = 256
) -> dict[str, dict[str, float]]:
    """Search every query and return a trec run ``{query_id: {doc_id: score}}``.

    ``mode="soft"`` scores each document by its soft weight, ``"hard"`` by its raw
    score; the orders agree because softmax is monotonic. One pass of the query
    plan per batch; "hard" needs no log-sum-exp, so it computes no weights.
    """
    from softdb.engine._plan import Ask

    if mode not in ("soft", "hard"):
        raise ValueError(f"mode must be 'soft' or 'hard', got {mode!r}")
    k = min(k, len(table))
    ask = Ask(lse=mode == "soft")
    run: dict[str, dict[str, float]] = {}
    for start in range(0, len(query_ids), batch):
        sl = slice(start, start + batch)
        p = table._answer([q[sl] for q in queries] if isinstance(queries, list) else queries[sl], ask, k=k)
        hits = p.hits()  # (b, k) each: a batch is never a single query
        vals = hits.weights if mode == "soft" else hits.scores  # (b, k)
        for qid, ids, v in zip(query_ids[start : start + batch], hits.ids, vals.astype(np.float64)):
            run[qid] = dict(zip((str(i) for i in ids), v.tolist()))
    return run


@dataclass
class SplitReport:
    """Metrics of one table on one split: by subset, plus per-query detail."""

    subsets: dict[str, Metrics]
    per_query: dict[str, dict[str, float]] = field(repr=False)
    run: dict[str, dict[str, float]] = field(repr=False)

    def to_dict(self) -> dict[str, dict[str, float | int | None]]:
        """``{subset: Metrics.to_dict()}``."""
        return {name: m.to_dict() for name, m in self.subsets.items()}


def evaluate_table(
    table: SoftTable,
    query_vectors: Any,
    query_ids: Sequence[str],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    subsets: Mapping[str, Sequence[str]] | None = None,
    mode: str = "soft",
) -> SplitReport:
    """Rank, score with trec_eval, and summarise over ``subsets`` (always "all")."""
    run = rank(table, query_vectors, query_ids, mode=mode)
    per_query = trec_eval({q: qrels[q] for q in query_ids}, run)
    groups = {"all": list(query_ids), **(subsets or {})}
    return SplitReport({name: summarize(per_query, ids) for name, ids in groups.items()}, per_query, run)
