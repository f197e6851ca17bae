"""Saving and loading: the format, round trips, atomic overwrite, corruption detection."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from softdb import SoftTable
from softdb.store import _arrays
from softdb.store import _storage as storage

RNG = np.random.default_rng(3)


def make_table(n=7, d=4, dv=3, *, metric="dot", dtype=np.float32, shared=False, **kw):
    keys = RNG.normal(size=(n, d)).astype(dtype)
    values = None if shared else RNG.normal(size=(n, dv)).astype(dtype)
    return SoftTable(keys, values, metric=metric, **kw)


def assert_same(a: SoftTable, b: SoftTable) -> None:
    assert a.ids == b.ids
    assert [type(i) for i in a.ids] == [type(i) for i in b.ids]
    assert a.payloads == b.payloads
    assert (a.metric, a._state.temperature, a.temperature, a.dtype, a.dim, a.value_dim, a._state.shared_kv) == (
        b.metric,
        b._state.temperature,
        b.temperature,
        b.dtype,
        b.dim,
        b.value_dim,
        b._state.shared_kv,
    )
    np.testing.assert_array_equal(a.keys, b.keys)
    np.testing.assert_array_equal(a.values, b.values)


# ---------------------------------------------------------------- round trips
@pytest.mark.parametrize("metric", ["dot", "cosine"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("mmap", [False, True])
def test_round_trip(tmp_path, metric, dtype, shared, mmap):
    t = make_table(
        metric=metric,
        dtype=dtype,
        shared=shared,
        temperature=None if shared else 0.7,
        ids=["a", 1, "1", -5, "é", 2**70, "", "x\ud800"][:7],
        payloads=[None, "text", 3, 2.5, [1, {"k": None}], True, {"nested": [[]]}],
    )
    t.save(tmp_path / "t")
    u = SoftTable.load(tmp_path / "t", mmap=mmap)
    assert_same(t, u)
    files = sorted(os.listdir(tmp_path / "t"))
    assert files == (["keys.npy", "manifest.json"] if shared else ["keys.npy", "manifest.json", "values.npy"])
    q = RNG.normal(size=(3, 4)).astype(dtype)
    np.testing.assert_array_equal(t.lookup(q), u.lookup(q))
    np.testing.assert_array_equal(t.search(q, k=3).rows, u.search(q, k=3).rows)
    if mmap:
        assert isinstance(u._state.rows.keys, np.memmap)
        assert shared or isinstance(u._state.rows.values, np.memmap)


def test_files_are_plain_numpy_and_manifest_is_documented(tmp_path):
    t = make_table(ids=list("abcdefg"), temperature=2.0)
    t.save(tmp_path / "t")
    np.testing.assert_array_equal(np.load(tmp_path / "t" / "keys.npy"), t.keys)
    np.testing.assert_array_equal(np.load(tmp_path / "t" / "values.npy"), t.values)
    m = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert m["format"] == "softdb-table" and m["format_version"] == 1
    assert (m["n"], m["dim"], m["value_dim"], m["dtype"], m["metric"], m["temperature"]) == (
        7,
        4,
        3,
        "float32",
        "dot",
        2.0,
    )
    assert m["ids"] == list("abcdefg") and m["payloads"] is None and m["shared_kv"] is False
    import hashlib

    for name, e in m["files"].items():
        data = (tmp_path / "t" / name).read_bytes()
        assert e["sha256"] == hashlib.sha256(data).hexdigest() and e["bytes"] == len(data)
        assert e["shape"] == list(np.load(tmp_path / "t" / name).shape) and e["dtype"] == "<f4"
    assert {"softdb_version", "created", "checksum"} <= set(m)


def test_empty_table_and_table_after_mutation(tmp_path):
    t = SoftTable(np.zeros((0, 3), np.float32), np.zeros((0, 2), np.float32))
    t.save(tmp_path / "e")
    assert_same(t, SoftTable.load(tmp_path / "e"))
    t = make_table(payloads=list(range(7)))
    t.add(RNG.normal(size=(2, 4)), RNG.normal(size=(2, 3)), ids=["new", 99], payloads=["p", None])
    t.remove([0, 3])
    t.save(tmp_path / "m")
    assert_same(t, SoftTable.load(tmp_path / "m"))


def test_mmap_table_saved_over_itself(tmp_path):
    t = make_table()
    t.save(tmp_path / "t")
    u = SoftTable.load(tmp_path / "t", mmap=True)
    u.save(tmp_path / "t")  # reads the mapped files while replacing them
    assert_same(t, SoftTable.load(tmp_path / "t"))
    assert_same(t, u)  # the mapping survives the old files' deletion


def test_verify_false_mmap_reads_no_data(tmp_path, monkeypatch):
    t = make_table(n=50)
    t.save(tmp_path / "t")
    monkeypatch.setattr(_arrays, "check_rows", lambda *a, **k: pytest.fail("data was read"))
    u = SoftTable.load(tmp_path / "t", mmap=True, verify=False)
    np.testing.assert_array_equal(u.lookup(t.keys), t.lookup(t.keys))


def test_projection_and_encoder_state(tmp_path):
    from softdb.learn import _projection as projection

    class Enc:
        name = "all-MiniLM-L6-v2"

    t = make_table()
    t.projection = projection.Projection(4, d_k=2, d_out=2, d_v=3, heads=2, init="random", temperature=0.5)
    t.encoder = Enc()
    t.save(tmp_path / "t")
    assert {"projection.W_Q.npy", "projection.W_K.npy", "projection.W_V.npy"} <= set(os.listdir(tmp_path / "t"))
    m = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert m["encoder"] == {"name": "all-MiniLM-L6-v2"} and m["projection"]["config"]["heads"] == 2
    for mmap in (False, True):
        u = SoftTable.load(tmp_path / "t", mmap=mmap)
        config, arrays = u.projection.get_state()
        assert config == t.projection.get_state()[0]
        for name, a in t.projection.get_state()[1].items():
            np.testing.assert_array_equal(arrays[name], a)
        q = RNG.normal(size=(3, 4)).astype(np.float32)
        np.testing.assert_array_equal(u.lookup(q), t.lookup(q))
        assert u._state.encoder_name == "all-MiniLM-L6-v2"
    (tmp_path / "t" / "projection.W_K.npy").unlink()
    with pytest.raises(FileNotFoundError, match=re.escape("projection.W_K.npy")):
        SoftTable.load(tmp_path / "t")


# ------------------------------------------------------------- bad payloads
@pytest.mark.parametrize(
    ("payload", "exc", "msg"),
    [
        (object(), TypeError, "payloads[2] (id 2) is a builtins.object, which JSON cannot store"),
        (
            np.float32(1),
            TypeError,
            "payloads[2] (id 2) is a numpy.float32, which JSON cannot store; hint: convert it with .item()",
        ),
        ((1, 2), TypeError, "payloads[2] (id 2) is a tuple, which JSON would turn into a list"),
        ({1: "a"}, TypeError, "payloads[2] (id 2) has a int key 1"),
        ([1, {"x": {1, 2}}], TypeError, "payloads[2] (id 2)[1]['x'] is a builtins.set"),
        (float("nan"), ValueError, "payloads[2] (id 2) is nan, which JSON cannot store"),
    ],
)
def test_unstorable_payload_is_refused_before_writing(tmp_path, payload, exc, msg):
    t = make_table(n=3, payloads=["ok", None, payload])
    with pytest.raises(exc, match=re.escape(msg)):
        t.save(tmp_path / "t")
    assert os.listdir(tmp_path) == []


def test_circular_payload(tmp_path):
    loop: list = []
    loop.append(loop)
    with pytest.raises(ValueError, match=re.escape("payloads[0] (id 0)[0] contains itself (a circular reference)")):
        make_table(n=1, payloads=[loop]).save(tmp_path / "t")


# ------------------------------------------------------------- bad targets
def test_refuses_to_replace_a_file_or_a_foreign_folder(tmp_path):
    t = make_table()
    (tmp_path / "f").write_text("mine")
    with pytest.raises(ValueError, match="it is a file, not a table folder"):
        t.save(tmp_path / "f")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="is a non-empty folder that is not a softdb table"):
        t.save(tmp_path / "d")
    assert (tmp_path / "d" / "notes.txt").read_text() == "mine"
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "manifest.json").write_text("")  # a damaged table may be replaced
    (tmp_path / "t" / "keys.npy").write_text("")
    t.save(tmp_path / "t")
    assert_same(t, SoftTable.load(tmp_path / "t"))
    (tmp_path / "empty").mkdir()
    t.save(tmp_path / "empty")  # an empty folder may become a table
    assert_same(t, SoftTable.load(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match=re.escape(f"folder {tmp_path / 'nope'} does not exist")):
        t.save(tmp_path / "nope" / "t")


def test_load_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"no softdb table at {tmp_path / 'x'}")):
        SoftTable.load(tmp_path / "x")
    (tmp_path / "x").mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path / 'x' / 'manifest.json'} is missing")):
        SoftTable.load(tmp_path / "x")


# ------------------------------------------------- overwrite and crash states
def test_overwrite_and_leftovers_from_killed_saves(tmp_path):
    a, b = make_table(ids=list("abcdefg")), make_table(n=5, shared=True)
    a.save(tmp_path / "t")
    # a killed save leaves a half-written temporary folder and a stale aside copy
    (tmp_path / ".t.softdb-tmp-1-dead").mkdir()
    (tmp_path / ".t.softdb-tmp-1-dead" / "keys.npy").write_bytes(b"\x93NUMPY half")
    (tmp_path / ".t.softdb-old").mkdir()
    (tmp_path / ".t.softdb-old" / "keys.npy").write_bytes(b"stale")
    assert_same(a, SoftTable.load(tmp_path / "t"))  # leftovers do not disturb a load
    b.save(tmp_path / "t")
    assert_same(b, SoftTable.load(tmp_path / "t"))
    assert sorted(os.listdir(tmp_path)) == ["t"]  # the save cleaned up


def test_killed_between_the_two_renames(tmp_path):
    """The in-between state: the table is aside and the target is missing."""
    a, b = make_table(), make_table(n=3)
    a.save(tmp_path / "t")
    os.rename(tmp_path / "t", tmp_path / ".t.softdb-old")  # step 1 done, then SIGKILL
    assert_same(a, SoftTable.load(tmp_path / "t"))
    b.save(tmp_path / "t")  # the next save completes and discards the aside copy
    assert_same(b, SoftTable.load(tmp_path / "t"))
    assert sorted(os.listdir(tmp_path)) == ["t"]


def test_failed_write_leaves_old_table(tmp_path, monkeypatch):
    a = make_table()
    a.save(tmp_path / "t")

    def boom(*args, **kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage.np.lib.format, "write_array", boom)
    with pytest.raises(OSError, match="No space left"):
        make_table(n=3).save(tmp_path / "t")
    assert sorted(os.listdir(tmp_path)) == ["t"]
    monkeypatch.undo()
    assert_same(a, SoftTable.load(tmp_path / "t"))


# --------------------------------------------------------------- corruption
def _saved(tmp_path):
    t = make_table(n=40, d=8, dv=5, ids=[f"r{i}" for i in range(40)], payloads=list(range(40)))
    t.save(tmp_path / "t")
    return t


@pytest.mark.parametrize("fname", ["keys.npy", "values.npy"])
def test_any_flipped_byte_is_detected(tmp_path, fname):
    t = _saved(tmp_path)
    f = tmp_path / "t" / fname
    original = f.read_bytes()
    size = len(original)
    offsets = sorted({*range(0, 128, 3), *RNG.integers(128, size, 40).tolist(), size - 1})
    assert len(offsets) > 60
    for off in offsets:
        for verify, mmap in [(True, False), (True, True)]:
            data = bytearray(original)
            data[off] ^= 1 << int(RNG.integers(8))
            f.write_bytes(bytes(data))
            with pytest.raises(ValueError, match=re.escape(str(f))):
                SoftTable.load(tmp_path / "t", verify=verify, mmap=mmap)
    f.write_bytes(original)
    assert_same(t, SoftTable.load(tmp_path / "t"))


@pytest.mark.parametrize("fname", ["keys.npy", "values.npy"])
@pytest.mark.parametrize("verify", [True, False])
def test_truncation_and_missing_files_are_detected(tmp_path, fname, verify):
    _saved(tmp_path)
    f = tmp_path / "t" / fname
    original = f.read_bytes()
    for cut in [0, 1, 60, 128, len(original) // 2, len(original) - 1]:
        f.write_bytes(original[:cut])
        with pytest.raises(
            ValueError,
            match=re.escape(f"{f} has {cut} bytes but manifest.json says {len(original)}; the file is truncated"),
        ):
            SoftTable.load(tmp_path / "t", verify=verify)
    f.write_bytes(original + b"\0")
    with pytest.raises(ValueError, match=re.escape(str(f))):
        SoftTable.load(tmp_path / "t", verify=verify)
    f.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(f"table file {f} is missing")):
        SoftTable.load(tmp_path / "t", verify=verify)


def test_verify_false_still_checks_headers(tmp_path):
    _saved(tmp_path)
    f = tmp_path / "t" / "keys.npy"
    data = f.read_bytes().replace(b"(40, 8)", b"(80, 4)")
    f.write_bytes(data)
    with pytest.raises(ValueError, match=re.escape(f"{f} holds <f4 [80, 4], but manifest.json says <f4 [40, 8]")):
        SoftTable.load(tmp_path / "t", verify=False, mmap=True)


def test_manifest_damage_is_detected(tmp_path):
    t = _saved(tmp_path)
    f = tmp_path / "t" / "manifest.json"
    original = f.read_bytes()
    undetected = 0
    for off in sorted({*RNG.integers(0, len(original), 150).tolist(), len(original) - 2}):
        data = bytearray(original)
        data[off] ^= 1 << int(RNG.integers(7))
        f.write_bytes(bytes(data))
        try:
            u = SoftTable.load(tmp_path / "t")
        except ValueError as exc:
            assert str(f) in str(exc)
        else:  # only harmless flips (JSON whitespace) may load, and then load the same table
            assert_same(t, u)
            undetected += 1
    assert undetected < 15


@pytest.mark.parametrize(
    ("edit", "msg"),
    [
        (
            lambda m: m.update(format_version=3),
            "has format_version 3, but this softdb reads format_versions 1 and 2; hint: upgrade softdb",
        ),
        (lambda m: m.update(format="other"), "is not a softdb table manifest"),
        (lambda m: m.pop("n"), "has no 'n' field"),
        (lambda m: m["files"].pop("values.npy"), "lists no values.npy, which this table needs"),
        (lambda m: m["files"].update({"../x.npy": m["files"]["keys.npy"]}), "is not a plain .npy name"),
        (lambda m: m.update(ids=["a"] * 40), "ids must be unique"),
        (lambda m: m.update(metric="l2"), "metric must be one of"),
        (lambda m: m.update(temperature=-1), "temperature -1 is not a finite number > 0"),
    ],
)
def test_bad_manifest_fields(tmp_path, edit, msg):
    from softdb.store import _manifest

    _saved(tmp_path)
    f = tmp_path / "t" / "manifest.json"
    m = json.loads(f.read_text())
    edit(m)
    f.write_bytes(_manifest.dumps(m))  # a valid checksum: the field checks must catch it
    with pytest.raises(ValueError, match=re.escape(msg)) as info:
        SoftTable.load(tmp_path / "t")
    assert str(f) in str(info.value)
