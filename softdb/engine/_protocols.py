"""What a scorer is: the seam between the kernel and the kinds of keys.

The kernel (:func:`softdb.engine._kernel.run`) never touches keys itself. It binds a
:class:`Scorer` (the keys of n rows) to a batch of m queries, and asks the
:class:`BoundScorer` it gets for the scores of one chunk of rows at a time. The scorers
of :mod:`softdb.engine._scorers` (dense, CSR, blocks) and the multi-head scorer of
:mod:`softdb.engine._plan` satisfy these protocols, and so may any other object.

Two capabilities are optional; a bound scorer says whether it has them with a flag,
and the kernel calls their methods only where the flag is True (a flag, not
``isinstance`` of a runtime-checkable protocol: that check costs ~13 µs on Python 3.11,
a tenth of a small lookup):

- ``by_row``: it is a :class:`RowScorer`, whose scores laid out by row (c, m) the
  kernel's top-k prefers from ``ROW_LAYOUT_MIN`` queries on;
- ``one_query``: it is a :class:`OneQueryScorer`, which scores a single query without
  a BLAS call, so the kernel can blend a one-query soft answer in cache-sized chunks.

Examples
--------
>>> import numpy as np
>>> from softdb.engine._scorers import DenseScorer
>>> b = DenseScorer(np.eye(3, dtype=np.float32)).bind(np.array([[0, 2, 1]], np.float32))
>>> b.m, is_row_scorer(b), is_one_query(b)
(1, True, True)
>>> b.scores(1, 3, np.empty((1, 2), np.float32))
array([[2., 1.]], dtype=float32)
"""

from __future__ import annotations

from typing import Any, Protocol, TypeGuard

import numpy as np

__all__ = ["BoundScorer", "OneQueryScorer", "RowScorer", "Scorer", "is_one_query", "is_row_scorer"]


class BoundScorer(Protocol):
    """A scorer bound to m queries: the scores of any rows, one chunk at a time."""

    #: Number of queries.
    m: int
    #: numpy float dtype of the scores.
    dtype: np.dtype
    #: True if this is also a :class:`RowScorer` (``scores_by_row``).
    by_row: bool
    #: True if this is also a :class:`OneQueryScorer` (``scores_one``, ``row_bytes``, ``dense_rows``).
    one_query: bool

    def scores(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """The scores of rows start:stop (c = stop − start), written into ``out`` and returned.

        ``out`` is a C-contiguous (m, c) buffer of ``dtype``; the result has shape (m, c).
        """
        ...

    def abs_max(self) -> float | None:
        """An upper bound of |score| over every (query, row), or None if unknown.

        It lets the soft reduction skip its running max when exp cannot overflow.
        """
        ...


class RowScorer(BoundScorer, Protocol):
    """A bound scorer that also lays scores out by row (``by_row`` is True)."""

    def scores_by_row(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """``scores`` laid out by row: into a C-contiguous (c, m) ``out``, returned."""
        ...


class OneQueryScorer(BoundScorer, Protocol):
    """A bound scorer that also scores a single query with numpy's own loops (``one_query`` is True).

    The kernel calls these methods only when m = 1.
    """

    def scores_one(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """``scores`` of the one query without a BLAS call (no thread barrier per chunk): (1, c)."""
        ...

    def row_bytes(self) -> int:
        """Bytes of one key row (sizes the kernel's cache-sized chunks)."""
        ...

    def dense_rows(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The dense keys (n, d) and the one scaled query (d,), or None if the keys are not that.

        With them the kernel may use :mod:`softdb.engine._fused`'s compiled loop.
        """
        ...


class Scorer(Protocol):
    """The keys of n rows, which the kernel binds to each batch of queries."""

    #: Number of rows.
    n: int

    def bind(self, queries: Any, scale: float = 1.0) -> BoundScorer:
        """Prepare a batch of m queries, multiplied by ``scale``; inputs are never mutated.

        ``queries`` is whatever the scorer scores: a dense (m, d) array for dense keys,
        a dense array or a scipy.sparse matrix for CSR keys, one of those per block for
        blocks. The kernel passes ``scale`` = 1 / τ when it wants scores divided by τ.
        """
        ...


def is_row_scorer(bound: BoundScorer) -> TypeGuard[RowScorer]:
    """True if ``bound``'s ``by_row`` flag says it is a :class:`RowScorer`."""
    return bound.by_row


def is_one_query(bound: BoundScorer) -> TypeGuard[OneQueryScorer]:
    """True if ``bound``'s ``one_query`` flag says it is a :class:`OneQueryScorer`."""
    return bound.one_query
