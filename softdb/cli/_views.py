"""``softdb explain QUERY … [--html OUT]`` and ``softdb serve …``: argument parsing and printing only."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from softdb.cli._args import UserError, positive_float, positive_int, text_table
from softdb.cli._shards import open_table

__all__ = ["add_explain_parser", "add_serve_parser", "explain", "serve"]


def _source(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--corpus",
        default="stdlib",
        help="'stdlib' (default), a folder of .txt/.md files, a .jsonl/.csv file, or a BEIR folder",
    )
    src.add_argument("--table", help="a table folder written by `softdb index` (sharded ones too: `--shards N`)")


def add_explain_parser(subparsers: Any) -> None:
    """Add the ``explain`` subcommand to the ``softdb`` command's subparsers."""
    e = subparsers.add_parser(
        "explain",
        help="explain one query: hits, weights, entropy, soft vs hard (text, or an HTML explorer)",
        description="Explain one query: its top rows with scores and full-table weights, the entropy and "
        "effective number of rows, the soft answer beside the hard one. With --html, write one "
        "self-contained page (no network) with a temperature slider that re-weights the hits "
        "exactly.",
    )
    e.add_argument("query", help="the query text")
    _source(e)
    e.add_argument("-k", type=positive_int, default=10, help="number of hits (default 10)")
    e.add_argument("--temperature", type=positive_float, help="softmax temperature (default: the table's)")
    e.add_argument("--html", metavar="OUT.html", help="write the explorer page here")
    e.add_argument("--where", metavar="JSON", help='a filter on the payloads, e.g. \'{"year": {"$gte": 2020}}\'')


def add_serve_parser(subparsers: Any) -> None:
    """Add the ``serve`` subcommand to the ``softdb`` command's subparsers."""
    s = subparsers.add_parser(
        "serve",
        help="a local web app: search box, k, temperature slider, soft/hard, compare heatmap, JSON API",
        description="Serve a search page and a JSON API (GET /api/search?q=…&k=…&temperature=…&mode=…&where=…, "
        "/api/compare, /api/health) over a corpus or a saved table. Binds 127.0.0.1 by default.",
    )
    _source(s)
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; anything else warns)")
    s.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free port)")
    s.add_argument("--quiet", action="store_true", help="do not log each request to stderr")


@contextlib.contextmanager
def _table(args: argparse.Namespace) -> Iterator[Any]:
    """The table asked for: a saved one (a sharded one on a local Dask cluster, closed on exit) or a corpus."""
    with contextlib.ExitStack() as stack:
        table = stack.enter_context(open_table(args.table)) if args.table else text_table(args.corpus)
        if table.encoder is None:
            raise UserError(
                f"the table at {args.table!r} records no text encoder, so it cannot take text queries; "
                "hint: build it with `softdb index`"
            )
        yield table


def explain(args: argparse.Namespace) -> int:
    """Run ``softdb explain``; returns the exit status."""
    from softdb.views import explain_view, write_explanation_html

    if not args.query.strip():
        raise UserError('the query is empty; hint: softdb explain "how do I read a csv file"')
    with _table(args) as table:
        k = min(args.k, len(table))
        e = explain_view(table, args.query, k=k, temperature=args.temperature, where=args.where)
        if args.html is None:
            print(e)
            return 0
        try:
            size = write_explanation_html(e, args.html)
        except OSError as exc:
            raise UserError(f"cannot write {args.html!r}: {exc.strerror or exc}") from None
        n = len(table)
    print(f"wrote {args.html} ({size / 1024:.1f} KB): {len(e.ids)} hits of {n} rows; open it in a browser")
    return 0


def serve(args: argparse.Namespace) -> int:
    """Run ``softdb serve``; returns the exit status."""
    from softdb.views._server import start_server

    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be in 0..65535, got {args.port}")
    with _table(args) as table:
        try:
            srv = start_server(
                table,
                host=args.host,
                port=args.port,
                background=False,
                quiet=args.quiet,
                title=f"softdb · {args.table or args.corpus}",
            )
        except OSError as exc:
            raise UserError(
                f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}; "
                "hint: choose another --port (0 picks a free one)"
            ) from None
        print(
            f"softdb: serving {len(table)} rows at {srv.url}  (API: {srv.url}api/search?q=…; Ctrl-C stops)",
            file=sys.stderr,
            flush=True,
        )
        try:
            srv.serve_forever()
        except KeyboardInterrupt:
            print("softdb: stopped", file=sys.stderr)
        finally:
            srv.shutdown()
    return 0
