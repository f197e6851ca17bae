"""Writes of a SoftTable: ``add`` and ``remove`` build new arrays and swap in a new state whole.

A reader takes one state and goes, so it sees the old rows or the new ones, never a
mix; writers are serialised by the table's lock.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np

from softdb import _checks
from softdb.engine import _keys
from softdb.table._frontend import as_id_list, check_add_values, next_int_id
from softdb.table._state import Rows, TableState, shared_values, unit_rows
from softdb.table._texts import text_after_add, text_after_remove

__all__ = ["Mutation"]


class Mutation:
    """``add`` and ``remove`` of :class:`softdb.SoftTable` (a mixin over its state and lock)."""

    _state: TableState
    _lock: threading.Lock

    def add(
        self,
        keys: Any,
        values: Any = None,
        *,
        ids: Iterable[Hashable] | None = None,
        payloads: Sequence[Any] | None = None,
    ) -> None:
        """Append rows, swapping in new arrays (readers never see a mix).

        Parameters
        ----------
        keys : array_like of shape (n_new, d)
        values : array_like of shape (n_new, d_v)
            Required unless the table's values are its keys.
        ids : sequence, optional
            Default: integers after the largest integer id in the table.
        payloads : sequence, optional

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
        want = _keys.dims(st.rows.keys) if grown is None else _keys.dims(k)  # a grown vocabulary widens the keys
        if _keys.kind_of(k) != st.kind or _keys.dims(k) != want:
            if st.kind == "dense" and _keys.kind_of(k) == "dense":
                _checks.check_width(k.shape[1], st.dim, "new keys")
            raise ValueError(
                f"new keys are {_keys.kind_of(k)} of widths {list(_keys.dims(k))} but the table's "
                f"are {st.kind} of widths {list(_keys.dims(st.rows.keys))}; hint: encode "
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
        with self._lock:
            st = self._state
            old = st.rows
            new_ids = _checks.as_ids(ids, k.shape[0], start=next_int_id([old.ids]))
            _checks.check_new_ids(old.index, new_ids)
            has_payloads = st.has_payloads or new_pay is not None  # only once the rows are valid
            old_keys, encoder = text_after_add(st, k, grown)  # a growing BM25 block: its statistics
            keys_all = _keys.stack(old_keys, k)  # (n + n_new, d)
            values_all = shared_values(keys_all) if st.shared_kv else np.concatenate([old.values, v])
            pay = None
            if has_payloads:
                pay = (old.payloads or (None,) * len(old.ids)) + (new_pay or (None,) * k.shape[0])
            rows = Rows.build(keys_all, values_all, old.ids + new_ids, pay)
            widths = dict(dim=keys_all.shape[1], value_dim=values_all.shape[1])  # a grown vocabulary widens them
            self._state = st.with_(rows=rows, has_payloads=has_payloads, encoder=encoder, **widths)
        return new_ids

    def remove(self, ids: Iterable[Hashable]) -> None:
        """Remove the rows with these ids (unknown ids are an error).

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
            drop = np.zeros(len(old.ids), bool)
            drop[[old.index[i] for i in ids]] = True
            keep = np.flatnonzero(~drop)
            keys = _keys.take(old.keys, keep)  # (n - r, d)  a new array
            values = shared_values(keys) if st.shared_kv else old.values[keep]
            kept_ids = tuple(old.ids[i] for i in keep)
            pay = None if old.payloads is None else tuple(old.payloads[i] for i in keep)
            encoder = text_after_remove(st, np.flatnonzero(drop))  # a growing BM25 block: its statistics
            self._state = st.with_(rows=Rows.build(keys, values, kept_ids, pay), encoder=encoder)
