"""The kinds of keys a table holds: dense, sparse CSR, and blocks [dense | sparse].

- **dense**: an (n, d) float array (or memory map); scored by a BLAS GEMM.
- **csr**: an (n, V) ``scipy.sparse.csr_matrix``, e.g. per-term BM25 weights;
  never densified (each chunk is a zero-copy CSR view of its rows).
- **blocks**: a :class:`Blocks` of several of those side by side over the same
  n rows; the table's block weights β_b make the score Σ_b β_b q_b·k_b.

This module validates keys and queries of each kind, stacks and slices them
(``add`` / ``remove``), and builds the kernel's scorer (:mod:`softdb.engine._scorers`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from softdb import _checks
from softdb.engine._protocols import Scorer
from softdb.engine._scorers import BlockScorer, CsrScorer, DenseScorer, is_sparse, row_norm_max

__all__ = [
    "Blocks",
    "as_keys",
    "as_queries",
    "dims",
    "freeze",
    "kind_of",
    "norm_max",
    "scorer",
    "stack",
    "take",
    "widen",
]


class Blocks(tuple):
    """Key (or query) blocks over the same rows: a tuple of dense arrays and CSR matrices.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> b = Blocks([np.eye(2, dtype=np.float32), sp.csr_matrix(np.ones((2, 3), np.float32))])
    >>> b.shape, len(b)
    ((2, 5), 2)
    """

    @property
    def shape(self) -> tuple[int, int]:
        return (self[0].shape[0], sum(b.shape[1] for b in self))

    @property
    def dims(self) -> tuple[int, ...]:
        return tuple(b.shape[1] for b in self)


def kind_of(keys: Any) -> str:
    """ "dense", "csr" or "blocks"."""
    if isinstance(keys, Blocks):
        return "blocks"
    return "csr" if is_sparse(keys) else "dense"


def _as_csr(x: Any, name: str, dtype: np.dtype | None, copy: bool) -> sp.csr_matrix:
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"{name} must be a 2-D sparse matrix with at least 1 column, got shape {x.shape}")
    if x.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got sparse dtype {x.dtype}")
    dt = dtype or (np.float64 if x.dtype == np.float64 else np.float32)
    out = sp.csr_matrix(x, dtype=dt, copy=copy)
    if not np.isfinite(out.data).all():
        raise ValueError(
            f"{name} must be finite, but its sparse data holds NaN or inf values; "
            "hint: drop or impute those rows before building the table"
        )
    out.sum_duplicates()  # canonical: sorted indices, no duplicates (also sorts)
    return out


def as_keys(keys: Any, name: str = "keys", *, dtype: np.dtype | None = None, copy: bool = True) -> Any:
    """Validate keys of any kind; lists and tuples of matrices are blocks."""
    if is_sparse(keys):
        return _as_csr(keys, name, dtype, copy)
    if isinstance(keys, list | tuple) and keys and any(is_sparse(b) or np.ndim(b) == 2 for b in keys):
        parts = []
        for i, b in enumerate(keys):
            parts.append(
                _as_csr(b, f"{name} block {i}", dtype, copy)
                if is_sparse(b)
                else _checks.as_matrix(b, f"{name} block {i}", dtype=dtype, copy=copy)
            )
            if dtype is None:
                dtype = parts[0].dtype
        rows = {p.shape[0] for p in parts}
        if len(rows) != 1:
            raise ValueError(
                f"every block of {name} must have the same rows, got row counts "
                f"{[p.shape[0] for p in parts]}; hint: one row per table row in each block"
            )
        return Blocks(parts)
    return _checks.as_matrix(keys, name, dtype=dtype, copy=copy)


def dims(keys: Any) -> tuple[int, ...]:
    """The keys' widths: one per block for blocks."""
    return keys.dims if isinstance(keys, Blocks) else (keys.shape[1],)


def freeze(keys: Any) -> None:
    """Make the table's own arrays read-only."""
    for b in keys if isinstance(keys, Blocks) else (keys,):
        arrays = (b.data, b.indices, b.indptr) if is_sparse(b) else (b,)
        for a in arrays:
            if isinstance(a, np.ndarray):
                a.flags.writeable = False


def norm_max(keys: Any) -> float | tuple[float, ...]:
    """max ‖k_j‖ (per block for blocks)."""
    if isinstance(keys, Blocks):
        return tuple(row_norm_max(b) for b in keys)
    return row_norm_max(keys)


def widen(keys: Any, widths: Sequence[int]) -> Any:
    """Keys whose sparse blocks have ``widths`` columns (≥ theirs; the new columns hold no entry).

    A growing BM25 vocabulary adds columns at its end: keys written before hold none of the
    new terms. The arrays are shared, not copied.

    Examples
    --------
    >>> widen(sp.csr_matrix(np.eye(2, dtype=np.float32)), (5,)).shape
    (2, 5)
    """
    if isinstance(keys, Blocks):
        return Blocks([widen(b, (w,)) for b, w in zip(keys, widths)])
    if is_sparse(keys) and keys.shape[1] < widths[0]:
        return sp.csr_matrix((keys.data, keys.indices, keys.indptr), shape=(keys.shape[0], widths[0]), copy=False)
    return keys


def stack(a: Any, b: Any) -> Any:
    """Rows of ``a`` then rows of ``b`` (same kind and widths; sparse ones widened to the wider), as new arrays."""
    if isinstance(a, Blocks):
        return Blocks([stack(x, y) for x, y in zip(a, b)])
    if is_sparse(a):
        w = max(a.shape[1], b.shape[1])
        return sp.vstack([widen(a, (w,)), widen(b, (w,))], format="csr", dtype=a.dtype)
    return np.concatenate([a, b])  # (n_a + n_b, d)


def take(keys: Any, rows: np.ndarray) -> Any:
    """The given rows, as new arrays."""
    if isinstance(keys, Blocks):
        return Blocks([take(b, rows) for b in keys])
    return keys[rows]


def scorer(keys: Any, weights: Sequence[float] | None = None, key_norm_max: Any = None) -> Scorer:
    """The kernel scorer of these keys (block weights for blocks); a scorer is used as is."""
    if not isinstance(keys, np.ndarray) and hasattr(keys, "bind"):  # e.g. a growing BM25 block's Bm25Scorer
        return keys
    if isinstance(keys, Blocks):
        nm = key_norm_max or (None,) * len(keys)
        return BlockScorer([scorer(b, None, m) for b, m in zip(keys, nm)], weights)
    if is_sparse(keys):
        return CsrScorer(keys, key_norm_max)
    return DenseScorer(keys, key_norm_max)


def _dense_query(q: Any, name: str, dtype: np.dtype, width: int) -> tuple[Any, bool]:
    if is_sparse(q):
        q = _as_csr(q, name, dtype, False)
        single = False
    else:
        q = _checks.as_matrix(q, name, dtype=dtype, allow_1d=True)
        single = q.ndim == 1
        q = q[None, :] if single else q
    _checks.check_width(q.shape[1], width, name)
    return q, single


def as_queries(queries: Any, keys: Any, dtype: np.dtype) -> tuple[Any, bool]:
    """Queries for keys of this kind: (queries as the scorer takes them, single?).

    Dense keys take dense queries; CSR keys dense or CSR queries; blocks a
    sequence of one query matrix (or vector) per block.
    """
    if not isinstance(keys, Blocks):
        if is_sparse(queries) and not is_sparse(keys):
            raise TypeError(
                "sparse queries need sparse keys; this table's keys are dense; "
                "hint: queries.toarray(), or build the table from CSR keys"
            )
        return _dense_query(queries, "queries", dtype, keys.shape[1])
    if (
        is_sparse(queries)
        or isinstance(queries, np.ndarray)
        or not isinstance(queries, list | tuple)
        or len(queries) != len(keys)
    ):
        got = len(queries) if isinstance(queries, list | tuple) else type(queries).__name__
        raise ValueError(
            f"this table's keys are {len(keys)} blocks {list(keys.dims)}, so queries must be a "
            f"list of {len(keys)} query matrices, one per block; got {got}; "
            "hint: table.encoder.encode(texts) gives them, or pass text queries"
        )
    parts, singles = [], []
    for i, (q, k) in enumerate(zip(queries, keys)):
        if is_sparse(q) and not is_sparse(k):
            raise TypeError(f"query block {i} is sparse but key block {i} is dense; hint: q.toarray()")
        p, s = _dense_query(q, f"query block {i}", dtype, k.shape[1])
        parts.append(p)
        singles.append(s)
    ms = {p.shape[0] for p in parts}
    if len(ms) != 1:
        raise ValueError(f"every query block must have the same number of queries, got {[p.shape[0] for p in parts]}")
    single = all(singles) or (any(singles) and ms == {1})
    return Blocks(parts), single
