"""``softdb data list`` and ``softdb data get NAME [--dir DIR] [--url URL]``: parsing and printing only."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``data`` subcommand to the ``softdb`` command's subparsers."""
    p = subparsers.add_parser(
        "data",
        help="list and download BEIR benchmark data (checked against BEIR's md5)",
        description="BEIR data sets for `softdb eval`: `softdb data list` shows them, `softdb data get NAME` "
        "downloads the official zip, checks BEIR's published md5, and unpacks it into softdb's "
        "cache folder (or --dir). After that, `softdb eval NAME` finds it by name.",
    )
    sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION", parser_class=type(p))
    sub.add_parser("list", help="the data sets softdb knows, their sizes, and whether they are downloaded")
    g = sub.add_parser("get", help="download, check and unpack one data set (a no-op if it is there)")
    g.add_argument("name", metavar="NAME", help="a data set of `softdb data list`, e.g. scifact")
    g.add_argument(
        "--dir", help="unpack into DIR/NAME instead of the cache folder (then pass DIR/NAME to `softdb eval`)"
    )
    g.add_argument(
        "--url", help="download from this mirror instead of BEIR's host; the zip must still match BEIR's md5"
    )
    g.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="seconds allowed for the connection and for each read (default 30)",
    )
    return p


def _error(message: object) -> int:
    print(f"softdb: error: {message}", file=sys.stderr)
    return 2


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


def run(args: argparse.Namespace) -> int:
    """Run ``softdb data list`` or ``softdb data get``; return the exit status (2 for user errors)."""
    from softdb.eval import _data as data

    if args.data_command == "list":
        root = data.data_dir()
        print(f"{'name':<11} {'zip':>9} {'documents':>10} {'test queries':>12}  {'splits':<16} downloaded")
        for d in data.DATASETS.values():
            here = "yes" if (root / d.name / "corpus.jsonl").is_file() else "no"
            print(
                f"{d.name:<11} {_size(d.zip_bytes):>9} {d.documents:>10,} {d.test_queries:>12,}  "
                f"{' '.join(d.splits):<16} {here}"
            )
        print(f"\nfolder: {root}\nget one with: softdb data get NAME   (BEIR data; licences vary by data set)")
        return 0
    timeout = data.DEFAULT_TIMEOUT if args.timeout is None else args.timeout
    try:
        already = args.name in data.DATASETS and (data.dataset_path(args.name, args.dir) / "corpus.jsonl").is_file()
        path = data.get(args.name, dir=args.dir, url=args.url, timeout=timeout)
    except data.DataError as exc:
        if os.environ.get("SOFTDB_DEBUG"):
            raise
        return _error(exc)
    if already:
        print(f"{args.name} is already in {path}; nothing to do")
    else:
        print(f"{args.name}: md5 checked against BEIR's, unpacked into {path}")
    hint = args.name if args.dir is None else str(path)
    print(f"evaluate with: softdb eval {hint}")
    return 0
