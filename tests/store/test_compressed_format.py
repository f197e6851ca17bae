"""Compressed segments in the format-2 folder: the golden layout, the round trip, damage named."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from softdb import SoftTable


def _table() -> SoftTable:
    # Codes by hand: row 0 scale 1/127 → [64, -127] (0.5·127 = 63.5 rounds to even 64); row 1 [127, 0].
    t = SoftTable(np.array([[0.5, -1.0], [2.0, 0.0]], np.float32), ids=["a", "b"], temperature=1.0)
    t.add(np.array([[0.0, 0.25]], np.float32), ids=["c"])
    return t


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_the_golden_layout(tmp_path, precision) -> None:
    folder = tmp_path / "t"
    _table().compress(precision).save(folder)
    m = json.loads((folder / "manifest.json").read_text())
    assert m["format_version"] == 2
    assert m["compressed"] == {"precision": precision, "segments": 2}
    fields = ["codes", "scale", "rho", "hat_norm", "key_norm"] if precision == "int8" else [
        "codes", "rho", "hat_norm", "key_norm"
    ]  # fmt: skip
    want = [f"compressed.{precision}.{i}.{f}" for i in range(2) for f in fields]
    assert [s for s in m["arrays"] if s.startswith("compressed.")] == want
    code_dtype = "|i1" if precision == "int8" else "<u2"
    for i, n in ((0, 2), (1, 1)):
        e = m["files"][m["arrays"][f"compressed.{precision}.{i}.codes"]]
        assert (e["dtype"], e["shape"]) == (code_dtype, [n, 2])
        e = m["files"][m["arrays"][f"compressed.{precision}.{i}.rho"]]
        assert (e["dtype"], e["shape"]) == ("<f4", [n])
    for stem, fname in m["arrays"].items():
        assert re.fullmatch(re.escape(stem) + r"\.[0-9a-f]{16}\.npy", fname) and (folder / fname).is_file()
    if precision == "int8":
        codes = np.load(folder / m["arrays"]["compressed.int8.0.codes"])
        assert codes.tolist() == [[64, -127], [127, 0]]


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_round_trip_memory_maps_the_fp32_keys_and_compresses_nothing(tmp_path, precision, monkeypatch) -> None:
    rng = np.random.default_rng(0)
    t = SoftTable(rng.standard_normal((3000, 16)).astype(np.float32), temperature=0.5)
    t.add(rng.standard_normal((100, 16)).astype(np.float32))
    t.remove([5, 17])
    c = t.compress(precision)
    c.save(tmp_path / "t")
    import softdb.table._compressed as tc

    def no(*a, **k):
        raise AssertionError("a loaded table's segments must not be compressed again")

    monkeypatch.setattr(tc, "compress_keys", no)
    t2 = SoftTable.load(tmp_path / "t", mmap=True)
    c2 = t2.compress(precision)
    assert isinstance(t2._state.rows.views[0].keys, np.memmap)
    for a, b in zip(c.compressed_segments, c2.compressed_segments):
        for f in ("codes", "scale", "rho", "hat_norm", "key_norm"):
            x, y = getattr(a, f), getattr(b, f)
            assert (x is None and y is None) or np.array_equal(x, y)
    q = rng.standard_normal((3, 16)).astype(np.float32)
    r1, r2 = c.search(q, k=5), c2.search(q, k=5)
    np.testing.assert_array_equal(r1.rows, r2.rows)
    np.testing.assert_array_equal(r1.scores, r2.scores)
    np.testing.assert_array_equal(r2.scores, t2.search(q, k=5).scores)


def test_a_count_that_disagrees_is_named(tmp_path) -> None:
    folder = tmp_path / "t"
    _table().compress("int8").save(folder)
    mp = folder / "manifest.json"
    m = json.loads(mp.read_text())
    m["compressed"]["segments"] = 3
    mp.write_text(json.dumps(m))
    with pytest.raises(
        ValueError, match=re.escape("compressed keys: it lists compressed keys of 3 segments, but the table has 2")
    ):
        SoftTable.load(folder, verify=False)
    assert os.path.isdir(folder)
