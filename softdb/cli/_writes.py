"""``softdb add``, ``softdb remove`` and ``softdb compact``: writes to a saved table, parsing and printing only.

Each opens the table (a SoftTable folder, or a sharded one on a local Dask cluster), writes,
saves (a SoftTable's save writes what changed; a sharded table commits each write itself) and
prints one line: rows added or removed, segments before and after, seconds.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from softdb.cli._args import UserError, add_column_options
from softdb.cli._shards import is_sharded_table, open_table

__all__ = ["add", "add_add_parser", "add_compact_parser", "add_remove_parser", "compact", "remove", "segments"]


def segments(table: Any) -> int:
    """Segments of a SoftTable (sealed and growing); shards of a sharded table."""
    if is_sharded_table(table):
        return int(table.n_shards)
    return len(table._state.rows.views)


def add_add_parser(subparsers: Any) -> None:
    """Add the ``add`` subcommand to the ``softdb`` command's subparsers."""
    a = subparsers.add_parser(
        "add",
        help="add texts to a saved table (files, folders, or --text), encoded by the table's own encoder",
        description="Add documents to a table built by `softdb index`: each FILE_OR_FOLDER is read as "
        "`softdb index` reads a corpus (a folder of .txt/.md files, a .jsonl/.csv file), and each "
        "--text is one document. A BM25 or hybrid table's vocabulary and statistics grow with them.",
    )
    a.add_argument("table", help="the table folder")
    a.add_argument("sources", nargs="*", metavar="FILE_OR_FOLDER", help="corpora to add")
    a.add_argument("--text", action="append", default=[], help="one document to add (repeatable)")
    a.add_argument("--id", action="append", default=[], dest="ids", help="the id of each --text (default: numbers)")
    add_column_options(a)


def add_remove_parser(subparsers: Any) -> None:
    """Add the ``remove`` subcommand to the ``softdb`` command's subparsers."""
    r = subparsers.add_parser(
        "remove",
        help="remove rows from a saved table by id",
        description="Remove rows by id (as `softdb search` prints them); an unknown id removes nothing.",
    )
    r.add_argument("table", help="the table folder")
    r.add_argument("ids", nargs="+", metavar="ID", help="ids to remove (an id that is a number matches either)")


def add_compact_parser(subparsers: Any) -> None:
    """Add the ``compact`` subcommand to the ``softdb`` command's subparsers."""
    c = subparsers.add_parser(
        "compact",
        help="merge a saved table's segments into one and drop removed rows",
        description="Merge every segment of a table into one, dropping the removed rows, and save it.",
    )
    c.add_argument("table", help="the table folder")


def _texts(args: argparse.Namespace) -> tuple[list[str], list | None, list | None, list]:
    from softdb.cli import _args
    from softdb.text import load_corpus

    if not args.sources and not args.text:
        raise UserError('nothing to add; hint: softdb add TABLE notes/ or softdb add TABLE --text "a new note"')
    if args.ids and len(args.ids) != len(args.text):
        raise UserError(f"{len(args.ids)} --id for {len(args.text)} --text; hint: one --id per --text, or none")
    texts: list[str] = []
    ids: list = []
    pays: list = []
    titles: list = []
    for src in args.sources:
        corpus = load_corpus(_args.data.resolve(src), text_column=args.text_column, id_column=args.id_column)
        if corpus.skipped:
            _args.warn(f"{corpus.skipped_message()} (in {src})")
        texts += corpus.texts
        titles += corpus.titles if corpus.titles is not None else [None] * len(corpus.texts)
        ids += list(corpus.ids)
        pays += list(corpus.payloads) if corpus.payloads is not None else list(corpus.texts)
    if args.text and not args.ids and args.sources:
        raise UserError("--text with FILE_OR_FOLDER needs an --id per --text (the files bring their own ids)")
    texts += args.text
    ids += args.ids
    pays += [{"text": t} for t in args.text]  # as a corpus row's payload (its text, no file)
    titles += [None] * len(args.text)
    return texts, (ids or None), pays, titles


def add(args: argparse.Namespace) -> int:
    """Run ``softdb add``; returns the exit status."""
    texts, ids, pays, titles = _texts(args)
    with open_table(args.table) as table:
        before, t0 = segments(table), time.perf_counter()
        if is_sharded_table(table):
            new = table.add_texts(texts, ids=ids, payloads=pays)
        else:  # documents, as `softdb index` builds them: chunk rows with their text, document and span
            new = table.add_texts(texts, ids=ids, payloads=pays, titles=titles, chunk=True)
        if not is_sharded_table(table):
            table.save(args.table)
        dt = time.perf_counter() - t0
        print(
            f"added {len(new)} rows to {args.table} (now {len(table)} rows; segments {before} -> "
            f"{segments(table)}) in {dt:.2f} s"
        )
    return 0


def _as_ids(table: Any, given: list[str]) -> list:
    """Command-line ids as the table holds them: "7" is the int 7 if the table has 7 and not "7"."""
    index = table.ids
    known = set(index)
    out: list[Any] = []
    for g in given:
        if g not in known and g.lstrip("-").isdigit() and int(g) in known:
            out.append(int(g))
        else:
            out.append(g)
    return out


def remove(args: argparse.Namespace) -> int:
    """Run ``softdb remove``; returns the exit status (a document's id removes its chunk rows)."""
    with open_table(args.table) as table:
        before, t0, n0 = segments(table), time.perf_counter(), len(table)
        ids = _as_ids(table, args.ids)
        known = set(table.ids)
        docs = [i for i in ids if i not in known]
        if docs and not is_sharded_table(table):
            from softdb.table._documents import document_ids

            if set(docs) <= set(document_ids(table).tolist()):
                table.remove_documents(docs)
                ids = [i for i in ids if i in known]
        if ids:
            table.remove(ids)
        if not is_sharded_table(table):
            table.save(args.table)
        dt = time.perf_counter() - t0
        print(
            f"removed {n0 - len(table)} rows from {args.table} (now {len(table)} rows; segments {before} -> "
            f"{segments(table)}) in {dt:.2f} s"
        )
    return 0


def compact(args: argparse.Namespace) -> int:
    """Run ``softdb compact``; returns the exit status."""
    with open_table(args.table) as table:
        t0 = time.perf_counter()
        report = table.compact()
        if not is_sharded_table(table):
            table.save(args.table)
        dt = time.perf_counter() - t0
        print(
            f"compacted {args.table}: segments {report.segments_before} -> {report.segments_after}, "
            f"{report.rows_dropped} removed rows dropped, {len(table)} rows, in {dt:.2f} s"
        )
    return 0
