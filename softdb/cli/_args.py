"""What every ``softdb`` command shares: the error it raises, the parser, argument types, table loaders.

Command modules import from here (never from each other or from :mod:`softdb.cli._main`),
so the command line has no circle: ``_main`` > ``_registry`` > the commands > ``_args``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from softdb.eval import _data as data

__all__ = [
    "Parser",
    "UserError",
    "add_column_options",
    "add_no_verify",
    "finite_float",
    "load_table",
    "note",
    "positive_float",
    "positive_int",
    "text_table",
    "warn",
]


class UserError(Exception):
    """A mistake in how softdb was called: reported in one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors read ``softdb: error: …`` (after the usage) and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"softdb: error: {message}\n")


# ------------------------------------------------------------ argument types
def positive_float(text: str) -> float:
    """An argument type: a finite number > 0.

    Examples
    --------
    >>> positive_float("0.05")
    0.05
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be finite and > 0, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """An argument type: a finite number.

    Examples
    --------
    >>> finite_float("-0.5")
    -0.5
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An argument type: an integer >= 1.

    Examples
    --------
    >>> positive_int("5")
    5
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


# ------------------------------------------------------------ shared options
def add_column_options(p: argparse.ArgumentParser) -> None:
    """``--text-column`` and ``--id-column`` of a .jsonl/.csv corpus."""
    p.add_argument(
        "--text-column", metavar="NAME", help="for a .jsonl/.csv corpus: the column holding the text (default 'text')"
    )
    p.add_argument(
        "--id-column",
        metavar="NAME",
        help="for a .jsonl/.csv corpus: the column holding unique ids (default: row numbers)",
    )


def add_no_verify(p: argparse.ArgumentParser) -> None:
    """``--no-verify``: load a ``--table`` without checking its checksums."""
    p.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="load --table without checking its checksums (e.g. a hand-edited manifest.json)",
    )


# ------------------------------------------------------------ messages
def warn(message: str) -> None:
    """Print ``softdb: warning: …`` to stderr."""
    print(f"softdb: warning: {message}", file=sys.stderr)


def note(message: str) -> None:
    """Print ``softdb: note: …`` to stderr."""
    print(f"softdb: note: {message}", file=sys.stderr)


# ------------------------------------------------------------ tables
def text_table(spec: str, text_column: str | None = None, id_column: str | None = None, model: str = "dense") -> Any:
    """A table encoded from a corpus: 'stdlib', a folder, a .jsonl/.csv file, a BEIR folder or name."""
    from softdb.table._table import SoftTable
    from softdb.text import load_corpus

    corpus = load_corpus(data.resolve(spec), text_column=text_column, id_column=id_column)
    if corpus.skipped:
        warn(f"{corpus.skipped_message()} (in {spec})")
    return SoftTable.from_texts(  # every row a chunk: its payload has the text, its document and span
        corpus.texts,
        ids=corpus.ids,
        payloads=corpus.payloads,
        encoder=None if model == "dense" else model,
        titles=corpus.titles,
        chunk=True,
    )


def load_table(path: str, *, verify: bool = True) -> Any:
    """The table saved at ``path`` (by ``softdb index``)."""
    from softdb.table._table import SoftTable

    if not os.path.exists(path):
        raise FileNotFoundError(f"no table at {path!r}; hint: build one with `softdb index CORPUS -o {path}`")
    return SoftTable.load(path, verify=verify)
