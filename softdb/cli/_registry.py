"""The one list of ``softdb``'s commands: name, how to add its parser, how to run it.

:mod:`softdb.cli._main` builds the parser from :data:`COMMANDS` (in this order, which
is the order ``softdb --help`` lists them in) and dispatches ``args.command`` through it.
A new command is one module with an ``add_parser`` and a ``run``, and one line here.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NamedTuple

from softdb.cli import _data, _demo, _eval, _heads, _index, _intuitions, _search, _views, _writes

__all__ = ["COMMANDS", "Command", "add_parsers", "runner"]


class Command(NamedTuple):
    """One subcommand of ``softdb``."""

    name: str
    add_parser: Callable[[Any], object]  # adds the subcommand to the subparsers of ``softdb``
    run: Callable[[argparse.Namespace], int]  # runs it; returns the exit status


COMMANDS: tuple[Command, ...] = (
    Command("demo", _demo.add_parser, _demo.run),
    Command("search", _search.add_parser, _search.run),
    Command("index", _index.add_parser, _index.run),
    Command("eval", _eval.add_parser, _eval.run),
    Command("intuitions", _intuitions.add_parser, _intuitions.run),
    Command("data", _data.add_parser, _data.run),
    Command("explain", _views.add_explain_parser, _views.explain),
    Command("serve", _views.add_serve_parser, _views.serve),
    Command("add", _writes.add_add_parser, _writes.add),
    Command("remove", _writes.add_remove_parser, _writes.remove),
    Command("compact", _writes.add_compact_parser, _writes.compact),
    Command("heads", _heads.add_parser, _heads.run),
)


def add_parsers(subparsers: Any) -> None:
    """Add every command of :data:`COMMANDS` to ``softdb``'s subparsers, in order."""
    for command in COMMANDS:
        command.add_parser(subparsers)


def runner(name: str) -> Callable[[argparse.Namespace], int]:
    """The function that runs the command called ``name``.

    Examples
    --------
    >>> runner("search").__module__
    'softdb.cli._search'
    """
    return {c.name: c.run for c in COMMANDS}[name]
