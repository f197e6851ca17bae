"""A table state on disk: what :meth:`SoftTable.save` writes and :meth:`SoftTable.load` reads.

The folder format (segment folders and a manifest: :mod:`softdb.store._segmented`, user
docs in ``docs/format.md``), the atomic incremental save and the verified load are the
store's (:mod:`softdb.store`); this module only turns a :class:`TableState` (its segments,
:mod:`softdb.table._segments`) into the fields, segment contents and arrays the store
writes, and back. Tables saved in format 1 (one folder of arrays) still load. Each part of a table
asks its own object for its state: the projection (``Projection.get_state``) and a
text encoder with fitted state (:class:`softdb.text.StatefulEncoder`).

Limit: the projection is read apart from the rows snapshot, so do not save
while ``fit`` runs on the same table.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from softdb import _checks
from softdb.store import load_table, save_table
from softdb.store._atomic import check_path
from softdb.store._keyfiles import key_files
from softdb.store._manifest import ARRAY_NAME, check_json_value
from softdb.store._segmented import SegmentOut, is_segmented, load_segmented, save_segmented, v1_segment_name
from softdb.table._compressed_files import adopt_loaded, compressed_part
from softdb.table._segments import Rows, Segment
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


def _rows_fields(state: TableState, n: int, key_meta: dict | None, ids: Any, payloads: Any) -> dict:
    """The manifest fields of some rows of ``state``, in the manifest's order (a segment's, or format 1's first)."""
    return dict(
        n=n,
        dim=state.dim,
        value_dim=state.value_dim,
        dtype=state.dtype,
        keys=key_meta,
        metric=state.metric,
        temperature=state.temperature,
        shared_kv=state.shared_kv,
        ids=ids,
        payloads=payloads,
    )


def _segment_out(view: Any, state: TableState) -> SegmentOut:
    """What the store needs to save one segment view (its arrays only if it must be written)."""
    seg = view.seg.seal(None).seg if view.growing else view.seg  # the growing rows so far, sealed

    def contents() -> tuple[dict, list]:
        key_arrays, key_meta = key_files(seg.keys, state.block_weights, None)
        ids, pays = tuple(seg.ids.tolist()), None if seg.payloads is None else tuple(seg.payloads.tolist())
        fields = _rows_fields(state, seg.n, key_meta, ids, pays)
        arrays = [*key_arrays.items(), *([] if state.shared_kv else [("values.npy", seg.values)])]
        return fields, arrays

    return SegmentOut(seg.saved, contents, view.live, seg.n, segment=seg)


def _is_v2(path: str | os.PathLike[str]) -> bool:
    return os.path.isdir(path) and is_segmented(path)


def _save_v1(state: TableState, path: str | os.PathLike[str]) -> list[tuple[str, int]]:
    """Format 1: one folder of arrays (a table of one segment with nothing removed)."""
    rows = state.rows
    proj, proj_arrays = _projection_part(state.projection)
    encoder, enc_arrays = _encoder_part(state)
    key_arrays, key_meta = key_files(rows.keys, state.block_weights, state.query_w)
    payloads = rows.payloads if state.has_payloads else None
    fields = {**_rows_fields(state, rows.n, key_meta, rows.ids, payloads), "projection": proj, "encoder": encoder}
    arrays = [
        *key_arrays.items(),
        *((f"encoder.{k}.npy", np.asarray(a)) for k, a in enc_arrays.items()),
        *([] if state.shared_kv else [("values.npy", rows.values)]),
        *((f"projection.{k}.npy", np.asarray(a)) for k, a in proj_arrays.items()),
    ]
    m = save_table(path, fields, arrays)
    rows.views[0].seg.saved = v1_segment_name(m)  # a later save of more segments adopts this folder
    return [*((f, e["bytes"]) for f, e in m["files"].items()), ("manifest.json", -1)]


def save_state(
    state: TableState, path: str | os.PathLike[str], *, compressed: tuple[str, Any] | None = None
) -> list[tuple[str, int]]:
    """Save a table state to the folder ``path``, writing only what the folder lacks (format: docs/format.md).

    A state is one consistent version: a save running while other threads add or
    remove rows writes the version it was given. Over a table saved before in the
    segment format, a save writes the new segments, the changed live bitmaps and the
    manifest, nothing else; anything else at ``path`` (nothing, a format-1 table) is
    replaced whole. After a crash at any moment ``path`` loads as the old table or
    the new one, never a mix (:mod:`softdb.store._segmented`).

    Parameters
    ----------
    state : TableState
        ``table._state`` (what :meth:`SoftTable.save` passes).
    path : str or PathLike
        The table folder. Its parent folder must exist. An existing file, or a
        non-empty folder that is not a softdb table, is never overwritten.

    Returns
    -------
    list of (name, bytes)
        The segment folders and files written, the manifest last.

    Raises
    ------
    TypeError
        A payload (or projection config) JSON cannot store; the message names
        the row and the type.
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
    >>> [name for name, _ in save_state(t._state, folder)]  # one segment, nothing removed: format 1
    ['keys.npy', 'manifest.json']
    >>> load_state(folder).rows.ids
    ('a', 'b', 7)
    >>> t.remove(["b"])
    >>> [name.split(".")[1][:4] for name, _ in save_state(t._state, folder)]  # its files adopted, no byte copied
    ['live', 'json']
    >>> load_state(folder).rows.ids
    ('a', 7)
    """
    rows = state.rows  # one version: writes swap it whole, never mutate it
    check_path(path)  # a bad path fails before any work
    one = rows.views[0]
    if len(rows.views) == 1 and one.live is None and not one.growing and not _is_v2(path) and compressed is None:
        return _save_v1(state, path)
    proj, proj_arrays = _projection_part(state.projection)
    encoder, enc_arrays = _encoder_part(state)
    _, key_meta = key_files(rows.template, state.block_weights, state.query_w)
    head_arrays: list[tuple[str, Any]] = []
    if proj is not None:
        proj["arrays"] = {k: f"projection.{k}" for k in proj_arrays}
        head_arrays += [(f"projection.{k}", np.asarray(a)) for k, a in proj_arrays.items()]
    if encoder is not None and "arrays" in encoder:
        encoder["arrays"] = {k: f"encoder.{k}" for k in enc_arrays}
        head_arrays += [(f"encoder.{k}", np.asarray(a)) for k, a in enc_arrays.items()]
    if state.query_w is not None and key_meta is not None:
        key_meta["query_projection"] = "keys.query_projection"
        head_arrays.append(("keys.query_projection", np.asarray(state.query_w, np.float64)))
    if proj is not None:
        check_json_value(proj["config"], "projection config")
    head = dict(
        n=rows.n,
        dim=state.dim,
        value_dim=state.value_dim,
        dtype=np.dtype(state.dtype).name,
        metric=state.metric,
        temperature=state.temperature,
        shared_kv=state.shared_kv,
        has_payloads=state.has_payloads,
        keys=key_meta,
        projection=proj,
        encoder=encoder,
    )
    if compressed is not None:  # (precision, one CompressedKeys per segment): softdb.table._compressed_files
        head["compressed"], c_arrays = compressed_part(*compressed)
        head_arrays += c_arrays
    outs = [_segment_out(v, state) for v in rows.views]
    written = save_segmented(path, head, head_arrays, outs)
    for o in outs:
        o.segment.saved = o.name
    return written


def load_state(path: str | os.PathLike[str], *, mmap: bool = False, verify: bool = True) -> TableState:
    """Load the state of a table saved by :func:`save_state` (or by softdb's format 1).

    Parameters
    ----------
    path : str or PathLike
        The table folder.
    mmap : bool
        Memory-map keys and values read-only (``np.memmap``) instead of reading
        them: lookups then stream the table through the kernel chunk by chunk,
        so a table larger than RAM still answers.
    verify : bool
        Check the sha256 of the manifests and of every array file, and that the
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
        No table at ``path``, or a file the manifest lists is missing (named, with its segment).
    ValueError
        An unknown format version, a checksum mismatch, a truncated file, a
        shape or dtype that disagrees with the manifest; the message names the segment and the file.

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
    if is_segmented(path):
        return _load_v2(path, mmap=mmap, verify=verify)
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
    return _with_parts(state, m, proj and {n: arrays[f] for n, f in proj["arrays"].items()}, arrays, stored.where)


def _with_parts(state: TableState, m: dict, proj_arrays: dict | None, enc_files: dict, where: str) -> TableState:
    """The projection and encoder recorded in manifest ``m`` added to ``state``."""
    proj = m.get("projection")
    if proj is not None:
        from softdb.learn._projection import Projection

        state = state.with_(projection=Projection.from_state(proj["config"], proj_arrays or {}))
    enc = m.get("encoder")
    if isinstance(enc, dict):
        state = state.with_(encoder_name=enc.get("name"))
        if isinstance(enc.get("state"), dict):  # BM25 / hybrid: vocabulary and idf travel in the table
            state = state.with_(encoder=_encoder_from_state(enc, enc_files, where))
    return state


def _load_v2(path: str | os.PathLike[str], *, mmap: bool, verify: bool) -> TableState:
    mpath, m, arrays, segs = load_segmented(path, mmap=mmap, verify=verify)
    views = []
    for s in segs:
        sm = s.manifest
        seg = Segment(s.keys, s.values, sm["ids"], sm["payloads"])
        seg.saved = s.name
        views.append(seg.view(s.live))
    try:
        if not views:
            raise ValueError("it lists no segment")
        shared = bool(m["shared_kv"])
        rows = Rows(views, shared)
        ids_seen = rows.n  # every live id once: a damaged table could repeat one across segments
        key_meta = m.get("keys")
        kind = "dense" if key_meta is None else key_meta["kind"]
        query_w = None
        if key_meta is not None and key_meta.get("query_projection"):
            query_w = np.asarray(arrays[key_meta["query_projection"]], np.float64)
        dim = int(m["dim"])
        state = TableState(
            rows,
            _checks.as_metric(m["metric"]),
            None if m["temperature"] is None else _checks.as_temperature(m["temperature"]),
            shared,
            bool(m.get("has_payloads", any(v.payloads is not None for v in views))),
            dim,
            int(m["value_dim"]),
            np.dtype(m["dtype"]),
            kind=kind,
            block_weights=None
            if key_meta is None or kind != "blocks"
            else tuple(float(w) for w in key_meta["weights"]),
            query_w=query_w,
        )
        width = max(int(v.keys.shape[1]) for v in views)  # a growing BM25 vocabulary: later segments are wider
        if width != dim or ids_seen != m["n"]:
            raise ValueError(f"its segments hold {ids_seen} live rows of width {width}, not n={m['n']}, dim={dim}")
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{mpath}: {exc}") from None
    adopt_loaded(views, m.get("compressed"), arrays, mpath)
    proj = m.get("projection")
    proj_arrays = None if proj is None else {name: arrays[stem] for name, stem in proj["arrays"].items()}
    enc = m.get("encoder")
    enc_files = {}
    if isinstance(enc, dict) and isinstance(enc.get("arrays"), dict):
        enc_files = {stem: arrays[stem] for stem in enc["arrays"].values()}
    return _with_parts(state, m, proj_arrays, enc_files, mpath)


def _encoder_from_state(enc: dict, arrays: dict, mpath: str) -> Any:
    from softdb.text._stateful import encoder_from_state

    state = {name: arrays[fname] for name, fname in enc.get("arrays", {}).items()}
    try:
        return encoder_from_state(enc["state"], state)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{mpath}: the encoder state cannot be rebuilt ({exc})") from None
