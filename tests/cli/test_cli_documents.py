"""Documents on the command line and in the web API: a folder is one document per file, JSONL/CSV rows keep
their text, hits are documents by default (issue 22). HashEncoder here; the real MiniLM in one slow test."""

from __future__ import annotations

import collections
import json
import re

import numpy as np
import pytest

from softdb import SoftTable
from softdb.cli import main
from softdb.text import HashEncoder, stdlib_corpus
from softdb.views._app import App

DIM = 1024


def _strict(text):
    return json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def hash_encoder(monkeypatch):
    monkeypatch.setattr("softdb.text.default_encoder", lambda: HashEncoder(DIM))
    return HashEncoder(DIM)


ROWS = [
    {"id": "z", "text": "zlib compresses data with deflate", "year": 2010, "lang": "en"},
    {"id": "c", "text": "csv reads comma separated values", "year": 2020, "lang": "en"},
    {"id": "h", "text": "heapq keeps a priority queue", "year": 2015, "lang": "fr"},
]


@pytest.fixture(params=["jsonl", "csv"])
def table_file(request, tmp_path):
    f = tmp_path / f"rows.{request.param}"
    if request.param == "jsonl":
        f.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    else:
        f.write_text("id,text,year,lang\n" + "".join(f"{r['id']},{r['text']},{r['year']},{r['lang']}\n" for r in ROWS))
    return f


def test_jsonl_and_csv_tables_keep_their_text_on_the_command_line(table_file, hash_encoder, tmp_path, capsys):
    code, _, err = run(capsys, "index", table_file, "--id-column", "id", "-o", tmp_path / "t")
    assert code == 0, err
    code, out, err = run(capsys, "search", "zlib deflate", "--table", tmp_path / "t", "-k", "2", "--json")
    assert code == 0, err
    hit = _strict(out)["hits"][0]
    assert hit["id"] == "z"
    assert hit["payload"]["text"] == "zlib compresses data with deflate"  # the text, not only {'year': 2010}
    assert hit["payload"]["doc"] == "z" and hit["payload"]["span"] == [0, len(ROWS[0]["text"])]
    year = hit["payload"]["year"]
    assert year == 2010 or year == "2010"  # CSV cells are strings: the other fields stay plain JSON scalars
    code, out, _ = run(capsys, "search", "zlib deflate", "--table", tmp_path / "t", "-k", "1")
    assert code == 0 and "z — zlib compresses data with deflate" in out  # the printed hit shows the text


def test_jsonl_and_csv_tables_keep_their_text_in_the_web_api(table_file, hash_encoder):
    from softdb.cli._args import text_table

    app = App(text_table(str(table_file), None, "id"))
    for by in ("document", "chunk"):
        status, _, body = app.handle("/api/search", f"q=zlib+deflate&k=2&by={by}")
        assert status == 200
        hit = _strict(body)["hits"][0]
        assert hit["id"] == "z" and hit["payload"]["text"] == "zlib compresses data with deflate"
    status, _, body = app.handle("/api/search", "q=zlib&by=file")
    assert status == 400
    assert _strict(body)["error"] == "by must be 'document' or 'chunk', got 'file'; hint: by=chunk shows rows"
    status, _, body = app.handle("/api/search", "q=zlib&rank=sum")
    assert status == 400 and "rank must be 'score' or 'weight'" in _strict(body)["error"]


LONG = "gzip compresses files. " * 120  # ~480 words: several chunks


def test_a_folder_is_one_document_per_file_and_hits_are_documents(tmp_path, hash_encoder, capsys):
    root = tmp_path / "notes"
    root.mkdir()
    (root / "gzip.txt").write_text("gzip\n" + LONG)
    (root / "csv.md").write_text("# csv\nread and write comma separated files")
    code, _, err = run(capsys, "index", root, "-o", tmp_path / "t")
    assert code == 0, err
    t = SoftTable.load(tmp_path / "t")
    assert len(t) > 2 and {p["doc"] for p in t.payloads} == {"gzip.txt", "csv.md"}
    assert all(p["text"].startswith(("gzip\n", "csv\n")) for p in t.payloads)  # the title travels with its chunks
    code, out, err = run(capsys, "search", "gzip compresses", "--table", tmp_path / "t", "-k", "5", "--json")
    assert code == 0, err
    ids = [h["id"] for h in _strict(out)["hits"]]
    assert ids == ["gzip.txt", "csv.md"] and "showing all 2" in err  # documents: exactly as many as there are
    code, out, _ = run(
        capsys, "search", "gzip compresses", "--table", tmp_path / "t", "-k", "3", "--by", "chunk", "--json"
    )
    assert [h["id"] for h in _strict(out)["hits"]] == ["gzip.txt#0", "gzip.txt#1", "gzip.txt#2"] or all(
        h["id"].startswith("gzip.txt#") for h in _strict(out)["hits"]
    )
    docs = t.search(hash_encoder.encode(["gzip compresses"]), 2, by="document")
    hits = _strict(out)["hits"]
    w_chunks = t.search(hash_encoder.encode(["gzip compresses"]), len(t))
    gz = np.array([p["doc"] == "gzip.txt" for p in w_chunks.payloads[0]])
    np.testing.assert_allclose(docs.weights[0][0], w_chunks.weights[0][gz].astype(np.float64).sum(), rtol=1e-5)
    assert hits[0]["weight"] < docs.weights[0][0]  # a chunk holds part of its document's weight
    code, out, _ = run(capsys, "remove", tmp_path / "t", "gzip.txt")  # a document's id removes all its chunks
    assert code == 0 and re.match(rf"removed {len(t) - 1} rows", out)
    assert SoftTable.load(tmp_path / "t").ids == ("csv.md",)


def _stdlib_folder(root):
    """The stdlib's docs written as files: <module>.txt holds the module's name (its title), then the docs
    of the module and of its members, a paragraph each (163 files, ~880 chunks with MiniLM)."""
    root.mkdir()
    c = stdlib_corpus()
    by_module = collections.defaultdict(list)
    for text, p in zip(c.texts, c.payloads):
        by_module[p["module"].split(".")[0]].append(text)
    for module, texts in by_module.items():
        (root / f"{module}.txt").write_text(module + "\n" + "\n\n".join(texts), encoding="utf-8")
    assert (root / "gzip.txt").is_file()
    return root


def test_compress_a_file_on_a_stdlib_folder_finds_documents_not_title_rows(tmp_path, hash_encoder, capsys):
    root = _stdlib_folder(tmp_path / "stdlib")
    code, out, err = run(capsys, "search", "compress a file", "--corpus", root, "-k", "5", "--json")
    assert code == 0, err
    for h in _strict(out)["hits"]:
        assert h["id"].endswith(".txt") and "#" not in h["id"]  # documents
        title, _, body = h["payload"]["text"].partition("\n")
        assert title == h["id"][:-4] and body.strip()  # a chunk with text under its title, never a title alone


@pytest.mark.slow
def test_compress_a_file_finds_gzip_with_minilm(tmp_path, minilm, monkeypatch, capsys):
    monkeypatch.setattr("softdb.text.default_encoder", lambda: minilm)
    root = _stdlib_folder(tmp_path / "stdlib")
    code, out, err = run(capsys, "search", "compress a file", "--corpus", root, "-k", "3", "--json")
    assert code == 0, err
    hits = _strict(out)["hits"]
    assert hits[0]["id"] == "gzip.txt", [h["id"] for h in hits]  # the document, shown by its best chunk
    assert hits[0]["payload"]["text"].startswith("gzip\n") and len(hits[0]["payload"]["text"]) > len("gzip\n")
    assert all(h["payload"]["text"].partition("\n")[2].strip() for h in hits)  # no title row
