"""``where=`` on a sharded table: the filter is checked here and evaluated on the workers.

The client parses and checks a filter against the fields some row has (collected once per
version from the payloads it holds, the same ones hits are labelled with), then sends the
parsed filter (a few small frozen dataclasses), never a mask, with each shard's task. A worker
evaluates it over its shard's payload columns (:mod:`softdb.table._columns`, built once per
loaded shard from the shard's manifest) and ANDs it with the caller's mask slice, if any.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np

from softdb.table._state import Reply
from softdb.table._where import Filter, parse_where

__all__ = ["ShardedFiltering", "shard_fields"]

_fields: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def shard_fields(version: Any) -> frozenset:
    """The payload fields some row of a :class:`~softdb.distributed._shards.Version` has (once per version)."""
    with _lock:
        got = _fields.get(version)
    if got is None:
        names: set = set()
        for pays in version.payloads:
            if pays is not None:
                for p in pays.tolist():  # once per version, never per question
                    if isinstance(p, dict):
                        names.update(k for k in p if isinstance(k, str))
        got = frozenset(names)
        with _lock:
            _fields[version] = got
    return got


class ShardedFiltering:
    """The filter hooks of :class:`~softdb.table._frontend.FrontEnd` for a ShardedTable."""

    def _parse_where(self, snap: Any, where: Any) -> Filter:
        if isinstance(where, Filter):
            return where
        return parse_where(where, shard_fields(snap))

    def _run_where(
        self, snap: Any, q: Any, single: bool, ask: Any, tau: float, mask: np.ndarray | None, where: Any
    ) -> Reply:
        return self._run(snap, q, single, ask, tau, mask, where=where)  # type: ignore[attr-defined]
