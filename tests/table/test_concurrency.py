"""Thread safety: readers see one consistent version while a writer adds, removes, compacts and saves.

The table is built so that every version is identifiable from any answer:
64 fixed base rows plus one or two "x" rows, all with the same key e0 and the
value (1000·i, i mod 7, 1, -1) for x_i. The writer moves through the versions

    {x_0} → {x_0, x_1} → {x_1} → {x_1, x_2} → {x_2} → …

(add x_i, then remove x_{i-1}), saving now and then. With τ = 1 the soft answer
of q = 3·e0 has a closed form for each version, and versions differ by far more
than float32 rounding, so each reader's answer names exactly one version.
"""

from __future__ import annotations

import collections
import sys
import threading
import time

import numpy as np
import pytest

from softdb import SoftTable
from softdb.table import _segments

N_BASE, D = 64, 8
RNG = np.random.default_rng(11)
BASE_KEYS = (0.3 * RNG.normal(size=(N_BASE, D))).astype(np.float32)
BASE_KEYS[:, 0] = 0.0  # base rows score 0 against q: the x rows dominate clearly
BASE_VALUES = RNG.normal(size=(N_BASE, 4)).astype(np.float32)
BASE_IDS = [f"b{j}" for j in range(N_BASE)]
X_KEY = np.eye(1, D, dtype=np.float32)  # (1, D)
Q = 3 * X_KEY[0]  # (D,)
QB = RNG.normal(size=D).astype(np.float32)  # a second query, for search over base rows
QB[0] = -10.0  # x rows score -10 against it: they never reach its top 3


def x_value(i: int) -> np.ndarray:
    return np.array([[1000.0 * i, i % 7, 1, -1]], np.float32)  # (1, 4)


def version_arrays(xs: list[int]) -> tuple[np.ndarray, np.ndarray, tuple]:
    keys = np.concatenate([BASE_KEYS, *[X_KEY] * len(xs)])  # (64 + len(xs), D)
    values = np.concatenate([BASE_VALUES, *[x_value(i) for i in xs]])  # (64 + len(xs), 4)
    return keys, values, tuple(BASE_IDS + [f"x{i}" for i in xs])


def oracle_weights(keys: np.ndarray, q: np.ndarray) -> np.ndarray:
    s = keys.astype(np.float64) @ q.astype(np.float64)  # (n,)  τ = 1
    w = np.exp(s - s.max())
    return w / w.sum()  # (n,)


def version_of_ids(ids: tuple) -> tuple[int, ...]:
    assert ids[:N_BASE] == tuple(BASE_IDS)
    xs = tuple(int(i[1:]) for i in ids[N_BASE:])
    assert len(xs) in (1, 2) and (len(xs) == 1 or xs[1] == xs[0] + 1), ids[N_BASE:]
    return xs


@pytest.mark.timeout(120)
@pytest.mark.parametrize("segments", ["one growing segment", "tiny segments, merges and compactions"])
def test_readers_see_one_version_while_writer_adds_removes_saves(tmp_path, capsys, monkeypatch, segments):
    compacting = segments.startswith("tiny")
    if compacting:  # seal every 8 rows, merge every 3 segments: seals, merges and compactions all the time
        monkeypatch.setattr(_segments, "SEAL_ROWS", 8)
        monkeypatch.setattr(_segments, "MERGE_FACTOR", 3)
    compactions: list = []
    keys, values, ids = version_arrays([0])
    table = SoftTable(keys, values, ids=ids, payloads=list(ids), temperature=1.0)
    n_readers, n_lookups = 4, 1000
    done = threading.Event()
    start = threading.Barrier(n_readers + 2)
    answers: list[list] = [[] for _ in range(n_readers)]
    errors: list[BaseException] = []
    steps = [0]
    saves: list = []
    loads: list = []

    def reader(r: int) -> None:
        try:
            start.wait()
            for j in range(n_lookups):
                op = ("soft", "hard", "weights", "search")[(j + r) % 4]
                if op == "soft":
                    out = table.lookup(Q)
                elif op == "hard":
                    out = table.lookup(Q, mode="hard")
                elif op == "weights":
                    out = table.weights(Q)
                else:
                    out = table.search(QB, k=3)
                answers[r].append((op, out))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def writer() -> None:
        try:
            start.wait()
            i = 0
            while not done.is_set() and i < 20_000:
                i += 1
                table.add(X_KEY, x_value(i), ids=[f"x{i}"], payloads=[f"x{i}"])
                table.remove([f"x{i - 1}"])
                steps[0] = i
                if compacting and i % 5 == 0:
                    compactions.append(table.compact())
                time.sleep(0.0002)  # let readers in between versions (a GIL convoy favours the writer)
                if i % 25 == 0:
                    table.save(tmp_path / "live")  # over the same folder that the loader reads
                    saves.append(i)
            table.save(tmp_path / "live")
            saves.append(i)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def loader() -> None:  # another thread loads the folder the writer keeps replacing
        try:
            start.wait()
            while not done.is_set():
                if (tmp_path / "live").exists() or (tmp_path / ".live.softdb-old").exists():
                    loads.append(SoftTable.load(tmp_path / "live"))
                done.wait(0.01)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # hand the GIL around often: many interleavings
    readers = [threading.Thread(target=reader, args=(r,)) for r in range(n_readers)]
    others = [threading.Thread(target=writer), threading.Thread(target=loader)]
    for t in readers + others:
        t.start()
    for t in readers:
        t.join(timeout=100)
    done.set()
    for t in others:
        t.join(timeout=100)
    sys.setswitchinterval(switch)
    assert not errors, errors
    last = steps[0]

    # legitimate answers of every version: singles {x_i} and pairs {x_{i-1}, x_i}
    w1 = oracle_weights(version_arrays([0])[0], Q)  # (65,)  weights do not depend on i
    w2 = oracle_weights(version_arrays([0, 1])[0], Q)  # (66,)
    i = np.arange(last + 1)
    vx = np.stack([1000.0 * i, i % 7, np.ones_like(i), -np.ones_like(i)], axis=1)  # (last+1, 4)
    base = w1[:N_BASE] @ BASE_VALUES.astype(np.float64)  # (4,)
    singles = base + w1[N_BASE] * vx  # (last+1, 4)
    base2 = w2[:N_BASE] @ BASE_VALUES.astype(np.float64)  # (4,)
    pairs = base2 + w2[N_BASE] * (vx[:-1] + vx[1:])  # (last, 4)  pair (i-1, i) at i-1
    legit = np.concatenate([singles, pairs])  # (2·last + 1, 4)
    top = np.argsort(-(BASE_KEYS @ QB), kind="stable")[:3]  # (3,)
    top_base = [BASE_IDS[j] for j in top]
    search_w = [oracle_weights(version_arrays(xs)[0], QB)[top] for xs in ([0], [0, 1])]  # 2 x (3,)

    seen: collections.Counter = collections.Counter()
    counts: collections.Counter = collections.Counter()
    for per_reader in answers:
        assert len(per_reader) == n_lookups
        for op, out in per_reader:
            counts[op] += 1
            assert np.isfinite(out.weights if op == "search" else out).all()
            if op == "soft":
                err = np.abs(legit - out).max(axis=1)  # (2·last + 1,)
                v = int(err.argmin())
                assert err[v] <= 1e-5 * max(1.0, np.abs(out).max()), (out, legit[v])
                seen[v] += 1
            elif op == "hard":
                k = round(float(out[0]) / 1000)
                assert 0 <= k <= last and np.array_equal(out, x_value(k)[0]), out
            elif op == "weights":
                want = {65: w1, 66: w2}[len(out)]
                np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-7)
            else:
                assert list(out.ids) == top_base, out.ids  # base rows stay put in every version
                assert list(out.payloads) == top_base
                assert any(np.allclose(out.weights, w, rtol=1e-5, atol=1e-7) for w in search_w), out.weights
    # every saved or loaded table is exactly one version: ids, payloads, keys, values
    for t in [*loads, SoftTable.load(tmp_path / "live")]:
        xs = version_of_ids(t.ids)
        k, v, _ = version_arrays(list(xs))
        assert t.payloads == t.ids
        np.testing.assert_array_equal(t.keys, k)
        np.testing.assert_array_equal(t.values, v)
    with capsys.disabled():
        print(
            f"\nconcurrency: {n_readers} readers x {n_lookups} lookups {dict(counts)}; writer made "
            f"{2 * last} versions (add + remove), {len(saves)} saves and {len(compactions)} compactions "
            f"({segments}); soft answers matched "
            f"{len(seen)} distinct versions; loader loaded {len(loads)} tables mid-write, all consistent"
        )
    assert sum(counts.values()) == n_readers * n_lookups
    assert len(seen) >= 10, "the writer never ran while the readers did"
    if compacting:
        assert compactions and all(c.segments_after == 1 for c in compactions)
        assert sum(c.rows_dropped for c in compactions) > 0


@pytest.mark.timeout(60)
def test_concurrent_saves_to_one_path_and_loads(tmp_path):
    """Three threads save different tables over one folder while another loads it."""
    tables = [
        SoftTable(*version_arrays(xs)[:2], ids=version_arrays(xs)[2], temperature=1.0) for xs in ([0], [1], [1, 2])
    ]
    path = tmp_path / "t"
    tables[0].save(path)
    errors: list[BaseException] = []
    loaded: list[SoftTable] = []
    stop = threading.Event()

    def saver(t: SoftTable) -> None:
        try:
            for _ in range(8):
                t.save(path)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def loader() -> None:
        try:
            while not stop.is_set():
                loaded.append(SoftTable.load(path))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=saver, args=(t,)) for t in tables]
    reader = threading.Thread(target=loader)
    reader.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=50)
    stop.set()
    reader.join(timeout=50)
    assert not errors, errors
    assert len(loaded) >= 3
    for t in [*loaded, SoftTable.load(path)]:
        k, v, ids = version_arrays(list(version_of_ids(t.ids)))
        assert t.ids == ids
        np.testing.assert_array_equal(t.keys, k)
        np.testing.assert_array_equal(t.values, v)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]
