"""``softdb index CORPUS -o DIR [--model M]`` (and its sharded and vector forms): parsing and printing only."""

from __future__ import annotations

import argparse
import time
from typing import Any

from softdb.cli import _shards as _cli_shards
from softdb.cli._args import UserError, add_column_options, text_table

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    """Add the ``index`` subcommand to the ``softdb`` command's subparsers."""
    ix = subparsers.add_parser(
        "index",
        help="encode a corpus and save it as a table",
        description="Build a table from a corpus and save it: build once, query many times.",
    )
    ix.add_argument("corpus", nargs="?", help="'stdlib', a folder, a .jsonl/.csv file, or a BEIR folder")
    ix.add_argument("-o", "--output", required=True, help="the table folder to write")
    ix.add_argument(
        "--model",
        choices=["dense", "bm25", "hybrid"],
        default="dense",
        help="dense: MiniLM (default); bm25: sparse BM25 keys; hybrid: [MiniLM | BM25] blocks, scored cos + 0.05·BM25",
    )
    add_column_options(ix)
    _cli_shards.add_index_arguments(ix)


def run(args: argparse.Namespace) -> int:
    """Run ``softdb index``; returns the exit status."""
    done = _cli_shards.index(args)
    if done is not None:  # --shards or --vectors
        return done
    if args.corpus is None:
        raise UserError("give a CORPUS to index, or --vectors EMB.npy; hint: softdb index stdlib -o my_table")
    t0 = time.perf_counter()
    table = text_table(args.corpus, args.text_column, args.id_column, args.model)
    table.save(args.output)
    print(
        f"indexed {len(table)} rows from {args.corpus!r} into {args.output} "
        f"({table.dim}-d keys, encoder {table.encoder.name}) in {time.perf_counter() - t0:.1f} s"
    )
    return 0
