"""``softdb intuitions [NAME] [--plots DIR] [--json]``: argument parsing and printing only."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from softdb._json import dumps

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``intuitions`` subcommand to the ``softdb`` command's subparsers."""
    from softdb.intuitions import REGISTRY

    p = subparsers.add_parser(
        "intuitions",
        help="run the textbook claims about attention as experiments, with measured verdicts",
        description="Run each claim about attention as a small seeded experiment on SoftTable and "
        "print what was measured and whether the claim held. Names: " + ", ".join(REGISTRY),
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="run only this experiment (default: all)")
    p.add_argument(
        "--plots",
        metavar="DIR",
        help='write one PNG figure per experiment into DIR (needs matplotlib: pip install "softdb[plot]")',
    )
    p.add_argument(
        "--json", action="store_true", help='print one JSON list of {"name", "claim", "figures", "holds"} objects'
    )
    return p


def _error(message: str) -> int:
    print(f"softdb: error: {message}", file=sys.stderr)
    return 2


def _wrap(text: str, width: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    return [*lines, line] if line else lines


def run(args: argparse.Namespace) -> int:
    """Run the experiments ``args`` asks for; return the exit status (2 for user errors)."""
    from softdb.intuitions import REGISTRY
    from softdb.intuitions import run as run_experiments

    if args.name is not None and args.name not in REGISTRY:
        return _error(f"unknown intuition {args.name!r}; valid names: {', '.join(REGISTRY)}")
    if args.plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return _error('--plots needs matplotlib; install it with: pip install "softdb[plot]"')
    names = [args.name] if args.name else list(REGISTRY)
    results, t_start = [], time.perf_counter()
    if not args.json:
        print(f"{'claim':<20} {'verdict':<7}  measured")
    try:
        for r in run_experiments(names):
            results.append(r)
            if not args.json:
                verdict = "holds" if r.holds else "FAILS"
                print(f"{r.name:<20} {verdict:<7}  {r.claim}")
                for line in _wrap(r.summary, 80):
                    print(f"{'':<29}{line}")
                sys.stdout.flush()
    except ImportError as exc:  # e.g. sentence-transformers missing for the language claims
        return _error(str(exc))
    if args.json:
        print(dumps([r.to_dict() for r in results], indent=1, ensure_ascii=False))
    else:
        held = sum(r.holds for r in results)
        print(f"\n{held} of {len(results)} claims hold ({time.perf_counter() - t_start:.1f} s)")
    if args.plots:
        from softdb.intuitions.figures import save_figures

        try:
            paths = save_figures(results, args.plots)
        except OSError as exc:
            return _error(f"cannot write figures to {args.plots!r}: {exc}")
        print(f"wrote {len(paths)} figures to {args.plots}", file=sys.stderr if args.json else sys.stdout)
    return 0
