"""Projected mode's cache: projected rows per segment, per version of the projection's weights.

A table in projected mode scores ``(q W_Q)·(k W_K)`` and blends ``v W_V``. The projected keys
and values of each segment (:mod:`softdb.table._segments`) are computed once per segment version
(a sealed segment once; the growing segment once per version of its rows) and per version of
the projection's weights, and kept here; an ``add`` projects only the growing segment again, a
``remove`` projects nothing (the segment's live bits travel with the version).
:class:`softdb.SoftTable` owns one :class:`ProjectionCache` (composition: the table asks, the
cache answers).
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

import numpy as np

from softdb.engine._plan import Answers, Ask, Head
from softdb.engine._segmented import Part, Parts

__all__ = ["ProjectedRows", "ProjectionCache", "check_head", "heads_of", "output"]


class ProjectedRows(NamedTuple):
    """Projected rows of one table version, per head, over its segments.

    ``keys[a]`` is a :class:`softdb.engine._segmented.Parts` of head a (its parts carry the
    projected keys and values of each segment and the segment's live bits); ``values[a]`` and
    ``key_norm_max[a]`` are None (each part has its own), ``w_q[a]`` is head a's W_Q. A table of
    one segment with no row removed has plain arrays instead (as before segments).
    """

    params: Any
    keys: tuple
    values: tuple
    key_norm_max: tuple
    w_q: tuple
    b_q: tuple  # heads × (d_k / heads,) or heads × None: each head's query bias
    w_o: Any  # (d_out, d_o) or None: the output projection
    base: Any  # one segment's projected rows (``softdb.learn._params``), whose ``output`` applies W_O + b_O

    def output(self, x: np.ndarray, found: np.ndarray | None = None) -> np.ndarray:
        """``x W_O + b_O`` (no-match rows stay 0), as the projection's own projected rows do."""
        return self.base.output(x, found)  # (..., d_o)


def heads_of(st: Any, proj: Any) -> list[Head]:
    """The plan's heads of a table state: one plain head, or one per projection head.

    Without a projection, a table of one segment with nothing removed is one plain head (one pass);
    otherwise the head's keys are the segments (``st.score_parts``: one pass per segment, merged).
    """
    if proj is None:
        rows = st.rows
        if len(rows.views) == 1 and rows.views[0].live is None:
            p = rows.views[0].part
            return [Head(st.score(p.keys), p.values, st.query_w, p.key_norm_max, st.block_weights)]
        return [Head(st.score_parts, None, st.query_w, None, st.block_weights)]
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
    """Projected rows, computed at most once per segment version and weights version.

    Examples
    --------
    >>> import numpy as np
    >>> from softdb import Projection, SoftTable
    >>> t = SoftTable(np.eye(2, dtype=np.float32), projection=Projection(2, heads=2))
    >>> cache = ProjectionCache()
    >>> first = cache.get(t._state.rows, t.projection)
    >>> cache.get(t._state.rows, t.projection) is first, len(first.keys), first.keys[0].shape
    (True, 2, (2, 1))
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._params: Any = None
        self._segments: dict[tuple[int, int], Any] = {}  # (segment uid, rows seen) -> _ProjectedRows
        self._last: tuple[Any, ProjectedRows] | None = None  # (rows version, its projected rows)

    def get(self, rows: Any, projection: Any) -> ProjectedRows:
        """The projected rows of ``rows`` (a :class:`~softdb.table._segments.Rows`) under the current weights."""
        params = projection.params
        last = self._last
        if last is not None and last[0] is rows and last[1].params is params:
            return last[1]
        with self._lock:
            if self._params is not params:
                self._segments, self._params = {}, params
            kept = {}
            per_seg = []
            for v in rows.views:
                key = (v.seg.uid, v.n)
                pr = self._segments.get(key)
                if pr is None:
                    pr = projection.project_rows(params, v.keys, v.part.values)
                kept[key] = pr
                per_seg.append(pr)
            self._segments = kept  # segments no longer in the table are dropped
            heads = len(per_seg[0].keys)
            if len(per_seg) == 1 and rows.views[0].live is None:  # one segment, nothing removed: plain arrays
                pr = per_seg[0]
                out = ProjectedRows(params, pr.keys, pr.values, pr.key_norm_max, pr.w_q, pr.b_q, pr.w_o, pr)
                self._last = (rows, out)
                return out
            keys = tuple(
                Parts(
                    [Part(pr.keys[a], pr.values[a], pr.key_norm_max[a], v.live) for pr, v in zip(per_seg, rows.views)]
                )
                for a in range(heads)
            )
            first = per_seg[0]
            out = ProjectedRows(params, keys, (None,) * heads, (None,) * heads, first.w_q, first.b_q, first.w_o, first)
            self._last = (rows, out)
        return out

    def clear(self) -> None:
        with self._lock:
            self._segments, self._params, self._last = {}, None, None
