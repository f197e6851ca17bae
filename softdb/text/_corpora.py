"""Corpus loaders: a folder of notes, a JSONL/CSV table, a BEIR folder, or a spec."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from softdb.text._corpus import Corpus
from softdb.text._decode import decode_text
from softdb.text._stdlib import stdlib_corpus

__all__ = [
    "Queries",
    "beir_corpus",
    "beir_qrels",
    "beir_queries",
    "folder_corpus",
    "load_corpus",
    "table_file_corpus",
]

_SPEC_HINT = (
    "pass 'stdlib', a folder of .txt/.md files, a .jsonl or .csv file with a 'text' column, "
    "or a BEIR folder holding corpus.jsonl"
)


class Queries(NamedTuple):
    """Query ids and texts of one BEIR split (unpacks as ``ids, texts``)."""

    ids: list[str]
    texts: list[str]


def _existing(path: str | os.PathLike[str], what: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{what} must be a path (str or os.PathLike) but got {type(path).__name__}")
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist; check the path")
    return p


# --- folder of notes -------------------------------------------------------------------


def folder_corpus(path: str | os.PathLike[str]) -> Corpus:
    """The .txt and .md files under a folder, one document per file.

    Files are found recursively (hidden files and folders, starting with ".", are
    skipped) and read in sorted order of their relative paths. A file's first non-empty
    line is its title (a Markdown heading's ``#`` marks dropped) when more text follows
    it; the title travels with each chunk of the file (``SoftTable.from_texts(titles=...)``),
    never as a row alone. Line endings are normalised; an empty file is dropped.

    Decoding: a byte-order mark decides (UTF-8/16/32); else valid UTF-8 is UTF-8;
    else the file is read as cp1252/latin-1 (so a latin-1 "Café" stays "Café").
    A file holding a NUL byte, or whose text is over 5% control characters, is
    not text (an executable renamed ``.txt``): it is skipped and named in
    ``Corpus.skipped``.

    Returns
    -------
    Corpus
        id ``"relative/path.md"``; text: the file after its title; title: its first line
        (None for a one-line file, whose line is its text); payload ``{"path": "relative/path.md"}``;
        ``skipped``: the relative paths of the files that are not text.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "notes.md").write_text("# Title\\n\\nFirst paragraph.\\n\\n\\nSecond one.\\n")
    >>> c = folder_corpus(d)
    >>> c.ids, c.titles, c.texts
    (['notes.md'], ['Title'], ['First paragraph.\\n\\n\\nSecond one.'])
    """
    root = _existing(path, "folder")
    if not root.is_dir():
        raise ValueError(f"folder_corpus needs a folder but {str(path)!r} is a file; pass its folder")
    files = []
    for p in root.rglob("*"):
        relpath = p.relative_to(root)
        if p.suffix.lower() in (".txt", ".md") and p.is_file() and not any(s.startswith(".") for s in relpath.parts):
            files.append((relpath.as_posix(), p))
    ids: list[str] = []
    texts: list[str] = []
    titles: list[str | None] = []
    payloads: list[dict[str, Any]] = []
    skipped: list[str] = []
    for rel, p in sorted(files):
        decoded = decode_text(p.read_bytes())
        if decoded is None:
            skipped.append(rel)
            continue
        raw = decoded[0].replace("\r\n", "\n").replace("\r", "\n").strip()
        if not raw:
            continue
        first, _, rest = raw.partition("\n")
        title: str | None = first.strip().lstrip("#").strip()
        if not rest.strip() or not title:
            title, rest = None, raw
        ids.append(rel)
        texts.append(rest.strip())
        titles.append(title)
        payloads.append({"path": rel})
    return Corpus(ids, texts, payloads, tuple(skipped), titles=titles)


# --- JSONL / CSV -----------------------------------------------------------------------


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(path, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"line {lineno} of {path} is not valid JSON ({exc.msg} at column "
                    f"{exc.colno}): {line.strip()[:60]!r}; each line must be one JSON object"
                ) from None
            if not isinstance(rec, dict):
                raise ValueError(
                    f"line {lineno} of {path} holds a JSON {type(rec).__name__}, not an object; "
                    'each line must be one JSON object such as {"text": "..."}'
                )
            yield lineno, rec


def _csv_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            return
        for rec in reader:
            if None in rec:
                raise ValueError(
                    f"line {reader.line_num} of {path} has more fields than the header's "
                    f"{len(reader.fieldnames)}; quote fields that contain commas"
                )
            yield reader.line_num, rec


def table_file_corpus(
    path: str | os.PathLike[str], *, text_column: str = "text", id_column: str | None = None
) -> Corpus:
    """Rows of a .jsonl (one JSON object a line) or .csv (with a header) file.

    Parameters
    ----------
    path : path-like
    text_column : str, default "text"
        Column holding the text; numbers are turned into strings.
    id_column : str, optional
        Column holding unique ids (turned into str). Default: the row number
        from 0, as an int.

    Returns
    -------
    Corpus
        payload: a dict of the row's other columns.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "rows.csv"
    >>> _ = f.write_text("name,text\\nx,hello world\\ny,good night\\n")
    >>> c = table_file_corpus(f, id_column="name")
    >>> c.ids, c.texts, c.payloads
    (['x', 'y'], ['hello world', 'good night'], [{}, {}])
    """
    p = _existing(path, "table file")
    suffix = p.suffix.lower()
    if suffix not in (".jsonl", ".csv") or not p.is_file():
        raise ValueError(
            f"table_file_corpus reads a .jsonl or .csv file but got {str(path)!r}; "
            "convert it, or use folder_corpus for .txt/.md files"
        )
    records = _jsonl_records(p) if suffix == ".jsonl" else _csv_records(p)
    ids: list[Any] = []
    texts: list[str] = []
    payloads: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for row, (lineno, rec) in enumerate(records):
        for col in (text_column, id_column):
            if col is not None and col not in rec:
                raise ValueError(
                    f"line {lineno} of {p} has no column {col!r}; columns present: "
                    f"{sorted(rec)}; pass text_column=/id_column= (on the command line "
                    "--text-column/--id-column) to choose one"
                )
        text = rec[text_column]
        if text is None or isinstance(text, (dict, list, bool)):
            raise ValueError(
                f"column {text_column!r} on line {lineno} of {p} must be a string but is "
                f"{json.dumps(text)[:40]}; fix or drop that row"
            )
        if id_column is None:
            ident: Any = row
        else:
            ident = str(rec[id_column])
            if ident in seen:
                raise ValueError(
                    f"id {ident!r} in column {id_column!r} appears on lines {seen[ident]} and "
                    f"{lineno} of {p}; ids must be unique"
                )
            seen[ident] = lineno
        ids.append(ident)
        texts.append(str(text))
        payloads.append({k: v for k, v in rec.items() if k not in (text_column, id_column)})
    return Corpus(ids, texts, payloads)


# --- BEIR ------------------------------------------------------------------------------


def _beir_file(path: str | os.PathLike[str], name: str) -> Path:
    root = _existing(path, "BEIR folder")
    f = root / name
    if not f.is_file():
        raise FileNotFoundError(
            f"BEIR folder {str(path)!r} has no {name}; a BEIR folder holds corpus.jsonl, "
            "queries.jsonl and qrels/<split>.tsv"
        )
    return f


def beir_corpus(path: str | os.PathLike[str]) -> Corpus:
    """Documents of a BEIR folder's corpus.jsonl.

    Returns
    -------
    Corpus
        id ``_id``; text ``(title + " " + text).strip()`` (as MTEB encodes it);
        payload ``{"title": title}``.
    """
    f = _beir_file(path, "corpus.jsonl")
    ids: list[str] = []
    texts: list[str] = []
    payloads: list[dict[str, str]] = []
    for lineno, rec in _jsonl_records(f):
        if "_id" not in rec:
            raise ValueError(
                f"line {lineno} of {f} has no '_id'; columns present: {sorted(rec)}; "
                'BEIR documents look like {"_id", "title", "text"}'
            )
        title = str(rec.get("title") or "")
        ids.append(str(rec["_id"]))
        texts.append(f"{title} {rec.get('text') or ''}".strip())
        payloads.append({"title": title})
    return Corpus(ids, texts, payloads)


def beir_qrels(path: str | os.PathLike[str], split: str) -> dict[str, dict[str, int]]:
    """Relevance judgments of one split: ``{query_id: {doc_id: score}}``.

    Reads ``qrels/<split>.tsv`` (tab-separated ``query-id corpus-id score``, with or
    without its header line, LF or CRLF line endings).
    """
    root = _existing(path, "BEIR folder")
    f = root / "qrels" / f"{split}.tsv"
    if not f.is_file():
        have = sorted(q.stem for q in (root / "qrels").glob("*.tsv"))
        raise FileNotFoundError(f"BEIR folder {str(path)!r} has no qrels/{split}.tsv; splits present: {have}")
    qrels: dict[str, dict[str, int]] = {}
    with open(f, encoding="utf-8-sig", newline="") as fh:
        for lineno, line in enumerate(fh, 1):
            fields = line.rstrip("\r\n").split("\t")
            if fields == [""]:
                continue
            if lineno == 1 and fields[0].strip().lower() in ("query-id", "query_id", "qid"):
                continue
            if len(fields) != 3:
                raise ValueError(
                    f"line {lineno} of {f} has {len(fields)} tab-separated fields but qrels "
                    "need 3: query-id, corpus-id, score"
                )
            try:
                score = int(fields[2])
            except ValueError:
                raise ValueError(f"line {lineno} of {f} has score {fields[2]!r}; scores must be integers") from None
            qrels.setdefault(fields[0], {})[fields[1]] = score
    return qrels


def beir_queries(path: str | os.PathLike[str], split: str) -> Queries:
    """The queries of one split: those of queries.jsonl that appear in its qrels.

    Returns
    -------
    Queries
        ``(ids, texts)`` in queries.jsonl order.
    """
    wanted = beir_qrels(path, split)
    f = _beir_file(path, "queries.jsonl")
    ids: list[str] = []
    texts: list[str] = []
    for _, rec in _jsonl_records(f):
        qid = str(rec.get("_id"))
        if qid in wanted:
            ids.append(qid)
            texts.append(str(rec.get("text") or ""))
    missing = set(wanted) - set(ids)
    if missing:
        raise ValueError(
            f"qrels/{split}.tsv names {len(missing)} queries absent from {f}, e.g. "
            f"{sorted(missing)[:3]}; is the folder complete?"
        )
    return Queries(ids, texts)


# --- one entry point -------------------------------------------------------------------


def load_corpus(
    spec: str | os.PathLike[str], *, text_column: str | None = None, id_column: str | None = None
) -> Corpus:
    """Load a corpus from ``"stdlib"``, a BEIR folder, a folder, or a .jsonl/.csv file.

    A folder holding ``corpus.jsonl`` is read as BEIR; any other folder as notes.

    Parameters
    ----------
    spec : str or path-like
    text_column, id_column : str, optional
        For a .jsonl/.csv file: the columns holding the text (default "text")
        and the ids (default: row numbers); see :func:`table_file_corpus`.

    Raises
    ------
    FileNotFoundError
        The path does not exist.
    ValueError
        Unsupported file type, or the corpus has no texts.

    Examples
    --------
    >>> len(load_corpus("stdlib")) > 1000
    True
    """
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"corpus spec must be a str or path but got {type(spec).__name__}; {_SPEC_HINT}")
    is_table_file = Path(spec).suffix.lower() in (".jsonl", ".csv")
    if (text_column is not None or id_column is not None) and not is_table_file:
        raise ValueError(
            f"text_column/id_column (--text-column/--id-column) choose the columns of a .jsonl or "
            f".csv file, but corpus {str(spec)!r} is not one; drop them, or pass a .jsonl/.csv file"
        )
    if isinstance(spec, str) and spec == "stdlib":
        corpus = stdlib_corpus()
    else:
        p = Path(spec).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"corpus {str(spec)!r} does not exist; {_SPEC_HINT}")
        if p.is_dir():
            corpus = beir_corpus(p) if (p / "corpus.jsonl").is_file() else folder_corpus(p)
        elif p.suffix.lower() in (".jsonl", ".csv"):
            corpus = table_file_corpus(p, text_column=text_column or "text", id_column=id_column)
        else:
            raise ValueError(f"cannot read corpus file {str(spec)!r} (suffix {p.suffix!r}); {_SPEC_HINT}")
    if len(corpus) == 0:
        skipped = f" ({corpus.skipped_message()})" if corpus.skipped else ""
        raise ValueError(
            f"corpus {str(spec)!r} has no texts{skipped}; a folder needs non-empty .txt or .md "
            "files and a table file at least one row"
        )
    return corpus
