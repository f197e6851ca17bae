"""Keys of each kind as plain array files, and back (the manifest's ``keys`` field).

- dense keys: ``keys.npy`` (no ``keys`` field);
- CSR keys (``{"kind": "csr"}``): ``keys.data.npy``, ``keys.indices.npy`` (int32) and
  ``keys.indptr.npy`` (int32), scipy's three arrays;
- block keys (``{"kind": "blocks", "blocks": [{"kind", "dim"}, …], "weights": […]}``):
  block ``i`` as ``keys.<i>.npy`` or ``keys.<i>.data/indices/indptr.npy``, and an optional
  ``"query_projection"`` naming ``keys.query_projection.npy``, the (d_0, d_0) float64 W_Q.

Loading checks the structure (CSR index arrays, block shapes, W_Q's shape and dtype) and,
when asked, the data (finite values, unit rows for "cosine", column indices in range).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from softdb.engine import _keys
from softdb.store import _arrays

__all__ = ["key_files", "load_keys", "query_projection"]


def _csr_files(prefix: str, k: Any) -> dict[str, np.ndarray]:
    return {
        f"{prefix}.data.npy": k.data,
        f"{prefix}.indices.npy": k.indices.astype(np.int32, copy=False),
        f"{prefix}.indptr.npy": k.indptr.astype(np.int32, copy=False),
    }


def key_files(
    keys: Any, block_weights: Sequence[float] | None, query_w: np.ndarray | None
) -> tuple[dict[str, np.ndarray], dict | None]:
    """The key arrays to write, by file name (in writing order), and the manifest's ``keys`` field.

    Parameters
    ----------
    keys : ndarray of shape (n, d), scipy CSR of shape (n, d), or Blocks
        The table's keys (:mod:`softdb.engine._keys` kinds).
    block_weights : sequence of float or None
        β of each block (block keys only).
    query_w : ndarray of shape (d_0, d_0) or None
        W_Q of the first query block (a fitted hybrid table), block keys only.
    """
    kind = _keys.kind_of(keys)
    if kind == "dense":
        return {"keys.npy": keys}, None
    if kind == "csr":
        return _csr_files("keys", keys), {"kind": "csr"}
    files: dict[str, np.ndarray] = {}
    blocks = []
    for i, b in enumerate(keys):
        bk = _keys.kind_of(b)
        files.update(_csr_files(f"keys.{i}", b) if bk == "csr" else {f"keys.{i}.npy": b})
        blocks.append({"kind": bk, "dim": int(b.shape[1])})
    meta = {"kind": "blocks", "blocks": blocks, "weights": [float(w) for w in block_weights or ()]}
    if query_w is not None:
        files["keys.query_projection.npy"] = np.asarray(query_w, np.float64)
        meta["query_projection"] = "keys.query_projection.npy"
    return files, meta


def _load_csr(folder: str, prefix: str, arrays: dict, n: int, dim: int, check: bool) -> Any:
    """A CSR matrix over the loaded (maybe memory-mapped) arrays, structure checked; no copy."""
    import scipy.sparse as sp

    data, indices, indptr = (arrays[f"{prefix}.{p}.npy"] for p in ("data", "indices", "indptr"))
    where = os.path.join(folder, f"{prefix}.*.npy")
    if (
        data.ndim != 1
        or indices.shape != data.shape
        or indptr.shape != (n + 1,)
        or indices.dtype.kind != "i"
        or indptr.dtype.kind != "i"
    ):
        raise ValueError(
            f"{where}: data {data.shape}, indices {indices.shape} {indices.dtype} and indptr "
            f"{indptr.shape} {indptr.dtype} do not form a CSR matrix of {n} rows; the folder is damaged"
        )
    if check:
        ip = np.asarray(indptr)  # (n + 1,)
        if ip[0] != 0 or ip[-1] != len(data) or (np.diff(ip) < 0).any():
            raise ValueError(f"{where}: indptr is not a valid row index; the table folder is corrupted")
        step = _arrays.CHECK_ROWS * 16
        for start in range(0, len(data), step):
            ind = np.asarray(indices[start : start + step])  # (c,)
            if ind.size and (ind.min() < 0 or ind.max() >= dim):
                raise ValueError(f"{where}: a column index is outside 0..{dim - 1}; the table folder is corrupted")
            if not np.isfinite(np.asarray(data[start : start + step])).all():
                raise ValueError(f"{where}: the data holds NaN or inf values; the table folder is corrupted")
    k = sp.csr_matrix((n, dim), dtype=data.dtype)
    k.data, k.indices, k.indptr = data, indices, indptr  # set directly: the constructor may copy
    k.has_sorted_indices = True  # saved canonical (scipy's sum_duplicates sorts)
    return k


def load_keys(folder: str, meta: dict | None, arrays: dict, m: dict, check: bool) -> Any:
    """The keys (dense array, CSR or Blocks) over the opened arrays; data checked when ``check``."""
    n = m["n"]
    if meta is None:
        keys = arrays["keys.npy"]
        if check:
            _arrays.check_rows(keys, os.path.join(folder, "keys.npy"), unit=m["metric"] == "cosine")
        return keys
    if meta["kind"] == "csr":
        return _load_csr(folder, "keys", arrays, n, m["dim"], check)
    parts = []
    for i, b in enumerate(meta["blocks"]):
        if b["kind"] == "csr":
            parts.append(_load_csr(folder, f"keys.{i}", arrays, n, b["dim"], check))
        else:
            a = arrays[f"keys.{i}.npy"]
            if a.shape != (n, b["dim"]):
                raise ValueError(f"{os.path.join(folder, f'keys.{i}.npy')} has shape {a.shape}, not {(n, b['dim'])}")
            if check:
                _arrays.check_rows(a, os.path.join(folder, f"keys.{i}.npy"), unit=False)
            parts.append(a)
    return _keys.Blocks(parts)


def query_projection(arrays: dict, meta: dict | None, folder: str) -> np.ndarray | None:
    """The (d_0, d_0) float64 W_Q of a block table's first query block, or None; checked."""
    if meta is None or not meta.get("query_projection"):
        return None
    w = np.asarray(arrays["keys.query_projection.npy"])  # (d_0, d_0)
    d0 = meta["blocks"][0]["dim"]
    if w.shape != (d0, d0) or w.dtype != np.float64 or not np.isfinite(w).all():
        raise ValueError(
            f"{os.path.join(folder, 'keys.query_projection.npy')} must be finite float64 "
            f"({d0}, {d0}), got {w.dtype} {w.shape}; the table folder is damaged"
        )
    return w
