"""Writing sharded tables: create one from a table or (memory-mapped) arrays, rewrite a shard.

Rows are validated and prepared (finite; unit rows for "cosine") one chunk at a
time with the table's own checks and arithmetic (``_checks.as_matrix``,
``_tablestate.unit_rows``), so they come out exactly as one SoftTable of all rows
would hold them, and memory stays one chunk.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from softdb import _checks
from softdb.distributed import _shards
from softdb.distributed._shards import ShardRef
from softdb.store import _storage as storage
from softdb.table._state import unit_rows

__all__ = ["create", "prepare_rows", "rewrite_shard"]


def prepare_rows(keys: Any, values: Any, metric: str, dtype: np.dtype | None, where: str) -> tuple:
    """Validated (keys, values or None) of one chunk, exactly as a SoftTable of it holds them."""
    try:
        k = _checks.as_matrix(keys, "keys", dtype=dtype)
        v = None if values is None else _checks.as_matrix(values, "values", dtype=k.dtype)
        if v is not None:
            _checks.check_same_rows(len(k), "keys", len(v), "values")
        if metric == "cosine":
            k = unit_rows(k, "keys", k.dtype)  # (c, d)  the arithmetic of TableState.build
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{where}: {exc}") from None
    return k, v


def _as_source(x: Any, name: str) -> Any:
    """An (n, d) array-like that is sliced chunk by chunk (memory maps stay on disk)."""
    if isinstance(x, np.ndarray):
        arr = x
    else:
        arr = _checks.as_matrix(x, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, d), got shape {arr.shape}; hint: reshape to rows of vectors")
    return arr


def create(
    path: Any, source: Any, values: Any, *, ids: Any, payloads: Any, shards: int, metric: str, temperature: float | None
) -> None:
    """Write a sharded table at ``path`` (see :meth:`softdb.distributed.ShardedTable.create`)."""
    from softdb.table._table import SoftTable

    if not isinstance(shards, int) or isinstance(shards, bool) or shards < 1:
        raise ValueError(f"shards must be an integer >= 1, got {shards!r}")
    encoder = None
    vals: Any  # (n, d_v), or None: the values are the keys
    if isinstance(source, SoftTable):
        t = source
        if values is not None or getattr(t, "projection", None) is not None:
            raise ValueError(
                "ShardedTable.create takes a SoftTable without values= and without a "
                "projection; hint: pass the table alone (projected tables are not sharded yet)"
            )
        keys = t.keys
        vals = t.values
        shared = vals.shape == keys.shape and np.may_share_memory(keys, vals)
        vals = None if shared else vals
        metric, temperature = t.metric, t.temperature
        ids = t.ids if ids is None else ids
        payloads = t.payloads if payloads is None else payloads
        if t.encoder is not None and getattr(t.encoder, "name", None):
            encoder = {"name": t.encoder.name}
        dtype, prepared = t.dtype, True
    else:
        keys = _as_source(source, "keys")
        vals = None if values is None else _as_source(values, "values")
        metric = _checks.as_metric(metric)
        temperature = None if temperature is None else _checks.as_temperature(temperature)
        dtype = np.dtype(np.float64 if keys.dtype == np.float64 else np.float32)
        prepared = False
        if vals is not None:
            _checks.check_same_rows(len(keys), "keys", len(vals), "values")
    n, dim = keys.shape
    if n < shards:
        raise ValueError(f"shards={shards} but there are only {n} rows; hint: use at most {max(n, 1)} shards")
    ids = None if ids is None else _checks.as_ids(ids, n)
    payloads = _checks.as_payloads(payloads, n)
    value_dim = dim if vals is None else vals.shape[1]
    meta = {
        "dim": dim,
        "value_dim": value_dim,
        "dtype": dtype,
        "metric": metric,
        "temperature": temperature,
        "shared_kv": vals is None,
        "encoder": encoder,
    }
    bounds = np.linspace(0, n, shards + 1).round().astype(np.int64)  # (shards + 1,)  contiguous row ranges
    step = _shards.chunk_rows(dim, dtype.itemsize)

    def chunks(a: int, b: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        for s in range(a, b, step):
            e = min(b, s + step)
            kc, vc = keys[s:e], None if vals is None else vals[s:e]
            if prepared:
                yield np.asarray(kc), None if vc is None else np.asarray(vc)
            else:
                yield prepare_rows(kc, vc, metric, dtype, f"rows {s}..{e - 1}")

    def build(tmp: str) -> None:
        entries = []
        for i in range(shards):
            a, b = int(bounds[i]), int(bounds[i + 1])
            name = _shards.shard_name(i, 0)
            os.mkdir(os.path.join(tmp, name))
            sid = range(a, b) if ids is None else ids[a:b]
            pay = None if payloads is None else payloads[a:b]
            checksum, norm = _shards.write_shard(os.path.join(tmp, name), chunks(a, b), b - a, meta, sid, pay)
            entries.append({"folder": name, "n": b - a, "checksum": checksum, "key_norm_max": norm})
        _shards.write_layout(tmp, _shards.layout_dict(0, meta, entries), replace=False)

    storage.publish(build, path)


def rewrite_shard(
    ref: ShardRef,
    generation: int,
    meta: dict,
    keep: np.ndarray | None,
    new: tuple | None,
    ids: list,
    payloads: list | None,
) -> dict:
    """Write a new version of shard ``ref``: its rows where ``keep``, then ``new`` (keys, values).

    Returns the shard's new ``shards.json`` entry. The old version is read with
    full verification, so a damaged shard is never copied into a fresh checksum.
    """
    root = os.path.dirname(ref.folder)
    name = _shards.shard_name(ref.index, generation)
    tmp = os.path.join(root, f".{name}.tmp-{os.getpid()}")
    m, arrays = storage.open_arrays(ref.folder, mmap=True, verify=True)
    _shards.check_version(ref, m.get("checksum"), m.get("n"))
    old_k = arrays["keys.npy"]
    old_v = None if meta["shared_kv"] else arrays["values.npy"]
    step = _shards.chunk_rows(meta["dim"], np.dtype(meta["dtype"]).itemsize)
    n = (len(old_k) if keep is None else int(keep.sum())) + (0 if new is None else len(new[0]))

    def chunks() -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        for s in range(0, len(old_k), step):
            e = min(len(old_k), s + step)
            sel = slice(None) if keep is None else keep[s:e]
            yield np.asarray(old_k[s:e])[sel], None if old_v is None else np.asarray(old_v[s:e])[sel]
        if new is not None:
            yield new

    if os.path.lexists(tmp):
        import shutil

        shutil.rmtree(tmp)
    os.mkdir(tmp)
    try:
        checksum, norm = _shards.write_shard(tmp, chunks(), n, meta, ids, payloads)
        os.rename(tmp, os.path.join(root, name))
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    storage._fsync_dir(root)
    return {"folder": name, "n": n, "checksum": checksum, "key_norm_max": norm}
