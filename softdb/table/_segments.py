"""A table's rows as segments: sealed immutable segments, one growing segment, deletion bitmaps.

As in Lucene, Milvus and LanceDB, a table's rows are

- **sealed segments**: immutable arrays (keys, values, ids, payloads; maybe memory maps), each
  with its own id → row dict, built once when the segment is made;
- **one growing segment** that takes appends into buffers with spare capacity (amortised
  O(rows added) per ``add``); it seals when it reaches :data:`SEAL_ROWS` rows;
- per segment a **live bitmap** (False where a row was removed; None while none was):
  ``remove`` copies the bitmap of the segments it touches and flips bits, nothing else.

:class:`Rows` is one immutable *version*: a tuple of :class:`SegView` (a segment, how many of its
rows the version sees, its live bitmap). Writers build a new version and swap it in whole, so a
reader that takes one version sees one consistent table. A growing segment's buffers are shared
by its versions: an append only writes rows past every older version's end, which those versions
never read, so no version ever changes under a reader.

Global row order is insertion order (segments in order, rows in order, deleted rows skipped):
row ``r`` of a version is its r-th live row, exactly as in one array of the live rows.

The merge policy (:func:`merge_tail`) keeps the number of segments logarithmic in the rows: when
the last :data:`MERGE_FACTOR` sealed segments are of the same size tier (rows / SEAL_ROWS, in
powers of MERGE_FACTOR), they are merged into one (deleted rows dropped). Only neighbours merge,
so insertion order is kept. :func:`compact` merges everything into one segment.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from softdb.engine import _keys
from softdb.engine._segmented import Part, Parts

__all__ = ["MERGE_FACTOR", "SEAL_ROWS", "Growing", "Rows", "SegView", "Segment", "merge_tail", "merged"]

#: Rows of a growing segment when it seals. benchmarks/bench_writes.py measured (1M × 384
#: float32, 2 cores) that search over the segments the policy leaves after 10,000 single adds costs
#: within a few per cent of one segment from 1024 rows on, while a sealing add (and the merges it
#: triggers) stays a few milliseconds up to 8192 rows; 4096 sits in between (see docs/format.md).
SEAL_ROWS = 4096
#: Sealed segments of one size tier that merge into one (a tier is a power of MERGE_FACTOR).
MERGE_FACTOR = 8

_uids = itertools.count(1)
_uid_lock = threading.Lock()


def _uid() -> int:
    with _uid_lock:
        return next(_uids)


def _object_array(items: Sequence[Any], capacity: int | None = None) -> np.ndarray:
    arr = np.empty(len(items) if capacity is None else capacity, object)
    arr[: len(items)] = list(items) if not isinstance(items, np.ndarray) else items
    return arr


def _int_max(ids: Any) -> int:
    """The largest int id in ``ids`` (-1 if none)."""
    return max((i for i in ids if isinstance(i, int)), default=-1)


class Segment:
    """A sealed, immutable segment: keys, values (None when K = V), ids, payloads, id → row.

    ``saved`` is the segment's content name once it was written to (or read from) a table
    folder (:mod:`softdb.table._persist`), so a later save writes it no more.
    """

    def __init__(
        self,
        keys: Any,
        values: Any,
        ids: Any,
        payloads: Any,
        *,
        key_norm_max: Any = None,
        int_max: int | None = None,
    ) -> None:
        _keys.freeze(keys)
        if values is not None:
            _keys.freeze(values)
        self.uid = _uid()
        self.keys, self.values = keys, values
        self.n = int(keys.shape[0])
        self.ids = _object_array(ids)  # (n,)
        self.ids.flags.writeable = False
        self.payloads = None if payloads is None else _object_array(payloads)  # (n,)
        if self.payloads is not None:
            self.payloads.flags.writeable = False
        self.index: dict = dict(zip(self.ids.tolist(), range(self.n)))
        if key_norm_max is None:
            key_norm_max = _keys.norm_max(keys) if self.n else (0.0 if _keys.kind_of(keys) != "blocks" else ())
        self.key_norm_max = key_norm_max  # max ‖k_j‖, or a bound on it (a merged segment: its parts' max)
        self.int_max = _int_max(self.index) if int_max is None else int_max
        self.saved: str | None = None

    def view(self, live: np.ndarray | None = None) -> SegView:
        return SegView(self, self.n, self.keys, self.values, self.ids, self.payloads, self.key_norm_max, live)


class Growing:
    """The growing segment: append-only buffers with spare capacity, shared by its versions.

    Dense keys and values live in buffers that double (up to SEAL_ROWS) when full; other key
    kinds (CSR, blocks) are restacked per append, bounded by SEAL_ROWS rows.
    """

    def __init__(self, template: Any, values_dim: int | None, dtype: np.dtype, capacity: int) -> None:
        self.uid = _uid()
        self.lock = threading.Lock()  # appends of tables that share this segment (a state handed around)
        self.kind = _keys.kind_of(template)
        self.dtype = dtype
        self.n = 0
        self.capacity = max(1, capacity)
        self.keys: Any = (
            np.empty((self.capacity, template.shape[1]), template.dtype)
            if self.kind == "dense"
            else _keys.take(template, np.zeros(0, np.int64))
        )
        self.values = None if values_dim is None else np.empty((self.capacity, values_dim), dtype)
        self.ids = np.empty(self.capacity, object)
        self.payloads: np.ndarray | None = None
        self.index: dict = {}
        self.key_norm_max: Any = 0.0 if self.kind != "blocks" else tuple(0.0 for _ in template)
        self.int_max = -1
        self.saved: str | None = None

    def _grow(self, need: int) -> None:
        cap = self.capacity
        while cap < need:
            cap *= 2
        if cap == self.capacity:
            return
        if self.kind == "dense":
            keys = np.empty((cap, self.keys.shape[1]), self.keys.dtype)
            keys[: self.n] = self.keys[: self.n]
            self.keys = keys  # older versions keep views of the old buffer: still valid
        if self.values is not None:
            vals = np.empty((cap, self.values.shape[1]), self.values.dtype)
            vals[: self.n] = self.values[: self.n]
            self.values = vals
        ids = np.empty(cap, object)
        ids[: self.n] = self.ids[: self.n]
        self.ids = ids
        if self.payloads is not None:
            pays = np.empty(cap, object)
            pays[: self.n] = self.payloads[: self.n]
            self.payloads = pays
        self.capacity = cap

    def append(self, keys: Any, values: np.ndarray | None, ids: tuple, payloads: tuple | None) -> SegView:
        """Append rows (validated by the caller) and return the new version's view of the segment."""
        a, r = self.n, int(keys.shape[0])
        b = a + r
        self._grow(b)
        if self.kind == "dense":
            self.keys[a:b] = keys  # rows past every older version's end
        else:
            self.keys = _keys.stack(self.keys, keys) if a else keys  # a new object: older views keep theirs
        if self.values is not None and values is not None:
            self.values[a:b] = values
        self.ids[a:b] = ids
        if payloads is not None and self.payloads is None:
            self.payloads = np.empty(self.capacity, object)  # rows before: None
        if self.payloads is not None:
            self.payloads[a:b] = payloads if payloads is not None else [None] * r
        self.index.update(zip(ids, range(a, b)))
        nm = _keys.norm_max(keys)
        self.key_norm_max = (
            tuple(max(x, y) for x, y in zip(self.key_norm_max, nm))
            if isinstance(nm, tuple)
            else max(self.key_norm_max, nm)
        )
        self.int_max = max(self.int_max, _int_max(ids))
        self.n = b
        return self.view(None)

    def view(self, live: np.ndarray | None) -> SegView:
        n = self.n
        keys = _readonly(self.keys[:n]) if self.kind == "dense" else self.keys
        values = None if self.values is None else _readonly(self.values[:n])
        pays = None if self.payloads is None else self.payloads[:n]
        return SegView(self, n, keys, values, self.ids[:n], pays, self.key_norm_max, live)

    def seal(self, live: np.ndarray | None) -> SegView:
        """A sealed segment of the rows so far (copies at most SEAL_ROWS rows), with the same live bits."""
        n = self.n
        full = n == self.capacity  # the buffers are exactly full: they become the segment's arrays
        keys = (self.keys if full else np.array(self.keys[:n])) if self.kind == "dense" else self.keys
        values = None if self.values is None else (self.values if full else np.array(self.values[:n]))
        seg = Segment(keys, values, self.ids[:n], None if self.payloads is None else self.payloads[:n])
        seg.saved = self.saved
        return seg.view(live)


def _readonly(a: np.ndarray) -> np.ndarray:
    v = a.view()
    v.flags.writeable = False
    return v


@dataclass(frozen=True, eq=False)
class SegView:
    """One version's view of a segment: its first ``n`` rows and their live bits."""

    seg: Any  # Segment or Growing
    n: int
    keys: Any  # (n, d) of the table's key kind
    values: Any  # (n, d_v), or None when K = V
    ids: np.ndarray  # (n,) object
    payloads: np.ndarray | None  # (n,) object
    key_norm_max: Any
    live: np.ndarray | None = None  # (n,) bool; None: every row live

    @cached_property
    def part(self) -> Part:
        """The engine's part (plain mode): keys, values (the keys when K = V), live bits."""
        vals = self.values if self.values is not None else _shared(self.keys)
        return Part(self.keys, vals, self.key_norm_max, self.live)

    @property
    def n_live(self) -> int:
        return self.part.n_live

    @property
    def growing(self) -> bool:
        return isinstance(self.seg, Growing)

    def find(self, id_: Hashable) -> int:
        """Local row of a live ``id_`` in this view, else -1."""
        r = self.seg.index.get(id_, -1)
        if r < 0 or r >= self.n or (self.live is not None and not self.live[r]):
            return -1
        if self.growing and self.ids[r] != id_:
            return -1  # pragma: no cover - an index entry of a newer version
        return int(r)


def _shared(keys: Any) -> Any:
    return keys[0] if isinstance(keys, _keys.Blocks) else keys


class _LiveIndex(Mapping):
    """id → global live row of one version, looked up per segment (never rebuilt from all ids)."""

    def __init__(self, rows: Rows) -> None:
        self.rows = rows

    def __getitem__(self, id_: Hashable) -> int:
        try:
            hit = self.rows.locate(id_)
        except TypeError:
            raise KeyError(id_) from None
        if hit is None:
            raise KeyError(id_)
        i, r = hit
        return int(self.rows.parts.starts[i] + self.rows.views[i].part.rank[r])

    def __contains__(self, id_: object) -> bool:
        try:
            return self.rows.locate(id_) is not None
        except TypeError:
            return False

    def __iter__(self) -> Iterator:
        return iter(self.rows.ids)

    def __len__(self) -> int:
        return self.rows.n


class Rows:
    """One immutable version of a table's rows: segment views in global order (see the module docstring).

    ``keys``, ``values``, ``ids`` and ``payloads`` are the live rows in global order, built on
    first use (a single segment without deletions hands out its own arrays, memory maps included);
    ``index`` maps an id to its global row; ``parts`` is what the query plan runs over.
    """

    def __init__(self, views: Sequence[SegView], shared_kv: bool) -> None:
        self.views = tuple(views)
        self.shared_kv = shared_kv
        self.parts = Parts([v.part for v in self.views])
        self.n = self.parts.n

    @classmethod
    def build(cls, keys: Any, values: Any, ids: tuple, payloads: tuple | None) -> Rows:
        """One sealed segment over arrays (``values`` is ``keys``, or its first block, when K = V)."""
        shared = values is keys or (isinstance(keys, _keys.Blocks) and values is keys[0])
        seg = Segment(keys, None if shared else values, ids, payloads)
        return cls([seg.view()], shared)

    def with_views(self, views: Sequence[SegView]) -> Rows:
        return Rows(views, self.shared_kv)

    # -------------------------------------------------------------- lookups
    def locate(self, id_: Hashable) -> tuple[int, int] | None:
        """(segment, local row) of a live id, newest segment first; None if absent."""
        hash(id_)
        for i in range(len(self.views) - 1, -1, -1):
            r = self.views[i].find(id_)
            if r >= 0:
                return i, r
        return None

    @cached_property
    def index(self) -> Any:
        """A read-only mapping id → global live row (a dict's ``in``, ``[]``, ``len``), per segment."""
        return _LiveIndex(self)

    @cached_property
    def int_max(self) -> int:
        """The largest int id any segment ever held (default ids continue after it)."""
        return max((v.seg.int_max for v in self.views), default=-1)

    def _live(self, v: SegView, a: Any) -> Any:
        return a if v.live is None else a[v.part.live_rows]

    def _gather(self, what: str) -> Any:
        got = [getattr(v, what) for v in self.views]
        if len(self.views) == 1 and self.views[0].live is None:
            return got[0]
        got = [a if v.live is None else _keys.take(a, v.part.live_rows) for v, a in zip(self.views, got)]
        if what == "keys":
            out = got[0]
            for g in got[1:]:
                out = _keys.stack(out, g)
            _keys.freeze(out)
            return out
        out = np.concatenate(got)  # (n, d_v)
        out.flags.writeable = False
        return out

    @cached_property
    def keys(self) -> Any:
        return self._gather("keys")

    @cached_property
    def values(self) -> Any:
        return _shared(self.keys) if self.shared_kv else self._gather("values")

    @cached_property
    def ids(self) -> tuple:
        return tuple(itertools.chain.from_iterable(self._live(v, v.ids).tolist() for v in self.views))

    @cached_property
    def payloads(self) -> tuple | None:
        if all(v.payloads is None for v in self.views):
            return None
        out: list = []
        for v in self.views:
            out.extend([None] * v.n_live if v.payloads is None else self._live(v, v.payloads).tolist())
        return tuple(out)

    @cached_property
    def key_norm_max(self) -> Any:
        nm = [v.key_norm_max for v in self.views if v.n]
        if not nm:
            return self.views[0].key_norm_max
        return tuple(map(max, zip(*nm))) if isinstance(nm[0], tuple) else max(nm)

    def labels(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Ids and payloads (or None) of global live ``rows`` (any shape; -1 = no match → None)."""
        rows = np.asarray(rows)
        flat = rows.ravel()
        ok = flat >= 0
        ids = np.full(flat.shape, None, object)
        has_pay = any(v.payloads is not None for v in self.views)
        pays = np.full(flat.shape, None, object) if has_pay else None
        if ok.any():
            which, local = self.parts.locate(flat[ok])
            at = np.flatnonzero(ok)
            for i in np.unique(which):
                s = which == i
                v = self.views[i]
                ids[at[s]] = v.ids[local[s]]
                if pays is not None and v.payloads is not None:
                    pays[at[s]] = v.payloads[local[s]]
        return ids.reshape(rows.shape), None if pays is None else pays.reshape(rows.shape)

    @property
    def template(self) -> Any:
        """Keys of the first segment: the kind and widths of the table's keys, without gathering them."""
        return self.views[0].keys


# ------------------------------------------------------------------ merging
def _tier(n: int) -> int:
    return 0 if n <= SEAL_ROWS else int(math.log(n / SEAL_ROWS, MERGE_FACTOR))


def _concat_rows(arrays: Sequence[np.ndarray], sels: Sequence[np.ndarray | None], n: int) -> np.ndarray:
    """Rows ``sel`` (all when None) of each dense array, one after the other, copied once: (n, d)."""
    out = np.empty((n, arrays[0].shape[1]), arrays[0].dtype)  # (n, d)
    a = 0
    for arr, sel in zip(arrays, sels):
        b = a + (len(arr) if sel is None else len(sel))
        if sel is None:
            out[a:b] = arr
        else:
            np.take(arr, sel, axis=0, out=out[a:b])
        a = b
    return out


def merged(views: Sequence[SegView], shared_kv: bool) -> SegView:
    """One sealed segment of the live rows of ``views``, in order (deleted rows dropped)."""
    live = [v.part.live_rows if v.live is not None else None for v in views]
    n = sum(v.n_live for v in views)
    if all(isinstance(v.keys, np.ndarray) for v in views):
        out = _concat_rows([v.keys for v in views], live, n)  # (n, d)  one copy
    else:
        parts = [v.keys if s is None else _keys.take(v.keys, s) for v, s in zip(views, live)]
        out = parts[0]
        for k in parts[1:]:
            out = _keys.stack(out, k)
        if len(parts) == 1 and live[0] is None:
            out = _keys.take(out, np.arange(out.shape[0]))  # own copy
    values = None if shared_kv else _concat_rows([v.values for v in views], live, n)  # (n, d_v)
    ids = np.concatenate([v.ids if s is None else v.ids[s] for v, s in zip(views, live)])
    pay = None
    if any(v.payloads is not None for v in views):
        pay = np.concatenate(
            [
                np.full(v.n_live, None, object) if v.payloads is None else (v.payloads if s is None else v.payloads[s])
                for v, s in zip(views, live)
            ]
        )
    norms = [v.key_norm_max for v in views if v.n]
    bound = (tuple(map(max, zip(*norms))) if isinstance(norms[0], tuple) else max(norms)) if norms else None
    int_max = max(v.seg.int_max for v in views)
    return Segment(out, values, ids, pay, key_norm_max=bound, int_max=int_max).view()


def merge_tail(sealed: list[SegView], shared_kv: bool) -> list[SegView]:
    """The tiered policy: while the last MERGE_FACTOR sealed segments share a tier, merge them."""
    while len(sealed) >= MERGE_FACTOR:
        tail = sealed[-MERGE_FACTOR:]
        tiers = {_tier(v.n_live) for v in tail}
        if len(tiers) != 1:
            break
        sealed = [*sealed[:-MERGE_FACTOR], merged(tail, shared_kv)]
    return sealed
