"""Writes of a SoftTable: ``add``, ``remove`` and ``compact`` over segments (:mod:`softdb.table._segments`).

``add`` appends to the growing segment (sealing it at SEAL_ROWS rows, then the tiered merge
policy runs); ``remove`` copies the live bitmaps of the segments it touches and clears bits;
``compact`` merges every segment into one and drops the removed rows. Each builds a new version
of the rows and swaps in a new state whole: a reader takes one state and goes, so it sees the
old rows or the new ones, never a mix; writers are serialised by the table's lock.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from softdb import _checks
from softdb.engine import _keys
from softdb.table import _segments
from softdb.table._frontend import as_id_list, check_add_values
from softdb.table._merge import merge_tail, merged
from softdb.table._segments import Growing, Rows, Segment, SegView
from softdb.table._state import TableState, unit_rows
from softdb.table._texts import text_after_add, text_after_remove

__all__ = ["CompactReport", "Mutation"]


@dataclass(frozen=True)
class CompactReport:
    """What :meth:`SoftTable.compact` did.

    Attributes
    ----------
    segments_before, segments_after : int
        Segments (sealed and growing) before and after.
    rows_dropped : int
        Removed rows whose space was reclaimed.
    seconds : float
        Wall time of the merge.
    """

    segments_before: int
    segments_after: int
    rows_dropped: int
    seconds: float


def _seal(view: SegView, shared_kv: bool) -> SegView:
    return view.seg.seal(view.live) if view.growing else view


def _with_rows(
    views: list[SegView], keys: Any, values: Any, ids: tuple, pays: tuple | None, st: TableState
) -> list[SegView]:
    """The views after appending validated rows (sealing and merging as the policy says)."""
    shared = st.shared_kv
    r = int(keys.shape[0])
    tail = views[-1] if views and views[-1].growing else None
    sealed = views[:-1] if tail is not None else list(views)
    sealed = [v for v in sealed if v.n_live]  # segments with no live row left are dropped
    if r >= _segments.SEAL_ROWS:  # a big batch is a sealed segment of its own
        if tail is not None and tail.n_live:
            sealed.append(_seal(tail, shared))
        sealed.append(Segment(keys, values, ids, pays).view())
        return merge_tail(sealed, shared)
    g = None if tail is None else tail.seg
    fits = (
        g is not None
        and tail is not None
        and tail.n == g.n  # this version is the growing segment's newest: its buffers are ours
        and tail.n + r <= _segments.SEAL_ROWS
        and not any(i in g.index for i in ids)  # a removed id added again: a fresh segment keeps versions exact
    )
    if fits and g is not None and tail is not None:
        with g.lock:
            fits = tail.n == g.n
            if fits:
                view = g.append(keys, values, ids, pays)
    if not fits:
        if tail is not None and tail.n_live:
            sealed = merge_tail([*sealed, _seal(tail, shared)], shared)
        g = Growing(keys, None if shared else st.value_dim, st.dtype, min(_segments.SEAL_ROWS, max(256, 2 * r)))
        view = g.append(keys, values, ids, pays)
        tail = None
    if tail is not None and tail.live is not None:
        view = dataclasses.replace(view, live=np.concatenate([tail.live, np.ones(r, bool)]))
    if view.n >= _segments.SEAL_ROWS:
        return merge_tail([*sealed, _seal(view, shared)], shared)
    return [*sealed, view]


def _value_dim(st: TableState, k: Any) -> int:
    """The value width after adding keys ``k``: a K = V table's values widen with its keys."""
    return int((k[0] if isinstance(k, _keys.Blocks) else k).shape[1]) if st.shared_kv else st.value_dim


class Mutation:
    """``add``, ``remove`` and ``compact`` of :class:`softdb.SoftTable` (a mixin over its state and lock)."""

    _state: TableState
    _lock: threading.Lock
    _home: str | None

    def add(
        self,
        keys: Any,
        values: Any = None,
        *,
        ids: Iterable[Hashable] | None = None,
        payloads: Sequence[Any] | None = None,
    ) -> None:
        """Append rows to the table's growing segment (readers never see a mix).

        Cost: O(rows added), amortised (the growing segment has spare capacity); when it
        reaches ``SEAL_ROWS`` rows it is sealed, and the tiered merge policy may merge the
        last sealed segments (see :mod:`softdb.table._segments`).

        Parameters
        ----------
        keys : array_like of shape (n_new, d)
            Of the table's kind (dense, CSR or blocks) and widths.
        values : array_like of shape (n_new, d_v)
            Required unless the table's values are its keys.
        ids : sequence, optional
            New ids (none may be in the table). Default: integers after the largest integer
            id the table has held.
        payloads : sequence, optional

        Raises
        ------
        ValueError
            Keys of another width or kind, values that do not fit, an id already in the table.

        Examples
        --------
        >>> from softdb import SoftTable
        >>> t = SoftTable(np.eye(2, dtype=np.float32))
        >>> t.add([[1.0, 1.0]], ids=["both"])
        >>> len(t), t.ids
        (3, (0, 1, 'both'))
        """
        self._add(keys, values, ids=ids, payloads=payloads)

    def _add(self, keys: Any, values: Any, *, ids: Any, payloads: Any, grown: tuple[Any, Any] | None = None) -> tuple:
        """``add``; ``grown`` = (encoder the keys were grown from, the grown version) from ``add_texts``."""
        st = self._state
        k = _keys.as_keys(keys, "keys", dtype=st.dtype, copy=True)
        template = st.template if grown is None else k  # a grown vocabulary widens the keys
        if _keys.kind_of(k) != st.kind or _keys.dims(k) != _keys.dims(template):
            if st.kind == "dense" and _keys.kind_of(k) == "dense":
                _checks.check_width(k.shape[1], st.dim, "new keys")
            raise ValueError(
                f"new keys are {_keys.kind_of(k)} of widths {list(_keys.dims(k))} but the table's "
                f"are {st.kind} of widths {list(_keys.dims(template))}; hint: encode "
                "them the same way (table.encoder.encode_documents for text tables)"
            )
        check_add_values(st.shared_kv, values, st.value_dim, k.shape[0])
        v = None
        if not st.shared_kv:
            v = _checks.as_matrix(values, "values", dtype=st.dtype, copy=True)
            _checks.check_width(v.shape[1], st.value_dim, "new values", "the table's values")
            _checks.check_same_rows(k.shape[0], "keys", len(v), "values")
        new_pay = _checks.as_payloads(payloads, k.shape[0])
        if st.metric == "cosine":
            k = unit_rows(k, "keys", st.dtype)
        if not k.shape[0]:
            return ()
        with self._lock:
            st = self._state
            old = st.rows
            new_ids = _checks.as_ids(ids, k.shape[0], start=old.int_max + 1)
            _checks.check_new_ids(old.index, new_ids)
            encoder = text_after_add(st, k, grown)  # a growing BM25 block: its statistics (checked first)
            views = _with_rows(list(old.views), k, v, new_ids, new_pay, st)
            has_payloads = st.has_payloads or new_pay is not None  # only once the rows are valid
            rows = old.with_views(views)
            widths = {} if encoder is st.encoder else dict(dim=k.shape[1], value_dim=_value_dim(st, k))
            self._state = st.with_(rows=rows, has_payloads=has_payloads, encoder=encoder, **widths)
        return new_ids

    def remove(self, ids: Iterable[Hashable]) -> None:
        """Remove the rows with these ids (unknown ids are an error): sets deletion bits, copies no row.

        Examples
        --------
        >>> from softdb import SoftTable
        >>> t = SoftTable(np.eye(3, dtype=np.float32), ids=["a", "b", "c"])
        >>> t.remove(["b"])
        >>> t.ids
        ('a', 'c')
        """
        ids = as_id_list(ids)
        with self._lock:
            st = self._state
            old = st.rows
            _checks.check_known_ids(old.index, ids)
            hits: dict[int, list[int]] = {}
            for i in ids:
                seg, row = old.locate(i) or (-1, -1)  # known: located
                hits.setdefault(seg, []).append(row)
            views = list(old.views)
            for seg, rows in hits.items():
                v = views[seg]
                live = np.ones(v.n, bool) if v.live is None else v.live.copy()  # (n_seg,)  copy-on-write
                live[rows] = False
                views[seg] = dataclasses.replace(v, live=live)
            encoder = text_after_remove(st, hits)  # a growing BM25 block: the removed counts leave its statistics
            self._state = st.with_(rows=old.with_views(views), encoder=encoder)

    def compact(self) -> CompactReport:
        """Merge every segment into one and drop the removed rows.

        Answers do not change (the live rows keep their order). A table loaded from (or saved
        to) a folder that another writer holds open (:func:`softdb.store.writing`) is refused.

        Returns
        -------
        CompactReport
            Segments before and after, rows dropped, seconds.

        Raises
        ------
        RuntimeError
            The table's folder is open for writing elsewhere.

        Examples
        --------
        >>> from softdb import SoftTable
        >>> t = SoftTable(np.eye(3, dtype=np.float32), ids=["a", "b", "c"])
        >>> t.add([[1.0, 1.0, 0.0]], ids=["d"]); t.remove(["b"])
        >>> r = t.compact()
        >>> (r.segments_before, r.segments_after, r.rows_dropped), t.ids
        ((2, 1, 1), ('a', 'c', 'd'))
        """
        home = getattr(self, "_home", None)
        if home is not None and os.path.isdir(home):
            from softdb.store import check_not_writing

            check_not_writing(home)
        t0 = time.perf_counter()
        with self._lock:
            st = self._state
            old = st.rows
            before = len(old.views)
            dropped = sum(v.n - v.n_live for v in old.views)
            if before == 1 and not dropped and not old.views[0].growing:
                view = old.views[0]
            else:
                view = merged(old.views, st.shared_kv)
            self._state = st.with_(rows=Rows([view], st.shared_kv))
        return CompactReport(before, 1, dropped, time.perf_counter() - t0)
