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

from softdb.engine._segmented import Part, Parts

__all__ = ["ProjectedRows", "ProjectionCache"]


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
                out = ProjectedRows(params, pr.keys, pr.values, pr.key_norm_max, pr.w_q)
                self._last = (rows, out)
                return out
            keys = tuple(
                Parts(
                    [Part(pr.keys[a], pr.values[a], pr.key_norm_max[a], v.live) for pr, v in zip(per_seg, rows.views)]
                )
                for a in range(heads)
            )
            out = ProjectedRows(params, keys, (None,) * heads, (None,) * heads, per_seg[0].w_q)
            self._last = (rows, out)
        return out

    def clear(self) -> None:
        with self._lock:
            self._segments, self._params, self._last = {}, None, None
