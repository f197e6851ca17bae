"""Corpus loaders (softdb.text)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from softdb.text import (
    Corpus,
    beir_corpus,
    beir_qrels,
    beir_queries,
    folder_corpus,
    load_corpus,
    stdlib_corpus,
    table_file_corpus,
)
from softdb.text._stdlib import _SKIP_MODULES, MAX_CHARS, _quiet_import

SCIFACT = Path(__file__).resolve().parents[1] / "data" / "scifact"  # the real slice shipped in the repo


# --- Corpus ----------------------------------------------------------------------------


def test_corpus_is_frozen_and_checks_lengths():
    c = Corpus(["a"], ["text"], [None])
    assert len(c) == 1
    with pytest.raises(AttributeError):
        c.ids = []  # type: ignore[misc]
    msg = "a Corpus needs as many ids, texts and payloads but got 2 ids, 1 texts and 1 payloads"
    with pytest.raises(ValueError, match=re.escape(msg)):
        Corpus(["a", "b"], ["x"], [None])


# --- stdlib ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stdlib():
    return stdlib_corpus()


def test_stdlib_corpus_contents(stdlib):
    assert 1000 <= len(stdlib) <= 3000
    assert len(set(stdlib.ids)) == len(stdlib)
    for name in [
        "argparse",
        "argparse.ArgumentParser",
        "json.dumps",
        "gzip.open",
        "os.path.join",
        "csv.reader",
        "urllib.parse.urlparse",
        "builtins.len",
    ]:
        assert name in stdlib.ids, name
    for ident in stdlib.ids:
        parts = ident.split(".")
        assert not any(p.startswith("_") for p in parts), ident
        assert parts[0] not in _SKIP_MODULES and parts[0] != "test", ident
    i = stdlib.ids.index("argparse.ArgumentParser")
    assert stdlib.texts[i].startswith("argparse.ArgumentParser: ")
    assert stdlib.payloads[i]["module"] == "argparse" and stdlib.payloads[i]["kind"] == "class"
    assert stdlib.payloads[i]["summary"]
    assert max(map(len, stdlib.texts)) <= MAX_CHARS + 2
    assert all(t.strip() for t in stdlib.texts)


def test_stdlib_corpus_is_deterministic(stdlib):
    again = stdlib_corpus()
    assert again.ids == stdlib.ids and again.texts == stdlib.texts


def test_noisy_or_broken_modules_are_skipped_silently(tmp_path, monkeypatch, capsys):
    (tmp_path / "softdb_noisy_mod.py").write_text("print('hello from import')\n")
    (tmp_path / "softdb_broken_mod.py").write_text("raise SystemExit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _quiet_import("softdb_noisy_mod") is None
    assert _quiet_import("softdb_broken_mod") is None
    assert _quiet_import("json") is sys.modules["json"]
    assert capsys.readouterr() == ("", "")


# --- folder ----------------------------------------------------------------------------


def make_notes(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / ".hidden").mkdir()
    (root / "b.md").write_text("# B\n\nbody of b\nstill b\n\n  \n\nlast of b\n")
    (root / "a.txt").write_bytes(b"first of a\r\n\r\nsecond of a\r\n")
    (root / "sub" / "c.MD").write_text("only paragraph of c")
    (root / "sub" / "empty.txt").write_text("\n\n  \n")
    (root / "ignored.rst").write_text("not read")
    (root / ".hidden" / "x.md").write_text("not read")
    return root


def test_folder_corpus(tmp_path):
    """One document per file (no splitting on blank lines); the first line is the title, never a row alone."""
    c = folder_corpus(make_notes(tmp_path / "notes"))
    assert c.ids == ["a.txt", "b.md", "sub/c.MD"]  # the empty file is dropped
    assert c.texts == ["second of a", "body of b\nstill b\n\n  \n\nlast of b", "only paragraph of c"]
    assert c.titles == ["first of a", "B", None]  # a one-line file is its own text, not a title
    assert c.payloads == [{"path": "a.txt"}, {"path": "b.md"}, {"path": "sub/c.MD"}]


def test_folder_corpus_errors(tmp_path):
    with pytest.raises(
        FileNotFoundError,
        match=re.escape(f"folder '{tmp_path}/nope' does not exist; check the path"),
    ):
        folder_corpus(tmp_path / "nope")
    f = tmp_path / "a.md"
    f.write_text("x")
    with pytest.raises(
        ValueError,
        match=re.escape(f"folder_corpus needs a folder but '{f}' is a file; pass its folder"),
    ):
        folder_corpus(f)


# --- JSONL / CSV -----------------------------------------------------------------------


def test_jsonl_corpus(tmp_path):
    f = tmp_path / "rows.jsonl"
    f.write_text('{"id": "r1", "text": "one", "tag": 1}\n\n{"id": "r2", "text": 2}\n')
    c = table_file_corpus(f, id_column="id")
    assert (c.ids, c.texts, c.payloads) == (["r1", "r2"], ["one", "2"], [{"tag": 1}, {}])
    assert table_file_corpus(f).ids == [0, 1]


def test_csv_corpus(tmp_path):
    f = tmp_path / "rows.csv"
    f.write_text('\ufeffkey,body,extra\nk1,"hello, world",x\nk2,bye,y\n', encoding="utf-8")
    c = table_file_corpus(f, text_column="body", id_column="key")
    assert (c.ids, c.texts, c.payloads) == (
        ["k1", "k2"],
        ["hello, world", "bye"],
        [{"extra": "x"}, {"extra": "y"}],
    )


@pytest.mark.parametrize(
    ("name", "content", "kwargs", "msg"),
    [
        (
            "r.jsonl",
            '{"body": "x", "n": 1}\n',
            {},
            "line 1 of {f} has no column 'text'; columns present: ['body', 'n']; pass text_column=/id_column= "
            "(on the command line --text-column/--id-column) to choose one",
        ),
        (
            "r.jsonl",
            '{"text": "x"}\n{"text": oops}\n',
            {},
            "line 2 of {f} is not valid JSON (Expecting value at column 10)",
        ),
        ("r.jsonl", '["text"]\n', {}, "line 1 of {f} holds a JSON list, not an object"),
        (
            "r.jsonl",
            '{"text": null}\n',
            {},
            "column 'text' on line 1 of {f} must be a string but is null",
        ),
        (
            "r.jsonl",
            '{"text": "a", "id": 1}\n{"text": "b", "id": 1}\n',
            {"id_column": "id"},
            "id '1' in column 'id' appears on lines 1 and 2 of {f}; ids must be unique",
        ),
        (
            "r.csv",
            "a,b\n1,2\n",
            {},
            "line 2 of {f} has no column 'text'; columns present: ['a', 'b']",
        ),
        ("r.csv", "text\nx,y\n", {}, "line 2 of {f} has more fields than the header's 1"),
        ("r.tsv", "text\n", {}, "table_file_corpus reads a .jsonl or .csv file but got '{f}'"),
    ],
)
def test_table_file_errors(tmp_path, name, content, kwargs, msg):
    f = tmp_path / name
    f.write_text(content)
    with pytest.raises(ValueError, match=re.escape(msg.format(f=f))):
        table_file_corpus(f, **kwargs)


# --- BEIR ------------------------------------------------------------------------------


def make_beir(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text(
        '{"_id": "d1", "title": "Title one", "text": "Body one."}\n'
        '{"_id": "d2", "title": "", "text": "Body two."}\n'
        '{"_id": "d3", "text": " Body three. "}\n'
    )
    (root / "queries.jsonl").write_text(
        '{"_id": "q1", "text": "first?"}\n{"_id": "q2", "text": "second?"}\n{"_id": "q3", "text": "third?"}\n'
    )
    (root / "qrels" / "test.tsv").write_bytes(b"query-id\tcorpus-id\tscore\r\nq3\td1\t1\r\nq1\td2\t1\r\nq1\td3\t2\r\n")
    return root


def test_beir_small(tmp_path):
    root = make_beir(tmp_path / "mini")
    c = beir_corpus(root)
    assert c.ids == ["d1", "d2", "d3"]
    assert c.texts == ["Title one Body one.", "Body two.", "Body three."]
    assert c.payloads[0] == {"title": "Title one"}
    assert beir_qrels(root, "test") == {"q3": {"d1": 1}, "q1": {"d2": 1, "d3": 2}}
    ids, texts = beir_queries(root, "test")
    assert (ids, texts) == (["q1", "q3"], ["first?", "third?"])
    assert load_corpus(root).ids == c.ids


def test_beir_errors(tmp_path):
    root = make_beir(tmp_path / "mini")
    with pytest.raises(
        FileNotFoundError,
        match=re.escape(f"BEIR folder '{root}' has no qrels/dev.tsv; splits present: ['test']"),
    ):
        beir_qrels(root, "dev")
    (root / "qrels" / "bad.tsv").write_text("q1\td1\n")
    with pytest.raises(
        ValueError,
        match=re.escape(
            "line 1 of " + str(root / "qrels" / "bad.tsv") + " has 2 tab-separated fields but qrels need 3"
        ),
    ):
        beir_qrels(root, "bad")
    (root / "qrels" / "ghost.tsv").write_text("q9\td1\t1\n")
    with pytest.raises(ValueError, match=re.escape("qrels/ghost.tsv names 1 queries absent from")):
        beir_queries(root, "ghost")
    with pytest.raises(FileNotFoundError, match=re.escape(f"BEIR folder '{tmp_path}' has no corpus.jsonl")):
        beir_corpus(tmp_path)


def test_scifact_slice_is_intact():
    """The shipped slice is byte for byte what scripts/cut_scifact_slice.py wrote."""
    import hashlib

    for line in (SCIFACT / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ")
        assert hashlib.sha256((SCIFACT / name).read_bytes()).hexdigest() == digest, name
    for split in ("train", "test"):
        raw = (SCIFACT / "qrels" / f"{split}.tsv").read_bytes()
        assert raw.startswith(b"query-id\tcorpus-id\tscore\r\n") and raw.count(b"\n") == raw.count(b"\r\n")


def test_scifact_slice_matches_an_independent_reading():
    import csv
    import json

    raw_docs = [json.loads(line) for line in (SCIFACT / "corpus.jsonl").read_text().splitlines()]
    corpus = beir_corpus(SCIFACT)
    assert corpus.ids == [d["_id"] for d in raw_docs] and len(set(corpus.ids)) == len(raw_docs)
    assert corpus.texts == [f"{d['title']} {d['text']}".strip() for d in raw_docs]
    raw_queries = {q["_id"]: q["text"] for q in map(json.loads, (SCIFACT / "queries.jsonl").read_text().splitlines())}
    for split in ("train", "test"):
        with open(SCIFACT / "qrels" / f"{split}.tsv", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        want: dict[str, dict[str, int]] = {}
        for r in rows:
            want.setdefault(r["query-id"], {})[r["corpus-id"].rstrip("\r")] = int(r["score"])
        qrels = beir_qrels(SCIFACT, split)
        assert qrels == want and {s for docs in qrels.values() for s in docs.values()} == {1}
        ids, texts = beir_queries(SCIFACT, split)
        assert sorted(ids) == sorted(qrels) and texts == [raw_queries[i] for i in ids]
        assert {d for docs in qrels.values() for d in docs} <= set(corpus.ids)


# --- load_corpus -----------------------------------------------------------------------


def test_load_corpus_dispatch(tmp_path):
    assert load_corpus("stdlib").ids[:1] == stdlib_corpus().ids[:1]
    assert load_corpus(make_notes(tmp_path / "notes")).ids[0] == "a.txt"
    (tmp_path / "t.jsonl").write_text('{"text": "x"}\n')
    assert load_corpus(str(tmp_path / "t.jsonl")).texts == ["x"]
    (tmp_path / "t.csv").write_text("text\ny\n")
    assert load_corpus(tmp_path / "t.csv").texts == ["y"]


def test_load_corpus_errors(tmp_path):
    hint = (
        "pass 'stdlib', a folder of .txt/.md files, a .jsonl or .csv file with a 'text' column, "
        "or a BEIR folder holding corpus.jsonl"
    )
    with pytest.raises(FileNotFoundError, match=re.escape(f"corpus '{tmp_path}/missing' does not exist; {hint}")):
        load_corpus(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        ValueError,
        match=re.escape(f"corpus '{tmp_path}/empty' has no texts; a folder needs non-empty .txt or .md files"),
    ):
        load_corpus(tmp_path / "empty")
    (tmp_path / "doc.pdf").write_bytes(b"%PDF")
    with pytest.raises(
        ValueError,
        match=re.escape(f"cannot read corpus file '{tmp_path}/doc.pdf' (suffix '.pdf'); {hint}"),
    ):
        load_corpus(tmp_path / "doc.pdf")
    with pytest.raises(TypeError, match=re.escape("corpus spec must be a str or path but got int")):
        load_corpus(3)  # type: ignore[arg-type]
