"""Filters (``where=``): a Chroma-style filter, parsed and checked once, evaluated over payload columns.

A filter is a dict (or its JSON text, as the command line and the web API pass it):

=============================  ==========================================================
``{"year": 2020}``             ``$eq`` (a bare value)
``{"year": {"$gte": 2020}}``   ``$eq $ne $gt $gte $lt $lte`` (order: numbers only)
``{"lang": {"$in": [..]}}``    ``$in $nin``: a non-empty list of scalars
``{"$and": [f, g]}``           ``$and $or``: a non-empty list of filters
``{"$contains": "gzip"}``      the payload's text contains this string (case-sensitive)
=============================  ==========================================================

A dict with several fields, ``{"year": 2020, "lang": "en"}``, is their ``$and``.

Semantics of missing fields and mixed types (as MongoDB, whose operators Chroma copied):

- a value matches only values of its own kind: numbers (int and float compare by value),
  strings, booleans (``True`` is not ``1``);
- a row without the field, or with a value of another kind, does **not** match ``$eq``,
  ``$gt``, ``$gte``, ``$lt``, ``$lte`` or ``$in``;
- ``$ne`` and ``$nin`` are exactly the negations of ``$eq`` and ``$in``: a row without the
  field **does** match them (``{"lang": {"$ne": "en"}}`` keeps rows with no ``lang``);
- ``$contains`` looks in the payload's text: a ``str`` payload, or a dict payload's
  ``"text"`` field; a row without text does not match.

Parsing checks everything a filter can get wrong before a row is read, and each error names the
operator, the field or the type that was wrong, with the fields that exist. Evaluation
(:func:`evaluate`) is numpy over the columns of :mod:`softdb.table._columns`: no loop over rows.

Examples
--------
>>> f = parse_where({"$and": [{"year": {"$gte": 2020}}, {"lang": "en"}]}, ["lang", "year"])
>>> f
And(items=(Cmp(field='year', op='$gte', value=2020), Cmp(field='lang', op='$eq', value='en')))
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = ["And", "Cmp", "Contains", "Filter", "Or", "evaluate", "parse_where"]

COMPARE = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte")
MEMBER = ("$in", "$nin")
LOGIC = ("$and", "$or")
ORDER = ("$gt", "$gte", "$lt", "$lte")
OPERATORS = (*COMPARE, *MEMBER, *LOGIC, "$contains")
_HINT = 'hint: {"year": {"$gte": 2020}}, {"lang": {"$in": ["en", "de"]}}, {"$and": [...]}'


@dataclass(frozen=True)
class Cmp:
    """``field op value``: one comparison (``$in``/``$nin`` take a tuple of values)."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class Contains:
    """The payload's text contains ``text``."""

    text: str


@dataclass(frozen=True)
class And:
    items: tuple


@dataclass(frozen=True)
class Or:
    items: tuple


Filter = Cmp | Contains | And | Or


class ColumnsLike(Protocol):
    """What :func:`evaluate` asks of a segment's columns (:class:`softdb.table._columns.Columns`)."""

    n: int

    def compare(self, field: str, op: str, value: Any) -> np.ndarray: ...

    def member(self, field: str, values: tuple) -> np.ndarray: ...

    def contains(self, text: str) -> np.ndarray: ...


def _fields_text(fields: Any) -> str:
    names = sorted(fields)
    if not names:
        return "the rows have no payload fields (payloads that are dicts have fields)"
    return "fields that exist: " + ", ".join(repr(f) for f in names)


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "str"
    return type(v).__name__


def _scalar(v: Any, field: str, op: str) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bool | str):
        return v
    if isinstance(v, int | float):
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(
                f"{op} on field {field!r} needs a finite number, got {v!r}; hint: a filter compares finite numbers"
            )
        return v
    raise TypeError(
        f"{op} on field {field!r} needs a number, a string or a boolean, got {type(v).__name__} {v!r}; "
        f'hint: {{"{field}": {{"{op}": 2020}}}}'
    )


def parse_where(where: Any, fields: Any) -> Filter:
    """Parse and check a filter (a dict, or its JSON text) against the fields that exist.

    Parameters
    ----------
    where : dict or str
        A Chroma-style filter (see the module docstring), or its JSON text.
    fields : collection of str
        The payload fields some row has; a field no row has is an error.

    Returns
    -------
    Filter
        A tree of :class:`Cmp`, :class:`Contains`, :class:`And` and :class:`Or`.

    Raises
    ------
    ValueError, TypeError
        Malformed JSON, an unknown operator, a wrong type, a field no row has.

    Examples
    --------
    >>> parse_where('{"year": {"$in": [2020, 2021]}}', ["year"])
    Cmp(field='year', op='$in', value=(2020, 2021))
    >>> parse_where({"yaer": 2020}, ["lang", "year"])
    Traceback (most recent call last):
    ...
    ValueError: where= names field 'yaer', which no row has; fields that exist: 'lang', 'year'; hint: ...
    """
    fields = frozenset(fields)
    if isinstance(where, str | bytes):
        try:
            where = json.loads(where, parse_constant=_no_constant)
        except (json.JSONDecodeError, ValueError) as exc:
            text = where if isinstance(where, str) else where.decode(errors="replace")
            raise ValueError(
                f"where= must be a JSON object, got malformed JSON {text[:80]!r} ({exc}); "
                'hint: --where \'{"year": {"$gte": 2020}}\' (double quotes inside, single quotes around)'
            ) from None
    return _node(where, fields, "where=")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _node(obj: Any, fields: frozenset, at: str) -> Filter:
    if not isinstance(obj, dict):
        raise TypeError(f"{at} must be a dict (a filter), got {type(obj).__name__} {obj!r:.80}; {_HINT}")
    if not obj:
        raise ValueError(f"{at} must name at least one field or operator, got {{}}; {_HINT}")
    items: list[Filter] = []
    for key, val in obj.items():
        if not isinstance(key, str):
            raise TypeError(f"{at}: a filter's keys must be strings, got {type(key).__name__} {key!r}; {_HINT}")
        if key in LOGIC:
            if not isinstance(val, list | tuple) or not val:
                raise TypeError(
                    f"{key} needs a non-empty list of filters, got {type(val).__name__} {val!r:.80}; "
                    f'hint: {{"{key}": [{{"year": 2020}}, {{"lang": "en"}}]}}'
                )
            subs = tuple(_node(v, fields, key) for v in val)
            items.append(And(subs) if key == "$and" else Or(subs))
        elif key == "$contains":
            if not isinstance(val, str):
                raise TypeError(
                    f"$contains needs a string (searched in the payload text), got {type(val).__name__} "
                    f'{val!r:.80}; hint: {{"$contains": "gzip"}}'
                )
            items.append(Contains(val))
        elif key.startswith("$"):
            raise ValueError(
                f"unknown operator {key!r} in {at}; operators: {' '.join(OPERATORS)}; "
                'hint: an operator goes inside a field: {"year": {"$gte": 2020}}'
            )
        else:
            if key not in fields:
                raise ValueError(f"{at} names field {key!r}, which no row has; {_fields_text(fields)}; {_HINT}")
            items.append(_field(key, val))
    return items[0] if len(items) == 1 else And(tuple(items))


def _field(field: str, val: Any) -> Filter:
    if not isinstance(val, dict):
        return Cmp(field, "$eq", _scalar(val, field, "$eq"))
    if not val:
        raise ValueError(f"field {field!r} needs an operator, got {{}}; {_HINT}")
    out: list[Filter] = []
    for op, arg in val.items():
        if op in COMPARE:
            v = _scalar(arg, field, op)
            if op in ORDER and _kind(v) != "number":
                raise TypeError(
                    f"{op} on field {field!r} needs a number, got {_kind(v)} {v!r}; "
                    f"hint: order compares numbers; $eq, $ne, $in and $nin take strings and booleans"
                )
            out.append(Cmp(field, op, v))
        elif op in MEMBER:
            if not isinstance(arg, list | tuple) or not arg:
                raise TypeError(
                    f"{op} on field {field!r} needs a non-empty list of values, got {type(arg).__name__} "
                    f'{arg!r:.80}; hint: {{"{field}": {{"{op}": ["en", "de"]}}}}'
                )
            out.append(Cmp(field, op, tuple(_scalar(a, field, op) for a in arg)))
        else:
            raise ValueError(
                f"unknown operator {op!r} on field {field!r}; field operators: {' '.join((*COMPARE, *MEMBER))}; "
                f'hint: {{"{field}": {{"$gte": 2020}}}}'
            )
    return out[0] if len(out) == 1 else And(tuple(out))


def evaluate(f: Filter, cols: ColumnsLike) -> np.ndarray:
    """The rows of one segment that pass ``f``: (n,) bool, numpy over the segment's columns.

    Examples
    --------
    >>> from softdb.table._columns import Columns
    >>> cols = Columns.build([{"year": 2019}, {"year": 2021}, "a text", None])
    >>> evaluate(parse_where({"year": {"$gt": 2020}}, ["year"]), cols).tolist()
    [False, True, False, False]
    >>> evaluate(parse_where({"year": {"$ne": 2019}}, ["year"]), cols).tolist()  # no field: matches $ne
    [False, True, True, True]
    """
    if isinstance(f, Cmp):
        if f.op in MEMBER:
            hit = cols.member(f.field, f.value)
            return ~hit if f.op == "$nin" else hit
        if f.op == "$ne":
            return ~cols.compare(f.field, "$eq", f.value)
        return cols.compare(f.field, f.op, f.value)
    if isinstance(f, Contains):
        return cols.contains(f.text)
    out = evaluate(f.items[0], cols)
    for g in f.items[1:]:
        out = out & evaluate(g, cols) if isinstance(f, And) else out | evaluate(g, cols)
    return out
