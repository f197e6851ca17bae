"""Scorers: what the kernel asks for each chunk's scores.

The kernel (:func:`softdb.engine._kernel.run`) never touches keys itself. It walks rows
``start:stop`` in chunks and asks a *bound scorer* for their scores; everything
after the scores (masking, soft / hard / top-k reductions, merging) is the same
for every kind of key.

What a scorer is (the unbound :class:`~softdb.engine._protocols.Scorer` of n rows, the
:class:`~softdb.engine._protocols.BoundScorer` it binds to m queries, and the optional
row-layout and one-query capabilities) is declared in :mod:`softdb.engine._protocols`.
``bind`` takes whatever the scorer scores: a dense (m, d) array for :class:`DenseScorer`;
a dense array or a scipy.sparse matrix (m, d) for :class:`CsrScorer`; a sequence of one
such per block for :class:`BlockScorer`. Inputs are never mutated.

Scorers here:

- :class:`DenseScorer`: a BLAS GEMM over a dense (n, d) array (or memory map).
- :class:`CsrScorer`: a scipy.sparse CSR (n, d) key matrix, e.g. BM25 weights
  (score = q·k, the BM25 score when q holds the query's term counts). Each
  chunk is a zero-copy CSR view of its rows; no dense copy of the keys exists.
- :class:`BlockScorer`: several scorers side by side over the same n rows, each
  with a weight: score = Σ_b weight_b · q_b·k_b (hybrid keys [dense | sparse]).

Any object with that interface works, e.g. the scorer of mean head weights for
multi-head search (:mod:`softdb.engine._plan`).

Examples
--------
>>> import numpy as np, scipy.sparse as sp
>>> dense = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
>>> bm25 = sp.csr_matrix(np.array([[0, 2], [0, 0], [3, 0]], np.float32))
>>> hybrid = BlockScorer([DenseScorer(dense), CsrScorer(bm25)], weights=[1.0, 0.5])
>>> b = hybrid.bind([np.array([[1, 0]], np.float32), sp.csr_matrix(np.array([[1, 1]], np.float32))])
>>> b.scores(0, 3, np.empty((1, 3), np.float32))
array([[2. , 0. , 2.5]], dtype=float32)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from softdb.engine._protocols import BoundScorer, OneQueryScorer, RowScorer, Scorer, is_row_scorer

__all__ = ["BlockScorer", "CsrScorer", "DenseScorer", "is_sparse", "row_norm_max"]


def is_sparse(x: object) -> bool:
    """``scipy.sparse.issparse``, without narrowing an ``Any`` to scipy-stubs' bare ``SparseABC``.

    Keys and queries are duck-typed (``Any``); narrowed to ``SparseABC``, which declares
    no attributes, every use of a sparse matrix after the test would be a type error.
    """
    return sp.issparse(x)


def row_norm_max(keys: Any) -> float:
    """max_j ‖k_j‖ of a dense array or scipy.sparse matrix (0 when empty)."""
    if keys.shape[0] == 0:
        return 0.0
    if is_sparse(keys):
        k = sp.csr_matrix(keys)
        sq = np.bincount(
            np.repeat(np.arange(k.shape[0]), np.diff(k.indptr)),
            weights=k.data.astype(np.float64) ** 2,
            minlength=k.shape[0],
        )  # (n,)
        return float(np.sqrt(sq.max()))
    return float(np.sqrt(np.einsum("ij,ij->i", keys, keys, dtype=np.float64)).max())  # max of (n,)


def _query_norm_max(q: Any) -> float:
    if q.shape[0] == 0:
        return 0.0
    if is_sparse(q):
        return row_norm_max(q)
    return float(np.sqrt(np.einsum("ij,ij->i", q, q, dtype=np.float64)).max())  # max of (m,)


# ---------------------------------------------------------------------- dense
class _NormCache:
    """The largest key row norm, computed once on first use (the scores' bound for |score| checks)."""

    keys: Any
    _norm: float | None

    @property
    def key_norm_max(self) -> float:
        if self._norm is None:
            self._norm = row_norm_max(self.keys)
        return self._norm


class DenseScorer(_NormCache, Scorer):
    """Dense keys (n, d): each chunk's scores are one BLAS GEMM.

    Parameters
    ----------
    keys : ndarray of shape (n, d)
        Any array numpy can slice by rows (also ``np.memmap``); never copied.
    key_norm_max : float, optional
        max ‖k_j‖, if known (enables the fast softmax); computed lazily otherwise.
    """

    def __init__(self, keys: np.ndarray, key_norm_max: float | None = None) -> None:
        self.keys = keys  # (n, d)
        self.n = keys.shape[0]
        self._norm = key_norm_max

    def bind(self, queries: np.ndarray, scale: float = 1.0) -> _DenseBound:
        dt = np.result_type(queries.dtype, self.keys.dtype)
        q = queries if scale == 1.0 else queries * dt.type(scale)  # (m, d)
        return _DenseBound(self, q, dt)


class _DenseBound(RowScorer, OneQueryScorer):
    by_row = True
    one_query = True

    def __init__(self, scorer: DenseScorer, q: np.ndarray, dt: np.dtype) -> None:
        self.scorer, self.q, self.dtype, self.m = scorer, q, dt, q.shape[0]

    def scores(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        return np.matmul(self.q, self.scorer.keys[start:stop].T, out=out)  # (m, c)

    def scores_by_row(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        return np.matmul(self.scorer.keys[start:stop], self.q.T, out=out)  # (c, m)

    def scores_one(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """``scores`` of a single query (m = 1) by numpy's own loop: no BLAS call, no thread barrier."""
        np.einsum("cd,d->c", self.scorer.keys[start:stop], self.q[0], out=out[0])  # (c,)
        return out  # (1, c)

    def row_bytes(self) -> int:
        """Bytes of one key row."""
        return self.scorer.keys.shape[1] * self.scorer.keys.itemsize

    def dense_rows(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The keys (n, d) and the one scaled query (d,): for :mod:`softdb.engine._fused`'s loop."""
        return self.scorer.keys, self.q[0]

    def abs_max(self) -> float:
        return _query_norm_max(self.q) * self.scorer.key_norm_max


# ----------------------------------------------------------------- sparse CSR
class CsrScorer(_NormCache, Scorer):
    """scipy.sparse CSR keys (n, d), e.g. per-term BM25 weights; never densified.

    Parameters
    ----------
    keys : scipy.sparse matrix or array of shape (n, d)
        Converted to CSR once if it is another sparse format.
    key_norm_max : float, optional

    Notes
    -----
    Queries may be dense (m, d) arrays or sparse (m, d) matrices. Each chunk's
    scores are a sparse × dense (or sparse × sparse) product over a zero-copy CSR
    view of the chunk's rows.
    """

    def __init__(self, keys: Any, key_norm_max: float | None = None) -> None:
        if not is_sparse(keys):
            raise TypeError(
                f"CsrScorer takes a scipy.sparse matrix, got {type(keys).__name__}; hint: DenseScorer scores dense keys"
            )
        k = keys.tocsr() if keys.format != "csr" else keys
        k.sort_indices()  # canonical: slicing views stay valid CSR
        self.keys = k  # (n, d)
        self.n, self.dim = k.shape
        self.dtype = k.dtype
        self._norm = key_norm_max

    def rows(self, start: int, stop: int) -> sp.csr_matrix:
        """Rows start:stop as a CSR matrix sharing the keys' data (no copy)."""
        k = self.keys
        a, b = k.indptr[start], k.indptr[stop]
        view = sp.csr_matrix((stop - start, self.dim), dtype=k.dtype)  # (c, d)
        # set the arrays directly: the constructor would copy views of a small part of big arrays
        view.data, view.indices, view.indptr = k.data[a:b], k.indices[a:b], k.indptr[start : stop + 1] - a
        return view

    def bind(self, queries: Any, scale: float = 1.0) -> _CsrBound:
        if queries.shape[1] != self.dim:
            raise ValueError(
                f"queries have {queries.shape[1]} columns but the sparse keys have {self.dim}; "
                "hint: encode the queries with the same vocabulary"
            )
        q: Any
        qt: Any
        if is_sparse(queries):
            dt = np.result_type(queries.dtype, self.dtype, np.float32)
            q = sp.csr_matrix(queries, dtype=dt, copy=scale != 1.0)  # (m, d)
            if scale != 1.0:
                q.data *= dt.type(scale)
            qt = sp.csc_matrix(q.T)  # (d, m)  for K_chunk @ qᵀ
        else:
            q = np.asarray(queries)
            dt = np.result_type(q.dtype, self.dtype, np.float32)
            q = q.astype(dt, copy=False) * dt.type(scale) if scale != 1.0 else q.astype(dt, copy=False)  # (m, d)
            qt = np.ascontiguousarray(q.T)  # (d, m)
        return _CsrBound(self, q, qt, dt)


class _CsrBound(RowScorer):
    by_row = True
    one_query = False

    def __init__(self, scorer: CsrScorer, q: Any, qt: Any, dt: np.dtype) -> None:
        self.scorer, self.q, self.qt, self.dtype, self.m = scorer, q, qt, dt, q.shape[0]

    def scores_by_row(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        r = self.scorer.rows(start, stop) @ self.qt  # (c, m)  sparse @ dense → dense; sparse @ sparse → sparse
        out[...] = r.toarray() if is_sparse(r) else r
        return out

    def scores(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        r = self.scorer.rows(start, stop) @ self.qt  # (c, m)
        out[...] = (r.toarray() if is_sparse(r) else r).T  # (m, c)
        return out

    def abs_max(self) -> float:
        return _query_norm_max(self.q) * self.scorer.key_norm_max


# --------------------------------------------------------------------- blocks
class BlockScorer(Scorer):
    """Several key blocks over the same rows: score = Σ_b weight_b · q_b·k_b.

    Parameters
    ----------
    blocks : sequence of scorers
        E.g. ``[DenseScorer(embeddings), CsrScorer(bm25)]``: the key of row j is
        the concatenation [k_j^0 | k_j^1 | …]. Every block has the same n rows.
    weights : sequence of float, optional
        One per block (default all 1). The weights are folded into the queries.

    Notes
    -----
    ``bind`` takes one query matrix per block, in block order. Layout by row is
    offered when every block offers it.
    """

    def __init__(self, blocks: Sequence[Scorer], weights: Sequence[float] | None = None) -> None:
        blocks = list(blocks)
        if not blocks:
            raise ValueError("BlockScorer needs at least one block")
        ns = {b.n for b in blocks}
        if len(ns) != 1:
            raise ValueError(f"every block must hold the same rows, got row counts {sorted(ns)}")
        w = [1.0] * len(blocks) if weights is None else [float(x) for x in weights]
        if len(w) != len(blocks):
            raise ValueError(f"{len(w)} weights for {len(blocks)} blocks; hint: one weight per block")
        if not all(np.isfinite(w)):
            raise ValueError(f"block weights must be finite, got {w}")
        self.blocks, self.weights, self.n = blocks, tuple(w), blocks[0].n

    def bind(self, queries: Sequence[Any], scale: float = 1.0) -> _BlockBound:
        if is_sparse(queries) or isinstance(queries, np.ndarray) or len(queries) != len(self.blocks):
            raise ValueError(
                f"a BlockScorer of {len(self.blocks)} blocks takes a sequence of "
                f"{len(self.blocks)} query matrices, one per block"
            )
        bound = [b.bind(q, scale * w) for b, q, w in zip(self.blocks, queries, self.weights) if w != 0]
        if not bound:  # every weight 0: all scores 0
            bound = [self.blocks[0].bind(queries[0], 0.0)]
        ms = {b.m for b in bound}
        if len(ms) != 1:
            raise ValueError(f"every block's queries must have the same number of rows, got {sorted(ms)}")
        return _BlockBound(bound)


class _BlockBound(RowScorer):
    """The bound blocks; ``scores_by_row`` only when every block has it (``by_row``)."""

    one_query = False

    def __init__(self, bound: list[BoundScorer]) -> None:
        self.bound = bound
        self.m = bound[0].m
        self.dtype = np.result_type(*(b.dtype for b in bound))
        self.by_row = all(is_row_scorer(b) for b in bound)
        self._local = threading.local()  # one buffer per thread: the kernel may score ranges in parallel

    def _sum(self, method: str, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        getattr(self.bound[0], method)(start, stop, out)
        if len(self.bound) > 1:
            tmp = getattr(self._local, "tmp", None)
            if tmp is None or tmp.size < out.size:
                tmp = self._local.tmp = np.empty(out.size, self.dtype)  # (m·c,)  reused by every chunk
            tmp = tmp[: out.size].reshape(out.shape)
            for b in self.bound[1:]:
                out += getattr(b, method)(start, stop, tmp)  # (m, c) | (c, m)
        return out

    def scores(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        return self._sum("scores", start, stop, out)  # (m, c)

    def scores_by_row(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        return self._sum("scores_by_row", start, stop, out)  # (c, m)

    def abs_max(self) -> float | None:
        parts = [b.abs_max() for b in self.bound]
        return None if any(p is None for p in parts) else float(sum(p for p in parts if p is not None))
