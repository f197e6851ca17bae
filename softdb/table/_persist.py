"""A table state on disk: what :meth:`SoftTable.save` writes and :meth:`SoftTable.load` reads.

The folder format, the atomic save and the verified load are the store's
(:mod:`softdb.store`); this module only turns a :class:`TableState` into the
manifest fields and array files the store writes, and back. Each part of a table
asks its own object for its state: the projection (``Projection.get_state``) and a
text encoder with fitted state (:class:`softdb.text.StatefulEncoder`).

Limit: the projection is read apart from the rows snapshot, so do not save
while ``fit`` runs on the same table.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from softdb.store import load_table, save_table
from softdb.store._atomic import check_path
from softdb.store._keyfiles import key_files
from softdb.store._manifest import ARRAY_NAME
from softdb.table._state import TableState

__all__ = ["load_state", "save_state"]


def _projection_part(proj: Any) -> tuple[dict | None, dict[str, np.ndarray]]:
    """The manifest's ``projection`` field and the projection's arrays by name."""
    if proj is None:
        return None, {}
    config, arrays = proj.get_state()
    for name in arrays:
        if not ARRAY_NAME.match(str(name)):
            raise ValueError(f"projection array name {name!r} must be letters, digits and _")
    return {"config": config, "arrays": {k: f"projection.{k}.npy" for k in arrays}}, arrays


def _encoder_part(state: TableState) -> tuple[dict | None, dict[str, np.ndarray]]:
    """The manifest's ``encoder`` field and the encoder's state arrays by name."""
    enc = state.encoder
    if enc is None:
        return ({"name": state.encoder_name} if state.encoder_name else None), {}
    from softdb.text._encoders import StatefulEncoder

    encoder: dict[str, Any] = {"name": getattr(enc, "name", None)}
    if getattr(enc, "version", None) is not None:
        encoder["version"] = enc.version
    arrays: dict[str, np.ndarray] = {}
    if isinstance(enc, StatefulEncoder):  # BM25, hybrid: vocabulary and idf travel in the table
        encoder["state"], arrays = enc.get_state()
        encoder["arrays"] = {k: f"encoder.{k}.npy" for k in arrays}
    return encoder, arrays


def save_state(state: TableState, path: str | os.PathLike[str]) -> None:
    """Save a table state to the folder ``path`` atomically (format: :mod:`softdb.store._storage`).

    A state is one consistent version: a save running while other threads add or
    remove rows writes the version it was given. If ``path`` already holds a table it
    is replaced; after a crash at any moment ``path`` loads as the old table
    or the new one, never a mix.

    Parameters
    ----------
    state : TableState
        ``table._state`` (what :meth:`SoftTable.save` passes).
    path : str or PathLike
        The table folder. Its parent folder must exist. An existing file, or a
        non-empty folder that is not a softdb table, is never overwritten.

    Raises
    ------
    TypeError
        A payload (or projection config) JSON cannot store; the message names
        the row and the type. Nothing is written.
    ValueError
        ``path`` is a file or a folder that is not a table.
    FileNotFoundError
        The parent folder does not exist.

    Examples
    --------
    >>> import tempfile, os
    >>> import numpy as np
    >>> from softdb import SoftTable
    >>> t = SoftTable(np.eye(3, dtype=np.float32), ids=["a", "b", 7], payloads=["x", None, {"k": 1}])
    >>> folder = os.path.join(tempfile.mkdtemp(), "t")
    >>> save_state(t._state, folder)
    >>> sorted(os.listdir(folder))
    ['keys.npy', 'manifest.json']
    >>> load_state(folder).rows.ids
    ('a', 'b', 7)
    """
    rows = state.rows  # one version: add/remove swap it whole, never mutate it
    check_path(path)  # a bad path fails before any work
    proj, proj_arrays = _projection_part(state.projection)
    encoder, enc_arrays = _encoder_part(state)
    key_arrays, key_meta = key_files(rows.keys, state.block_weights, state.query_w)
    fields = dict(
        n=len(rows.ids),
        dim=state.dim,
        value_dim=state.value_dim,
        dtype=state.dtype,
        keys=key_meta,
        metric=state.metric,
        temperature=state.temperature,
        shared_kv=state.shared_kv,
        ids=rows.ids,
        payloads=rows.payloads,
        projection=proj,
        encoder=encoder,
    )
    arrays = [
        *key_arrays.items(),
        *((f"encoder.{k}.npy", np.asarray(a)) for k, a in enc_arrays.items()),
        *([] if state.shared_kv else [("values.npy", rows.values)]),
        *((f"projection.{k}.npy", np.asarray(a)) for k, a in proj_arrays.items()),
    ]
    save_table(path, fields, arrays)


def load_state(path: str | os.PathLike[str], *, mmap: bool = False, verify: bool = True) -> TableState:
    """Load the state of a table saved by :func:`save_state` (:meth:`SoftTable.load` wraps it).

    Parameters
    ----------
    path : str or PathLike
        The table folder.
    mmap : bool
        Memory-map keys and values read-only (``np.memmap``) instead of reading
        them: lookups then stream the table through the kernel chunk by chunk,
        so a table larger than RAM still answers.
    verify : bool
        Check the sha256 of the manifest and of every array file, and that the
        arrays are finite. ``verify=False`` skips reading the data (for huge
        memory-mapped tables) but still checks the format version, file sizes,
        and every header's shape and dtype against the manifest.

    Returns
    -------
    TableState
        With the projection (if any) and the encoder's name; the encoder itself
        is rebuilt on first use.

    Raises
    ------
    FileNotFoundError
        No table at ``path``, or a file the manifest lists is missing (named).
    ValueError
        An unknown format version, a checksum mismatch, a truncated file, a
        shape or dtype that disagrees with the manifest; the message names the file.

    Examples
    --------
    >>> import tempfile, os
    >>> import numpy as np
    >>> from softdb import SoftTable
    >>> folder = os.path.join(tempfile.mkdtemp(), "t")
    >>> SoftTable(np.eye(2), [[1.0], [2.0]], ids=["1", 1]).save(folder)
    >>> st = load_state(folder, mmap=True)
    >>> st.rows.ids, type(st.rows.keys).__name__
    (('1', 1), 'memmap')
    """
    stored = load_table(path, mmap=mmap, verify=verify)
    m, arrays = stored.manifest, stored.arrays
    key_meta = m.get("keys")
    payloads = None if m["payloads"] is None else tuple(m["payloads"])
    try:
        state = TableState.build(
            stored.keys,
            stored.values,
            ids=tuple(m["ids"]),
            payloads=payloads,
            metric=m["metric"],
            temperature=m["temperature"],
            unit=True,
            block_weights=None if key_meta is None or key_meta["kind"] != "blocks" else key_meta["weights"],
            query_w=stored.query_w,
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{stored.where}: {exc}") from None
    proj = m.get("projection")
    if proj is not None:
        from softdb.learn._projection import Projection

        arrs = {name: arrays[fname] for name, fname in proj["arrays"].items()}
        state = state.with_(projection=Projection.from_state(proj["config"], arrs))
    enc = m.get("encoder")
    if isinstance(enc, dict):
        state = state.with_(encoder_name=enc.get("name"))
        if isinstance(enc.get("state"), dict):  # BM25 / hybrid: vocabulary and idf travel in the table
            state = state.with_(encoder=_encoder_from_state(enc, arrays, stored.where))
    return state


def _encoder_from_state(enc: dict, arrays: dict, mpath: str) -> Any:
    from softdb.text._stateful import encoder_from_state

    state = {name: arrays[fname] for name, fname in enc.get("arrays", {}).items()}
    try:
        return encoder_from_state(enc["state"], state)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{mpath}: the encoder state cannot be rebuilt ({exc})") from None
