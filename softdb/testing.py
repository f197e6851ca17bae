"""Assertions for tests of retrieval intuitions, in the spirit of ``numpy.testing``.

Each assertion raises :class:`AssertionError` when the intuition fails, with a
message that shows the rows the query did retrieve: rank, id, score, weight and
a snippet of the payload. An id the table does not hold also fails the assertion
(the row expected is not there), with a message naming the id. Misuse (a batch
where one query is expected, a weight outside [0, 1]) raises ``ValueError`` or
``TypeError`` instead, so a broken test is never mistaken for a failed intuition.

Examples
--------
>>> import numpy as np
>>> from softdb import SoftTable
>>> from softdb.testing import assert_retrieves, assert_attends_more
>>> t = SoftTable(np.eye(3, dtype=np.float32), ids=["a", "b", "c"], temperature=0.1)
>>> assert_retrieves(t, [0.0, 1.0, 0.2], "b")
>>> assert_attends_more(t, [0.0, 1.0, 0.2], "c", "a")
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np

from softdb import _checks
from softdb.engine._plan import Ask
from softdb.table._state import asked
from softdb.table._table import SoftTable

__all__ = [
    "assert_attends_more",
    "assert_not_retrieves",
    "assert_retrieves",
    "assert_soft_close_to_hard",
    "assert_weight_at_least",
]

#: Rows shown in a failure message, at least.
SHOWN = 5
_SNIPPET = 40


def _describe_query(query: Any) -> str:
    __tracebackhide__ = True  # pytest shows the message, not these frames
    if isinstance(query, str):
        return repr(query if len(query) <= 60 else query[:59] + "…")
    q = np.asarray(query)
    return f"the query vector of shape {q.shape}"


def _one_query(table: SoftTable, query: Any) -> None:
    __tracebackhide__ = True  # pytest shows the message, not these frames
    if not isinstance(table, SoftTable):
        raise TypeError(f"table must be a softdb.SoftTable, got {type(table).__name__}")
    if isinstance(query, str):
        return
    q = np.asarray(query)
    if q.ndim != 1:
        raise ValueError(
            f"this assertion takes one query (a string or a vector of shape ({table.dim},)), "
            f"got an array of shape {q.shape}; hint: loop over the queries, or use "
            "assert_soft_close_to_hard for a batch"
        )


def _row(table: SoftTable, row_id: Hashable, what: str) -> int:
    """The row of ``row_id``; an AssertionError naming it if the table has no such row."""
    __tracebackhide__ = True  # pytest shows the message, not these frames
    try:
        return table.row_of(row_id)
    except KeyError:
        sample = ", ".join(repr(i) for i in table.ids[:SHOWN]) + (", …" if len(table) > SHOWN else "")
        raise AssertionError(
            f"{what} {row_id!r} is not an id of the table ({len(table)} rows, ids [{sample}]); "
            "hint: check the id, and that its row was added"
        ) from None


def _snippet(payload: Any) -> str:
    __tracebackhide__ = True  # pytest shows the message, not these frames
    if payload is None:
        return ""
    if isinstance(payload, dict):
        for key in ("summary", "text", "title", "name"):
            if key in payload:
                payload = payload[key]
                break
    s = " ".join(str(payload).split())
    return s if len(s) <= _SNIPPET else s[: _SNIPPET - 1] + "…"


def _ask(table: SoftTable, query: Any, k: int, temperature: float | None, *, weights: bool = True) -> Any:
    """One pass for one query (or a batch): the top max(k, SHOWN) rows and, with ``weights``, every weight."""
    __tracebackhide__ = True  # pytest shows the message, not these frames
    shown = min(max(k, SHOWN), len(table))
    return table._answer(query, Ask(lse=True, weights=weights), temperature=temperature, k=shown)


def _rows_table(table: SoftTable, p: Any, j: int = 0, extra_rows: tuple[int, ...] = ()) -> str:
    """Query ``j``'s top rows of the pass ``p``, plus ``extra_rows`` wherever they rank, as text."""
    __tracebackhide__ = True  # pytest shows the message, not these frames
    a = p.answers
    rows = [int(r) for r in a.rows[j] if r >= 0]
    order = {r: i for i, r in enumerate(rows)}
    extra = [r for r in dict.fromkeys(extra_rows) if r not in order]
    lines = [f"  {'rank':>4}  {'id':<24} {'score':>9} {'weight':>8}  payload"]
    payloads = p.state.rows.payloads
    ids = p.state.rows.ids
    if extra:
        w = a.weights[j].astype(np.float64)  # (n,)
        extra_scores = p.scores_of(np.asarray(extra))[j]  # (e,)
    for i, r in enumerate(rows + extra):
        if r in order:
            rank, score, weight = order[r] + 1, a.scores[j, order[r]], a.hit_weights[j, order[r]]
        else:
            if i == len(rows):
                lines.append(f"  {'…':>4}")
            rank = 1 + int((w > w[r]).sum() + (w[:r] == w[r]).sum())  # ties: the lower row first
            score, weight = extra_scores[i - len(rows)], w[r]
        rid = repr(ids[r])
        rid = rid if len(rid) <= 24 else rid[:23] + "…"
        pay = _snippet(payloads[r]) if payloads is not None else ""
        lines.append(f"  {rank:>4}  {rid:<24} {float(score):>9.4g} {float(weight):>8.4f}  {pay}".rstrip())
    lines.append(f"  (weights over all {len(ids)} rows at τ = {p.tau:g})")
    return "\n".join(lines)


def assert_retrieves(
    table: SoftTable, query: Any, expected_id: Hashable, k: int = 1, *, temperature: float | None = None
) -> None:
    """Assert that ``expected_id`` is among the top ``k`` rows retrieved for ``query``.

    Parameters
    ----------
    table : SoftTable
    query : str or array_like of shape (d,)
        Strings need a table built with :meth:`SoftTable.from_texts`.
    expected_id : hashable
        A row id of the table (an unknown id fails the assertion, naming it).
    k : int
    temperature : float, optional
        τ of the weights shown in the message (ranking does not depend on τ).

    Raises
    ------
    AssertionError
        With the rows retrieved, their scores and weights, and where the expected row ranked.

    Examples
    --------
    >>> import numpy as np
    >>> from softdb import SoftTable
    >>> t = SoftTable(np.eye(2, dtype=np.float32), ids=["x", "y"], payloads=["ex", "why"])
    >>> assert_retrieves(t, [1.0, 0.0], "y")
    Traceback (most recent call last):
    ...
    AssertionError: expected 'y' in the top 1 for the query vector of shape (2,), but it ranked 2 with weight 0.3302:
      rank  id                           score   weight  payload
         1  'x'                              1   0.6698  ex
         2  'y'                              0   0.3302  why
      (weights over all 2 rows at τ = 1.41421)
    """
    __tracebackhide__ = True  # pytest shows the message, not these frames
    _one_query(table, query)
    row = _row(table, expected_id, "expected id")
    p = _ask(table, query, k, temperature)  # one pass, whether the assertion holds or fails
    top = p.answers.rows[0]  # (max(k, SHOWN),)
    if row in set(top[:k].tolist()):
        return
    w = p.answers.weights[0].astype(np.float64)  # (n,)
    hit = np.flatnonzero(top == row)
    rank = int(hit[0]) + 1 if hit.size else 1 + int((w > w[row]).sum() + (w[:row] == w[row]).sum())
    raise AssertionError(
        f"expected {expected_id!r} in the top {k} for {_describe_query(query)}, but it ranked {rank} "
        f"with weight {w[row]:.4f}:\n" + _rows_table(table, p, 0, (row,))
    )


def assert_not_retrieves(
    table: SoftTable, query: Any, unexpected_id: Hashable, k: int = 1, *, temperature: float | None = None
) -> None:
    """Assert that ``unexpected_id`` is not among the top ``k`` rows retrieved for ``query``.

    The converse of :func:`assert_retrieves` ("this query must not find that row"), with as
    helpful a failure: the rows retrieved, their scores and weights, and where the row ranked.

    Parameters
    ----------
    table : SoftTable
    query : str or array_like of shape (d,)
        Strings need a table built with :meth:`SoftTable.from_texts`.
    unexpected_id : hashable
        A row id of the table (an unknown id fails the assertion, naming it: a test that
        checks the absence of a row the table never had would pass for the wrong reason).
    k : int
        1 <= k <= len(table).
    temperature : float, optional
        τ of the weights shown in the message (ranking does not depend on τ).

    Raises
    ------
    AssertionError
        With the rows retrieved, their scores and weights, and where the unexpected row ranked.

    Examples
    --------
    >>> import numpy as np
    >>> from softdb import SoftTable
    >>> t = SoftTable(np.eye(2, dtype=np.float32), ids=["x", "y"], payloads=["ex", "why"])
    >>> assert_not_retrieves(t, [1.0, 0.0], "y")
    >>> assert_not_retrieves(t, [1.0, 0.0], "y", k=2)  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    AssertionError: expected 'y' not in the top 2 for the query vector of shape (2,), but it ranked 2
    with weight 0.3302:
      rank  id                           score   weight  payload
         1  'x'                              1   0.6698  ex
         2  'y'                              0   0.3302  why
      (weights over all 2 rows at τ = 1.41421)
    """
    __tracebackhide__ = True  # pytest shows the message, not these frames
    _one_query(table, query)
    row = _row(table, unexpected_id, "unexpected id")
    p = _ask(table, query, k, temperature)  # one pass, whether the assertion holds or fails
    top = p.answers.rows[0]  # (max(k, SHOWN),)
    hit = np.flatnonzero(top[:k] == row)
    if not hit.size:
        return
    w = float(p.answers.weights[0, row])
    raise AssertionError(
        f"expected {unexpected_id!r} not in the top {k} for {_describe_query(query)}, but it ranked "
        f"{int(hit[0]) + 1} with weight {w:.4f}:\n" + _rows_table(table, p, 0, (row,))
    )


def assert_weight_at_least(
    table: SoftTable, query: Any, row_id: Hashable, w: float, *, temperature: float | None = None
) -> None:
    """Assert that row ``row_id`` gets at least weight ``w`` (in [0, 1]) for ``query``.

    Examples
    --------
    >>> import numpy as np
    >>> from softdb import SoftTable
    >>> t = SoftTable(np.eye(2, dtype=np.float32), ids=["x", "y"], temperature=0.1)
    >>> assert_weight_at_least(t, [1.0, 0.0], "x", 0.99)
    """
    __tracebackhide__ = True  # pytest shows the message, not these frames
    _one_query(table, query)
    if not (isinstance(w, int | float | np.floating | np.integer) and 0 <= float(w) <= 1):
        raise ValueError(f"w must be a weight between 0 and 1, got {w!r}")
    row = _row(table, row_id, "row id")
    p = _ask(table, query, 1, temperature)  # one pass: the weight, and the rows a failure shows
    got = float(p.answers.weights[0, row])
    if got < w:
        raise AssertionError(
            f"expected weight >= {w:g} on {row_id!r} for {_describe_query(query)}, got {got:.4f}:\n"
            + _rows_table(table, p, 0, (row,))
        )


def assert_attends_more(
    table: SoftTable, query: Any, id_a: Hashable, id_b: Hashable, *, temperature: float | None = None
) -> None:
    """Assert that ``query`` gives row ``id_a`` strictly more weight than row ``id_b``.

    Examples
    --------
    >>> import numpy as np
    >>> from softdb import SoftTable
    >>> t = SoftTable(np.eye(2, dtype=np.float32), ids=["x", "y"])
    >>> assert_attends_more(t, [0.2, 0.9], "y", "x")
    """
    __tracebackhide__ = True  # pytest shows the message, not these frames
    _one_query(table, query)
    ra, rb = _row(table, id_a, "id_a"), _row(table, id_b, "id_b")
    p = _ask(table, query, 1, temperature)  # one pass: the weights, and the rows a failure shows
    w = p.answers.weights[0].astype(np.float64)  # (n,)
    if not w[ra] > w[rb]:
        raise AssertionError(
            f"expected {_describe_query(query)} to attend more to {id_a!r} than to {id_b!r}, "
            f"but their weights are {w[ra]:.4f} and {w[rb]:.4f}:\n" + _rows_table(table, p, 0, (ra, rb))
        )


def assert_soft_close_to_hard(table: SoftTable, queries: Any, tol: float, *, temperature: float | None = None) -> None:
    """Assert that the soft answers are within ``tol`` (max abs) of the hard ones.

    This is the "one-hot weights are an exact lookup" intuition: it holds when
    every query has a clear best row at the temperature used.

    Parameters
    ----------
    table : SoftTable
    queries : array_like of shape (m, d) or (d,), or str / list of str
    tol : float
        >= 0.
    temperature : float, optional

    Raises
    ------
    AssertionError
        Naming the worst query, its gap, and its retrieved rows.

    Examples
    --------
    >>> import numpy as np
    >>> from softdb import SoftTable
    >>> t = SoftTable(np.eye(2, dtype=np.float32), [[1.0], [2.0]], ids=["x", "y"])
    >>> assert_soft_close_to_hard(t, [[1.0, 0.0]], 1e-3, temperature=0.01)
    """
    __tracebackhide__ = True  # pytest shows the message, not these frames
    if not isinstance(table, SoftTable):
        raise TypeError(f"table must be a softdb.SoftTable, got {type(table).__name__}")
    if not (isinstance(tol, int | float | np.floating | np.integer) and float(tol) >= 0):
        raise ValueError(f"tol must be a number >= 0, got {tol!r}")
    single = isinstance(queries, str) or (
        np.ndim(queries) == 1 and not (isinstance(queries, list | tuple) and queries and isinstance(queries[0], str))
    )
    shown = min(SHOWN, len(table)) if len(table) else None
    ask = Ask(soft=True, hard=True, lse=True)
    p = (
        table._answer(queries, ask, temperature=temperature)
        if shown is None
        else table._answer(queries, ask, temperature=temperature, k=shown)
    )  # one pass: soft, hard, the rows shown
    soft, hard = asked(p.answers.soft), asked(p.answers.hard)  # (m, d_v) each
    _checks.check_finite_result(soft, "soft lookup", p.tau)
    gaps = np.abs(soft.astype(np.float64) - hard).max(axis=1)  # (m,)
    worst = int(np.argmax(gaps))
    if gaps[worst] > tol:
        if single:
            q = queries
        elif isinstance(queries, list | tuple) and isinstance(queries[0], str):
            q = queries[worst]
        else:
            q = np.asarray(queries)[worst]
        bad = int((gaps > tol).sum())
        raise AssertionError(
            f"soft answers differ from hard ones by more than tol={tol:g} for {bad} of {len(gaps)} queries; "
            f"the worst is query {worst} ({_describe_query(q)}) with max |soft − hard| = {gaps[worst]:.4g}; "
            "its weights are spread over several rows (lower the temperature or the tolerance):\n"
            + _rows_table(table, p, worst)
        )
