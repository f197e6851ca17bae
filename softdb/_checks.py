"""Input validation for the core table.

Every user-facing error of the core lives here, so that messages stay consistent:
each says what must hold, what was received, and a hint.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "METRICS",
    "MODES",
    "as_ids",
    "as_k",
    "as_mask",
    "as_matrix",
    "as_metric",
    "as_mode",
    "as_payloads",
    "as_precision",
    "as_temperature",
    "as_tolerance",
    "check_compressible",
    "check_finite_result",
    "check_not_empty",
    "check_same_rows",
    "check_width",
]

MODES = ("soft", "hard")
METRICS = ("dot", "cosine")


def _describe(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return f"an array of shape {x.shape} and dtype {x.dtype}"
    return f"{type(x).__name__}"


def as_matrix(
    x: Any,
    name: str,
    *,
    dtype: np.dtype | None = None,
    allow_1d: bool = False,
    copy: bool = False,
) -> np.ndarray:
    """Return ``x`` as a finite real 2-D float array (or 1-D if ``allow_1d``).

    float64 arrays stay float64 unless ``dtype`` is given; everything else
    numeric becomes float32. Never mutates ``x``; with ``copy`` the result
    never shares memory with it.
    """
    if isinstance(x, str | bytes):
        raise TypeError(
            f"{name} must be an array of numbers, got a {type(x).__name__} {x[:40]!r}; "
            "hint: strings are searched through a table built with SoftTable.from_texts"
        )
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        raise ValueError(
            f"{name} must be a rectangular array of numbers, but it could not be "
            f"converted ({exc}); hint: every row must have the same length"
        ) from None
    if arr.dtype == object:
        try:
            arr = arr.astype(np.float64)
        except (ValueError, TypeError):
            raise TypeError(
                f"{name} must hold real numbers, got dtype object with "
                f"elements like {_first_item(arr)!r}; hint: pass a float array"
            ) from None
    kind = arr.dtype.kind
    if kind == "c":
        raise TypeError(
            f"{name} must hold real numbers, got complex dtype {arr.dtype}; "
            "hint: take .real or np.abs() first if that is what you mean"
        )
    if kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}; hint: pass a float32 or float64 array")
    if arr.ndim == 1 and allow_1d:
        pass
    elif arr.ndim != 2:
        expected = "1-D (d,) or 2-D (m, d)" if allow_1d else "2-D (n, d)"
        raise ValueError(
            f"{name} must be {expected}, got {arr.ndim}-D with shape {arr.shape}; "
            "hint: reshape to rows of vectors, e.g. x.reshape(-1, d)"
        )
    if arr.ndim == 2 and arr.shape[1] == 0:
        raise ValueError(
            f"{name} must have at least 1 column, got shape {arr.shape}; "
            "hint: each row needs a vector of d >= 1 numbers"
        )
    if dtype is None:
        given64 = isinstance(x, np.ndarray) and x.dtype == np.float64  # lists become float32
        dtype = np.dtype(np.float64 if given64 else np.float32)
    if kind == "f" and arr.dtype.itemsize > 8:
        arr = arr.astype(np.float64)
    with np.errstate(over="ignore"):  # too-large values are reported below
        out = np.asarray(arr, dtype=dtype)
    if copy and isinstance(x, np.ndarray) and np.shares_memory(out, x):
        out = out.copy()
    if out.size and not np.isfinite(out).all():
        bad = ~np.isfinite(out)
        n_nan = int(np.isnan(out).sum())
        n_inf = int(bad.sum()) - n_nan
        where = np.argwhere(bad)[0].tolist()
        if not np.isfinite(arr[tuple(where)]):
            what = f"{n_nan} NaN and {n_inf} inf values"
            if name == "queries":
                hint = (
                    "hint: the table is fine; fix the queries (a NaN often comes from normalising "
                    "a zero vector) or drop those queries"
                )
            else:
                hint = "hint: drop or impute those rows before building the table"
        else:
            what = f"values too large for {np.dtype(dtype).name} ({n_inf} became inf)"
            hint = "hint: rescale the vectors, or pass float64"
        raise ValueError(f"{name} must be finite, but it has {what} (first at index {tuple(where)}); {hint}")
    return out


def _first_item(arr: np.ndarray) -> Any:
    flat = arr.ravel()
    for item in flat[:1000]:
        try:
            float(item)
        except (TypeError, ValueError):
            return item
    return flat[0] if flat.size else None


def check_width(got: int, expected: int, name: str, what: str = "the table's keys") -> None:
    """Raise if a vector width differs from the table's."""
    if got != expected:
        raise ValueError(
            f"{name} have {got} columns but {what} have {expected}; hint: were they encoded with the same model?"
        )


def check_same_rows(n_a: int, name_a: str, n_b: int, name_b: str) -> None:
    """Raise if two per-row inputs have different row counts."""
    if n_a != n_b:
        raise ValueError(
            f"{name_b} has {n_b} rows but {name_a} has {n_a}; "
            f"hint: give exactly one {name_b.rstrip('s')} per row of {name_a}"
        )


def as_ids(ids: Iterable[Hashable] | None, n: int, *, start: int = 0) -> tuple:
    """Return ``n`` unique ids as a tuple; default ``start .. start+n-1``."""
    if ids is None:
        return tuple(range(start, start + n))
    if isinstance(ids, set | frozenset):
        raise TypeError("ids must be an ordered sequence, got a set; hint: pass a list in row order")
    if isinstance(ids, str | bytes):
        raise TypeError(
            f"ids must be a sequence of ids, got a single string {ids[:40]!r}; hint: wrap it in a list: ids=[...]"
        )
    if not isinstance(ids, Iterable):
        raise TypeError(
            f"ids must be a sequence of ids, got {_describe(ids)} {ids!r}; hint: pass a list with one id per row"
        )
    if isinstance(ids, np.ndarray):
        if ids.ndim != 1:
            raise ValueError(f"ids must be 1-D, got shape {ids.shape}; hint: pass a flat list")
        ids = ids.tolist()
    ids = tuple(ids)
    check_same_rows(n, "keys", len(ids), "ids")
    for i in ids:
        if not isinstance(i, str | int) or isinstance(i, bool):
            raise TypeError(f"ids must be str or int, got {type(i).__name__} {i!r}; hint: convert ids with str() first")
    if len(set(ids)) != len(ids):
        seen: set = set()
        dups = list(dict.fromkeys(i for i in ids if i in seen or seen.add(i)))  # type: ignore[func-returns-value]
        raise ValueError(
            f"ids must be unique, but {len(dups)} {'ids appear' if len(dups) > 1 else 'id appears'} "
            f"more than once: {_preview(dups)}; hint: de-duplicate the rows or give explicit ids"
        )
    return ids


def as_payloads(payloads: Sequence[Any] | None, n: int) -> tuple | None:
    """Return per-row payloads as a tuple (or None)."""
    if payloads is None:
        return None
    if isinstance(payloads, str | bytes):
        raise TypeError(
            "payloads must be a sequence with one object per row, got a single string; hint: wrap it in a list"
        )
    if not isinstance(payloads, Iterable):
        raise TypeError(
            f"payloads must be a sequence with one object per row, got {_describe(payloads)} "
            f"{payloads!r}; hint: pass a list"
        )
    if isinstance(payloads, set | frozenset):
        raise TypeError("payloads must be an ordered sequence, got a set; hint: pass a list in row order")
    payloads = tuple(payloads.tolist() if isinstance(payloads, np.ndarray) else payloads)
    check_same_rows(n, "keys", len(payloads), "payloads")
    return payloads


def check_new_ids(existing: dict, new: tuple) -> None:
    """Raise if ids to add are already in the table."""
    clash = [i for i in new if i in existing]
    if clash:
        raise ValueError(
            f"cannot add rows: {len(clash)} duplicate ids already in the table, e.g. "
            f"{_preview(clash)}; hint: remove them first or choose new ids"
        )


def check_known_ids(index: dict, ids: Sequence[Hashable]) -> None:
    """Raise if any of ``ids`` is not in the table."""
    bad = [i for i in ids if not isinstance(i, Hashable)]
    if bad:
        raise TypeError(
            f"ids to remove must be str or int, got {type(bad[0]).__name__} {bad[0]!r}; "
            "hint: pass a flat list of ids, e.g. table.remove(['a', 'b'])"
        )
    unknown = [i for i in ids if i not in index]
    if unknown:
        raise ValueError(
            f"cannot remove rows: {len(unknown)} unknown ids {_preview(unknown)}; "
            "hint: table.ids lists the ids in the table"
        )


def _preview(items: Sequence[Any], limit: int = 5) -> str:
    shown = ", ".join(repr(i) for i in list(items)[:limit])
    more = f", … ({len(items) - limit} more)" if len(items) > limit else ""
    return f"[{shown}{more}]"


def as_temperature(t: Any) -> float:
    """Return a finite positive temperature as float."""
    if isinstance(t, bool) or not isinstance(t, int | float | np.integer | np.floating):
        raise TypeError(f"temperature must be a positive number, got {_describe(t)} {t!r}; hint: e.g. temperature=0.05")
    t = float(t)
    if not math.isfinite(t) or t <= 0:
        raise ValueError(
            f"temperature must be finite and > 0, got {t!r}; "
            "hint: small temperatures sharpen the weights, large ones flatten them"
        )
    return t


def as_metric(metric: Any) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {list(METRICS)}, got {metric!r}")
    return metric


def as_mode(mode: Any) -> str:
    if mode not in MODES:
        raise ValueError(
            f"mode must be one of {list(MODES)}, got {mode!r}; "
            "hint: 'soft' blends the values by weight, 'hard' returns the best row's value"
        )
    return mode


def as_k(k: Any, n: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise TypeError(f"k must be an int, got {_describe(k)} {k!r}")
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got k={k}")
    if k > n:
        raise ValueError(f"k={k} but the table has {n} rows; hint: use k <= len(table)")
    return k


def as_mask(mask: Any, m: int, n: int, single: bool) -> np.ndarray | None:
    """Return a boolean mask of shape (n,) or (m, n), True = row allowed."""
    if mask is None:
        return None
    try:
        arr = np.asarray(mask)
    except (ValueError, TypeError):
        raise ValueError(
            "mask must be a rectangular boolean array, but its rows have different lengths; "
            "hint: one boolean per table row, or one row of them per query"
        ) from None
    if arr.dtype != np.bool_:
        raise TypeError(
            f"mask must be a boolean array (True = row allowed), got dtype {arr.dtype}; "
            "hint: build it with a comparison, e.g. prices < 10"
        )
    if arr.shape == (n,):
        return arr
    if arr.shape == (m, n) and not single:
        return arr
    if single and arr.ndim == 2 and arr.shape == (1, n):
        return arr[0]
    want = f"({n},)" if single else f"({n},) or ({m}, {n})"
    raise ValueError(
        f"mask must have shape {want} for {m} queries and {n} rows, got {arr.shape}; "
        "hint: one boolean per table row, or one row of them per query"
    )


def check_not_empty(n: int) -> None:
    if n == 0:
        raise ValueError("cannot look up in an empty table (0 rows); hint: add rows with table.add(keys, values)")


def check_finite_result(arr: np.ndarray, what: str, temperature: float) -> None:
    """Raise instead of returning a NaN/inf produced by float overflow."""
    if not np.isfinite(arr).all():
        raise ValueError(
            f"the {what} overflowed {arr.dtype}: scores / temperature (temperature={temperature:g}) "
            "or the values are too large to represent; hint: normalise the vectors, use "
            "metric='cosine', a larger temperature, or float64 arrays"
        )


def scores_underflowed(temperature: float, dtype: np.dtype) -> ValueError:
    """The error for a τ so small that every allowed score / τ became -inf."""
    return ValueError(
        f"temperature={temperature:g} is too small for {np.dtype(dtype).name} scores: every score / τ "
        "overflowed to -inf, so no row could get any weight; hint: use mode='hard' (the τ → 0 limit "
        "of the soft lookup), a larger temperature, or float64 arrays"
    )


PRECISIONS = ("int8", "bf16")


def as_precision(precision: Any) -> str:
    """A compressed precision: "int8" or "bf16"."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(
            f"precision must be one of {list(PRECISIONS)}, got {precision!r}; "
            "hint: 'int8' keeps 1 byte per number (one scale per row), 'bf16' keeps 2"
        )
    return precision


def check_compressible(kind: str, dtype: np.dtype, projected: bool) -> None:
    """compress() needs a plain table of dense float32 keys."""
    if kind != "dense":
        raise ValueError(
            f"compress() needs dense keys, but this table's keys are {kind}; "
            "hint: compress a table of dense embeddings (metric 'dot' or 'cosine')"
        )
    if np.dtype(dtype) != np.float32:
        raise ValueError(
            f"compress() needs float32 keys, got {np.dtype(dtype).name}; "
            "hint: build the table from keys.astype(np.float32)"
        )
    if projected:
        raise ValueError(
            "compress() needs a table without a projection (its scores are of projected rows); "
            "hint: table.projection = None, or build a table of the projected keys"
        )


def check_finite_keys(bad_rows: np.ndarray, n: int, what: str = "keys") -> None:
    """Every key must be finite, with a norm that float32 can hold (``bad_rows``: rows that are not)."""
    if len(bad_rows):
        raise ValueError(
            f"compress() needs finite {what} whose norms fit in float32, but {len(bad_rows)} of {n} rows "
            f"are not (first: row {int(bad_rows[0])}); hint: remove those rows, or rescale the keys"
        )


def as_tolerance(tol: Any) -> float:
    """A weight tolerance: a finite number > 0."""
    if isinstance(tol, bool) or not isinstance(tol, int | float | np.integer | np.floating):
        raise TypeError(f"weight_tolerance must be a number, got {_describe(tol)} {tol!r}; hint: e.g. 1e-3")
    t = float(tol)
    if not math.isfinite(t) or t <= 0:
        raise ValueError(
            f"weight_tolerance must be finite and > 0, got {t!r}; "
            "hint: the widest certified weight interval allowed, e.g. 1e-3"
        )
    return t
