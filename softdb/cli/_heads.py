"""``softdb heads "a sentence" [--layer L] [--html OUT]``: argument parsing and printing only."""

from __future__ import annotations

import argparse
from typing import Any

from softdb.cli._args import UserError

__all__ = ["add_parser", "run"]


def _layer(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``heads`` subcommand to the ``softdb`` command's subparsers."""
    p = subparsers.add_parser(
        "heads",
        help="look inside a real transformer: every attention head of a sentence as a soft table",
        description="Run the model (default: the bundled all-MiniLM-L6-v2) once on a sentence and show each "
        "attention head as a table whose keys and values are the token states entering its layer: per head, "
        "the mean entropy, effective rows and the top retrieved token of a few tokens. With --html, write one "
        "self-contained page (no network): a token × token heatmap per head, a layer and head picker, and each "
        "token's soft lookup.",
    )
    p.add_argument("text", help="the sentence")
    p.add_argument("--layer", type=_layer, metavar="L", help="only this layer (default: every layer)")
    p.add_argument("--model", metavar="FOLDER", help="a local BERT-family model folder (default: the bundled MiniLM)")
    p.add_argument(
        "--truncate", action="store_true", help="cut a text longer than the model's window (default: refuse it)"
    )
    p.add_argument("--html", metavar="OUT.html", help="write the head view here")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``softdb heads``; returns the exit status."""
    from softdb.heads import all_heads
    from softdb.views import heads_summary, heads_view_data, write_heads_html

    if not args.text.strip():
        raise UserError('the text is empty; hint: softdb heads "The cat sat on the mat because it was warm."')
    heads = all_heads(args.text, model=args.model, truncate=args.truncate)
    data = heads_view_data(heads, layer=args.layer, text=args.text)
    if args.html is None:
        print(heads_summary(data))
        return 0
    try:
        size = write_heads_html(data, args.html)
    except OSError as exc:
        raise UserError(f"cannot write {args.html!r}: {exc.strerror or exc}") from None
    shown = f"layer {args.layer}" if args.layer is not None else f"{len(data['layers'])} layers"
    print(
        f"wrote {args.html} ({size / 1024:.1f} KB): {shown} × {data['heads']} heads over "
        f"{len(data['tokens'])} tokens; open it in a browser"
    )
    return 0
