"""Array files: ``.npy`` written while hashing, and read back only after checks.

Writing hashes every byte as it passes (no second read); reading checks the file's
size, sha256 (when verifying), and header against its manifest entry before any
array is built, and :func:`check_rows` refuses NaN/inf row by row chunk.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np

from softdb.store import _manifest

__all__ = ["CHECK_ROWS", "NpyWriter", "check_rows", "open_array", "write_npy"]

_BLOCK = 1 << 20  # bytes per read when hashing a file
CHECK_ROWS = 1 << 16  # rows per chunk when checking memory-mapped arrays


class _HashingWriter:
    """A write-only file object that hashes and counts what passes through."""

    def __init__(self, f: Any) -> None:
        self.f, self.sha, self.n = f, hashlib.sha256(), 0

    def write(self, b: Any) -> int:
        b = memoryview(b).cast("B")
        self.sha.update(b)
        self.n += len(b)
        return int(self.f.write(b))


def write_npy(folder: str, fname: str, arr: np.ndarray, files: dict) -> None:
    """Write ``arr`` to a new file ``folder/fname``, fsync it, and add its entry to ``files``."""
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
        self.f = open(os.path.join(folder, fname), "xb")  # noqa: SIM115 - closed by close(), the writer's end
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


def open_array(folder: str, fname: str, entry: dict, *, mmap: bool, verify: bool) -> np.ndarray:
    """Check one array file against its manifest entry, then load or map it."""
    fpath = os.path.join(folder, fname)
    try:
        f = open(fpath, "rb")  # noqa: SIM115 - a with block follows the except clause
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


def check_rows(arr: np.ndarray, fpath: str, unit: bool) -> None:
    """Refuse NaN/inf (and non-unit cosine keys), in chunks so memmaps stream."""
    for start in range(0, len(arr), CHECK_ROWS):
        a = np.asarray(arr[start : start + CHECK_ROWS])  # (c, d)
        if not np.isfinite(a).all():
            raise ValueError(f"{fpath} holds NaN or inf values; the table folder is corrupted")
        if unit and a.size:
            norms = np.sqrt(np.einsum("ij,ij->i", a, a, dtype=np.float64))  # (c,)
            if np.abs(norms - 1).max() > 1e-3:
                raise ValueError(f"{fpath}: metric is 'cosine' but its keys are not unit rows")
