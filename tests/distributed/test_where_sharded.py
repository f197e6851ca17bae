"""where= on a ShardedTable (a real 2-worker LocalCluster): the filter goes to the workers, not a mask.

Random filters (the strategies and the plain Python predicate of tests/table/test_where_equivalence.py)
over a sharded table of mixed payloads (some rows removed) give the hits, scores and weights of an
in-process table over the same live rows asked with the predicate's mask (mask path).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst

from softdb import SoftTable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "table"))
import test_where_equivalence as W  # noqa: N812  the oracle and the filter strategies

distributed = pytest.importorskip("distributed")
from softdb.distributed._table import ShardedTable  # noqa: E402

pytestmark = pytest.mark.timeout(600)


def _payloads(rng: np.random.Generator, n: int) -> list:
    """Mixed payloads as the strategies draw them: dicts with some fields, texts, None."""
    scal = [-1, 0, 1, 0.5, 1.0, 2**40, "a", "b", "c", "1", True, False, None, [1, 2]]
    out: list = []
    for _ in range(n):
        shape = rng.integers(0, 6)
        if shape == 4:
            out.append(" ".join(rng.choice(W.WORDS, rng.integers(0, 4)).tolist()))
        elif shape == 5:
            out.append(None)
        else:
            p = {f: scal[rng.integers(len(scal))] for f in W.FIELDS if rng.random() < 0.6}
            if rng.random() < 0.5:
                p["text"] = " ".join(rng.choice(W.WORDS, rng.integers(0, 4)).tolist())
            out.append(p)
    return out


@pytest.fixture(scope="module")
def sharded(client, tmp_path_factory):
    rng = np.random.default_rng(7)
    n = 90
    keys = rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], (n, W.D)).astype(np.float32)  # (n, D)  exact scores
    pays = _payloads(rng, n)
    ids = [f"r{i}" for i in range(n)]
    path = str(tmp_path_factory.mktemp("where") / "t")
    ShardedTable.create(path, keys, ids=ids, payloads=pays, shards=3, temperature=W.TAU)
    gone = set(rng.choice(n, 12, replace=False).tolist())
    live = [i for i in range(n) if i not in gone]
    with ShardedTable.open(path, client=client, timeout=300) as t:
        t.remove([ids[i] for i in sorted(gone)])
        yield t, keys[live], [ids[i] for i in live], [pays[i] for i in live]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(f=W.filters, with_mask=hst.booleans())
def test_sharded_where_equals_the_predicate(sharded, f, with_mask):
    t, keys, live, pays = sharded
    if not W.used_fields(f) <= {k for p in pays if isinstance(p, dict) for k in p}:
        return  # a field no live row has: the messages are pinned in tests/table/test_where.py
    allowed = np.array([W.passes(f, p) for p in pays], bool)  # (n,)
    user = np.random.default_rng(len(str(f))).random((len(W.Q), len(live))) < 0.7 if with_mask else None
    mask = allowed if user is None else allowed & user
    ref = SoftTable(keys, ids=live, payloads=pays, temperature=W.TAU)
    with W.forced("mask"):
        want = ref.search(W.Q, k=5, mask=mask)
        soft = ref.lookup(W.Q, mask=mask)
        hard = ref.lookup(W.Q, mode="hard", mask=mask)
    got = t.search(W.Q, k=5, where=f, mask=user)
    np.testing.assert_array_equal(got.rows, want.rows)
    assert got.ids.tolist() == want.ids.tolist()
    assert got.payloads.tolist() == want.payloads.tolist()
    np.testing.assert_array_equal(got.scores, want.scores)
    np.testing.assert_allclose(got.weights, want.weights, rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(t.lookup(W.Q, where=f, mask=user), soft, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(t.lookup(W.Q, mode="hard", where=f, mask=user), hard)
    passing = np.broadcast_to(mask, (len(W.Q), len(live)))
    np.testing.assert_allclose(
        t.weights(W.Q, where=f, mask=user), W.reference_weights(keys, passing), rtol=1e-5, atol=1e-6
    )


def test_the_filter_is_sent_not_a_mask(sharded):
    t, _, _, _ = sharded
    q = W.Q[:1]
    t.search(q, k=3)
    plain = t.last_batch_bytes["to_workers"]
    t.search(q, k=3, where={"x": {"$in": [0, 1]}})
    assert t.last_batch_bytes["to_workers"] == plain  # only the queries travel (a mask would add n/8 bytes)
    t.search(q, k=3, mask=np.ones(len(t), bool))
    assert t.last_batch_bytes["to_workers"] > plain


def test_sharded_explain_takes_where(sharded):
    t, keys, live, pays = sharded
    f = {"$or": [{"x": {"$in": [0, 1]}}, {"$contains": "gzip"}]}
    e = t.explain(W.Q[1], k=3, where=f)
    ref = SoftTable(keys, ids=live, payloads=pays, temperature=W.TAU)
    want = ref.explain(W.Q[1], k=3, where=f)
    assert e.ids == want.ids
    np.testing.assert_allclose(e.weights, want.weights, rtol=1e-5, atol=1e-7)
