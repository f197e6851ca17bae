"""The view model: what every view shows, computed once per question.

Views (notebook HTML, the standalone explorer, the web app, ``softdb search
--json``) never do maths of their own; they render the plain, JSON-able
objects built here (and the slider's grid, :mod:`softdb.render._grid`).

- :func:`search_answers`: hits, entropy and effective rows of a batch of queries, in one pass.
- :func:`search_record`: the one JSON object of a search (the shape of
  ``softdb search --json`` and of the web app's ``/api/search``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from softdb.render._results import jsonable
from softdb.table._explain import WEAK_MATCH_COSINE
from softdb.table._match import WeakRule, near_uniform, weak_match
from softdb.table._state import SearchResult

if TYPE_CHECKING:  # pragma: no cover
    from softdb.table._explain import Explanation
    from softdb.table._table import SoftTable

__all__ = ["SearchAnswer", "hits_json", "search_answer", "search_answers", "search_record"]


class SearchAnswer(NamedTuple):
    """One query's hits with the figures a search view prints (duck-types :class:`Explanation`).

    Attributes
    ----------
    ids, scores, weights, payloads : lists of length k
        Best first; weights are full-table softmax weights.
    temperature, entropy, effective_rows : float
        τ; entropy of the full-table weights (nats); 1 / Σ w².
    no_terms : bool
        The query holds no term the table's sparse keys know (BM25 and hybrid tables).
    """

    ids: list
    scores: list
    weights: list
    payloads: list
    temperature: float
    entropy: float
    effective_rows: float
    no_terms: bool = False


def search_answers(
    table: SoftTable,
    queries: Any,
    k: int,
    *,
    temperature: float | None = None,
    where: Any = None,
    by: str = "chunk",
    rank: str = "score",
) -> list[SearchAnswer]:
    """Hits, entropy and effective rows of a batch of queries, from ONE pass of the query plan.

    The pass keeps the top k with the log-sum-exp (full-table weights of the hits)
    and the streaming entropy and 1 / Σ w² of the weights; no soft or hard answer,
    no dense weights. ``softdb search --json`` and the web app's ``/api/search`` both
    answer through it (and :func:`search_record`), so they cannot drift apart.

    Parameters
    ----------
    table : SoftTable
    queries : str, list of str, or array_like of shape (m, d) or (d,)
    k : int
        1 <= k <= len(table) (with ``by="document"``: the number of documents).
    temperature : float, optional
    where : dict or str, optional
        A filter on the payloads (``SoftTable.search``'s ``where=``).
    by : {"chunk", "document"}
        "document": the hits are documents (``table.search(..., by="document", rank=rank)``, a
        second pass); entropy and effective rows stay those of the rows' weights.
    rank : {"score", "weight"}
        With ``by="document"``: documents ranked by their best chunk's score or their summed weight.

    Returns
    -------
    list of SearchAnswer
        One per query (a 1-D query or one string gives a list of one).

    Examples
    --------
    >>> import numpy as np
    >>> from softdb import SoftTable
    >>> t = SoftTable(np.eye(3, dtype=np.float32), ids=["a", "b", "c"], temperature=0.5)
    >>> a = search_answers(t, [[1.0, 0.5, 0.0]], k=2)[0]
    >>> e = t.explain([1.0, 0.5, 0.0], k=2)
    >>> a.ids == e.ids, bool(np.allclose(a.weights, e.weights)), bool(np.isclose(a.entropy, e.entropy))
    (True, True, True)
    """
    from softdb.engine._plan import Ask
    from softdb.table._explain import weight_stats

    proj = table.projection
    if by != "chunk" and (proj is None or proj.heads == 1):  # one pass: documents, weights' entropy, 1 / Σ w²
        from softdb.table._documents import documents_and_stats

        docs, tau, d_entropy, d_effective = documents_and_stats(
            table, queries, k, temperature=temperature, rank=rank, where=where
        )
        return _answers(docs, tau, d_entropy, d_effective)
    if proj is None or proj.heads == 1:  # one pass: hits, their full-table weights, entropy, effective rows
        p = table._answer(queries, Ask(k=k, lse=True, stats=True), temperature=temperature, k=k, where=where)
        entropy, effective = p.answers.entropy, p.answers.effective_rows  # (m,), (m,)
    else:  # a mean of several heads' softmaxes has no streaming entropy: dense weights, in batches
        q = table._prepare(queries)  # (m, d)  encoded once
        p = table._answer(q, Ask(k=k, lse=True), temperature=temperature, k=k, where=where)
        entropy, effective = weight_stats(table, q, temperature=temperature, where=where)  # (m,), (m,)
    a, rows = p.answers, p.state.rows  # the rows version the answer was computed on
    hit_rows, scores, weights = a.rows, a.scores, a.hit_weights  # (m, k) each
    assert hit_rows is not None and scores is not None and weights is not None  # asked for: Ask(k=k, lse=True)
    assert entropy is not None and effective is not None  # asked for: Ask(stats=True), or weight_stats
    if by != "chunk":  # several heads: their mean has no streaming entropy (computed above)
        docs = table.search(queries, k, temperature=temperature, by=by, rank=rank)
        two = SearchResult._make(None if x is None else np.atleast_2d(x) for x in docs)  # (m, k) each
        return _answers(two, float(p.tau), entropy, effective)
    pays, out = rows.payloads, []
    none = p.no_terms  # (m,) or None
    for j in range(hit_rows.shape[0]):
        found = [c for c, r in enumerate(hit_rows[j]) if r >= 0]  # O(k): no id array over the table
        top = [int(hit_rows[j][c]) for c in found]
        out.append(
            SearchAnswer(
                [rows.ids[r] for r in top],
                [float(scores[j][c]) for c in found],
                [float(weights[j][c]) for c in found],
                [None if pays is None else pays[r] for r in top],
                float(p.tau),
                float(entropy[j]),
                float(effective[j]),
                none is not None and bool(none[j]),
            )
        )
    return out


def _answers(docs: SearchResult, tau: float, entropy: Any, effective: Any) -> list[SearchAnswer]:
    """SearchAnswers of a 2-D SearchResult (documents), one per query."""
    out = []
    for j in range(docs.rows.shape[0]):
        found = docs.rows[j] >= 0  # (k,)
        pays = [None] * int(found.sum()) if docs.payloads is None else docs.payloads[j][found].tolist()
        out.append(
            SearchAnswer(
                docs.ids[j][found].tolist(),
                docs.scores[j][found].astype(float).tolist(),
                docs.weights[j][found].astype(float).tolist(),
                pays,
                float(tau),
                float(entropy[j]),
                float(effective[j]),
            )
        )
    return out


def search_answer(
    table: SoftTable,
    query: Any,
    k: int,
    *,
    temperature: float | None = None,
    where: Any = None,
    by: str = "chunk",
    rank: str = "score",
) -> SearchAnswer:
    """:func:`search_answers` for one query.

    Examples
    --------
    >>> import numpy as np
    >>> from softdb import SoftTable
    >>> t = SoftTable(np.eye(3, dtype=np.float32), ids=["a", "b", "c"], temperature=0.5)
    >>> search_answer(t, [1.0, 0.5, 0.0], k=2).ids
    ['a', 'b']
    """
    return search_answers(table, query, k, temperature=temperature, where=where, by=by, rank=rank)[0]


def _finite(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _round(x: float) -> float | None:
    x = float(x)
    return round(x, 6) if math.isfinite(x) else None


def hits_json(answer: Explanation | SearchAnswer, mode: str) -> list[dict[str, Any]]:
    """The hits as ``[{"id", "score", "weight", "payload"}]`` ("weight": soft mode only); strict JSON."""
    out = []
    for i, s, w, p in zip(answer.ids, answer.scores, answer.weights, answer.payloads):
        if i is None:
            continue
        row: dict[str, Any] = {"id": jsonable(i), "score": _round(s)}
        if mode == "soft":
            row["weight"] = _round(w)
        row["payload"] = jsonable(p)
        out.append(row)
    return out


def search_record(
    answer: Explanation | SearchAnswer,
    query: str,
    *,
    mode: str = "soft",
    table_rows: int,
    k: int | None = None,
    k_requested: int | None = None,
    min_score: float | None = None,
    cosine: bool = True,
    weak: WeakRule | None = None,
) -> dict[str, Any]:
    """The JSON object of one query's search: what ``softdb search --json`` prints and ``/api/search`` returns.

    Parameters
    ----------
    answer : SearchAnswer or Explanation
        From :func:`search_answers` (or :func:`softdb.table._explain.explain`).
    query : str
        The query text, echoed.
    mode : {"soft", "hard"}
        "hard" leaves the weights out (the hits are the best rows by score).
    table_rows : int
        Rows in the table.
    k : int, optional
        Hits asked for after clamping to the table (default: as many as given).
    k_requested : int, optional
        The k asked for, when it was clamped (recorded only if it differs from ``k``).
    min_score : float, optional
        Hide hits scoring below it (``"hidden"`` counts them).
    cosine : bool
        The table's metric is cosine (used when ``weak`` is not given).
    weak : WeakRule, optional
        The table's weak-match rule (:func:`softdb.table._match.weak_rule`); default: "cosine" when
        ``cosine``, else "none" (only a query with no hit is a weak match).

    Returns
    -------
    dict
        ``{"query", "mode", "temperature", "table_rows", "k", "hits": [{"id", "score", "weight",
        "payload"}], "entropy", "effective_rows", "covered", "best_score", "no_match", "weak_match",
        "weak_match_below", "near_uniform", "suggested_temperature"}`` (+ ``"k_requested"``,
        ``"min_score"``, ``"hidden"`` when they apply); strict JSON (no NaN). ``no_match``,
        ``weak_match`` and ``near_uniform`` are always booleans: ``no_match`` when the query has
        no hit at all (a BM25 query with no known term), ``weak_match`` by the table's rule
        (``weak_match_below`` is the cosine it uses, null for dot and BM25 tables, whose scores
        have no absolute scale: there only a no-match is weak), ``near_uniform`` when the best hit
        weighs at most 10% more than 1/n (then ``suggested_temperature`` is a τ to try).

    Examples
    --------
    >>> import numpy as np
    >>> from softdb import SoftTable
    >>> t = SoftTable(np.eye(2, dtype=np.float32), ids=["x", "y"], payloads=["ex", "why"], temperature=1.0)
    >>> r = search_record(search_answer(t, [1.0, 0.0], k=1), "x?", table_rows=2, cosine=False)
    >>> sorted(r["hits"][0]), r["hits"][0]["id"], r["k"], r["no_match"], r["weak_match"], r["near_uniform"]
    (['id', 'payload', 'score', 'weight'], 'x', 1, False, False, False)
    >>> bool(abs(r["hits"][0]["weight"] - 1 / (1 + np.exp(-1.0))) < 1e-6)  # softmax([1, 0])[0]
    True
    """
    rows = hits_json(answer, mode)
    shown = rows if min_score is None else [r for r in rows if r["score"] >= min_score]
    best = rows[0]["score"] if rows else None
    k = len(rows) if k is None else int(k)
    rule = weak if weak is not None else WeakRule("cosine" if cosine else "none")
    top_weight = float(answer.weights[0]) if rows else 0.0
    uniform = near_uniform(top_weight, int(table_rows), float(answer.temperature))
    out: dict[str, Any] = {
        "query": query,
        "mode": mode,
        "temperature": float(answer.temperature),
        "table_rows": int(table_rows),
        "k": k,
        "hits": shown,
        "entropy": _finite(answer.entropy),
        "effective_rows": _finite(answer.effective_rows),
        "covered": float(sum(r["weight"] for r in rows)) if mode == "soft" else None,
        "best_score": best,
        "no_match": not rows,
        "weak_match": weak_match(rule, best, bool(getattr(answer, "no_terms", False)), WEAK_MATCH_COSINE),
        "weak_match_below": None if rule.kind == "none" else WEAK_MATCH_COSINE,
        "near_uniform": uniform.near_uniform,
        "suggested_temperature": uniform.suggested_temperature,
    }
    if k_requested is not None and k_requested != k:
        out["k_requested"] = int(k_requested)
    if min_score is not None:
        out["min_score"] = float(min_score)
        out["hidden"] = len(rows) - len(shown)
    return out
