"""Segments: after any sequence of writes, every answer equals a freshly built table over the live rows.

The oracle is a ``SoftTable`` built from scratch (one array, no segment, nothing removed) over
the live rows in insertion order. Keys come from a small integer grid, so ties are common and
the tie rule (lowest global row) is tested in every step. The seal size and merge factor are
made tiny so a few rows already make many segments, seals and merges.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import hypothesis.strategies as hst
import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from softdb import SoftTable
from softdb.table import _segments
from softdb.text import HashEncoder

D, DV = 3, 2
# A power of two, with keys and queries on a grid of quarters: every scaled score is exact in
# float32 whatever the order or fusing of the products, so "identical scores, ties included" is a
# property of the segments, not of how a BLAS kernel happens to round one GEMM shape. (At τ = 0.7
# an exact 0 came out as -4.2e-8 in a whole-table GEMM and as 0 in a one-row segment.)
TAU = 0.5
Q = np.array([[1, 0, 0], [0, 1, 1], [1, -1, 0.5], [0, 0, 0]], np.float32)  # the last: every score 0 (all tie)


def small_segments(monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[int, int]:
    old = _segments.SEAL_ROWS, _segments.MERGE_FACTOR
    _segments.SEAL_ROWS, _segments.MERGE_FACTOR = 4, 3
    return old


def assert_same_answers(
    t: SoftTable, keys: np.ndarray, values: np.ndarray, ids: list, pays: list | None, seed: int
) -> None:
    """Every mode of ``t`` equals a fresh table over (keys, values, ids, pays)."""
    assert t.ids == tuple(ids)
    assert len(t) == len(ids)
    if not ids:
        return
    fresh = SoftTable(keys, values, ids=ids, payloads=pays, temperature=TAU)
    rng = np.random.default_rng(seed)
    n = len(ids)
    k = min(3, n)
    masks = [None, rng.random(n) < 0.6, rng.random((len(Q), n)) < 0.5]
    for mask in masks:
        np.testing.assert_allclose(t.lookup(Q, mask=mask), fresh.lookup(Q, mask=mask), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(t.lookup(Q, mode="hard", mask=mask), fresh.lookup(Q, mode="hard", mask=mask))
        a, b = t.search(Q, k=k, mask=mask), fresh.search(Q, k=k, mask=mask)
        np.testing.assert_array_equal(a.rows, b.rows)
        assert a.ids.tolist() == b.ids.tolist()
        assert (a.payloads is None) == (b.payloads is None)
        assert a.payloads is None or a.payloads.tolist() == b.payloads.tolist()
        np.testing.assert_array_equal(a.scores, b.scores)
        np.testing.assert_allclose(a.weights, b.weights, rtol=2e-6, atol=1e-7)
        np.testing.assert_allclose(t.weights(Q, mask=mask), fresh.weights(Q, mask=mask), rtol=2e-6, atol=1e-7)
    one = t.search(Q[1], k=k)
    assert one.ids.tolist() == fresh.search(Q[1], k=k).ids.tolist()
    for i in rng.choice(n, size=min(3, n), replace=False):
        assert t.row_of(ids[i]) == i


class GridEncoder(HashEncoder):
    """HashEncoder's vectors rounded to quarters: every score against ``Q`` is exact in float32.

    With float keys, BLAS may round one row's dot product differently in a one-row segment
    than inside a larger GEMM (an exact 0 came out as 1.9e-8 in one of them), so "identical
    scores, ties included" is asserted on keys whose products no rounding can touch.
    """

    def __init__(self) -> None:
        super().__init__(D)

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool | None = None) -> np.ndarray:
        return np.round(super().encode(texts) * 4) / 4  # (n, D)  multiples of 0.25


class Segments(RuleBasedStateMachine):
    """Random add / add_texts / remove / compact / save / load / mmap load; every step checked against the oracle."""

    def __init__(self) -> None:
        super().__init__()
        self.old = small_segments()
        self.keys: list[np.ndarray] = []
        self.values: list[np.ndarray] = []
        self.ids: list = []
        self.pays: list = []
        self.next = 0
        self.step = 0
        self.has_pays = False
        import tempfile

        self.dir = tempfile.mkdtemp(prefix="softdb-seg-")
        k0, v0 = self._rows(3)
        ids0 = self._new_ids(3)
        self.table = SoftTable(k0, v0, ids=ids0, payloads=None, temperature=TAU)
        self.table.encoder = GridEncoder()  # add_texts encodes with it
        self.ids.extend(ids0)
        self._keep(k0, v0, None)

    def _rows(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(1000 + self.next)
        k = rng.integers(-1, 2, size=(r, D)).astype(np.float32)  # a small grid: many ties
        v = rng.normal(size=(r, DV)).astype(np.float32)
        return k, v

    def _new_ids(self, r: int) -> list:
        ids = [f"r{self.next + j}" if (self.next + j) % 2 else self.next + j for j in range(r)]
        self.next += r
        return ids

    def _keep(self, k: np.ndarray, v: np.ndarray, pays: list | None) -> None:
        r = len(k)
        self.keys.extend(k)
        self.values.extend(v)
        self.pays.extend(pays or [None] * r)

    @rule(r=hst.integers(1, 6), with_payloads=hst.booleans())
    def add(self, r: int, with_payloads: bool) -> None:
        k, v = self._rows(r)
        ids = self._new_ids(r)
        pays = [f"p{i}" for i in ids] if with_payloads else None
        self.table.add(k, v, ids=ids, payloads=pays)
        self.has_pays |= with_payloads
        self.ids.extend(ids)
        self._keep(k, v, pays)

    @rule(data=hst.data())
    def add_removed_id_again(self, data: hst.DataObject) -> None:
        gone = [i for i in range(self.next) if i not in self.ids and f"r{i}" not in self.ids]
        if not gone:
            return
        j = data.draw(hst.sampled_from(gone))
        rid = f"r{j}" if j % 2 else j
        k, v = self._rows(1)
        self.next += 1
        self.table.add(k, v, ids=[rid])
        self.ids.append(rid)
        self._keep(k, v, None)

    @precondition(lambda self: len(self.ids) > 1)
    @rule(data=hst.data())
    def remove(self, data: hst.DataObject) -> None:
        which = data.draw(hst.lists(hst.integers(0, len(self.ids) - 1), min_size=1, max_size=3, unique=True))
        gone = [self.ids[i] for i in which]
        self.table.remove(gone)
        for i in sorted(which, reverse=True):
            del self.ids[i], self.keys[i], self.values[i], self.pays[i]

    @rule()
    def compact(self) -> None:
        before = len(self.table._state.rows.views)
        report = self.table.compact()
        assert report.segments_before == before and report.segments_after == 1
        assert len(self.table._state.rows.views) == 1

    @rule(mmap=hst.booleans())
    def save_and_load(self, mmap: bool) -> None:
        path = f"{self.dir}/t"
        self.table.save(path)
        self.table = SoftTable.load(path, mmap=mmap)
        self.table.encoder = GridEncoder()  # saved by name ("hash-3"); the test's encoder rounds it

    @rule()
    def save_keep_going(self) -> None:
        self.table.save(f"{self.dir}/t")  # an incremental save; the table goes on in memory

    @rule(r=hst.integers(1, 3))
    def add_texts(self, r: int) -> None:
        """Texts encoded by the table's own encoder; the oracle encodes them with a fresh encoder."""
        texts = [f"note {self.next + j} about {'cats' if (self.next + j) % 3 else 'dogs'}" for j in range(r)]
        _, v = self._rows(r)
        ids = self._new_ids(r)
        got = self.table.add_texts(texts, ids=ids, values=v)
        assert got == ids
        self.has_pays = True  # add_texts stores each text as its row's payload
        self.ids.extend(ids)
        self._keep(GridEncoder().encode(texts), v, list(texts))

    @invariant()
    def answers_equal_a_fresh_table(self) -> None:
        self.step += 1
        keys = np.array(self.keys, np.float32).reshape(-1, D)
        values = np.array(self.values, np.float32).reshape(-1, DV)
        pays = list(self.pays) if self.has_pays else None
        assert self.table.payloads == (None if pays is None else tuple(pays))
        assert_same_answers(self.table, keys, values, self.ids, pays, self.step)

    def teardown(self) -> None:
        _segments.SEAL_ROWS, _segments.MERGE_FACTOR = self.old
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)


Segments.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
test_segments_equal_a_fresh_table = Segments.TestCase


@pytest.fixture
def tiny_segments():
    old = small_segments()
    yield
    _segments.SEAL_ROWS, _segments.MERGE_FACTOR = old


def test_many_single_adds_keep_the_segment_count_logarithmic(tiny_segments):
    t = SoftTable(np.ones((1, 2), np.float32))
    counts = []
    for i in range(1, 400):
        t.add([[float(i % 7), 1.0]])
        counts.append(len(t._state.rows.views))
    assert max(counts) <= 2 * 5 + 2  # (factor − 1) per tier × log_3(400 / 4) tiers, + growing + first
    report = t.compact()
    assert report.segments_after == 1 and report.rows_dropped == 0
    assert t.ids == tuple(range(400))


def test_remove_copies_no_row_and_compact_drops_them(tiny_segments):
    k = np.arange(20, dtype=np.float32).reshape(10, 2)
    t = SoftTable(k, ids=list("abcdefghij"))
    keys_before = t._state.rows.views[0].keys
    t.remove(["c", "d"])
    assert t._state.rows.views[0].keys is keys_before  # nothing copied: only the bitmap changed
    assert t.ids == tuple("abefghij")
    r = t.compact()
    assert (r.segments_before, r.segments_after, r.rows_dropped) == (1, 1, 2)
    np.testing.assert_array_equal(t.keys, np.delete(k, [2, 3], axis=0))


def test_readers_keep_their_version_when_the_growing_segment_takes_more_rows(tiny_segments):
    t = SoftTable(np.eye(3, dtype=np.float32), ids=["a", "b", "c"])
    t.add([[1.0, 1.0, 0.0]], ids=["d"])
    old = t._state
    t.add([[0.0, 1.0, 1.0]], ids=["e"])
    t.remove(["d"])
    t.add([[2.0, 0.0, 0.0]], ids=["d"])  # a removed id again
    assert old.rows.ids == ("a", "b", "c", "d")
    assert old.rows.index["d"] == 3
    assert t._state.rows.index["d"] == 4
    np.testing.assert_array_equal(old.rows.keys[3], [1.0, 1.0, 0.0])


def test_write_errors_say_what_must_hold(tiny_segments):
    t = SoftTable(np.eye(3, dtype=np.float32), ids=["a", "b", "c"])
    with pytest.raises(ValueError, match=re.escape("new keys have 2 columns but the table's keys have 3")):
        t.add(np.ones((1, 2), np.float32))
    with pytest.raises(
        ValueError, match=re.escape("cannot add rows: 1 duplicate ids already in the table, e.g. ['a']")
    ):
        t.add(np.ones((1, 3), np.float32), ids=["a"])
    with pytest.raises(ValueError, match=re.escape("cannot remove rows: 1 unknown ids ['zz']")):
        t.remove(["zz"])
    import scipy.sparse as sp

    with pytest.raises(ValueError, match=re.escape("new keys are csr of widths [3] but the table's are dense")):
        t.add(sp.csr_matrix(np.ones((1, 3), np.float32)))
    t.remove(["b"])
    with pytest.raises(ValueError, match=re.escape("cannot remove rows: 1 unknown ids ['b']")):
        t.remove(["b"])
    assert t.ids == ("a", "c")


def _kind_rows(kind: str, rng: np.random.Generator, r: int) -> object:
    import scipy.sparse as sp

    dense = rng.integers(-1, 2, size=(r, D)).astype(np.float32)
    if kind in ("dense", "projected"):
        return dense
    sparse = sp.csr_matrix(rng.integers(0, 2, size=(r, 5)).astype(np.float32))
    return sparse if kind == "csr" else [dense, sparse]


def _kind_queries(kind: str) -> object:
    import scipy.sparse as sp

    qs = np.array([[1, 0, 1, 0, 1], [0, 1, 0, 0, 0], [0, 0, 0, 0, 0]], np.float32)  # (3, 5)
    if kind in ("dense", "projected"):
        return Q
    return qs if kind == "csr" else [Q[:3], sp.csr_matrix(qs)]


@pytest.mark.parametrize("kind", ["dense", "csr", "blocks", "projected"])
def test_every_key_kind_and_projected_heads_answer_as_a_fresh_table(tiny_segments, kind, tmp_path):
    from softdb import Projection
    from softdb.engine import _keys

    rng = np.random.default_rng(7)
    bw = [1.0, 0.5] if kind == "blocks" else None
    proj = Projection(D, d_k=4, d_out=2, heads=2, init="random", seed=3) if kind == "projected" else None

    def build(keys: object, values: np.ndarray, ids: list) -> SoftTable:
        t = SoftTable(keys, values, ids=ids, temperature=0.7, block_weights=bw)
        if proj is not None:
            t.projection = proj
        return t

    keys = _keys.as_keys(_kind_rows(kind, rng, 5))
    values = rng.normal(size=(5, DV)).astype(np.float32)
    ids = list(range(5))
    t = build(keys, values, ids)
    for step in range(40):
        if step % 5 == 4 and len(ids) > 2:
            gone = sorted(rng.choice(len(ids), size=2, replace=False).tolist(), reverse=True)
            t.remove([ids[i] for i in gone])
            keep = np.setdiff1d(np.arange(len(ids)), gone)
            keys, values, ids = _keys.take(keys, keep), values[keep], [ids[i] for i in keep]
        else:
            r = int(rng.integers(1, 4))
            k = _keys.as_keys(_kind_rows(kind, rng, r))
            v = rng.normal(size=(r, DV)).astype(np.float32)
            new = list(range(100 + 3 * step, 100 + 3 * step + r))
            t.add(k, v, ids=new)
            keys, values, ids = _keys.stack(keys, k), np.concatenate([values, v]), ids + new
        if step == 20:
            t.save(tmp_path / "t")
            t = SoftTable.load(tmp_path / "t", mmap=True)
        if step % 3:
            continue
        fresh = build(keys, values, ids)
        q = _kind_queries(kind)
        m = 4 if kind in ("dense", "projected") else 3
        mask = rng.random((m, len(ids))) < 0.7
        for mk in (None, mask):
            np.testing.assert_allclose(t.lookup(q, mask=mk), fresh.lookup(q, mask=mk), rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(t.lookup(q, mode="hard", mask=mk), fresh.lookup(q, mode="hard", mask=mk))
            a, b = t.search(q, k=3, mask=mk), fresh.search(q, k=3, mask=mk)
            assert a.ids.tolist() == b.ids.tolist()
            if kind == "projected":  # heads > 1: a score is log mean head weight, from each head's lse
                np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
            else:
                np.testing.assert_array_equal(a.scores, b.scores)
            np.testing.assert_allclose(a.weights, b.weights, rtol=2e-6, atol=1e-7)
            np.testing.assert_allclose(t.weights(q, mask=mk), fresh.weights(q, mask=mk), rtol=2e-6, atol=1e-7)
    assert len(t._state.rows.views) > 1  # it did segment


def test_explain_of_a_segmented_table_reads_as_a_fresh_one(tiny_segments):
    rng = np.random.default_rng(2)
    k = rng.normal(size=(30, D)).astype(np.float32)
    t = SoftTable(k[:10], ids=[f"r{i}" for i in range(10)], temperature=0.5)
    for i in range(10, 30):
        t.add(k[i : i + 1], ids=[f"r{i}"])
    t.remove(["r3", "r12", "r25"])
    live = [i for i in range(30) if i not in (3, 12, 25)]
    fresh = SoftTable(k[live], ids=[f"r{i}" for i in live], temperature=0.5)
    assert len(t._state.rows.views) >= 2
    assert str(t.explain(k[12], k=4)) == str(fresh.explain(k[12], k=4))
