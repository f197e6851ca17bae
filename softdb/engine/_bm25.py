"""BM25 that grows: term counts in the keys, weights computed at query time from the current statistics.

A growing BM25 table stores each document's term counts tf(t, d) (a CSR row) and never its
BM25 weights, because the weights depend on the whole collection, which every ``add`` and
``remove`` changes:

    w(t, d) = idf(t) · tf(t, d) / (tf(t, d) + k1 · (1 − b + b · |d| / avgdl)),
    idf(t)  = log(1 + (N − df(t) + 0.5) / (df(t) + 0.5))                 (Lucene, as bm25s)

:class:`Bm25Stats` holds the collection's N, Σ|d| and df (one version, never mutated), and
:class:`Bm25Scorer` is the kernel's scorer of a block of term counts under those statistics:
``bind`` gathers the postings of the query batch's terms only (a CSC column slice), weighs
them with the current N, df and avgdl in one vectorised step, and scores each chunk as a
sparse product (:class:`~softdb.engine._scorers.CsrScorer`). Cost per batch: O(postings of
the query terms), memory the same; the keys are never reweighed as a whole. |d| is the
row sum of the counts (every token of a growing table is in its vocabulary).

Examples
--------
>>> import numpy as np, scipy.sparse as sp
>>> tf = sp.csr_matrix(np.array([[1, 0, 2], [0, 1, 1]], np.float32))  # 2 docs, 3 terms
>>> stats = Bm25Stats.of(tf, k1=1.2, b=0.75)
>>> stats.n_docs, stats.avgdl, stats.df.tolist()
(2, 2.5, [1, 1, 2])
>>> b = Bm25Scorer(tf, stats).bind(sp.csr_matrix(np.array([[1, 0, 0]], np.float32)))
>>> b.scores(0, 2, np.empty((1, 2), np.float32)).round(4)
array([[0.2912, 0.    ]], dtype=float32)
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import scipy.sparse as sp

from softdb.engine._protocols import BoundScorer, Scorer
from softdb.engine._scorers import CsrScorer

__all__ = ["Bm25Scorer", "Bm25Stats", "doc_lengths", "postings"]

#: (CSC, lengths) of each term-count matrix still alive, by id: a sealed segment's keys outlive
#: many table versions (and their scorers), so its postings are built once, not once per version.
_POSTINGS: dict[int, tuple[sp.csc_matrix, np.ndarray]] = {}
_POSTINGS_LOCK = threading.Lock()


def doc_lengths(counts: Any) -> np.ndarray:
    """|d| of each row of a CSR matrix of term counts: (n,) float64 row sums."""
    rows = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))  # (nnz,)
    return np.bincount(rows, weights=counts.data.astype(np.float64), minlength=counts.shape[0])  # (n,)


def postings(counts: Any) -> tuple[sp.csc_matrix, np.ndarray]:
    """The term counts by term (CSC, (n, V)) and |d| of each row (n,), built once per matrix."""
    key = id(counts)
    got = _POSTINGS.get(key)
    if got is None:
        got = (sp.csc_matrix(counts), doc_lengths(counts))
        with _POSTINGS_LOCK:
            if key not in _POSTINGS:
                _POSTINGS[key] = got
                weakref.finalize(counts, _POSTINGS.pop, key, None)  # dropped with the matrix
    return got


@dataclass(frozen=True)
class Bm25Stats:
    """The collection statistics of one version of a BM25 table (never mutated).

    Attributes
    ----------
    k1, b : float
    n_docs : int
        N, the live documents.
    total_len : float
        Σ |d| over the live documents (avgdl = total_len / N).
    df : ndarray of shape (V,), int64
        Live documents holding each term (read-only).
    """

    k1: float
    b: float
    n_docs: int
    total_len: float
    df: np.ndarray

    @classmethod
    def of(cls, counts: Any, *, k1: float, b: float) -> Bm25Stats:
        """Statistics of the rows of ``counts`` (n, V) alone."""
        return cls(k1, b, 0, 0.0, np.zeros(counts.shape[1], np.int64)).plus(counts)

    @property
    def avgdl(self) -> float:
        return self.total_len / self.n_docs if self.n_docs else 0.0

    @cached_property
    def idf(self) -> np.ndarray:
        """(V,) float64 Lucene idf under these statistics."""
        return np.log1p((self.n_docs - self.df + 0.5) / (self.df + 0.5))  # (V,)

    def _with(self, sign: int, counts: Any, width: int) -> Bm25Stats:
        df = np.zeros(width, np.int64)  # (V',)
        df[: len(self.df)] = self.df
        df += sign * np.bincount(counts.indices, minlength=width)[:width]  # (V',)
        df.flags.writeable = False
        total = self.total_len + sign * float(counts.data.sum(dtype=np.float64))
        return Bm25Stats(self.k1, self.b, self.n_docs + sign * counts.shape[0], total, df)

    def plus(self, counts: Any) -> Bm25Stats:
        """These statistics with the rows of ``counts`` (n, V' ≥ V) added (V' terms)."""
        return self._with(1, counts, max(len(self.df), counts.shape[1]))

    def minus(self, counts: Any) -> Bm25Stats:
        """These statistics with the rows of ``counts`` removed (they must have been added)."""
        return self._with(-1, counts, len(self.df))

    def weigh(self, counts: Any, lengths: np.ndarray, cols: np.ndarray | None = None) -> Any:
        """BM25 weights of the entries of ``counts`` ((n, t) CSR or CSC), float32, same structure.

        ``lengths`` (n,) is |d| of each row; ``cols`` (t,) the vocabulary column of each of
        the matrix's columns (default: column j is term j).
        """
        if sp.isspmatrix_csc(counts):
            rows = counts.indices  # (nnz,)
            col = np.repeat(np.arange(counts.shape[1]), np.diff(counts.indptr))  # (nnz,)
        else:
            rows = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))  # (nnz,)
            col = counts.indices  # (nnz,)
        terms = col if cols is None else cols[col]  # (nnz,)
        tf = counts.data.astype(np.float64)  # (nnz,)
        norm = self.k1 * (1 - self.b + self.b * lengths[rows] / max(self.avgdl, 1e-300))  # (nnz,)
        w = (self.idf[terms] * tf / (tf + norm)).astype(np.float32)  # (nnz,)
        return type(counts)((w, counts.indices, counts.indptr), shape=counts.shape)


class Bm25Scorer(Scorer):
    """The kernel's scorer of term-count keys under the current BM25 statistics.

    Parameters
    ----------
    counts : scipy.sparse.csr_matrix of shape (n, V_k)
        Term counts of n documents (V_k ≤ the statistics' V: a block written before
        later documents brought new terms is narrower, and holds none of them).
    stats : Bm25Stats
        The collection's statistics (this block's rows included).

    Notes
    -----
    Queries are (m, V_q) term counts (CSR or dense); columns past V_k are terms no row
    here holds and score 0. The query's weights are its counts, as in bm25s.
    """

    def __init__(self, counts: Any, stats: Bm25Stats) -> None:
        self.counts = counts  # (n, V_k)
        self.stats = stats
        self.n, self.dim = counts.shape

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.dim)

    @property
    def lengths(self) -> np.ndarray:
        """(n,) |d| of each row."""
        return postings(self.counts)[1]

    @property
    def _csc(self) -> sp.csc_matrix:
        return postings(self.counts)[0]  # (n, V_k)  built once per key matrix: postings by term

    def weighted(self) -> sp.csr_matrix:
        """Every row's BM25 weights under the statistics: (n, V_k) float32 CSR (for fit, explain)."""
        return self.stats.weigh(self.counts, self.lengths)

    def bind(self, queries: Any, scale: float = 1.0) -> BoundScorer:
        q = sp.csr_matrix(queries, copy=True)  # (m, V_q)  dense or sparse counts
        q.sum_duplicates()
        cols = np.unique(q.indices[q.indices < self.dim]).astype(np.int64)  # (t,)  the batch's terms held here
        w = self.stats.weigh(self._csc[:, cols], self.lengths, cols).tocsr()  # (n, t)  postings only
        return CsrScorer(w).bind(q[:, cols], scale)  # (m, t)
