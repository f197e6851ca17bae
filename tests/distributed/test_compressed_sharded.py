"""ShardedTable.compress on a real 2-worker LocalCluster (processes, 127.0.0.1).

Oracles: the fp32 ``ShardedTable.search`` of the same table (rows, ids, scores to the bit), a
freshly built fp32 SoftTable of the same rows in shard order, and float64 softmax weights of the
fp32 scores of every row (``search(k=n)`` of that SoftTable) for the certified weight intervals.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

from softdb import SoftTable

distributed = pytest.importorskip("distributed")
from softdb.distributed._compressed import merge_shards  # noqa: E402
from softdb.distributed._cworker import ShardCertified  # noqa: E402
from softdb.distributed._table import ShardedTable  # noqa: E402

pytestmark = pytest.mark.timeout(300)


def _adversarial(n: int = 2400, d: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian keys, plus duplicates of early rows in later shards and near-ties (a few ulps apart)."""
    rng = np.random.default_rng(seed)
    keys = rng.standard_normal((n, d)).astype(np.float32)  # (n, d)
    src = rng.integers(0, 300, 200)
    keys[n - 200 :] = keys[src]  # duplicates across shards: exact ties, lowest row wins
    near = rng.integers(300, 600, 100)
    keys[1000:1100] = keys[near] * (1 + rng.integers(-3, 4, (100, 1)) * 2.0**-23).astype(np.float32)  # near-ties
    keys[1100:1150] *= 1e3  # a few huge rows
    keys[1150:1200] *= 1e-4  # and tiny ones
    q = np.concatenate([keys[src[:10]], keys[near[:6]], rng.standard_normal((8, d)).astype(np.float32)])
    return keys, q  # (n, d), (24, d)


def _same(got, want) -> None:
    np.testing.assert_array_equal(got.rows, want.rows)
    np.testing.assert_array_equal(got.scores, want.scores)
    assert got.ids.tolist() == want.ids.tolist()


def _weights_inside(ref: SoftTable, q: np.ndarray, got, tau: float, mask=None) -> None:
    """Each hit's exact weight (float64 softmax of the fp32 scores of all allowed rows) lies in its interval."""
    full = ref.search(q, k=len(ref), temperature=tau, mask=mask)  # every row's fp32 score
    s = np.where(full.rows >= 0, full.scores.astype(np.float64), -np.inf) / tau  # (m, n)
    lse = logsumexp(s, axis=1)  # (m,)
    checked = 0
    for i in range(q.shape[0]):
        if lse[i] == -np.inf:
            assert (got.rows[i] == -1).all()
            continue
        by_row = dict(zip(full.rows[i].tolist(), (s[i] - lse[i]).tolist()))
        for j, r in enumerate(got.rows[i].tolist()):
            if r < 0:
                continue
            w = np.exp(by_row[r])
            assert got.weight_lo[i, j] <= w <= got.weight_hi[i, j], (i, j, w, got.weight_lo[i, j], got.weight_hi[i, j])
            checked += 1
    assert checked


def _check(t: ShardedTable, ref: SoftTable, small, q: np.ndarray, k: int, tau: float, mask=None) -> None:
    got = small.search(q, k=k, temperature=tau, mask=mask)
    want = t.search(q, k=k, temperature=tau, mask=mask)
    _same(got, want)  # the fp32 sharded search, to the bit
    _same(got, ref.search(q, k=k, temperature=tau, mask=mask))  # one fp32 SoftTable of the same rows
    c = got.certificate
    assert c.holds.all() and not c.fallback.any() and (c.margin > 0).all()
    assert (c.rescored < len(t)).all()
    _weights_inside(ref, q, got, tau, mask)


@pytest.mark.parametrize("metric", ["dot", "cosine"])
@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_compressed_shards_equal_the_fp32_search(client, tmp_path, metric, precision):
    keys, q = _adversarial()
    ids = [f"r{i}" for i in range(len(keys))]
    path = str(tmp_path / "t")
    ShardedTable.create(path, keys, ids=ids, shards=3, metric=metric)
    ref = SoftTable(keys, ids=ids, metric=metric)
    with ShardedTable.open(path, client=client, timeout=120) as t:
        small = t.compress(precision)
        assert len(small) == len(t) and small.nbytes > 0 and len(small.shard_info) == 3
        tau = t.temperature
        for k in (1, 10):
            _check(t, ref, small, q, k, tau)
        _check(t, ref, small, q, 5, 0.5 * tau)
        small.search(q, k=10)  # only queries out; back per shard m·(16·k + 33) bytes: never O(m·n)
        m = len(q)
        assert small.last_batch_bytes == {"to_workers": 3 * q.nbytes, "from_workers": 3 * m * (16 * 10 + 33)}
        got = small.search(q[0], k=3)  # one query: 1-D hits, as ShardedTable.search
        want = t.search(q[0], k=3)
        assert got.ids.tolist() == want.ids.tolist() and got.scores.tolist() == want.scores.tolist()
        assert got.rows.shape == (3,) and got.weight_lo.shape == (3,)
        dupes = (np.arange(len(t)) < 300) | (np.arange(len(t)) >= len(t) - 200)  # rows and their copies
        ties = t.search(q, k=10, mask=dupes)
        assert (np.diff(ties.scores, axis=1) == 0).any(), "the data must hold exact ties"
        _check(t, ref, small, q, 10, tau, mask=dupes)


@st.composite
def grid_tables(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int, str]:
    """Keys and queries on a grid of quarters (every fp32 score exact): ties everywhere, duplicates across shards."""
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    d = draw(st.sampled_from([1, 3, 17]))
    n = draw(st.integers(2, 200))
    keys = rng.integers(-8, 9, (n, d)) / 4
    if draw(st.booleans()):
        keys = keys[rng.integers(0, max(1, n // 4), n)]  # duplicates, in any shard
    q = rng.integers(-8, 9, (draw(st.sampled_from([1, 4, 40])), d)) / 4
    metric = draw(st.sampled_from(["dot", "cosine"]))
    if metric == "cosine":
        keys[np.abs(keys).sum(axis=1) == 0] = 1.0
        q[np.abs(q).sum(axis=1) == 0] = 1.0
    return keys.astype(np.float32), q.astype(np.float32), draw(st.integers(1, 5)), metric


@settings(max_examples=30, deadline=None, derandomize=True)
@given(grid_tables(), st.sampled_from(["int8", "bf16"]), st.integers(1, 12))
def test_property_compressed_shards_equal_one_fp32_table(client, tmp_path_factory, table, precision, k):
    """Any cut into 1-5 shards: ids and scores of the fp32 SoftTable (exact scores: ties to the lowest row)."""
    keys, q, shards, metric = table
    k = min(k, len(keys))
    path = str(tmp_path_factory.mktemp("p") / "t")
    ShardedTable.create(path, keys, shards=min(shards, len(keys)), metric=metric, temperature=1.0)
    ref = SoftTable(keys, metric=metric, temperature=1.0)
    with ShardedTable.open(path, client=client, timeout=120) as t:
        got = t.compress(precision).search(q, k=k)
    want = ref.search(q, k=k)
    _same(got, want)
    assert got.certificate.holds.all()
    _weights_inside(ref, q, got, 1.0)


def test_rows_removed_masks_and_where(client, tmp_path):
    keys, q = _adversarial(seed=1)
    n = len(keys)
    ids = list(range(n))
    pays = [{"g": i % 3} for i in range(n)]
    path = str(tmp_path / "t")
    ShardedTable.create(path, keys, ids=ids, payloads=pays, shards=4, temperature=2.0)
    gone = list(range(0, n, 7)) + list(range(n - 150, n - 100))  # rows removed in every shard, duplicates too
    keep = np.setdiff1d(np.arange(n), gone)
    ref = SoftTable(keys[keep], ids=keep.tolist(), payloads=[pays[i] for i in keep], temperature=2.0)
    rng = np.random.default_rng(3)
    with ShardedTable.open(path, client=client, timeout=120) as t:
        t.remove(gone)
        small = t.compress("int8")
        _check(t, ref, small, q, 7, 2.0)
        m1 = rng.random(len(ref)) < 0.3
        _check(t, ref, small, q, 7, 2.0, mask=m1)
        per_query = rng.random((len(q), len(ref))) < 0.02
        per_query[3] = False  # no allowed row: no match
        per_query[4] = False
        per_query[4, -1] = True  # one allowed row, in the last shard
        _check(t, ref, small, q, 4, 2.0, mask=per_query)
        got = small.search(q, k=4, mask=per_query)
        assert got.ids[3].tolist() == [None] * 4 and got.rows[4].tolist() == [len(ref) - 1, -1, -1, -1]
        assert (got.weights[3] == 0).all() and (got.weight_hi[3] == 0).all()
        w = small.search(q, k=6, where={"g": 1})
        _same(w, t.search(q, k=6, where={"g": 1}))
        assert {p["g"] for p in w.payloads.ravel()} == {1}


def test_string_queries_and_payloads_of_a_text_table(client, tmp_path):
    from softdb.text import HashEncoder

    texts = [f"note {i} about {w}" for i, w in enumerate(["gzip", "csv", "json", "tar", "zip"] * 40)]
    ref = SoftTable.from_texts(texts, encoder=HashEncoder(32), temperature=0.2)
    ShardedTable.create(str(tmp_path / "txt"), ref, shards=3)
    with ShardedTable.open(str(tmp_path / "txt"), client=client, timeout=120) as t:
        got = t.compress("int8").search(["a csv note", "zip"], k=5)
        want = t.search(["a csv note", "zip"], k=5)
    _same(got, want)
    assert got.payloads.tolist() == want.payloads.tolist() == ref.search(["a csv note", "zip"], k=5).payloads.tolist()


def test_a_shard_past_its_candidate_cap_falls_back_to_its_fp32_pass(client, tmp_path):
    """70,000 identical rows: every one is a candidate, past the cap; that shard answers in fp32."""
    keys = np.ones((70_004, 4), np.float32)
    keys[-4:] = np.arange(16, dtype=np.float32).reshape(4, 4)  # the last shard: 4 distinct rows
    path = str(tmp_path / "t")
    ShardedTable.create(path, keys, shards=2, temperature=1.0)
    ref = SoftTable(keys, temperature=1.0)
    with ShardedTable.open(path, client=client, timeout=120) as t:
        small = t.compress("int8")
        q = np.array([[1, 1, 1, 1], [-1, 0, 0, 0]], np.float32)
        got = small.search(q, k=3)
        _same(got, t.search(q, k=3))
        c = got.certificate
        assert c.fallback.all() and c.holds.all() and "candidate" in c.reason
        assert (c.rescored >= 35_002).all()  # the fallen-back shard counts all its rows
        _weights_inside(ref, q, got, 1.0)


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_weight_tolerance_narrows_every_merged_interval(client, tmp_path, precision):
    """Each shard narrows its own share of Z; the merged intervals of every hit fall under the tolerance.

    At τ = 0.1 a query's own row holds about half the weight while the other shards' rows are many and
    flat: their own hits' intervals (against their shard's Z) are narrow, but their share of Z is not,
    and the query row's merged interval depends on it (a worker that looked at its own hits fails).
    """
    rng = np.random.default_rng(5)
    keys = rng.standard_normal((3000, 24)).astype(np.float32)  # (n, d)
    q = np.concatenate([keys[[7, 1500, 2999]], rng.standard_normal((3, 24)).astype(np.float32)])  # (6, d)
    path = str(tmp_path / "t")
    ShardedTable.create(path, keys, shards=3, metric="cosine")
    ref = SoftTable(keys, metric="cosine")
    with ShardedTable.open(path, client=client, timeout=120) as t:
        small = t.compress(precision)
        for tau, tol in ((0.05, 1e-4), (1.0, 1e-4), (30.0, 1e-6), (0.2, 1e-3), (0.1, 0.02)):
            loose = small.search(q, k=5, temperature=tau)
            got = small.search(q, k=5, temperature=tau, weight_tolerance=tol)
            _same(got, t.search(q, k=5, temperature=tau))
            width = got.weight_hi - got.weight_lo  # (m, k)
            assert (width <= tol).all(), (tau, tol, width.max())
            assert (got.certificate.rescored >= loose.certificate.rescored).all()
            if ((loose.weight_hi - loose.weight_lo) > tol).any():  # the tolerance did some work
                assert (got.certificate.rescored > loose.certificate.rescored).any()
            _weights_inside(ref, q, got, tau)
        with pytest.raises(ValueError, match=re.escape("weight_tolerance must be finite and > 0, got 0.0")):
            small.search(q, k=5, weight_tolerance=0)


def test_errors_are_those_of_softtable_compress(client, tmp_path):
    keys = np.random.default_rng(4).standard_normal((400, 8)).astype(np.float32)
    path = str(tmp_path / "t")
    ShardedTable.create(path, keys, shards=2)
    with ShardedTable.open(path, client=client, timeout=120) as t:
        with pytest.raises(ValueError) as want:
            SoftTable(keys).compress("int4")
        with pytest.raises(ValueError, match=re.escape(str(want.value))):
            t.compress("int4")
        small = t.compress("bf16")
        msg = (
            "a compressed sharded table is a read-only snapshot of one version of its table, so it has no add(); "
            "hint: table.add(...) on the ShardedTable itself, then table.compress('bf16') again "
            "(shards the write did not touch keep their compressed keys)"
        )
        with pytest.raises(TypeError, match=re.escape(msg)):
            small.add(keys[:1])
        with pytest.raises(TypeError, match=re.escape(msg.replace("add(", "remove("))):
            small.remove([0])
        t.add(keys[:2])
        msg = (
            "this compressed view is of generation 0 of the table, which has since changed (now generation 1); "
            "hint: table.compress('bf16') again (shards the writes did not touch keep their compressed keys)"
        )
        with pytest.raises(RuntimeError, match=re.escape(msg)):
            small.search(keys[:1], k=1)
        again = t.compress("bf16")
        _same(again.search(keys[:3], k=2), t.search(keys[:3], k=2))
    huge = np.full((6, 4), 3e38, np.float32)  # finite keys whose norms do not fit in float32
    ShardedTable.create(str(tmp_path / "h"), huge, shards=2)
    with ShardedTable.open(str(tmp_path / "h"), client=client, timeout=120) as t:
        msg = (
            "compress() needs finite keys whose norms fit in float32, but 6 of 6 rows are not (first: row 0); "
            "hint: remove those rows, or rescale the keys"
        )
        with pytest.raises(ValueError, match=re.escape(msg)):
            t.compress("int8")


# ------------------------------------------------------------------ the merge alone (no cluster)
def _shard(rows, scores, lo, hi, rescored=1, margin=1.0, fallback=False) -> ShardCertified:
    m = len(rows)
    return ShardCertified(
        np.array(rows, np.int64),
        np.array(scores, np.float32),
        np.array(scores, np.float32),  # scaled: τ = 1
        np.array(lo, np.float64),
        np.array(hi, np.float64),
        np.full(m, rescored, np.int64),
        np.full(m, margin),
        np.full(m, fallback),
    )


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.integers(0, 2**31 - 1), st.integers(1, 5), st.integers(1, 6))
def test_merge_is_the_top_k_of_all_shards_and_logaddexp_of_the_bounds(seed, p, k):
    """Against a float64 oracle: the k best of every shard's hits (score desc, lowest row), and Z summed."""
    rng = np.random.default_rng(seed)
    m, start, parts, all_r, all_s = 3, 0, [], [], []
    for _ in range(p):
        n_i = int(rng.integers(0, 2 * k + 1))
        s = rng.integers(-3, 4, (m, n_i)).astype(np.float32)  # many exact ties, within and across shards
        r = start + np.arange(n_i)[None, :].repeat(m, 0)
        order = np.lexsort((r, -s), axis=-1)[:, :k]
        top_s, top_r = np.take_along_axis(s, order, 1), np.take_along_axis(r, order, 1)
        pad = k - top_s.shape[1]
        top_s = np.pad(top_s, ((0, 0), (0, pad)), constant_values=-np.inf)
        top_r = np.pad(top_r, ((0, 0), (0, pad)), constant_values=-1)
        lo = rng.normal(size=m) if n_i else np.full(m, -np.inf)
        parts.append(_shard(top_r, top_s, lo, lo + rng.random(m), rescored=n_i, margin=float(rng.random())))
        all_r.append(r)
        all_s.append(s)
        start += n_i
    rows, scores, lo, hi, cert = merge_shards(parts, k)
    r, s = np.concatenate(all_r, axis=1), np.concatenate(all_s, axis=1).astype(np.float64)
    for i in range(m):
        order = sorted(range(r.shape[1]), key=lambda j: (-s[i, j], r[i, j]))[:k]
        want_r = [int(r[i, j]) for j in order] + [-1] * (k - len(order))
        assert rows[i].tolist() == want_r
        assert scores[i][rows[i] >= 0].tolist() == [s[i, j] for j in order]
        with np.errstate(divide="ignore"):  # no row in any shard: Z = 0, log-sum-exp -inf
            want_lo = np.log(sum(np.exp(pp.lse_lo[i]) for pp in parts))  # float64 oracle of log Σ Z_lo
            want_hi = np.log(sum(np.exp(pp.lse_hi[i]) for pp in parts))
        assert lo[i] <= want_lo <= lo[i] + 1e-12 and hi[i] - 1e-12 <= want_hi <= hi[i]
    assert cert.rescored.tolist() == [sum(int(pp.rescored[0]) for pp in parts)] * m
    assert cert.margin.tolist() == [min(float(pp.margin[0]) for pp in parts)] * m
    assert cert.holds.all() and not cert.fallback.any()


@pytest.mark.slow
def test_bench_beyond_memory_int8_runs_small(tmp_path):
    """The benchmark script end to end at 3,000 rows (no timings asserted): it checks and prints identity."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_beyond_memory_int8.py"
    args = ["--rows", "3000", "--dim", "16", "--queries", "8", "--dir", str(tmp_path / "bm"), "--clean"]
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    p = subprocess.run([sys.executable, str(bench), *args], capture_output=True, text=True, env=env, timeout=280)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "all 8 queries: ids identical to the fp32 search True, scores identical True" in p.stdout, p.stdout
    assert "certificates hold True" in p.stdout and "fallbacks 0" in p.stdout
    assert not os.path.exists(tmp_path / "bm" / "table")


def test_ties_once_scaled_back_rank_as_the_fp32_merge_ranks(client, tmp_path):
    """Near-ties spread over every shard at τ = 0.05: scores of the query scaled by 1/τ one ulp apart
    become one score once scaled back; the merge must rank by the scaled ones, as the fp32 merge does."""
    rng = np.random.default_rng(3)
    n, d, m = 3000, 128, 70
    keys = rng.standard_normal((n, d)).astype(np.float32)
    near = np.linspace(0, n - 1, 60).astype(int)  # 20 per shard
    keys[near] = keys[:1] * (1 + rng.integers(-3, 4, (60, 1)) * 2.0**-23)
    q = (keys[:1] + 0.3 * rng.standard_normal((m, d))).astype(np.float32)  # the near-ties are everyone's top
    path = str(tmp_path / "t")
    ShardedTable.create(path, keys, shards=3, metric="dot", temperature=0.05)
    with ShardedTable.open(path, client=client, timeout=120) as t:
        got, want = t.compress("int8").search(q, k=20), t.search(q, k=20)
        assert (np.diff(want.scores, axis=1) == 0).any(), "the data must hold ties once scaled back"
        np.testing.assert_array_equal(got.rows, want.rows)
        np.testing.assert_array_equal(got.scores, want.scores)
