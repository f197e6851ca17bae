"""Payload fields column by column, per segment: what makes a filter (``where=``) a vectorised mask.

A segment's payloads (a dict per row, a str, or anything else) become, once, a :class:`Columns`:
for each field that some row has,

- ``present`` (n,) bool: the row's payload is a dict with this field;
- numbers: ``num`` (n,) int64 (every number of the field an int) or float64, with ``is_num``;
- booleans: ``flag`` (n,) bool with ``is_bool`` (``True`` is not the number 1);
- strings as categories: ``codes`` (n,) int32 (-1: not a string) into a category list;
- other values (lists, dicts, None) only count as present: no comparison matches them;

and the text ``$contains`` reads: a ``str`` payload, or a dict payload's ``"text"`` field
(a numpy ``StringDType`` array, searched by :func:`numpy.strings.find`).

Building reads each payload once (a Python loop, paid when a segment is first filtered: a
sealed segment keeps its columns for life); a question then costs numpy over the columns.
A growing segment's columns are rebuilt when it has grown (at most ``SEAL_ROWS`` rows).
:func:`where_mask` turns a parsed filter into the mask over one version's live rows.

Examples
--------
>>> cols = Columns.build([{"year": 2020, "lang": "en"}, {"year": 2021.5}, "plain text"])
>>> sorted(cols.fields), cols.compare("year", "$gte", 2021).tolist(), cols.contains("text").tolist()
(['lang', 'year'], [False, True, False], [False, False, True])
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from softdb.table._where import Filter, evaluate, parse_where

__all__ = ["Columns", "columns_of", "fields_of", "where_mask"]

_INT64 = (-(2**63), 2**63 - 1)


@dataclass
class _Field:
    present: np.ndarray  # (n,) bool
    num: np.ndarray | None = None  # (n,) int64 or float64 (0 where not a number)
    is_num: np.ndarray | None = None  # (n,) bool
    flag: np.ndarray | None = None  # (n,) bool
    is_bool: np.ndarray | None = None  # (n,) bool
    codes: np.ndarray | None = None  # (n,) int32, -1 where not a string
    cats: dict | None = None  # category → code


class Columns:
    """One segment's payload fields, column by column (see the module docstring)."""

    def __init__(self, n: int, fields: dict[str, _Field], text: np.ndarray, has_text: np.ndarray) -> None:
        self.n = n
        self.fields = fields
        self.text = text  # (n,) StringDType ("" where none)
        self.has_text = has_text  # (n,) bool

    @classmethod
    def build(cls, payloads: Sequence[Any] | None, n: int | None = None) -> Columns:
        """Columns of ``payloads`` (None: ``n`` rows without payloads)."""
        if payloads is None:
            n = int(n or 0)
            return cls(n, {}, np.zeros(n, np.dtypes.StringDType()), np.zeros(n, bool))
        pays = list(payloads)
        n = len(pays)
        raw: dict[str, dict[int, Any]] = {}
        texts = [""] * n
        has_text = np.zeros(n, bool)  # (n,)
        for i, p in enumerate(pays):  # once per segment, never per question
            if isinstance(p, str):
                texts[i], has_text[i] = p, True
            elif isinstance(p, dict):
                for key, v in p.items():
                    if isinstance(key, str):
                        raw.setdefault(key, {})[i] = v
                t = p.get("text")
                if isinstance(t, str):
                    texts[i], has_text[i] = t, True
        fields = {name: _column(vals, n) for name, vals in raw.items()}
        return cls(n, fields, np.array(texts, np.dtypes.StringDType()), has_text)

    def _field(self, field: str) -> _Field | None:
        return self.fields.get(field)

    def compare(self, field: str, op: str, value: Any) -> np.ndarray:
        """Rows whose ``field`` is of ``value``'s kind and compares ``op`` (``$eq $gt $gte $lt $lte``)."""
        col = self._field(field)
        out = np.zeros(self.n, bool)  # (n,)
        if col is None:
            return out
        if isinstance(value, bool):
            if op == "$eq" and col.flag is not None and col.is_bool is not None:
                return col.is_bool & (col.flag == value)  # (n,)
            return out
        if isinstance(value, str):
            if op == "$eq" and col.codes is not None and col.cats is not None:
                code = col.cats.get(value)
                return out if code is None else col.codes == code  # (n,)
            return out
        if col.num is None or col.is_num is None:
            return out
        return col.is_num & _num_op(col.num, op, value)  # (n,)

    def member(self, field: str, values: tuple) -> np.ndarray:
        """Rows whose ``field`` equals one of ``values`` (each matched by its own kind)."""
        col = self._field(field)
        out = np.zeros(self.n, bool)  # (n,)
        if col is None:
            return out
        strs = [v for v in values if isinstance(v, str)]
        bools = [v for v in values if isinstance(v, bool)]
        nums = [v for v in values if not isinstance(v, str | bool)]
        if strs and col.codes is not None and col.cats is not None:
            codes = [col.cats[s] for s in strs if s in col.cats]
            if codes:
                out |= np.isin(col.codes, np.array(codes, np.int32))  # (n,)
        for b in set(bools):
            out |= self.compare(field, "$eq", b)
        for v in nums:
            out |= self.compare(field, "$eq", v)
        return out

    def contains(self, text: str) -> np.ndarray:
        """Rows whose text contains ``text`` (case-sensitive)."""
        return self.has_text & (np.strings.find(self.text, text) >= 0)  # (n,)


def _num_op(num: np.ndarray, op: str, value: int | float) -> np.ndarray:
    if num.dtype.kind == "i" and isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
        value = float(value)  # beyond int64: compare as a float (numpy refuses the int)
    if op == "$eq":
        return num == value
    if op == "$gt":
        return num > value
    if op == "$gte":
        return num >= value
    if op == "$lt":
        return num < value
    return num <= value  # "$lte"


def _column(vals: dict[int, Any], n: int) -> _Field:
    present = np.zeros(n, bool)  # (n,)
    present[list(vals)] = True
    col = _Field(present)
    nums = {i: v for i, v in vals.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    if nums:
        rows = np.fromiter(nums, np.int64, len(nums))
        all_int = all(isinstance(v, int) and _INT64[0] <= v <= _INT64[1] for v in nums.values())
        col.num = np.zeros(n, np.int64 if all_int else np.float64)  # (n,)
        col.num[rows] = list(nums.values())
        col.is_num = np.zeros(n, bool)  # (n,)
        col.is_num[rows] = True
        if not all_int:
            col.is_num[rows] = ~np.isnan(col.num[rows])  # NaN matches nothing
    bools = {i: v for i, v in vals.items() if isinstance(v, bool)}
    if bools:
        col.flag, col.is_bool = np.zeros(n, bool), np.zeros(n, bool)  # (n,), (n,)
        rows = np.fromiter(bools, np.int64, len(bools))
        col.flag[rows] = list(bools.values())
        col.is_bool[rows] = True
    strs = {i: v for i, v in vals.items() if isinstance(v, str)}
    if strs:
        cats, codes = np.unique(np.array(list(strs.values()), object).astype(str), return_inverse=True)
        col.codes = np.full(n, -1, np.int32)  # (n,)
        col.codes[np.fromiter(strs, np.int64, len(strs))] = codes
        col.cats = {c: j for j, c in enumerate(cats.tolist())}
    return col


# ---------------------------------------------------------------- per segment, cached
_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def columns_of(seg: Any, n: int, payloads: Any) -> Columns:
    """The columns of a segment's first ``n`` rows (``payloads`` its payload array), built once.

    A sealed segment never changes: its columns are kept for the segment's life. A growing
    segment only appends: columns built for at least ``n`` rows serve (sliced); else rebuilt.
    """
    with _lock:
        got = _cache.get(seg)
    if got is None or got.n < n:
        pays = getattr(seg, "payloads", payloads)
        total = int(getattr(seg, "n", n))
        got = Columns.build(None if pays is None else pays[:total], total)
        with _lock:
            _cache[seg] = got
    return got if got.n == n else _slice(got, n)


def _slice(c: Columns, n: int) -> Columns:
    fields = {k: _Field(**{a: _head(x, n) for a, x in vars(f).items()}) for k, f in c.fields.items()}
    return Columns(n, fields, c.text[:n], c.has_text[:n])


def _head(x: Any, n: int) -> Any:
    return x[:n] if isinstance(x, np.ndarray) else x  # arrays: the first n rows; the category dict as is


def fields_of(rows: Any) -> set[str]:
    """The payload fields some row of a version has (removed rows' fields included)."""
    out: set[str] = set()
    for v in rows.views:
        out.update(columns_of(v.seg, v.n, v.payloads).fields)
    return out


def where_mask(rows: Any, where: Any) -> np.ndarray:
    """The live rows of a version (:class:`softdb.table._segments.Rows`) that pass ``where``: (n,) bool.

    Examples
    --------
    >>> from softdb import SoftTable
    >>> t = SoftTable(np.eye(3, dtype=np.float32), payloads=[{"y": 1}, {"y": 2}, "text"])
    >>> where_mask(t._state.rows, {"y": {"$lte": 1}}).tolist()
    [True, False, False]
    """
    cols = [columns_of(v.seg, v.n, v.payloads) for v in rows.views]
    fields = set().union(*(c.fields for c in cols))
    f: Filter = parse_where(where, fields) if not isinstance(where, Filter) else where
    pieces = []
    for v, c in zip(rows.views, cols):
        m = evaluate(f, c)  # (n_p,)
        pieces.append(m if v.live is None else m[v.live])  # (n_live_p,)
    return np.concatenate(pieces) if len(pieces) > 1 else pieces[0]  # (n,)
