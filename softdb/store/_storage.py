"""Saving and loading tables: a documented folder format and crash-safe saves.

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

Atomic save
-----------
:func:`save_state` writes one version of the rows, writes every file into a
fresh temporary folder ``.<name>.softdb-tmp-<pid>-<random>`` next to the
target (same file system), fsyncs each file and the folder, and then swaps
it in. A rename cannot replace a non-empty folder, so overwriting takes two
renames, each followed by an fsync of the parent folder:

1. rename the current table ``<name>`` aside to ``.<name>.softdb-old``;
2. rename the temporary folder to ``<name>``;
3. delete ``.<name>.softdb-old``.

Every folder that ever carries the name ``<name>`` or ``.<name>.softdb-old``
is complete, so the state on disk after a crash at any moment reads as:

- ``<name>`` exists: it is the table (the new one after step 2, else the old
  one); an ``.softdb-old`` folder beside it is garbage;
- ``<name>`` is missing but ``.<name>.softdb-old`` exists: the process died
  between steps 1 and 2, and the aside copy *is* the table (the old one).

:func:`load_state` follows these two rules, and the next save finishes or
discards whatever a killed save left behind, including temporary folders.
Saves and loads of tables in one parent folder are serialised by an advisory
``flock`` on that folder (exclusive to save, shared to load), so a load in
another thread or process never sees the in-between state of a live save.

Limits: the lock is POSIX ``flock`` (absent on Windows, unreliable on some
network file systems), so there concurrent saves to one path must be avoided;
``verify=False`` trusts the array data (a flipped data byte goes unnoticed);
the projection is read apart from the rows snapshot, so do not save while
``fit`` runs on the same table.
"""

from __future__ import annotations

import contextlib
import datetime
import glob
import hashlib
import os
import secrets
import shutil
from collections.abc import Iterator
from typing import Any

import numpy as np

from softdb._version import __version__
from softdb.store import _manifest
from softdb.table._state import TableState

__all__ = ["NpyWriter", "load_state", "open_arrays", "publish", "save_state", "write_manifest"]

_TMP = ".softdb-tmp-"
_OLD = ".softdb-old"
_BLOCK = 1 << 20
_CHECK_ROWS = 1 << 16  # rows per chunk when checking memory-mapped arrays


def _names(path: str | os.PathLike[str]) -> tuple[str, str, str]:
    """Return (target, parent, aside) as absolute paths."""
    target = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(target)
    if name in ("", ".", ".."):
        raise ValueError(f"path {os.fspath(path)!r} names no folder; hint: e.g. table.save('my_table')")
    return target, parent, os.path.join(parent, f".{name}{_OLD}")


@contextlib.contextmanager
def _locked(parent: str, *, exclusive: bool) -> Iterator[None]:
    """Advisory flock on the parent folder (no-op where flock is unavailable)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    try:
        fd = os.open(parent, os.O_RDONLY)
    except FileNotFoundError:
        raise FileNotFoundError(f"folder {parent} does not exist; hint: create it first (os.makedirs)") from None
    except OSError:  # pragma: no cover - e.g. no read permission: go on unlocked
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows cannot open folders
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _HashingWriter:
    """A write-only file object that hashes and counts what passes through."""

    def __init__(self, f: Any) -> None:
        self.f, self.sha, self.n = f, hashlib.sha256(), 0

    def write(self, b: Any) -> int:
        b = memoryview(b).cast("B")
        self.sha.update(b)
        self.n += len(b)
        return self.f.write(b)


def _write_npy(folder: str, fname: str, arr: np.ndarray, files: dict) -> None:
    with open(os.path.join(folder, fname), "xb") as f:
        w = _HashingWriter(f)
        np.lib.format.write_array(w, arr, allow_pickle=False)  # streams in chunks: memmaps stay cheap
        f.flush()
        os.fsync(f.fileno())
    files[fname] = _manifest.file_entry(w.sha.hexdigest(), w.n, arr)


class NpyWriter:
    """Write one ``.npy`` file of a known shape chunk by chunk, hashing as it goes.

    Memory is one chunk, not the array: the way to build a table folder larger
    than RAM (used by :mod:`softdb.distributed._table`). ``close()`` checks that every
    row arrived, fsyncs, and returns the file's manifest entry.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> w = NpyWriter(folder, "keys.npy", (3, 2), np.float32)
    >>> w.write(np.ones((2, 2), np.float32)); w.write(np.zeros((1, 2), np.float32))
    >>> w.close()["shape"], float(np.load(os.path.join(folder, "keys.npy")).sum())
    ([3, 2], 4.0)
    """

    def __init__(self, folder: str, fname: str, shape: tuple, dtype: Any) -> None:
        self.fname, self.shape, self.dtype = fname, tuple(int(s) for s in shape), np.dtype(dtype)
        self.rows = 0
        self.f = open(os.path.join(folder, fname), "xb")
        self.w = _HashingWriter(self.f)
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        np.lib.format.write_array_header_1_0(self.w, header)

    def write(self, chunk: np.ndarray) -> None:
        """Append rows ``chunk`` (c, *shape[1:]) of this file's dtype."""
        chunk = np.ascontiguousarray(chunk, dtype=self.dtype)
        if chunk.shape[1:] != self.shape[1:] or self.rows + len(chunk) > self.shape[0]:
            raise ValueError(
                f"{self.fname}: a chunk of shape {chunk.shape} does not fit the "
                f"{self.rows} of {self.shape} rows written so far"
            )
        self.w.write(chunk.data if chunk.size else b"")
        self.rows += len(chunk)

    def close(self) -> dict:
        """Finish the file (all rows must be written); return its manifest entry."""
        try:
            if self.rows != self.shape[0]:
                raise ValueError(f"{self.fname}: {self.rows} rows written, but its header says {self.shape[0]}")
            self.f.flush()
            os.fsync(self.f.fileno())
        finally:
            self.f.close()
        return _manifest.file_entry(self.w.sha.hexdigest(), self.w.n, self)  # self has .shape, .dtype


def write_manifest(folder: str, manifest: dict) -> bytes:
    """Write ``manifest.json`` (with its checksum) into ``folder``, fsync it and the folder."""
    text = _manifest.dumps(manifest)
    with open(os.path.join(folder, "manifest.json"), "xb") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(folder)
    return text


def publish(build: Any, path: str | os.PathLike[str]) -> None:
    """Atomically make ``path`` the folder that ``build(tmp)`` fills (the save protocol above).

    ``build`` receives a fresh temporary folder next to ``path`` and must
    write everything into it; on any error the temporary folder is removed and
    ``path`` is untouched. An existing table (or sharded table) at ``path`` is replaced.
    """
    target, parent, aside = _names(path)
    with _locked(parent, exclusive=True):
        if os.path.lexists(target) and not os.path.isdir(target):
            raise ValueError(f"cannot save to {target}: it is a file, not a table folder")
        if (
            os.path.isdir(target)
            and os.listdir(target)
            and not (_is_table(target) or os.path.exists(os.path.join(target, "shards.json")))
        ):
            raise ValueError(
                f"cannot save to {target}: it is a non-empty folder that is not a softdb table, "
                "and saving would replace it; hint: choose a new path"
            )
        for stale in glob.glob(glob.escape(os.path.join(parent, f".{os.path.basename(target)}{_TMP}")) + "*"):
            shutil.rmtree(stale, ignore_errors=True)  # left by a killed save: we hold the lock
        tmp = os.path.join(parent, f".{os.path.basename(target)}{_TMP}{os.getpid()}-{secrets.token_hex(4)}")
        os.mkdir(tmp)
        try:
            build(tmp)
            _fsync_dir(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _swap_in(tmp, target, parent, aside)


def _is_table(folder: str) -> bool:
    """A softdb table, or the damaged remains of one: safe for save to replace."""
    names = os.listdir(folder)
    if "manifest.json" not in names:
        return False
    if all(n == "manifest.json" or _manifest._FILE_NAME.match(n) for n in names):
        return True  # only table files (maybe a damaged manifest)
    try:
        with open(os.path.join(folder, "manifest.json"), "rb") as f:
            return b'"' + _manifest.FORMAT.encode() + b'"' in f.read(4096)
    except OSError:
        return False


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def save_state(state: TableState, path: str | os.PathLike[str]) -> None:
    """Save a table state to the folder ``path`` atomically (see the module docstring).

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
    _names(path)  # a bad path fails before any work
    proj_obj = state.projection
    proj_arrays: dict[str, np.ndarray] = {}
    proj = None
    if proj_obj is not None:
        config, proj_arrays = proj_obj.get_state()
        for name in proj_arrays:
            if not _manifest._ARRAY_NAME.match(str(name)):
                raise ValueError(f"projection array name {name!r} must be letters, digits and _")
        proj = {"config": config, "arrays": {k: f"projection.{k}.npy" for k in proj_arrays}}
    enc = state.encoder
    encoder = None
    enc_arrays: dict[str, np.ndarray] = {}
    if enc is not None:
        encoder = {"name": getattr(enc, "name", None)}
        if getattr(enc, "version", None) is not None:
            encoder["version"] = enc.version
        enc_state = _encoder_state(enc)
        if enc_state is not None:
            encoder["state"], enc_arrays = enc_state
            encoder["arrays"] = {k: f"encoder.{k}.npy" for k in enc_arrays}
    elif state.encoder_name:
        encoder = {"name": state.encoder_name}
    key_arrays, key_meta = _key_files(state, rows.keys)
    meta = dict(
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
        version=__version__,
        projection=proj,
        encoder=encoder,
    )
    manifest = _manifest.build(**meta, files={}, created="")  # raises before touching the disk

    def build(tmp: str) -> None:
        files: dict = {}
        for fname, arr in key_arrays.items():
            _write_npy(tmp, fname, arr, files)
        for name, arr in enc_arrays.items():
            _write_npy(tmp, f"encoder.{name}.npy", np.asarray(arr), files)
        if not state.shared_kv:
            _write_npy(tmp, "values.npy", rows.values, files)
        for name, arr in proj_arrays.items():
            _write_npy(tmp, f"projection.{name}.npy", np.asarray(arr), files)
        manifest.update(files=files, created=_now())
        write_manifest(tmp, manifest)

    publish(build, path)


def _encoder_state(enc: Any) -> tuple[dict, dict[str, np.ndarray]] | None:
    """Config and arrays of an encoder that has fitted state (BM25, hybrid), else None."""
    from softdb.text._bm25 import BM25Encoder
    from softdb.text._hybrid import HybridEncoder

    if isinstance(enc, BM25Encoder):
        return enc.get_state()
    if isinstance(enc, HybridEncoder):
        config, arrays = enc.sparse.get_state()
        return {"kind": "hybrid", "dense": enc.dense.name, "weight": enc.weight, "sparse": config}, arrays
    return None


def _csr_files(prefix: str, k: Any) -> dict[str, np.ndarray]:
    return {
        f"{prefix}.data.npy": k.data,
        f"{prefix}.indices.npy": k.indices.astype(np.int32, copy=False),
        f"{prefix}.indptr.npy": k.indptr.astype(np.int32, copy=False),
    }


def _key_files(state: Any, keys: Any) -> tuple[dict[str, np.ndarray], dict | None]:
    """The key arrays to write, by file name, and the manifest's ``keys`` field."""
    from softdb.engine import _keys

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
    meta = {"kind": "blocks", "blocks": blocks, "weights": [float(w) for w in state.block_weights]}
    if state.query_w is not None:
        files["keys.query_projection.npy"] = np.asarray(state.query_w, np.float64)
        meta["query_projection"] = "keys.query_projection.npy"
    return files, meta


def _swap_in(tmp: str, target: str, parent: str, aside: str) -> None:
    """Steps 1-3 of the module docstring; ``tmp`` is complete and synced."""
    if os.path.isdir(target):
        if os.path.lexists(aside):
            shutil.rmtree(aside)  # garbage from an earlier killed save: target is the table
        os.rename(target, aside)  # step 1
        _fsync_dir(parent)
    try:
        os.rename(tmp, target)  # step 2
    except BaseException:
        if os.path.isdir(aside) and not os.path.lexists(target):
            os.rename(aside, target)  # roll back
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(parent)
    shutil.rmtree(aside, ignore_errors=True)  # step 3 (or the old table a killed save left aside)


# ------------------------------------------------------------------- loading
def _open_array(folder: str, fname: str, entry: dict, *, mmap: bool, verify: bool) -> np.ndarray:
    """Check one array file against its manifest entry, then load or map it."""
    fpath = os.path.join(folder, fname)
    try:
        f = open(fpath, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"table file {fpath} is missing (manifest.json lists it); the table folder is incomplete"
        ) from None
    with f:
        size = os.fstat(f.fileno()).st_size
        if size != entry["bytes"]:
            raise ValueError(
                f"{fpath} has {size} bytes but manifest.json says {entry['bytes']}; the file is truncated or damaged"
            )
        if verify:
            sha = hashlib.sha256()
            while block := f.read(_BLOCK):
                sha.update(block)
            if sha.hexdigest() != entry["sha256"]:
                raise ValueError(f"{fpath} is corrupted: its sha256 does not match manifest.json")
            f.seek(0)
        try:
            major, minor = np.lib.format.read_magic(f)
            if (major, minor) == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            offset = f.tell()
        except Exception as exc:  # noqa: BLE001 - any damaged header is a ValueError naming the file
            raise ValueError(f"{fpath} is not a valid .npy file ({exc})") from None
        _manifest.check_header(fpath, entry, shape, dtype)
        if offset + int(np.prod(shape)) * dtype.itemsize != size:
            raise ValueError(f"{fpath}: its header and its size disagree; the file is damaged")
        if mmap:
            return np.memmap(f, dtype=dtype, mode="r", shape=shape, order="F" if fortran else "C", offset=offset)
        arr = np.fromfile(f, dtype=dtype, count=int(np.prod(shape)))
        return arr.reshape(shape, order="F" if fortran else "C")


def _check_rows(arr: np.ndarray, fpath: str, unit: bool) -> None:
    """Refuse NaN/inf (and non-unit cosine keys), in chunks so memmaps stream."""
    for start in range(0, len(arr), _CHECK_ROWS):
        a = np.asarray(arr[start : start + _CHECK_ROWS])  # (c, d)
        if not np.isfinite(a).all():
            raise ValueError(f"{fpath} holds NaN or inf values; the table folder is corrupted")
        if unit and a.size:
            norms = np.sqrt(np.einsum("ij,ij->i", a, a, dtype=np.float64))  # (c,)
            if np.abs(norms - 1).max() > 1e-3:
                raise ValueError(f"{fpath}: metric is 'cosine' but its keys are not unit rows")


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
    target, parent, aside = _names(path)
    with _locked(parent, exclusive=False):
        folder = target
        if not os.path.isdir(target):
            if os.path.lexists(target):
                raise ValueError(f"{target} is a file, not a table folder")
            if not os.path.isdir(aside):
                raise FileNotFoundError(f"no softdb table at {target}: the folder does not exist")
            folder = aside  # a save was killed between its two renames: this is the table
        return _load_folder(folder, mmap=mmap, verify=verify)


def open_arrays(folder: str, *, mmap: bool, verify: bool) -> tuple[dict, dict[str, np.ndarray]]:
    """Check and open the manifest and array files of one table folder (no table state built).

    Returns the parsed manifest and ``{file name: array}``; keys and values are
    memory-mapped when ``mmap``. Every check of :func:`load_state` runs here, and
    every error names the file.
    """
    mpath = os.path.join(folder, "manifest.json")
    try:
        with open(mpath, "rb") as f:
            text = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{mpath} is missing; {folder} is not a complete softdb table") from None
    m = _manifest.loads(text, mpath, verify=verify)
    files = m["files"]
    arrays = {
        fname: _open_array(
            folder,
            fname,
            files[fname],
            verify=verify,
            mmap=mmap and (fname.startswith("keys.") or fname == "values.npy"),
        )
        for fname in files
    }  # the rest is small
    key_meta = m.get("keys")
    values = None if m["shared_kv"] else arrays["values.npy"]
    check = verify or not mmap
    _load_keys(folder, key_meta, arrays, m, check)  # every key file checked (dense rows, CSR structure)
    if check and values is not None:
        _check_rows(values, os.path.join(folder, "values.npy"), unit=False)
    return m, arrays


def _load_folder(folder: str, *, mmap: bool, verify: bool) -> TableState:
    mpath = os.path.join(folder, "manifest.json")
    m, arrays = open_arrays(folder, mmap=mmap, verify=verify)
    key_meta = m.get("keys")
    keys = _load_keys(folder, key_meta, arrays, m, False)  # checked by open_arrays
    values = None if m["shared_kv"] else arrays["values.npy"]
    payloads = None if m["payloads"] is None else tuple(m["payloads"])
    try:
        state = TableState.build(
            keys,
            values,
            ids=tuple(m["ids"]),
            payloads=payloads,
            metric=m["metric"],
            temperature=m["temperature"],
            unit=True,
            block_weights=None if key_meta is None or key_meta["kind"] != "blocks" else key_meta["weights"],
            query_w=_query_projection(arrays, key_meta, folder),
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{mpath}: {exc}") from None
    proj = m.get("projection")
    if proj is not None:
        from softdb.learn._projection import Projection

        arrs = {name: arrays[fname] for name, fname in proj["arrays"].items()}
        state = state.with_(projection=Projection.from_state(proj["config"], arrs))
    enc = m.get("encoder")
    if isinstance(enc, dict):
        state = state.with_(encoder_name=enc.get("name"))
        if isinstance(enc.get("state"), dict):  # BM25 / hybrid: vocabulary and idf travel in the table
            state = state.with_(encoder=_encoder_from_state(enc, arrays, mpath))
    return state


def _encoder_from_state(enc: dict, arrays: dict, mpath: str) -> Any:
    from softdb.text._bm25 import BM25Encoder

    state = {name: arrays[fname] for name, fname in enc.get("arrays", {}).items()}
    config = enc["state"]
    try:
        if config.get("kind") == "hybrid":
            from softdb.text import encoder_from_name
            from softdb.text._hybrid import HybridEncoder

            return HybridEncoder(
                encoder_from_name(config["dense"]),
                BM25Encoder.from_state(config["sparse"], state),
                weight=config["weight"],
            )
        return BM25Encoder.from_state(config, state)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{mpath}: the encoder state cannot be rebuilt ({exc})") from None


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
        ip = np.asarray(indptr)
        if ip[0] != 0 or ip[-1] != len(data) or (np.diff(ip) < 0).any():
            raise ValueError(f"{where}: indptr is not a valid row index; the table folder is corrupted")
        for start in range(0, len(data), _CHECK_ROWS * 16):
            ind = np.asarray(indices[start : start + _CHECK_ROWS * 16])
            if ind.size and (ind.min() < 0 or ind.max() >= dim):
                raise ValueError(f"{where}: a column index is outside 0..{dim - 1}; the table folder is corrupted")
            if not np.isfinite(np.asarray(data[start : start + _CHECK_ROWS * 16])).all():
                raise ValueError(f"{where}: the data holds NaN or inf values; the table folder is corrupted")
    k = sp.csr_matrix((n, dim), dtype=data.dtype)
    k.data, k.indices, k.indptr = data, indices, indptr  # set directly: the constructor may copy
    k.has_sorted_indices = True  # saved canonical (scipy's sum_duplicates sorts)
    return k


def _query_projection(arrays: dict, meta: dict | None, folder: str) -> np.ndarray | None:
    if not (meta or {}).get("query_projection"):
        return None
    w = np.asarray(arrays["keys.query_projection.npy"])
    d0 = meta["blocks"][0]["dim"]
    if w.shape != (d0, d0) or w.dtype != np.float64 or not np.isfinite(w).all():
        raise ValueError(
            f"{os.path.join(folder, 'keys.query_projection.npy')} must be finite float64 "
            f"({d0}, {d0}), got {w.dtype} {w.shape}; the table folder is damaged"
        )
    return w


def _load_keys(folder: str, meta: dict | None, arrays: dict, m: dict, check: bool) -> Any:
    from softdb.engine import _keys

    n = m["n"]
    if meta is None:
        keys = arrays["keys.npy"]
        if check:
            _check_rows(keys, os.path.join(folder, "keys.npy"), unit=m["metric"] == "cosine")
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
                _check_rows(a, os.path.join(folder, f"keys.{i}.npy"), unit=False)
            parts.append(a)
    return _keys.Blocks(parts)
