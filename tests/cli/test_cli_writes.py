"""``softdb add``, ``softdb remove``, ``softdb compact``: each writes, saves and says what it did."""

from __future__ import annotations

import re

import numpy as np
import pytest

from softdb import SoftTable
from softdb.cli import main

pytest.importorskip("bm25s")

NOTES = {"fox.txt": "red fox in the snow", "hen.txt": "a blue hen lays an egg", "dog.txt": "lazy dog sleeps"}


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def bm25_table(tmp_path, capsys):
    notes = tmp_path / "notes"
    notes.mkdir()
    for name, text in NOTES.items():
        (notes / name).write_text(text)
    table = tmp_path / "t"
    assert run(capsys, "index", notes, "--model", "bm25", "-o", table)[0] == 0
    return table


def _scores(table, queries):
    hits = table.search(queries, k=len(table))
    out = np.zeros((len(queries), len(table)))
    np.put_along_axis(out, hits.rows, hits.scores.astype(np.float64), axis=1)
    return out


def test_add_remove_compact_print_what_they_did_and_equal_a_table_built_from_scratch(tmp_path, bm25_table, capsys):
    more = tmp_path / "more"
    more.mkdir()
    (more / "zebra.txt").write_text("a zebra crossing in the snow")
    code, out, _ = run(capsys, "add", bm25_table, more)
    assert code == 0 and re.fullmatch(r"added 1 rows to \S+ \(now 4 rows; segments \d+ -> \d+\) in \d+\.\d\d s\n", out)
    code, out, _ = run(capsys, "add", bm25_table, "--text", "a green frog jumps", "--id", "frog")
    assert code == 0 and out.startswith("added 1 rows")
    code, out, _ = run(capsys, "remove", bm25_table, "hen.txt")
    assert code == 0 and re.fullmatch(
        r"removed 1 rows from \S+ \(now 4 rows; segments \d+ -> \d+\) in \d+\.\d\d s\n", out
    )
    code, out, _ = run(capsys, "compact", bm25_table)
    m = re.fullmatch(r"compacted \S+: segments (\d+) -> 1, 1 removed rows dropped, 4 rows, in \d+\.\d\d s\n", out)
    assert code == 0 and m and int(m.group(1)) > 1

    saved = SoftTable.load(bm25_table)
    live = ["lazy dog sleeps", "red fox in the snow", "a zebra crossing in the snow", "a green frog jumps"]
    texts = [p["text"] for p in saved.payloads]
    assert sorted(texts) == sorted(live)
    fresh = SoftTable.from_texts(texts, encoder="bm25")  # the same live rows, built at once
    q = ["frog", "snow fox", "zebra dog"]
    np.testing.assert_allclose(_scores(saved, q), _scores(fresh, q), rtol=1e-5, atol=1e-7)
    assert saved.search("frog", k=1).ids[0] == "frog"


def test_write_errors_exit_2_and_leave_the_table_as_it_was(tmp_path, bm25_table, capsys):
    code, _, err = run(capsys, "remove", bm25_table, "nope")
    assert code == 2 and "softdb: error: cannot remove rows: 1 unknown ids ['nope']" in err
    code, _, err = run(capsys, "add", bm25_table, "--text", "again", "--id", "fox.txt")
    assert code == 2 and "softdb: error: cannot add rows: 1 duplicate ids already in the table" in err
    code, _, err = run(capsys, "add", bm25_table)
    assert code == 2 and "softdb: error: nothing to add" in err
    assert len(SoftTable.load(bm25_table)) == 3


def test_a_folder_that_is_not_a_table_says_what_it_holds(tmp_path, capsys):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("x")
    for argv in (["add", folder, "--text", "x"], ["remove", folder, "1"], ["compact", folder]):
        code, _, err = run(capsys, *argv)
        msg = f"'{folder}' is not a softdb table: it holds 1 entries (a.txt), but a table folder holds manifest.json"
        assert code == 2 and msg in err, err
        assert "shards.json (a sharded table" in err
