"""The ``softdb`` command: argument parsing, printing and exit codes; no maths."""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"softdb: error: {message}\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="softdb", description="Attention as a soft database lookup.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("demo", help="show soft vs hard lookups")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``softdb`` command; returns the exit status."""
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            example = Path(__file__).resolve().parent.parent / "examples" / "soft_vs_hard.py"
            runpy.run_path(str(example), run_name="__main__")
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"softdb: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
