"""`softdb explain … --html` and `softdb serve` from the command line (HashEncoder tables: no model)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request

import pytest

from softdb import SoftTable
from softdb.cli import main
from softdb.text import HashEncoder

TEXTS = [
    "read rows from a csv file",
    "compress data with gzip",
    "<script>alert(1)</script> evil",
    "parse json text",
    "run a shell command",
    "open a zip archive",
    "send an email",
    "format dates",
    "walk a directory tree",
    "hash a password",
    "sort a list",
    "count words",
]


@pytest.fixture(scope="module")
def table_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("cliviews") / "t"
    SoftTable.from_texts(TEXTS, ids=[f"doc{i}" for i in range(len(TEXTS))], encoder=HashEncoder()).save(path)
    return str(path)


def test_explain_html_writes_one_small_offline_file(table_dir, tmp_path, capsys):
    out = tmp_path / "e.html"
    assert main(["explain", "csv rows", "--table", table_dir, "-k", "10", "--html", str(out)]) == 0
    assert re.match(rf"wrote {re.escape(str(out))} \(\d+\.\d KB\): 10 hits of 12 rows", capsys.readouterr().out)
    page = out.read_text(encoding="utf-8")
    assert out.stat().st_size < 300 * 1024
    assert "http:" not in page and "https:" not in page
    assert '<td class="sdbx-id">doc0</td>' in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert not list(tmp_path.glob("*.tmp-*"))  # the atomic write left nothing behind


def test_explain_without_html_prints_the_text_explanation(table_dir, capsys):
    assert main(["explain", "gzip", "--table", table_dir, "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("query: gzip") and "doc1" in out and "entropy of the weights" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["explain", "  ", "--table", "TABLE", "--html", "x.html"],
            'the query is empty; hint: softdb explain "how do I read a csv file"',
        ),
        (["serve", "--table", "TABLE", "--port", "70000"], "--port must be in 0..65535, got 70000"),
    ],
)
def test_user_errors_exit_2(table_dir, capsys, argv, message):
    assert main([table_dir if a == "TABLE" else a for a in argv]) == 2
    assert capsys.readouterr().err == f"softdb: error: {message}\n"


def test_explain_html_into_a_missing_folder_is_a_user_error(table_dir, tmp_path, capsys):
    out = tmp_path / "missing" / "e.html"
    assert main(["explain", "gzip", "--table", table_dir, "--html", str(out)]) == 2
    assert capsys.readouterr().err.startswith(f"softdb: error: cannot write {str(out)!r}: ")


def test_serve_runs_as_a_command_and_stops(table_dir):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "softdb.cli", "serve", "--table", table_dir, "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stderr.readline()
        m = re.search(r"serving 12 rows at (http://127\.0\.0\.1:\d+/)", line)
        assert m, line
        with urllib.request.urlopen(m.group(1) + "api/search?q=gzip&k=2", timeout=30) as r:
            body = json.load(r)
        assert body["hits"][0]["id"] == "doc1"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
