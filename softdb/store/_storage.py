"""A table folder: its documented format, writing it atomically, opening it with every check.

Format (``format_version`` 1)
-----------------------------
A saved table is a folder that numpy alone can read::

    my_table/
        manifest.json          format, format_version, n, dim, value_dim, dtype,
                               metric, temperature (null = default), shared_kv,
                               files, ids, payloads, softdb_version, created,
                               optional projection and encoder, checksum
        keys.npy               (n, dim) float32 or float64; unit rows for "cosine"
        values.npy             (n, value_dim); absent when shared_kv (K = V)
        projection.<name>.npy  the projection's arrays, when the table has one
        encoder.<name>.npy     the text encoder's arrays (BM25: vocabulary, idf), if any

Sparse and block keys (manifest field ``keys``, absent for dense keys):

- ``{"kind": "csr"}``: the (n, dim) scipy CSR key matrix as three plain arrays,
  ``keys.data.npy`` (nnz,) float, ``keys.indices.npy`` (nnz,) int32 column of each
  entry and ``keys.indptr.npy`` (n + 1,) int32 row starts (``scipy.sparse.csr_matrix
  ((data, indices, indptr), shape=(n, dim))`` rebuilds it; no softdb needed);
- ``{"kind": "blocks", "blocks": [{"kind", "dim"}, …], "weights": [β_0, …]}``: block
  ``i`` is ``keys.<i>.npy`` (dense) or ``keys.<i>.data/indices/indptr.npy`` (CSR),
  ``dim`` is the sum of the blocks' widths, and an optional ``"query_projection"``
  names ``keys.query_projection.npy``, the (d_0, d_0) W_Q of the first query block.

``files`` maps each array file to its ``sha256``, ``bytes``, ``shape`` and
``dtype`` (numpy dtype string, e.g. ``"<f4"``). ``ids`` is a JSON list (ints
stay ints and strings stay strings); ``payloads`` is a JSON list or null.
``checksum`` is the sha256 of the canonical JSON of all other fields
(``json.dumps(m, sort_keys=True, separators=(",", ":"), ensure_ascii=True)``).
``projection`` is ``{"config": …, "arrays": {name: file}}`` and ``encoder`` is
``{"name": …}``, with ``"state"`` and ``"arrays"`` for an encoder whose fitted
state travels in the table (:class:`softdb.text.StatefulEncoder`).

Saves are atomic and loads see the old table or the new one, never a mix (the
protocol is in :mod:`softdb.store._atomic`). This layer knows folders, arrays and
manifests, not tables: :mod:`softdb.table._persist` turns a table state into the
fields and arrays written here, and back.

Limits: ``verify=False`` trusts the array data (a flipped data byte goes unnoticed).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from softdb._version import __version__
from softdb.store import _arrays, _keyfiles, _manifest
from softdb.store._arrays import NpyWriter
from softdb.store._atomic import fsync_dir, publish, reading

__all__ = ["NpyWriter", "StoredTable", "load_table", "now", "open_arrays", "publish", "save_table", "write_manifest"]


def now() -> str:
    """The ``created`` stamp of a manifest: UTC, ISO 8601, whole seconds."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# Old private names that softdb.distributed (_build, _shards) still reads here; new code uses
# softdb.store.now and softdb.store._atomic.fsync_dir.
_now = now
_fsync_dir = fsync_dir


def write_manifest(folder: str, manifest: dict) -> bytes:
    """Write ``manifest.json`` (with its checksum) into ``folder``, fsync it and the folder."""
    text = _manifest.dumps(manifest)
    with open(os.path.join(folder, "manifest.json"), "xb") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(folder)
    return text


def save_table(path: str | os.PathLike[str], fields: dict[str, Any], arrays: Sequence[tuple[str, Any]]) -> dict:
    """Write a table folder at ``path`` atomically: the array files, then the manifest.

    Parameters
    ----------
    path : str or PathLike
        The table folder. Its parent folder must exist. An existing file, or a
        non-empty folder that is not a softdb table, is never overwritten.
    fields : dict
        The manifest's fields, as :func:`softdb.store._manifest.build` takes them
        (without ``files``, ``version`` and ``created``, which are filled in here).
    arrays : sequence of (file name, ndarray)
        Written in this order, which is the order of the manifest's ``files``.

    Raises
    ------
    TypeError, ValueError
        A field JSON cannot store (before anything is written); ``path`` is a file
        or a foreign folder.
    FileNotFoundError
        The parent folder does not exist.

    Returns
    -------
    dict
        The manifest written (with ``files`` and ``checksum``).
    """
    manifest = _manifest.build(**fields, version=__version__, files={}, created="")  # raises before the disk

    def build(tmp: str) -> None:
        files: dict = {}
        for fname, arr in arrays:
            _arrays.write_npy(tmp, fname, arr, files)
        manifest.update(files=files, created=now())
        write_manifest(tmp, manifest)
        manifest["checksum"] = _manifest.checksum(manifest)

    publish(build, path)
    return manifest


@dataclass(frozen=True)
class StoredTable:
    """A table folder opened and checked: its manifest and arrays, keys rebuilt.

    Attributes
    ----------
    where : str
        The path of its ``manifest.json`` (what errors about its content start with).
    manifest : dict
        The parsed manifest.
    arrays : dict of str to ndarray
        Every listed file by name; keys and values memory-mapped when asked.
    keys : ndarray, scipy CSR or Blocks
        Of shape (n, dim).
    values : ndarray of shape (n, value_dim) or None
        None when ``shared_kv`` (K = V).
    query_w : ndarray of shape (d_0, d_0) or None
        The block keys' query projection W_Q, if saved.
    """

    where: str
    manifest: dict
    arrays: dict[str, np.ndarray]
    keys: Any
    values: np.ndarray | None
    query_w: np.ndarray | None


def _open(folder: str, *, mmap: bool, verify: bool) -> tuple[dict, dict[str, np.ndarray], Any]:
    """open_arrays, plus the keys it builds while checking them."""
    mpath = os.path.join(folder, "manifest.json")
    try:
        with open(mpath, "rb") as f:
            text = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{mpath} is missing; {folder} is not a complete softdb table") from None
    m = _manifest.loads(text, mpath, verify=verify)
    files = m["files"]
    arrays = {
        fname: _arrays.open_array(
            folder,
            fname,
            files[fname],
            verify=verify,
            mmap=mmap and (fname.startswith("keys.") or fname == "values.npy"),
        )
        for fname in files
    }  # the rest is small
    values = None if m["shared_kv"] else arrays["values.npy"]
    check = verify or not mmap
    keys = _keyfiles.load_keys(folder, m.get("keys"), arrays, m, check)  # every key file checked
    if check and values is not None:
        _arrays.check_rows(values, os.path.join(folder, "values.npy"), unit=False)
    return m, arrays, keys


def open_arrays(folder: str, *, mmap: bool, verify: bool) -> tuple[dict, dict[str, np.ndarray]]:
    """Check and open the manifest and array files of one table folder (no table state built).

    Returns the parsed manifest and ``{file name: array}``; keys and values are
    memory-mapped when ``mmap``. Every check of :func:`load_table` runs here, and
    every error names the file.
    """
    m, arrays, _ = _open(folder, mmap=mmap, verify=verify)
    return m, arrays


def load_table(path: str | os.PathLike[str], *, mmap: bool = False, verify: bool = True) -> StoredTable:
    """Open the table folder at ``path`` (or the copy a killed save left aside), every file checked.

    Parameters
    ----------
    path : str or PathLike
        The table folder.
    mmap : bool
        Memory-map keys and values read-only (``np.memmap``) instead of reading them.
    verify : bool
        Check the sha256 of the manifest and of every array file, and that the
        arrays are finite. ``verify=False`` skips reading the data (for huge
        memory-mapped tables) but still checks the format version, file sizes,
        and every header's shape and dtype against the manifest.

    Raises
    ------
    FileNotFoundError
        No table at ``path``, or a file the manifest lists is missing (named).
    ValueError
        An unknown format version, a checksum mismatch, a truncated file, a
        shape or dtype that disagrees with the manifest; the message names the file.
    """
    with reading(path) as folder:
        m, arrays, keys = _open(folder, mmap=mmap, verify=verify)
    mpath = os.path.join(folder, "manifest.json")
    try:
        query_w = _keyfiles.query_projection(arrays, m.get("keys"), folder)
    except ValueError as exc:
        raise ValueError(f"{mpath}: {exc}") from None
    values = None if m["shared_kv"] else arrays["values.npy"]
    return StoredTable(mpath, m, arrays, keys, values, query_w)
