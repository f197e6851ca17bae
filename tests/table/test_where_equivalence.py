"""where= equals a plain Python predicate over the payload dicts, on every path.

Random filters (every operator, nesting, missing fields, mixed types, ``$contains``) over random
tables (several segments, some rows removed) must give the hit sets, scores and weights of a
freshly built table over the live rows asked with the predicate's mask, and weights equal to a
float64 softmax over the rows that pass. Both in-process paths run: the mask path (score every
row, mask) and the prefilter path (gather the passing rows, score those), forced through the
switch point. Keys and queries sit on a grid of halves at τ = 0.5, so every score is exact and
"identical rows, ties included" does not hang on how BLAS rounds one GEMM shape.
"""

from __future__ import annotations

import itertools
import math
from contextlib import contextmanager
from typing import Any

import hypothesis.strategies as hst
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings

from softdb import SoftTable
from softdb.table import _prefilter, _segments

D = 3
TAU = 0.5
Q = np.array([[1, 0, 0], [0, 1, 1], [1, -1, 0.5], [0, 0, 0]], np.float32)  # the last: every score 0
FIELDS = ("x", "y", "z")
WORDS = ("gzip", "zlib", "tar", "csv")

# ----------------------------------------------------------------------------- the oracle


def kind(v: Any) -> str | None:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return None if isinstance(v, float) and math.isnan(v) else "num"
    return "str" if isinstance(v, str) else None


def text_of(p: Any) -> str | None:
    if isinstance(p, str):
        return p
    if isinstance(p, dict) and isinstance(p.get("text"), str):
        return p["text"]
    return None


def holds(op: str, a: Any, has: bool, v: Any) -> bool:
    """One field condition on one payload value (``has``: the payload has the field)."""

    def eq(x: Any) -> bool:
        return has and kind(v) is not None and kind(v) == kind(x) and v == x

    num = has and kind(v) == "num"
    if op == "$eq":
        return eq(a)
    if op == "$ne":
        return not eq(a)
    if op in ("$in", "$nin"):
        return any(eq(x) for x in a) == (op == "$in")
    if not num:
        return False
    return {"$gt": v > a, "$gte": v >= a, "$lt": v < a, "$lte": v <= a}[op]


def passes(f: dict, p: Any) -> bool:
    """The plain Python predicate: the documented semantics, row by row."""
    fields = p if isinstance(p, dict) else {}
    for key, val in f.items():
        if key == "$and":
            ok = all(passes(g, p) for g in val)
        elif key == "$or":
            ok = any(passes(g, p) for g in val)
        elif key == "$contains":
            t = text_of(p)
            ok = t is not None and val in t
        else:
            has, v = key in fields, fields.get(key)
            conds = val.items() if isinstance(val, dict) else [("$eq", val)]
            ok = all(holds(op, arg, has, v) for op, arg in conds)
        if not ok:
            return False
    return True


def used_fields(f: dict) -> set:
    out: set = set()
    for key, val in f.items():
        if key in ("$and", "$or"):
            for g in val:
                out |= used_fields(g)
        elif key != "$contains":
            out.add(key)
    return out


# ----------------------------------------------------------------------------- strategies

numbers = hst.sampled_from([-1, 0, 1, 0.5, 1.0, 2**40])
scalars = hst.one_of(numbers, hst.sampled_from(["a", "b", "c", "1"]), hst.booleans())
field_values = hst.one_of(scalars, hst.none(), hst.just([1, 2]))  # None and lists: present, never equal
texts = hst.lists(hst.sampled_from(WORDS), max_size=3).map(" ".join)


@hst.composite
def payloads(draw: Any) -> Any:
    shape = draw(hst.sampled_from(["dict", "dict", "dict", "str", "none"]))
    if shape == "str":
        return draw(texts)
    if shape == "none":
        return None
    p = {f: draw(field_values) for f in FIELDS if draw(hst.booleans())}
    if draw(hst.booleans()):
        p["text"] = draw(texts)
    return p


def leaf(field: str) -> Any:
    ops = hst.sampled_from(["$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "bare"])

    @hst.composite
    def one(draw: Any) -> dict:
        op = draw(ops)
        if op == "bare":
            return {field: draw(scalars)}
        if op in ("$in", "$nin"):
            return {field: {op: draw(hst.lists(scalars, min_size=1, max_size=3))}}
        if op in ("$gt", "$gte", "$lt", "$lte"):
            return {field: {op: draw(numbers)}}
        return {field: {op: draw(scalars)}}

    return one()


leaves = hst.one_of(
    hst.sampled_from(FIELDS).flatmap(leaf),
    hst.sampled_from([*WORDS, "g", "z", ""]).map(lambda w: {"$contains": w}),
)
filters = hst.recursive(
    leaves,
    lambda sub: hst.one_of(
        hst.lists(sub, min_size=1, max_size=3).map(lambda fs: {"$and": fs}),
        hst.lists(sub, min_size=1, max_size=3).map(lambda fs: {"$or": fs}),
        hst.tuples(sub, sub).map(lambda ab: {**ab[0], **ab[1]}),  # several keys: their $and
    ),
    max_leaves=6,
)


@hst.composite
def tables(draw: Any) -> tuple[list, list, list]:
    """Batches of (keys, payloads) written in turn, and the ids removed at the end."""
    n = draw(hst.integers(1, 24))
    keys = draw(
        hst.lists(
            hst.lists(hst.sampled_from([-1.0, -0.5, 0.0, 0.5, 1.0]), min_size=D, max_size=D), min_size=n, max_size=n
        )
    )
    pays = draw(hst.lists(payloads(), min_size=n, max_size=n))
    cuts = sorted(draw(hst.lists(hst.integers(1, n), max_size=4)))
    removed = draw(hst.lists(hst.integers(0, n - 1), max_size=n // 3, unique=True))
    return keys, pays, [0, *cuts, n], removed


@contextmanager
def forced(path: str):
    """The prefilter switch forced one way: "prefilter" always, "mask" never (even when nothing passes)."""
    old = _prefilter.PREFILTER_BELOW, _prefilter.PREFILTER_BELOW_MANY
    _prefilter.PREFILTER_BELOW = _prefilter.PREFILTER_BELOW_MANY = 1.0 if path == "prefilter" else -1.0
    try:
        yield
    finally:
        _prefilter.PREFILTER_BELOW, _prefilter.PREFILTER_BELOW_MANY = old


@contextmanager
def small_segments_and(path: str):
    """Tiny segments (so a few rows are many), and the prefilter switch forced one way."""
    old = _segments.SEAL_ROWS, _segments.MERGE_FACTOR
    _segments.SEAL_ROWS, _segments.MERGE_FACTOR = 4, 3
    try:
        with forced(path):
            yield
    finally:
        _segments.SEAL_ROWS, _segments.MERGE_FACTOR = old


def build(keys: list, pays: list, cuts: list, removed: list) -> tuple[SoftTable, np.ndarray, list, list]:
    k = np.array(keys, np.float32)  # (n, D)
    ids = list(range(len(keys)))
    t = SoftTable(k[: cuts[1]], ids=ids[: cuts[1]], payloads=pays[: cuts[1]], temperature=TAU)
    for a, b in itertools.pairwise(cuts[1:]):
        if b > a:
            t.add(k[a:b], ids=ids[a:b], payloads=pays[a:b])
    live = [i for i in ids if i not in set(removed)]
    if removed and live:
        t.remove(removed)
    else:
        live = ids
    return t, k[live], live, [pays[i] for i in live]


def reference_weights(keys: np.ndarray, allowed: np.ndarray, queries: np.ndarray = Q) -> np.ndarray:
    """float64 softmax of Q·Kᵀ/τ over the allowed rows; a query with none: all 0."""
    s = queries.astype(np.float64) @ keys.astype(np.float64).T / TAU  # (m, n)
    s = np.where(allowed, s, -np.inf)
    top = np.where(allowed.any(axis=1), s.max(axis=1), 0)[:, None]  # (m, 1)
    w = np.exp(s - top)  # (m, n)  0 where not allowed
    total = w.sum(axis=1, keepdims=True)  # (m, 1)
    return w / np.where(total > 0, total, 1)


def check_equivalent(
    t: SoftTable, keys: np.ndarray, live: list, pays: list, f: dict, user_mask: Any, Q: np.ndarray = Q
) -> None:
    allowed = np.array([passes(f, p) for p in pays], bool)  # (n,)  the predicate, row by row
    mask = allowed if user_mask is None else allowed & user_mask  # (n,) | (m, n)
    fresh = SoftTable(keys, ids=live, payloads=pays, temperature=TAU)
    k = min(4, len(live))
    with forced("mask"):  # the oracle: one array of the live rows, every row scored, then masked
        want = fresh.search(Q, k=k, mask=mask)
        soft_want, hard_want = fresh.lookup(Q, mask=mask), fresh.lookup(Q, mode="hard", mask=mask)
    got = t.search(Q, k=k, where=f, mask=user_mask)
    np.testing.assert_array_equal(got.rows, want.rows)
    assert got.ids.tolist() == want.ids.tolist()
    assert got.payloads.tolist() == want.payloads.tolist()
    np.testing.assert_array_equal(got.scores, want.scores)
    np.testing.assert_allclose(got.weights, want.weights, rtol=2e-6, atol=1e-7)
    passing = np.broadcast_to(mask, (len(Q), len(live)))  # (m, n)
    assert ((got.rows >= 0).sum(axis=1) == np.minimum(passing.sum(axis=1), k)).all()  # exactly k when k pass
    w = t.weights(Q, where=f, mask=user_mask)  # (m, n)
    np.testing.assert_allclose(w, reference_weights(keys, passing, Q), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(t.lookup(Q, where=f, mask=user_mask), soft_want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(t.lookup(Q, mode="hard", where=f, mask=user_mask), hard_want)


@pytest.mark.parametrize("path", ["mask", "prefilter", "prefilter-many"])
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(table=tables(), f=filters, with_mask=hst.booleans(), seed=hst.integers(0, 2**16))
def test_where_equals_the_predicate(path: str, table: tuple, f: dict, with_mask: bool, seed: int) -> None:
    keys, pays, cuts, removed = table
    queries = np.tile(Q, (4, 1)) if path == "prefilter-many" else Q  # 16 queries: keys gathered as scored
    with small_segments_and(path.split("-")[0]):
        t, live_keys, live, live_pays = build(keys, pays, cuts, removed)
        ever = {k for p in pays if isinstance(p, dict) for k in p}
        now = {k for p in live_pays if isinstance(p, dict) for k in p}
        if not used_fields(f) <= ever:
            event("a field no row has")
            with pytest.raises(ValueError, match="which no row has"):
                t.search(Q, k=1, where=f)
            return
        if not used_fields(f) <= now:
            event("a field only removed rows had")
            return  # either answer is fine
        user_mask = np.random.default_rng(seed).random((len(queries), len(live))) < 0.7 if with_mask else None
        event("compared")
        check_equivalent(t, live_keys, live, live_pays, f, user_mask, queries)


def test_the_paths_agree_on_one_query_and_a_json_filter() -> None:
    """A single query, and the filter as JSON text (as the CLI and the web API pass it)."""
    rng = np.random.default_rng(3)
    k = rng.integers(-2, 3, (400, D)).astype(np.float32)  # (n, D)
    pays = [{"year": 2000 + int(i % 30), "lang": ["en", "de", "fr"][i % 3]} for i in range(400)]
    t = SoftTable(k, payloads=pays, temperature=TAU)
    f = '{"$and": [{"year": {"$gte": 2025}}, {"lang": {"$nin": ["fr"]}}]}'
    answers = {}
    for path in ("mask", "prefilter"):
        with small_segments_and(path):
            answers[path] = t.search(Q[1], k=7, where=f), t.weights(Q[1], where=f)
    (a, wa), (b, wb) = answers["mask"], answers["prefilter"]
    np.testing.assert_array_equal(a.rows, b.rows)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_allclose(a.weights, b.weights, rtol=2e-6)
    np.testing.assert_allclose(wa, wb, rtol=2e-6, atol=1e-8)
    assert all(pays[r]["year"] >= 2025 and pays[r]["lang"] != "fr" for r in a.rows)
