"""On-disk caches: embeddings keyed by (model, text hash), and file digests.

Layout under :func:`cache_dir`::

    embeddings/<model-slug>-<fingerprint16>/shard-<uuid>.npz   one file per write
    digests/<key>.json                                          sha256 of big files

An embedding shard holds ``hashes`` (n, 32) uint8 (sha256 of each UTF-8 text),
``vectors`` (n, dim) float32 and ``checksum`` (32,) uint8, the sha256 of
``hashes.tobytes() + vectors.tobytes()``. The shards *are* the index: there is no
separate index file that could disagree with them. Every shard is written to a
temporary file and moved into place with :func:`os.replace`, so a crash leaves
either a whole shard or none. A shard that fails any check (unreadable, truncated,
wrong shape or dtype, checksum mismatch, non-finite or non-unit rows) is deleted
and its texts are encoded again; it is never returned.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import sys
import tempfile
import uuid
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["EmbeddingCache", "cache_dir", "file_sha256", "text_hashes"]

logger = logging.getLogger("softdb")

_COMPACT_AFTER = 32  # merge shards into one when a store holds more than this
_NORM_TOL = 1e-3


def cache_dir() -> Path:
    """Return softdb's cache directory (not created).

    ``$SOFTDB_CACHE_DIR`` if set; otherwise the platform convention:
    ``$XDG_CACHE_HOME/softdb`` or ``~/.cache/softdb`` on Linux,
    ``~/Library/Caches/softdb`` on macOS and ``%LOCALAPPDATA%\\softdb\\Cache`` on
    Windows.

    Returns
    -------
    Path

    Examples
    --------
    >>> from unittest import mock
    >>> with mock.patch.dict("os.environ", {"SOFTDB_CACHE_DIR": "/tmp/softdb-doc"}):
    ...     print(cache_dir().name)
    softdb-doc
    """
    env = os.environ.get("SOFTDB_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "softdb" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "softdb"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "softdb"


def text_hashes(texts: Sequence[str]) -> np.ndarray:
    """sha256 of each text's UTF-8 bytes, as an (n, 32) uint8 array.

    Examples
    --------
    >>> text_hashes(["a", "b"]).shape
    (2, 32)
    """
    joined = b"".join(hashlib.sha256(t.encode("utf-8", "surrogatepass")).digest() for t in texts)
    return np.frombuffer(joined, dtype=np.uint8).reshape(len(texts), 32)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def file_sha256(path: str | os.PathLike[str], *, root: Path | None = None) -> str:
    """sha256 hex digest of a file, remembered on disk by (path, size, mtime).

    The first call hashes the file and writes a small marker under
    ``<cache_dir>/digests``; later calls with the same path, size and modification
    time read the marker instead of re-hashing. Changing the file invalidates it.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / "f").write_bytes(b"abc") and None
    >>> file_sha256(d / "f", root=d)[:16]
    'ba7816bf8f01cfea'
    """
    p = Path(path).resolve()
    st = p.stat()
    ident = f"{p}|{st.st_size}|{st.st_mtime_ns}"
    marker = (root if root is not None else cache_dir()) / "digests"
    marker = marker / (hashlib.sha256(ident.encode()).hexdigest()[:32] + ".json")
    try:
        rec = json.loads(marker.read_text())
        if rec.get("ident") == ident and re.fullmatch(r"[0-9a-f]{64}", rec.get("sha256", "")):
            return rec["sha256"]
    except (OSError, ValueError, AttributeError):
        pass
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    try:
        _atomic_write_bytes(marker, json.dumps({"ident": ident, "sha256": digest}).encode())
    except OSError as exc:  # a read-only cache must not stop anything
        logger.warning("softdb: could not write digest marker %s: %s", marker, exc)
    return digest


def _checksum(hashes: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    h = hashlib.sha256(hashes.tobytes() + vectors.tobytes()).digest()
    return np.frombuffer(h, dtype=np.uint8)


class EmbeddingCache:
    """Per-model store of unit-norm float32 embeddings keyed by text sha256.

    Parameters
    ----------
    key : str
        Identifies the model *and* its weights, e.g. ``"<name>-<fingerprint>"``;
        sanitised into a directory name.
    dim : int
        Embedding width; shards of another width are discarded.
    root : path-like, optional
        Cache root; default :func:`cache_dir`, read when the cache is first used.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> c = EmbeddingCache("demo", 2, root=tempfile.mkdtemp())
    >>> c.put(["x"], np.array([[0.6, 0.8]], dtype=np.float32))
    >>> vecs, found = c.get(["x", "y"])
    >>> found.tolist(), vecs[0].tolist()
    ([True, False], [0.6000000238418579, 0.800000011920929])
    """

    def __init__(self, key: str, dim: int, *, root: str | os.PathLike[str] | None = None) -> None:
        self.key = key
        self.dim = int(dim)
        self._root = Path(root) if root is not None else None
        self._index: dict[bytes, tuple[str, int]] = {}  # text hash -> (shard name, row)
        self._shards: dict[str, np.ndarray] = {}  # shard name -> vectors (m, dim)

    @property
    def directory(self) -> Path:
        """The store's directory (created on first write)."""
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.key).strip("._")[:96] or "model"
        return (self._root if self._root is not None else cache_dir()) / "embeddings" / slug

    # -- reading ---------------------------------------------------------------------
    def _load_shard(self, path: Path) -> tuple[np.ndarray, np.ndarray] | None:
        try:
            with np.load(path, allow_pickle=False) as z:
                hashes, vectors, checksum = z["hashes"], z["vectors"], z["checksum"]
        except FileNotFoundError:
            return None  # removed by a concurrent compaction
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            self._discard(path, f"unreadable ({exc})")
            return None
        n = hashes.shape[0] if hashes.ndim == 2 else -1
        if hashes.dtype != np.uint8 or hashes.shape != (n, 32):
            self._discard(path, f"hashes have shape {hashes.shape}, dtype {hashes.dtype}")
            return None
        if vectors.dtype != np.float32 or vectors.shape != (n, self.dim):
            self._discard(path, f"vectors have shape {vectors.shape}, expected ({n}, {self.dim}) float32")
            return None
        if checksum.dtype != np.uint8 or not np.array_equal(checksum, _checksum(hashes, vectors)):
            self._discard(path, "checksum mismatch")
            return None
        norms = np.linalg.norm(vectors, axis=1)  # (n,)
        if not np.all(np.abs(norms - 1.0) < _NORM_TOL):  # also catches NaN
            self._discard(path, "rows are not finite unit vectors")
            return None
        return hashes, vectors

    def _discard(self, path: Path, why: str) -> None:
        logger.warning("softdb: discarding corrupt cache shard %s: %s", path, why)
        with contextlib.suppress(OSError):
            path.unlink()

    def _refresh(self) -> None:
        """Load shards written since the last call (by us or another process)."""
        try:
            names = sorted(p.name for p in self.directory.glob("shard-*.npz"))
        except OSError:
            return
        for name in names:
            if name in self._shards:
                continue
            loaded = self._load_shard(self.directory / name)
            if loaded is None:
                continue
            hashes, vectors = loaded
            self._shards[name] = vectors
            for row, h in enumerate(hashes):
                self._index[h.tobytes()] = (name, row)

    def get(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Look texts up.

        Returns
        -------
        vectors : ndarray of shape (n, dim), float32
            Cached rows; rows of missing texts are zero.
        found : ndarray of shape (n,), bool
        """
        self._refresh()
        keys = text_hashes(texts)  # (n, 32)
        return self.get_by_hash([k.tobytes() for k in keys])

    # -- writing ---------------------------------------------------------------------
    def put(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store unit-norm rows for texts as one new shard (atomic; errors only logged)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # (n, dim)
        if len(texts) == 0:
            return
        if vectors.shape != (len(texts), self.dim):
            raise ValueError(
                f"cache put needs vectors of shape ({len(texts)}, {self.dim}) but got "
                f"{vectors.shape}; this is a bug in the encoder, please report it"
            )
        hashes = text_hashes(texts)  # (n, 32)
        try:
            self._write(f"shard-{uuid.uuid4().hex}.npz", hashes, vectors)
            if len(list(self.directory.glob("shard-*.npz"))) > _COMPACT_AFTER:
                self.compact()
        except OSError as exc:
            logger.warning("softdb: could not write embedding cache in %s: %s", self.directory, exc)

    def _write(self, name: str, hashes: np.ndarray, vectors: np.ndarray) -> None:
        buf = io.BytesIO()
        np.savez(buf, hashes=hashes, vectors=vectors, checksum=_checksum(hashes, vectors))
        _atomic_write_bytes(self.directory / name, buf.getvalue())
        self._shards[name] = vectors
        for row, h in enumerate(hashes):
            self._index[h.tobytes()] = (name, row)

    def compact(self) -> None:
        """Merge all valid shards into one (written before the old ones are removed)."""
        self._refresh()
        if len(self._shards) <= 1:
            return
        keys = list(self._index)  # unique text hashes
        hashes = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32)
        vectors, _ = self.get_by_hash(keys)  # (n, dim)
        old = list(self._shards)
        self._index.clear()
        self._shards.clear()
        self._write(f"shard-{uuid.uuid4().hex}.npz", hashes, vectors)
        for name in old:
            with contextlib.suppress(OSError):
                (self.directory / name).unlink()

    def get_by_hash(self, keys: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`get` for precomputed 32-byte text hashes (no refresh)."""
        out = np.zeros((len(keys), self.dim), dtype=np.float32)  # (n, dim)
        found = np.zeros(len(keys), dtype=bool)  # (n,)
        by_shard: dict[str, tuple[list[int], list[int]]] = {}
        for i, k in enumerate(keys):
            hit = self._index.get(k)
            if hit is not None:
                dst, src = by_shard.setdefault(hit[0], ([], []))
                dst.append(i)
                src.append(hit[1])
        for name, (dst, src) in by_shard.items():
            out[dst] = self._shards[name][src]  # (len(dst), dim)
            found[dst] = True
        return out, found

    def clear(self) -> None:
        """Delete every shard of this store."""
        for p in self.directory.glob("shard-*.npz"):
            p.unlink(missing_ok=True)
        self._index.clear()
        self._shards.clear()
