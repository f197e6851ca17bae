"""Format 2: segment folders + a manifest naming each by checksum; a save writes what changed, nothing else."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from softdb import SoftTable
from softdb.engine import _keys

GOLDEN = Path(__file__).resolve().parent / "data" / "format_v1"
KINDS = ["blocks_fitted", "bm25", "bm25_values", "cosine_shared", "csr_plain", "dense", "hybrid", "projected"]
ROOT = Path(__file__).resolve().parents[2]


def _same_table(a: SoftTable, b: SoftTable) -> None:
    assert a.ids == b.ids
    assert a.payloads == b.payloads
    assert a.key_kind == b.key_kind and a.block_weights == b.block_weights
    ka, kb = a.keys, b.keys
    for x, y in zip(ka if a.key_kind == "blocks" else [ka], kb if b.key_kind == "blocks" else [kb]):
        xa = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
        ya = y.toarray() if hasattr(y, "toarray") else np.asarray(y)
        np.testing.assert_array_equal(xa, ya)
    va, vb = a.values, b.values
    va = va.toarray() if hasattr(va, "toarray") else np.asarray(va)
    vb = vb.toarray() if hasattr(vb, "toarray") else np.asarray(vb)
    np.testing.assert_array_equal(va, vb)
    assert (a.projection is None) == (b.projection is None)
    if a.query_projection is not None:
        np.testing.assert_array_equal(a.query_projection, b.query_projection)


@pytest.mark.parametrize("kind", KINDS)
def test_every_golden_kind_grows_saves_incrementally_and_loads_back_equal(tmp_path, kind):
    path = tmp_path / kind
    SoftTable.load(GOLDEN / kind).save(path)  # format 1, as before
    t = SoftTable.load(path)
    first = _keys.take(t.keys, np.array([0, 1]))
    vals = None
    if not t._state.shared_kv:
        v = t.values[:2]
        vals = np.asarray(v.toarray() if hasattr(v, "toarray") else v)
    t.add(first, vals, ids=["new-a", "new-b"])
    t.remove([t.ids[1]])
    t.save(path)
    m = json.loads((path / "manifest.json").read_text())
    assert m["format_version"] == 2 and len(m["segments"]) == 2
    assert m["segments"][0]["live"]["removed"] == 1 and m["segments"][1]["live"] is None
    back = SoftTable.load(path)
    _same_table(t, back)
    mm = SoftTable.load(path, mmap=True)
    _same_table(t, mm)
    if t.key_kind == "dense":
        q = np.asarray(t.keys[:3])
        np.testing.assert_array_equal(back.search(q, k=3).rows, t.search(q, k=3).rows)


def test_a_save_after_adds_writes_the_new_segment_and_the_manifest_only(tmp_path):
    from softdb.table._persist import save_state

    rng = np.random.default_rng(0)
    t = SoftTable(rng.normal(size=(500, 8)).astype(np.float32), ids=[f"r{i}" for i in range(500)])
    path = tmp_path / "t"
    t.save(path)
    keys_inode = os.stat(path / "keys.npy").st_ino
    new = rng.normal(size=(30, 8)).astype(np.float32)
    for i in range(30):
        t.add(new[i : i + 1], ids=[f"n{i}"])
    t.save(path)
    m = json.loads((path / "manifest.json").read_text())
    base, added = m["segments"]
    assert os.stat(path / base["folder"] / "keys.npy").st_ino == keys_inode  # adopted by a hard link
    assert sorted(os.listdir(path)) == sorted(["manifest.json", base["folder"], added["folder"]])
    # the next save after adds and a removal writes that segment, one live bitmap and the manifest
    t.add(new[:2] * 2, ids=["x", "y"])
    t.remove(["r3"])
    st = t._state
    views = list(st.rows.views)
    written = save_state(st, path)
    names = [n for n, _ in written]
    assert len(names) == 3 and names[-1] == "manifest.json"
    live = [n for n in names if ".live." in n]
    seg = [n for n in names if n.startswith("seg-") and ".live." not in n]
    assert len(live) == 1 and live[0].startswith(base["folder"] + ".live.") and len(seg) == 1
    seg_bytes = dict(written)[seg[0]]
    assert seg_bytes <= 2 * (2 * 8 * 4) + 4096  # the rows, the .npy header and the segment's small manifest
    assert len(views) == 3
    _same_table(t, SoftTable.load(path))
    # table.save seals the growing segment (a flush): after it, a save with no change writes the manifest only
    t.save(path)
    assert [n for n, _ in save_state(t._state, path)] == ["manifest.json"]


def test_a_damaged_segment_file_is_named_with_its_segment(tmp_path):
    t = SoftTable(np.eye(4, dtype=np.float32), np.ones((4, 2), np.float32), ids=list("abcd"))
    path = tmp_path / "t"
    t.save(path)
    t.add(np.ones((1, 4), np.float32), np.ones((1, 2), np.float32), ids=["e"])
    t.save(path)
    seg = json.loads((path / "manifest.json").read_text())["segments"][1]["folder"]
    f = path / seg / "values.npy"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    msg = f"segment {seg} of {path}: {f} is corrupted: its sha256 does not match manifest.json"
    with pytest.raises(ValueError, match=re.escape(msg)):
        SoftTable.load(path)
    os.unlink(f)
    msg = f"segment {seg} of {path}: table file {f} is missing (manifest.json lists it)"
    with pytest.raises(FileNotFoundError, match=re.escape(msg)):
        SoftTable.load(path)


HOLDER = textwrap.dedent(
    """
    import sys
    from softdb.store import writing
    with writing(sys.argv[1]):
        print("held", flush=True)
        sys.stdin.read()
    """
)


def test_compacting_a_table_open_for_writing_elsewhere_is_refused(tmp_path):
    path = tmp_path / "t"
    t = SoftTable(np.eye(3, dtype=np.float32), ids=list("abc"))
    t.save(path)
    t.remove(["b"])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        msg = (
            f"the table folder {path} is open for writing elsewhere (another process or thread holds its "
            "writer lock .softdb-writer.lock), so it cannot be compacted now; hint: wait for that writer to "
            "finish, then try again"
        )
        with pytest.raises(RuntimeError, match=re.escape(msg)):
            t.compact()
        assert t.ids == ("a", "c") and len(t._state.rows.views) == 1  # nothing changed
    finally:
        holder.communicate("", timeout=30)
    assert t.compact().rows_dropped == 1  # released: it goes
    from softdb.store import writing

    with writing(path):  # this process's own writer may compact
        t.add(np.ones((1, 3), np.float32), ids=["d"])
        assert t.compact().segments_before == 2
