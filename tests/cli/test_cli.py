"""The `softdb` command: pinned queries with the real model, errors, --help."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from softdb.cli import main

PINNED = [
    ("parse command line arguments", ("argparse", "optparse", "getopt")),
    ("compress data with gzip", ("gzip",)),
    ("read and write zip archives", ("zipfile",)),
    ("regular expression matching", ("re",)),
    ("serialize python objects to bytes", ("pickle", "marshal", "shelve", "copyreg")),
    ("current date and time", ("datetime", "time")),
]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="session")
def stdlib_table_dir(minilm, tmp_path_factory):
    """The stdlib corpus indexed once per session with the real model."""
    path = tmp_path_factory.mktemp("tables") / "stdlib"
    assert main(["index", "stdlib", "-o", str(path)]) == 0
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("query, modules", PINNED, ids=[q for q, _ in PINNED])
def test_pinned_queries_find_the_right_modules(stdlib_table_dir, capsys, query, modules):
    code, out, err = run(capsys, "search", query, "-k", "3", "--table", stdlib_table_dir, "--json")
    assert code == 0, err
    hits = json.loads(out)["hits"]
    assert len(hits) == 3
    tops = [h["id"].split(".")[0] for h in hits]
    assert any(t in modules for t in tops), f"{query!r} gave {[h['id'] for h in hits]}"
    weights = [h["weight"] for h in hits]
    assert weights == sorted(weights, reverse=True) and 0 < sum(weights) <= 1 + 1e-6


@pytest.mark.slow
def test_search_text_output_and_hard_mode(stdlib_table_dir, capsys):
    code, out, _ = run(capsys, "search", "parse command line arguments", "-k", "3", "--table", stdlib_table_dir)
    assert code == 0
    assert "soft lookup" in out and "weight" in out
    assert any(m in out for m in ("argparse", "getopt", "optparse"))
    code, out, _ = run(capsys, "search", "compress data with gzip", "--mode", "hard", "--table", stdlib_table_dir)
    assert code == 0 and "hard lookup" in out and "gzip" in out and "weight" not in out


@pytest.mark.slow
def test_search_corpus_stdlib_directly(minilm, capsys):
    code, out, err = run(capsys, "search", "compress data with gzip", "-k", "3", "--json")
    assert code == 0, err
    assert any(h["id"].startswith("gzip") for h in json.loads(out)["hits"])


def test_search_a_folder_of_notes(tmp_path, capsys, monkeypatch):
    from softdb.text import HashEncoder

    monkeypatch.setattr("softdb.text.default_encoder", lambda: HashEncoder(64))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.md").write_text("bananas are yellow fruit\n\ncats chase mice at night\n")
    (tmp_path / "notes" / "b.txt").write_text("trains run on rails between cities\n")
    code, out, err = run(capsys, "search", "yellow bananas", "-k", "2", "--corpus", str(tmp_path / "notes"), "--json")
    assert code == 0, err
    assert json.loads(out)["hits"][0]["id"] == "a.md"  # a document: one per file
    assert "banana" in json.dumps(json.loads(out)["hits"][0]["payload"])


@pytest.mark.slow
def test_user_errors_exit_2_without_traceback(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    cases = [
        (["search", "x", "--corpus", str(tmp_path / "missing")], "softdb: error:"),
        (["search", "x", "--table", str(tmp_path / "missing")], "no table at"),
        (["search", "x", "-k", "0"], "must be >= 1"),
        (["search", "x", "--temperature", "-1"], "must be finite and > 0"),
        (["search", "x", "--mode", "fuzzy"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
        (["eval", str(tmp_path / "nope")], "no BEIR folder"),
    ]
    (tmp_path / "empty").mkdir()
    cases.append((["index", str(tmp_path / "empty"), "-o", str(tmp_path / "t")], "softdb: error:"))
    for argv, needle in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "softdb.cli", *argv], capture_output=True, text=True, env=env, timeout=120
        )
        assert proc.returncode == 2, (argv, proc.stderr)
        assert "softdb: error:" in proc.stderr and needle in proc.stderr, (argv, proc.stderr)
        assert "Traceback" not in proc.stderr, (argv, proc.stderr)


@pytest.mark.parametrize("sub", ["demo", "search", "index", "eval", "intuitions", "heads"])
def test_help_on_every_subcommand(sub, capsys):
    with pytest.raises(SystemExit) as exc:
        main([sub, "--help"])
    assert exc.value.code == 0
    assert "usage: softdb " + sub in capsys.readouterr().out
