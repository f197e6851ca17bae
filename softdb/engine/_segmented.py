"""Rows in parts (a table's segments): one kernel pass per part, merged with the one exact merge.

A segmented table's head holds :class:`Parts`: its rows as consecutive parts (segments), each
with its own keys, values, ``key_norm_max`` and a *live* bitmap (False where a row was deleted;
None when every row is live). Questions see only the live rows, in global order: row ``r`` of
an answer is the r-th live row, exactly as in one array of the live rows.

:func:`run_parts` is the pass driver: per part, one kernel pass (:func:`softdb.engine._kernel.run`)
over the part's physical rows with its deletion bits (and the slice of the user's mask) as the
mask; each part's hard and top-k rows are relabelled to global live rows, and the states are
merged with :func:`softdb.engine._states.merge`. Relabelling is monotone (a later physical row is
a later live row), so ties still go to the lowest global row, and answers equal one pass over
one array of the live rows: hard and top-k rows and scores identical, soft within float rounding.

Why a pass per part and not one composite pass: the kernel's fast paths (the GEMM layout, the
one-query blend, threads over ranges) stay whole inside each part, and the only cost per part is
one pass's setup (tens of µs), paid for a number of parts that the merge policy keeps
logarithmic in the rows.

Examples
--------
>>> import numpy as np
>>> from softdb.engine._scorers import DenseScorer
>>> from softdb.engine._states import finalize
>>> K = np.array([[1.0], [3.0], [2.0], [3.0]], np.float32)
>>> parts = Parts([Part(K[:2], None, 3.0, np.array([True, False])), Part(K[2:], None, 3.0, None)])
>>> parts.n
3
>>> st = run_parts(parts, lambda i: DenseScorer(parts.parts[i].keys), np.ones((1, 1), np.float32), k=3)
>>> finalize(st).top_rows.tolist()  # live rows: 0 (score 1), 1 (score 2), 2 (score 3)
[[2, 1, 0]]
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from softdb.engine import _keys, _parallel
from softdb.engine._kernel import run
from softdb.engine._protocols import Scorer
from softdb.engine._states import KernelState, merge

__all__ = ["SMALL_PART", "Part", "Parts", "run_parts"]

#: Parts of fewer score cells (queries × rows) run with one BLAS thread: waking idle BLAS threads
#: for a small GEMM or GEMV costs more than it saves (a multithreaded call ends in a barrier).
#: benchmarks/bench_writes.py: with it, 1M rows + the policy's small segments × 1 query cost 1.01×
#: one segment; without it 1.3×. At 256 queries the small segments' GEMMs keep their threads.
SMALL_PART = 1 << 18


def _queries_of(queries: Any) -> int:
    """The number of queries (dense, CSR, or a sequence of one matrix per block or head)."""
    q = queries[0] if isinstance(queries, list | tuple) else queries
    return int(q.shape[0])


@dataclass(frozen=True, eq=False)
class Part:
    """One part (segment) of a head's rows.

    Attributes
    ----------
    keys : ndarray of shape (n_p, d), scipy CSR, or Blocks
    values : ndarray of shape (n_p, d_v), optional
    key_norm_max : float or tuple of float
        max ‖k_j‖ over the part's rows (deleted ones included: a bound).
    live : ndarray of bool, shape (n_p,), optional
        False where a row is deleted; None when every row is live.
    """

    keys: Any
    values: Any = None
    key_norm_max: Any = None
    live: np.ndarray | None = None

    @property
    def n_phys(self) -> int:
        return int(self.keys.shape[0])

    @cached_property
    def n_live(self) -> int:
        return self.n_phys if self.live is None else int(np.count_nonzero(self.live))

    @cached_property
    def live_rows(self) -> np.ndarray:
        """(n_live,) int64: the physical row of each live row."""
        return np.arange(self.n_phys) if self.live is None else np.flatnonzero(self.live)

    @cached_property
    def rank(self) -> np.ndarray:
        """(n_phys,) int64: the live row of each physical row (meaningful where live)."""
        return np.cumsum(self.live, dtype=np.int64) - 1 if self.live is not None else np.arange(self.n_phys)


class Parts:
    """A head's rows as consecutive parts; only live rows count (see the module docstring).

    Parameters
    ----------
    parts : sequence of Part
        In global row order.
    """

    def __init__(self, parts: Sequence[Part]) -> None:
        self.parts = tuple(parts)
        self.starts = np.zeros(len(self.parts) + 1, np.int64)  # (p + 1,)  first live row of each part
        np.cumsum([p.n_live for p in self.parts], out=self.starts[1:])
        self.n = int(self.starts[-1])
        self.shape = (self.n, self.parts[0].keys.shape[1] if self.parts else 0)

    def locate(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Global live rows (r,) → (part of each, physical row in its part), both (r,) int64."""
        rows = np.asarray(rows, np.int64)
        which = np.searchsorted(self.starts, rows, side="right") - 1  # (r,)
        local = np.empty_like(rows)
        for i in np.unique(which):
            sel = which == i
            local[sel] = self.parts[i].live_rows[rows[sel] - self.starts[i]]
        return which, local

    def take(self, rows: np.ndarray, values: bool = False) -> Any:
        """Keys (or values) of global live rows (r,), in that order: (r, d) of the parts' kind."""
        rows = np.asarray(rows, np.int64).ravel()
        which, local = self.locate(rows)
        pieces, order = [], []
        for i in np.unique(which):
            sel = np.flatnonzero(which == i)
            src = self.parts[i].values if values else self.parts[i].keys
            pieces.append(_keys.take(src, local[sel]))
            order.append(sel)
        if not pieces:
            src = self.parts[0].values if values else self.parts[0].keys
            return _keys.take(src, np.zeros(0, np.int64))
        out = pieces[0]
        for p in pieces[1:]:
            out = _keys.stack(out, p)
        inv = np.empty(len(rows), np.int64)
        inv[np.concatenate(order)] = np.arange(len(rows))
        return _keys.take(out, inv) if len(pieces) > 1 else out

    def __getitem__(self, rows: Any) -> Any:
        return self.take(np.arange(self.n)[rows] if isinstance(rows, slice) else rows)


def _part_mask(mask: np.ndarray | None, a: int, b: int, part: Part) -> np.ndarray | None:
    """The kernel's mask over a part's physical rows: its live bits and the user's mask slice."""
    if mask is None:
        return part.live
    sl = mask[..., a:b]  # (n_live,) | (m, n_live)
    if part.live is None:
        return sl
    out = np.zeros((*sl.shape[:-1], part.n_phys), bool)  # (n_p,) | (m, n_p)
    out[..., part.live_rows] = sl
    return out


def _relabel(state: KernelState, start: int, part: Part) -> None:
    """Physical rows of a part (offset 0) → global live rows, in place (-1 stays -1)."""
    rank = None if part.live is None else part.rank
    for holder, name in ((state.hard, "row"), (state.top, "rows")):
        if holder is None:
            continue
        r = getattr(holder, name)
        g = (r if rank is None else rank[np.maximum(r, 0)]) + start
        setattr(holder, name, np.where(r >= 0, g, -1))


def run_parts(
    parts: Parts,
    scorer_of: Callable[[int], Scorer],
    queries: Any,
    values_of: Callable[[int], Any] | None = None,
    *,
    mask: np.ndarray | None = None,
    dense: np.ndarray | None = None,
    **kw: Any,
) -> KernelState:
    """One kernel pass per part over its live rows, merged (see the module docstring).

    Parameters
    ----------
    parts : Parts
    scorer_of : callable
        ``scorer_of(i)``: the scorer of part i.
    queries : any
        As :func:`softdb.engine._kernel.run` takes them (already projected).
    values_of : callable, optional
        ``values_of(i)``: the values of part i blended by a soft answer.
    mask : ndarray of bool, shape (n,) or (m, n), optional
        Over the global live rows.
    dense : ndarray of shape (m, n), optional
        Receives the scaled scores of the live rows.
    **kw
        The other options of :func:`softdb.engine._kernel.run` (no ``offset``).

    Returns
    -------
    KernelState
        With global live rows.
    """
    states: list[KernelState] = []
    m = _queries_of(queries)
    small = [i for i, p in enumerate(parts.parts) if m * p.n_phys < SMALL_PART]
    big = [i for i, p in enumerate(parts.parts) if m * p.n_phys >= SMALL_PART]
    for i in big:
        _run_part(parts, i, scorer_of, queries, values_of, mask, dense, kw, states)
    if small:
        with _parallel.single_blas() if len(small) > 1 or big else contextlib.nullcontext():
            for i in small:  # small parts: one BLAS thread each, no wake-up of idle BLAS threads per call
                _run_part(parts, i, scorer_of, queries, values_of, mask, dense, kw, states)
    return merge(*states) if len(states) > 1 else states[0]


def _run_part(
    parts: Parts,
    i: int,
    scorer_of: Callable[[int], Scorer],
    queries: Any,
    values_of: Callable[[int], Any] | None,
    mask: np.ndarray | None,
    dense: np.ndarray | None,
    kw: dict,
    states: list[KernelState],
) -> None:
    part = parts.parts[i]
    a, b = int(parts.starts[i]), int(parts.starts[i + 1])
    if a == b and (states or i < len(parts.parts) - 1):
        return  # no live row: nothing to add (one part runs anyway: a defined empty state)
    pd = None
    if dense is not None:
        pd = dense[:, a:b] if part.live is None else np.empty((dense.shape[0], part.n_phys), dense.dtype)
    st = run(
        scorer_of(i),
        queries,
        None if values_of is None else values_of(i),
        mask=_part_mask(mask, a, b, part),
        dense=pd,
        **kw,
    )
    if dense is not None and pd is not None and part.live is not None:
        dense[:, a:b] = pd[:, part.live_rows]  # (m, n_live_p)
    _relabel(st, a, part)
    states.append(st)
