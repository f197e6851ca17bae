"""Projected mode's cache: the projected rows of one (rows version, weights version).

A table in projected mode scores ``(q W_Q)·(k W_K)`` and blends ``v W_V``. The
projected keys and values are computed once per version of the rows and of the
projection's weights, and kept here; :class:`softdb.SoftTable` owns one
:class:`ProjectionCache` (composition: the table asks, the cache answers).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from softdb.engine._plan import Answers, Ask, Head

__all__ = ["ProjectionCache", "check_head", "heads_of", "output"]


def heads_of(st: Any, proj: Any) -> list[Head]:
    """The plan's heads of a table state: one plain head, or one per projection head."""
    if proj is None:
        return [Head(st.rows.keys, st.rows.values, st.query_w, st.rows.key_norm_max, st.block_weights)]
    return [
        Head(kh, vh, wq, nm, b_q=bq)
        for kh, vh, wq, nm, bq in zip(proj.keys, proj.values, proj.w_q, proj.key_norm_max, proj.b_q)
    ]


def check_head(head: Any, heads: int) -> int | None:
    """``head=`` of a question: None (all heads) or an index in [0, heads)."""
    if head is None:
        return None
    if isinstance(head, bool) or not isinstance(head, int | np.integer) or not 0 <= head < heads:
        raise ValueError(
            f"head must be an int in [0, {heads}) (this table has {heads} head{'s' * (heads != 1)}), "
            f"got {head!r}; hint: table.projection.heads is the number of heads"
        )
    return int(head)


def output(answers: Answers, proj: Any, ask: Ask) -> Answers:
    """The answers after the projection's output W_O (+ b_O), in place; one head's are left alone.

    A query with no allowed row keeps its all-zero answer ("no match").
    """
    if proj is None or proj.w_o is None or ask.head is not None:
        return answers
    if answers.soft is not None:
        found = np.isfinite(answers.lse).any(axis=1) if answers.lse is not None else None  # (m,)
        answers.soft = proj.output(answers.soft, found)  # (m, d_o)
    if answers.hard is not None and answers.hard_rows is not None:
        answers.hard = proj.output(answers.hard, (answers.hard_rows >= 0).any(axis=1))  # (m, d_o)
    return answers


class ProjectionCache:
    """Projected rows (``projection._ProjectedRows``), computed at most once per version.

    Examples
    --------
    >>> import numpy as np
    >>> from softdb import Projection, SoftTable
    >>> t = SoftTable(np.eye(2, dtype=np.float32), projection=Projection(2, heads=2))
    >>> cache = ProjectionCache()
    >>> first = cache.get(t._state.rows, t.projection)
    >>> cache.get(t._state.rows, t.projection) is first, len(first.keys)
    (True, 2)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: tuple[Any, Any] | None = None  # (rows, projected rows)

    def get(self, rows: Any, projection: Any) -> Any:
        """The projected rows of ``rows`` under the projection's current weights."""
        params = projection.params
        cache = self._cache
        if cache is not None and cache[0] is rows and cache[1].params is params:
            return cache[1]
        with self._lock:
            cache = self._cache
            if cache is not None and cache[0] is rows and cache[1].params is params:
                return cache[1]
            projected = projection.project_rows(params, rows.keys, rows.values)
            self._cache = (rows, projected)
        return projected

    def clear(self) -> None:
        self._cache = None
