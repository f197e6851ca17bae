"""Projected mode's cache: the projected rows of one (rows version, weights version).

A table in projected mode scores ``(q W_Q)·(k W_K)`` and blends ``v W_V``. The
projected keys and values are computed once per version of the rows and of the
projection's weights, and kept here; :class:`softdb.SoftTable` owns one
:class:`ProjectionCache` (composition: the table asks, the cache answers).
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["ProjectionCache"]


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
