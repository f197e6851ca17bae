"""What ``explain`` and the views ask of an answer, for a sharded table's answers.

:func:`softdb.table._explain.explain`, :func:`softdb.views.search_answers` and the explorer's
slider read a few things beyond the hits: the values of the shown rows, the ids and payloads of
the rows version the answer came from, and the hits' weights at other temperatures. For a
:class:`~softdb.distributed.ShardedTable` these come from the :class:`~softdb.distributed._shards.Version`
the question was answered on: ids and payloads are on the client already; values are read from
the shard folders (memory-mapped, cached like a worker's), only for the few rows shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from softdb.distributed import _shards
from softdb.distributed import _worker as _shard_worker

__all__ = ["ShardRows", "VersionState", "effective_rows_at", "hit_values", "hit_weights_at"]


class _Column(Sequence):
    """One per-row column (ids or payloads) of a version, indexed by global row; nothing gathered."""

    def __init__(self, v: _shards.Version, arrays: Sequence[np.ndarray | None]) -> None:
        self.v, self.arrays = v, arrays

    def __len__(self) -> int:
        return self.v.n

    def __getitem__(self, r: Any) -> Any:
        if isinstance(r, slice):
            return [self[i] for i in range(*r.indices(self.v.n))]
        return self.v.take(self.arrays, np.array([int(r)], np.int64))[0]


class ShardRows:
    """A version's rows as ``answer.state.rows`` reads them: ``ids[r]``, ``payloads[r]``."""

    def __init__(self, v: _shards.Version) -> None:
        self.ids = _Column(v, v.ids)
        self.payloads = _Column(v, v.payloads) if any(p is not None for p in v.payloads) else None
        self.n = v.n


class VersionState:
    """``answer.state`` of a sharded answer: its rows, and no projection (sharded tables have none)."""

    projection = None

    def __init__(self, v: _shards.Version) -> None:
        self.rows = ShardRows(v)


def hit_values(v: _shards.Version, rows: np.ndarray, dtype: np.dtype, verify: bool) -> np.ndarray:
    """Values of global ``rows`` (any shape; -1 → zeros), read from their shards: (..., d_v)."""
    rows = np.asarray(rows, np.int64)
    flat = rows.ravel()  # (r,)
    out = np.zeros((len(flat), int(v.layout.meta["value_dim"])), dtype)  # (r, d_v)
    shard = np.searchsorted(v.offsets, flat, side="right") - 1  # (r,)
    for ref in v.layout.shards:
        sel = np.flatnonzero((flat >= 0) & (shard == ref.index))
        if sel.size:
            got = _shard_worker._get(ref, verify)
            vals = got.keys if got.values is None else got.values  # (n_s, d_v)  memory-mapped
            out[sel] = vals[flat[sel] - v.offsets[ref.index]]
    return out.reshape(*rows.shape, -1)


def hit_weights_at(answers: Any, taus: tuple, i: int) -> np.ndarray:
    """The hits' full-table weights at the i-th extra temperature: w_j(τ_i) = exp(s_j / τ_i − lse(τ_i)), (m, k)."""
    with np.errstate(over="ignore", invalid="ignore"):
        w = np.exp(answers.scores.astype(np.float64) / taus[i] - answers.lse_at[:, i, None])  # (m, k)
    return np.where(answers.rows >= 0, w, 0.0)


def effective_rows_at(answers: Any, i: int, i_half: int) -> np.ndarray:
    """1 / Σ w² at the i-th extra temperature, given τ / 2 is the ``i_half``-th: (m,)."""
    lse = answers.lse_at.astype(np.float64)  # (m, g)
    return np.exp(2.0 * lse[:, i] - lse[:, i_half])  # (m,)


class ShardedViews:
    """``explain`` and the attributes explain and the views read, for :class:`~softdb.distributed.ShardedTable`."""

    #: Sharded tables hold dense keys without a projection.
    projection = None
    key_kind = "dense"
    block_weights = None

    def explain(self, query: Any, k: int = 5, *, temperature: float | None = None, where: Any = None) -> Any:
        """A readable "soft SELECT" for one query, answered on the workers (see :meth:`SoftTable.explain`).

        Examples
        --------
        ``softdb explain QUERY --table SHARDED_FOLDER`` prints it; tests/distributed/test_sharded_views.py
        runs it on a 4-shard table.
        """
        from softdb.table._explain import explain

        return explain(self, query, k, temperature=temperature, where=where)  # where=: filtered on the workers
