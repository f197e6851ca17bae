"""The tiered merge policy of a table's segments, and the merge itself (:mod:`softdb.table._segments`).

When the last MERGE_FACTOR sealed segments are of one size tier (their live rows over SEAL_ROWS,
in powers of MERGE_FACTOR) they merge into one, deleted rows dropped; only neighbours merge, so
rows keep their insertion order, and the number of segments stays logarithmic in the rows.

Examples
--------
>>> import numpy as np
>>> from softdb.table._segments import Segment
>>> a = Segment(np.eye(2, dtype=np.float32), None, ["a", "b"], None).view(np.array([True, False]))
>>> b = Segment(np.ones((1, 2), np.float32), None, ["c"], None).view()
>>> m = merged([a, b], shared_kv=True)
>>> m.ids.tolist(), m.keys.tolist()
(['a', 'c'], [[1.0, 0.0], [1.0, 1.0]])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from softdb.engine import _keys
from softdb.table import _segments
from softdb.table._segments import Segment, SegView

__all__ = ["merge_tail", "merged"]


def _tier(n: int) -> int:
    seal, factor = _segments.SEAL_ROWS, _segments.MERGE_FACTOR
    return 0 if n <= seal else int(math.log(n / seal, factor))


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
    factor = _segments.MERGE_FACTOR
    while len(sealed) >= factor:
        tail = sealed[-factor:]
        tiers = {_tier(v.n_live) for v in tail}
        if len(tiers) != 1:
            break
        sealed = [*sealed[:-factor], merged(tail, shared_kv)]
    return sealed
