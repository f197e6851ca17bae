"""The on-disk form of a sharded table: ordinary table folders plus ``shards.json``.

Layout (``format_version`` 1)::

    my_sharded/
        shards.json           format "softdb-sharded", format_version, generation, n, dim,
                              value_dim, dtype, metric, temperature, shared_kv, encoder,
                              shards: [{folder, n, checksum, key_norm_max}], checksum
        shard-0000.g0/        an ordinary table folder (``SoftTable.load`` reads it alone)
        shard-0001.g0/
        ...

Global row r of the table is local row ``r - offset_i`` of shard i, where the
offsets are the running sums of the shards' ``n``. A shard entry's ``checksum``
is the checksum field of that shard's own manifest, so ``shards.json`` names one
exact version of every shard. A rewritten shard (add / remove) goes to a new
folder ``shard-<i>.g<generation>``; ``shards.json`` is then replaced by an atomic
rename, so readers see the old set of folders or the new one, never a mix.
Building writes every array chunk by chunk (:class:`softdb.store._storage.NpyWriter`),
so memory is one chunk, not the table.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from softdb.store import _manifest
from softdb.store import _storage as storage

__all__ = [
    "FILE",
    "Layout",
    "ShardRef",
    "Version",
    "chunk_rows",
    "read_layout",
    "read_version",
    "write_layout",
    "write_shard",
]

FILE = "shards.json"
FORMAT = "softdb-sharded"
FORMAT_VERSION = 1
CHUNK_BYTES = 32 << 20  # bytes of keys per chunk while building


@dataclass(frozen=True)
class ShardRef:
    """One version of one shard: what a worker needs to load and check it."""

    index: int
    folder: str  # absolute path of the shard's table folder
    checksum: str  # the checksum field of its manifest.json
    n: int
    key_norm_max: float


@dataclass(frozen=True)
class Layout:
    """A parsed ``shards.json``: the table's metadata and its shards, in row order."""

    root: str
    generation: int
    meta: dict  # dim, value_dim, dtype, metric, temperature, shared_kv, encoder
    shards: tuple[ShardRef, ...]


def chunk_rows(dim: int, itemsize: int) -> int:
    """Rows per building chunk: about CHUNK_BYTES of keys."""
    return max(1, CHUNK_BYTES // max(1, dim * itemsize))


def shard_name(index: int, generation: int) -> str:
    return f"shard-{index:04d}.g{generation}"


def write_shard(
    folder: str,
    chunks: Iterator[tuple[np.ndarray, np.ndarray | None]],
    n: int,
    meta: dict,
    ids: Any,
    payloads: Any,
) -> tuple[str, float]:
    """Fill the empty ``folder`` with one table of ``n`` rows streamed from ``chunks``.

    ``chunks`` yields (keys (c, d), values (c, d_v) or None) already prepared
    (finite, unit rows for cosine). Returns (manifest checksum, max key norm).
    """
    from softdb import __version__

    manifest = _manifest.build(
        n=n,
        dim=meta["dim"],
        value_dim=meta["value_dim"],
        dtype=meta["dtype"],
        metric=meta["metric"],
        temperature=meta["temperature"],
        shared_kv=meta["shared_kv"],
        ids=ids,
        payloads=payloads,
        files={},
        version=__version__,
        created=storage._now(),
        encoder=meta.get("encoder"),
    )
    dt = np.dtype(meta["dtype"])
    kw = storage.NpyWriter(folder, "keys.npy", (n, meta["dim"]), dt)
    vw = None if meta["shared_kv"] else storage.NpyWriter(folder, "values.npy", (n, meta["value_dim"]), dt)
    norm_max = 0.0
    for k, v in chunks:
        kw.write(k)
        if vw is not None:
            vw.write(cast(np.ndarray, v))  # separate values: every chunk has them
        if len(k):
            norm_max = max(norm_max, float(np.sqrt(np.einsum("ij,ij->i", k, k, dtype=np.float64)).max()))
    files = {"keys.npy": kw.close()}
    if vw is not None:
        files["values.npy"] = vw.close()
    manifest["files"] = files
    text = storage.write_manifest(folder, manifest)
    return json.loads(text)["checksum"], norm_max


def layout_dict(generation: int, meta: dict, shards: list[dict]) -> dict:
    from softdb import __version__

    m = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "softdb_version": __version__,
        "created": storage._now(),
        "generation": int(generation),
        "n": int(sum(s["n"] for s in shards)),
    }
    m |= {k: meta[k] for k in ("dim", "value_dim", "metric", "temperature", "shared_kv")}
    m["dtype"] = np.dtype(meta["dtype"]).name
    m["encoder"] = meta.get("encoder")
    m["shards"] = shards
    return m


def write_layout(root: str, layout: dict, *, replace: bool) -> None:
    """Write ``shards.json`` into ``root``; with ``replace``, by an atomic rename over the old one."""
    text = _manifest.dumps(layout)
    if not replace:
        with open(os.path.join(root, FILE), "xb") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        return
    tmp = os.path.join(root, f".{FILE}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(root, FILE))
    storage._fsync_dir(root)


def _bad(where: str, what: str) -> ValueError:
    return ValueError(f"{where}: {what}; the sharded table is corrupted")


def read_layout(root: str, *, verify: bool = True) -> Layout:
    """Parse and check ``root/shards.json`` (format, version, checksum, every shard entry)."""
    root = os.path.abspath(os.fspath(root))
    where = os.path.join(root, FILE)
    try:
        with open(where, "rb") as f:
            text = f.read()
    except FileNotFoundError:
        if os.path.isfile(os.path.join(root, "manifest.json")):
            raise ValueError(
                f"{root} is an ordinary table, not a sharded one; hint: SoftTable.load "
                f"reads it, or ShardedTable.create writes a sharded copy"
            ) from None
        raise FileNotFoundError(
            f"no sharded softdb table at {root}: {where} is missing; hint: build one "
            "with ShardedTable.create or `softdb index ... --shards N`"
        ) from None
    try:
        m = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(where, f"not valid JSON ({exc})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise ValueError(f"{where} is not a softdb sharded-table manifest (its 'format' is not {FORMAT!r})")
    if m.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{where} has format_version {m.get('format_version')!r}, but this softdb reads "
            f"format_version {FORMAT_VERSION}; hint: upgrade softdb"
        )
    if verify and m.get("checksum") != _manifest.checksum(m):
        raise _bad(where, "its checksum does not match its content")
    shards = m.get("shards")
    if not isinstance(shards, list) or not shards:
        raise _bad(where, "'shards' must be a non-empty list")
    refs = []
    for i, s in enumerate(shards):
        ok = (
            isinstance(s, dict)
            and isinstance(s.get("folder"), str)
            and isinstance(s.get("n"), int)
            and isinstance(s.get("checksum"), str)
            and isinstance(s.get("key_norm_max"), int | float)
            and os.path.basename(s["folder"]) == s["folder"]
            and not s["folder"].startswith(".")
        )
        if not ok:
            raise _bad(where, f"shard {i}'s entry must hold a plain folder name, n, checksum and key_norm_max")
        refs.append(ShardRef(i, os.path.join(root, s["folder"]), s["checksum"], s["n"], float(s["key_norm_max"])))
    meta = {k: m.get(k) for k in ("dim", "value_dim", "dtype", "metric", "temperature", "shared_kv", "encoder")}
    if sum(r.n for r in refs) != m.get("n"):
        raise _bad(where, f"n={m.get('n')!r} but its shards hold {sum(r.n for r in refs)} rows")
    return Layout(root, int(m.get("generation", 0)), meta, tuple(refs))


def shard_manifest(ref: ShardRef, *, verify: bool) -> dict:
    """Read and check one shard's manifest.json against its entry in shards.json."""
    mpath = os.path.join(ref.folder, "manifest.json")
    try:
        with open(mpath, "rb") as f:
            text = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"shard {ref.index}: {mpath} is missing (shards.json lists "
            f"{os.path.basename(ref.folder)}); the sharded table is incomplete"
        ) from None
    try:
        m = _manifest.loads(text, mpath, verify=verify)
    except ValueError as exc:
        raise ValueError(f"shard {ref.index}: {exc}") from None
    check_version(ref, m.get("checksum"), m.get("n"))
    return m


def check_version(ref: ShardRef, checksum: Any, n: Any) -> None:
    if checksum != ref.checksum or n != ref.n:
        raise ValueError(
            f"shard {ref.index}: {ref.folder} holds a different version ({n} rows, checksum "
            f"{str(checksum)[:12]}…) than shards.json names ({ref.n} rows, {ref.checksum[:12]}…); "
            "the folder was changed outside softdb"
        )


def remove_unused(root: str, keep: set[str]) -> None:
    """Delete shard folders of ``root`` that no kept generation names (after a rewrite)."""
    for name in os.listdir(root):
        if name.startswith("shard-") and name not in keep and os.path.isdir(os.path.join(root, name)):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


class Version:
    """One immutable version of the table: its shards, offsets, ids and payloads."""

    def __init__(self, layout: Layout, ids: list[np.ndarray], payloads: list[np.ndarray | None]) -> None:
        self.layout, self.ids, self.payloads = layout, ids, payloads
        self.offsets = np.concatenate([[0], np.cumsum([r.n for r in layout.shards])]).astype(np.int64)  # (p + 1,)
        self.n = int(self.offsets[-1])
        self._index: dict | None = None

    def index(self) -> dict:
        """id -> (shard, local row); built on first use (add / remove), O(n) Python objects."""
        if self._index is None:
            self._index = {}
            for s, ids in enumerate(self.ids):
                self._index.update(zip(ids.tolist(), zip([s] * len(ids), range(len(ids)))))
        return self._index

    def take(self, arrays: Sequence[np.ndarray | None], rows: np.ndarray) -> np.ndarray:
        """Per-shard ids (or payloads) of global ``rows`` (any shape); None where row is -1."""
        out = np.empty(rows.shape, object)
        shard = np.searchsorted(self.offsets, rows, side="right") - 1  # (...)  -1 stays below shard 0
        for s, arr in enumerate(arrays):
            sel = (rows >= 0) & (shard == s)
            if arr is not None and sel.any():
                out[sel] = arr[rows[sel] - self.offsets[s]].tolist()
        return out


def _objects(items: list) -> np.ndarray:
    out = np.empty(len(items), object)
    out[:] = items
    return out


def read_version(root: str, verify: bool) -> Version:
    layout = read_layout(root, verify=verify)
    ids, pays = [], []
    for ref in layout.shards:
        m = shard_manifest(ref, verify=verify)
        i = m["ids"]
        ids.append(np.array(i, np.int64) if all(type(x) is int for x in i) else _objects(i))
        pays.append(None if m["payloads"] is None else _objects(m["payloads"]))
    return Version(layout, ids, pays)
