"""The view model: what every view shows, computed once per question.

Views (notebook HTML, the standalone explorer, the web app, ``softdb search
--json``) never do maths of their own; they render the plain, JSON-able
objects built here.

- :func:`temperature_grid`: the grid of temperatures the sliders snap to.
- :func:`grid_log_sum_exp`: log Σ_j exp(s_j / τ) over the *whole* table for every
  τ of a grid, from one pass of the kernel, so a view re-weights its hits exactly:
  w_j(τ) = exp(s_j / τ − lse(τ)).
- :func:`search_record`: the one JSON object of a search (the shape of
  ``softdb search --json`` and of the web app's ``/api/search``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from softdb.table._explain import WEAK_MATCH_COSINE

if TYPE_CHECKING:  # pragma: no cover
    from softdb.table._explain import Explanation
    from softdb.table._table import SoftTable

__all__ = [
    "OCTAVES",
    "STEPS_PER_OCTAVE",
    "SearchAnswer",
    "TemperatureGrid",
    "grid_from",
    "grid_log_sum_exp",
    "grid_taus",
    "has_slider",
    "hits_json",
    "jsonable",
    "search_answer",
    "search_answers",
    "search_record",
    "temperature_grid",
]

#: Grid points per doubling of τ: neighbours differ by 2^(1/8) ≈ 9 %.
STEPS_PER_OCTAVE = 8
#: The grid spans τ0 / 2^OCTAVES .. τ0 · 2^OCTAVES (τ0 / 32 .. 32 τ0).
OCTAVES = 5


@dataclass(frozen=True)
class TemperatureGrid:
    """Temperatures a slider snaps to, with the full-table log-sum-exp at each.

    Attributes
    ----------
    temperatures : ndarray of float64, shape (g,)
        τ0 · 2^(i / STEPS_PER_OCTAVE) for i = -OCTAVES·STEPS .. OCTAVES·STEPS, ascending.
    base : int
        Index of τ0 (the explained temperature) in ``temperatures``.
    lse : ndarray of float64, shape (g,)
        log Σ_j exp(s_j / τ) over every row of the table, at each τ.
    lse_half : ndarray of float64, shape (g,)
        The same at τ / 2: Σ_j w_j(τ)² = exp(lse_half − 2 lse), so the effective number
        of rows 1 / Σ w² is exact at every grid point too.
    """

    temperatures: np.ndarray
    base: int
    lse: np.ndarray
    lse_half: np.ndarray

    def effective_rows(self) -> np.ndarray:
        """1 / Σ_j w_j(τ)² at each grid temperature, shape (g,).

        Examples
        --------
        >>> import numpy as np
        >>> g = TemperatureGrid(np.array([1.0]), 0, np.array([np.log(2.0)]), np.array([np.log(2.0)]))
        >>> g.effective_rows()  # two rows of equal score: weights 1/2, 1/2
        array([2.])
        """
        return np.exp(2 * self.lse - self.lse_half)  # (g,)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: ``{"temperatures", "base", "lse", "effective_rows"}``."""
        return {
            "temperatures": [float(t) for t in self.temperatures],
            "base": int(self.base),
            "lse": [float(x) for x in self.lse],
            "effective_rows": [float(x) for x in self.effective_rows()],
        }


def temperature_grid(tau: float) -> np.ndarray:
    """The slider's grid around ``tau``: τ · 2^(i/8) for i = -40..40, shape (81,).

    ``tau`` itself is the middle point, exactly.

    Examples
    --------
    >>> g = temperature_grid(0.05)
    >>> len(g), float(g[40]), bool(np.isclose(g[0], 0.05 / 32)), bool(np.isclose(g[-1], 0.05 * 32))
    (81, 0.05, True, True)
    """
    i = np.arange(-OCTAVES * STEPS_PER_OCTAVE, OCTAVES * STEPS_PER_OCTAVE + 1)  # (g,)
    grid = tau * np.exp2(i / STEPS_PER_OCTAVE)  # (g,)
    grid[OCTAVES * STEPS_PER_OCTAVE] = tau  # exactly τ0, not τ0 · 2^0 rounded
    return grid


def grid_taus(tau: float) -> tuple[float, ...]:
    """The extra temperatures a slider needs from the plan: the grid, then the grid halved (2g values).

    Examples
    --------
    >>> t = grid_taus(0.05)
    >>> len(t), t[40], t[81 + 40]
    (162, 0.05, 0.025)
    """
    grid = temperature_grid(tau)  # (g,)
    return tuple(float(t) for t in grid) + tuple(float(t) / 2 for t in grid)


def grid_from(tau: float, lse_at: Any) -> TemperatureGrid:
    """A :class:`TemperatureGrid` from the plan's log-sum-exp at :func:`grid_taus` (2g values).

    Examples
    --------
    >>> import numpy as np
    >>> g = grid_from(1.0, np.zeros(162))
    >>> g.base, len(g.lse), float(g.effective_rows()[0])
    (40, 81, 1.0)
    """
    temps = temperature_grid(tau)  # (g,)
    lse = np.asarray(lse_at, dtype=np.float64)  # (2g,)
    g = len(temps)
    return TemperatureGrid(temps, OCTAVES * STEPS_PER_OCTAVE, lse[:g], lse[g:])


def has_slider(table: SoftTable) -> bool:
    """Plain and one-head tables: one score per row, so w(τ) = exp(s / τ − lse(τ)) holds.

    Examples
    --------
    >>> import numpy as np
    >>> from softdb import SoftTable
    >>> has_slider(SoftTable(np.eye(2, dtype=np.float32)))
    True
    """
    proj = table.projection
    return len(table) > 0 and (proj is None or int(getattr(proj, "heads", 1)) == 1)


def grid_log_sum_exp(table: SoftTable, query: Any, tau: float | None = None) -> TemperatureGrid | None:
    """The full-table log-sum-exp of one query at every temperature of the slider grid.

    One pass of the query plan (``Ask(lse=True, taus=...)``), with the same float32
    scores a ``search(temperature=τ)`` uses.

    Parameters
    ----------
    table : SoftTable
        A table with several projection heads returns None (a mean of softmaxes has
        no single score per row to re-weight).
    query : str or array_like of shape (d,)
    tau : float, optional
        τ0, the grid's centre; default the table's temperature.

    Returns
    -------
    TemperatureGrid or None

    Examples
    --------
    >>> import numpy as np
    >>> from softdb import SoftTable
    >>> t = SoftTable(np.eye(2, dtype=np.float32), temperature=1.0)
    >>> g = grid_log_sum_exp(t, [1.0, 0.0])
    >>> w = np.exp(1.0 / g.temperatures[g.base] - g.lse[g.base])  # row 0's weight at τ0
    >>> round(float(w), 4) == round(float(t.weights([1.0, 0.0])[0]), 4)
    True
    """
    from softdb.engine._plan import Ask

    if not has_slider(table):
        return None
    tau0 = table.temperature if tau is None else float(tau)
    p = table._answer(query, Ask(lse=True, taus=grid_taus(tau0)), temperature=tau0)
    return grid_from(tau0, p.answers.lse_at[0])


class SearchAnswer(NamedTuple):
    """One query's hits with the figures a search view prints (duck-types :class:`Explanation`).

    Attributes
    ----------
    ids, scores, weights, payloads : lists of length k
        Best first; weights are full-table softmax weights.
    temperature, entropy, effective_rows : float
        τ; entropy of the full-table weights (nats); 1 / Σ w².
    """

    ids: list
    scores: list
    weights: list
    payloads: list
    temperature: float
    entropy: float
    effective_rows: float


def search_answers(table: SoftTable, queries: Any, k: int, *, temperature: float | None = None) -> list[SearchAnswer]:
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
        1 <= k <= len(table).
    temperature : float, optional

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
    if proj is None or proj.heads == 1:  # one pass: hits, their full-table weights, entropy, effective rows
        p = table._answer(queries, Ask(k=k, lse=True, stats=True), temperature=temperature, k=k)
        entropy, effective = p.answers.entropy, p.answers.effective_rows  # (m,), (m,)
    else:  # a mean of several heads' softmaxes has no streaming entropy: dense weights, in batches
        q = table._prepare(queries)  # (m, d)  encoded once
        p = table._answer(q, Ask(k=k, lse=True), temperature=temperature, k=k)
        entropy, effective = weight_stats(table, q, temperature=temperature)  # (m,), (m,)
    a, rows = p.answers, p.state.rows  # the rows version the answer was computed on
    pays, out = rows.payloads, []
    for j in range(a.rows.shape[0]):
        found = [c for c, r in enumerate(a.rows[j]) if r >= 0]  # O(k): no id array over the table
        top = [int(a.rows[j][c]) for c in found]
        out.append(
            SearchAnswer(
                [rows.ids[r] for r in top],
                [float(a.scores[j][c]) for c in found],
                [float(a.hit_weights[j][c]) for c in found],
                [None if pays is None else pays[r] for r in top],
                float(p.tau),
                float(entropy[j]),
                float(effective[j]),
            )
        )
    return out


def search_answer(table: SoftTable, query: Any, k: int, *, temperature: float | None = None) -> SearchAnswer:
    """:func:`search_answers` for one query.

    Examples
    --------
    >>> import numpy as np
    >>> from softdb import SoftTable
    >>> t = SoftTable(np.eye(3, dtype=np.float32), ids=["a", "b", "c"], temperature=0.5)
    >>> search_answer(t, [1.0, 0.5, 0.0], k=2).ids
    ['a', 'b']
    """
    return search_answers(table, query, k, temperature=temperature)[0]


def jsonable(x: Any) -> Any:
    """A payload (or anything) as strict JSON: non-finite floats become None, others str.

    Examples
    --------
    >>> jsonable({"a": float("nan"), "b": [1, 2.5], "c": object}) == {"a": None, "b": [1, 2.5], "c": "<class 'object'>"}
    True
    """
    if x is None or isinstance(x, (bool, str, int)):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, np.generic):
        return jsonable(x.item())
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    return str(x)


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
        The table's metric is cosine: say whether even the best hit is a weak match.

    Returns
    -------
    dict
        ``{"query", "mode", "temperature", "table_rows", "k", "hits": [{"id", "score", "weight",
        "payload"}], "entropy", "effective_rows", "covered", "best_score", "weak_match",
        "weak_match_below"}`` (+ ``"k_requested"``, ``"min_score"``, ``"hidden"`` when they apply);
        strict JSON (no NaN).

    Examples
    --------
    >>> import numpy as np
    >>> from softdb import SoftTable
    >>> t = SoftTable(np.eye(2, dtype=np.float32), ids=["x", "y"], payloads=["ex", "why"], temperature=1.0)
    >>> r = search_record(search_answer(t, [1.0, 0.0], k=1), "x?", table_rows=2, cosine=False)
    >>> sorted(r["hits"][0]), r["hits"][0]["id"], r["k"], r["weak_match"]
    (['id', 'payload', 'score', 'weight'], 'x', 1, None)
    >>> bool(abs(r["hits"][0]["weight"] - 1 / (1 + np.exp(-1.0))) < 1e-6)  # softmax([1, 0])[0]
    True
    """
    rows = hits_json(answer, mode)
    shown = rows if min_score is None else [r for r in rows if r["score"] >= min_score]
    best = rows[0]["score"] if rows else None
    k = len(rows) if k is None else int(k)
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
        "weak_match": (best is not None and best < WEAK_MATCH_COSINE) if cosine else None,
        "weak_match_below": WEAK_MATCH_COSINE if cosine else None,
    }
    if k_requested is not None and k_requested != k:
        out["k_requested"] = int(k_requested)
    if min_score is not None:
        out["min_score"] = float(min_score)
        out["hidden"] = len(rows) - len(shown)
    return out
