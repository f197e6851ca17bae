"""The ``softdb`` command: the parser built from the command registry, dispatch and exit codes.

User mistakes print ``softdb: error: …`` to stderr and exit with status 2,
without a traceback. The commands live in their own modules, listed once in
:mod:`softdb.cli._registry`; what they share is in :mod:`softdb.cli._args`.
"""

from __future__ import annotations

import argparse
import os
import sys

from softdb import __version__
from softdb.cli import _registry
from softdb.cli._args import Parser, UserError

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="softdb",
        description="Attention as a soft database lookup: search text with "
        "real sentence embeddings and see the soft weights behind every answer.",
    )
    parser.add_argument("--version", action="version", version=f"softdb {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    _registry.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``softdb`` command; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return _registry.runner(args.command)(args)
    except (UserError, ValueError, TypeError, FileNotFoundError, KeyError, ImportError) as exc:
        if os.environ.get("SOFTDB_DEBUG"):
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"softdb: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # pragma: no cover
        print("softdb: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # pragma: no cover - e.g. `softdb demo | head`
        return 0
