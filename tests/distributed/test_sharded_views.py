"""A 4-shard table through `softdb explain --table`, `softdb serve --table`, add_texts / remove / compact.

The oracle is an in-process SoftTable holding the same rows in shard order: the sharded answers
(computed on Dask workers, merged exactly) must print and serve the same.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from softdb import SoftTable
from softdb.cli import main
from softdb.text import HashEncoder

distributed = pytest.importorskip("distributed")
from softdb.distributed._table import ShardedTable  # noqa: E402

pytestmark = pytest.mark.timeout(300)

DOCS = [
    "read a csv file with the csv module",
    "compress data with gzip",
    "parse command line arguments",
    "regular expressions match text",
    "serialize python objects with pickle",
    "the current date and time",
    "zip archives hold many files",
    "send an email over smtp",
    "json encodes and decodes objects",
    "sockets open network connections",
    "threads run work at once",
    "a queue passes items between threads",
]


def _texts():
    return SoftTable.from_texts(DOCS, ids=[f"d{i}" for i in range(len(DOCS))], encoder=HashEncoder(32))


@pytest.fixture
def sharded_folder(tmp_path):
    folder = tmp_path / "sharded"
    ShardedTable.create(str(folder), _texts(), shards=4)
    return folder


def test_explain_of_a_4_shard_table_prints_what_the_in_process_table_prints(sharded_folder, capsys):
    from softdb.views import explain_view

    assert main(["explain", "gzip compression of data", "--table", str(sharded_folder), "-k", "4"]) == 0
    out = capsys.readouterr().out
    want = str(explain_view(_texts(), "gzip compression of data", k=4))
    assert out.rstrip("\n") == want and "d1" in out
    html = sharded_folder.parent / "e.html"
    assert main(["explain", "gzip", "--table", str(sharded_folder), "--html", str(html)]) == 0
    assert html.stat().st_size > 1000 and "wrote" in capsys.readouterr().out


def test_explain_method_on_a_sharded_table_equals_soft_table(sharded_folder, client):
    ref = _texts()
    with ShardedTable.open(str(sharded_folder), client=client) as t:
        got, want = t.explain("python objects", k=3), ref.explain("python objects", k=3)
        assert got.ids == want.ids and np.allclose(got.weights, want.weights, atol=1e-6)
        assert np.allclose(got.soft, want.soft, atol=1e-5) and np.allclose(got.hard, want.hard)
        assert np.isclose(got.entropy, want.entropy) and got.soft_nearest == want.soft_nearest
        from softdb.engine._plan import Ask

        p = t._answer(["python objects", "gzip"], Ask(k=6), k=6)  # the rows explain shows: their values
        ids = p.hits().ids  # (2, 6)
        want_values = np.stack([[ref.values[ref.row_of(i)] for i in row] for row in ids])  # (2, 6, d)
        np.testing.assert_array_equal(p.hit_values(p.answers.rows), want_values)


def test_serve_of_a_4_shard_table_answers_as_the_in_process_app(sharded_folder):
    from softdb.views._app import App

    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=os.getcwd())
    cmd = [sys.executable, "-m", "softdb.cli", "serve", "--table", str(sharded_folder), "--port", "0", "--quiet"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "softdb serve exited early"
            m = re.search(r"serving 12 rows at (http://127\.0\.0\.1:\d+/)", line)
            url = m.group(1) if m else None
        assert url, "softdb serve did not start"
        with urllib.request.urlopen(url + "api/search?q=threads+and+queues&k=3", timeout=60) as r:
            got = json.loads(r.read())
        status, _, body = App(_texts()).handle("/api/search", "q=threads+and+queues&k=3")
        want = json.loads(body)
        assert status == 200 and [h["id"] for h in got["hits"]] == [h["id"] for h in want["hits"]]
        np.testing.assert_allclose(
            [h["weight"] for h in got["hits"]], [h["weight"] for h in want["hits"]], rtol=1e-5, atol=2e-6
        )
        assert got["entropy"] == pytest.approx(want["entropy"], abs=1e-6)
    finally:
        proc.terminate()  # the server we started, by its own handle
        proc.wait(timeout=60)


def test_add_texts_remove_and_compact_on_a_sharded_table_equal_the_in_process_table(sharded_folder, client):
    ref = _texts()
    new = ["asyncio runs coroutines", "gzip files on disk"]
    with ShardedTable.open(str(sharded_folder), client=client) as t:
        assert t.add_texts(new, ids=["n0", "n1"]) == ["n0", "n1"]
        ref.add_texts(new, ids=["n0", "n1"])
        t.remove(["d1", "n0"])
        ref.remove(["d1", "n0"])
        assert sorted(t.ids) == sorted(ref.ids) and len(t) == len(ref) == 12
        report = t.compact()
        assert (report.segments_before, report.segments_after, report.rows_dropped) == (4, 4, 0)
        order = [ref.row_of(i) for i in t.ids]  # the sharded table's row order, in the reference
        oracle = SoftTable(
            ref.keys[order], ids=[ref.ids[r] for r in order], payloads=[ref.payloads[r] for r in order], metric="cosine"
        )
        oracle.encoder = ref.encoder
        for q in ["gzip", "threads", "coroutines"]:
            got, want = t.search(q, k=5), oracle.search(q, k=5)
            assert got.ids.tolist() == want.ids.tolist() and got.payloads.tolist() == want.payloads.tolist()
            np.testing.assert_allclose(got.scores, want.scores, rtol=1e-6, atol=1e-6)
