"""The ``softdb`` command: argument parsing, printing and exit codes; no maths.

User mistakes print ``softdb: error: …`` to stderr and exit with status 2,
without a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

__all__ = ["main"]

DEMO_QUERIES = [
    "parse command line arguments",
    "compress data with gzip",
    "read rows from a csv file",
    "run a shell command and capture its output",
]
DEMO_TEMPERATURES = [0.01, 0.05, 0.2, 1.0]


class UserError(Exception):
    """A mistake in how softdb was called: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"softdb: error: {message}\n")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be finite and > 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="softdb", description="Attention as a soft database lookup: search text with "
                     "real sentence embeddings and see the soft weights behind every answer.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    sub.add_parser("demo", help="search the Python standard library docs and show soft vs hard retrieval",
                   description="Encode the docstrings of the Python standard library with all-MiniLM-L6-v2 "
                   "(cached after the first run) and show, for a few queries, the hard answer, the top hits "
                   "with their soft weights, and how the weights change with temperature.")

    s = sub.add_parser("search", help="search a corpus or a saved table",
                       description="Search a corpus (encoded on the fly, cached) or a table saved by "
                       "`softdb index`.")
    s.add_argument("query", help="the query text")
    src = s.add_mutually_exclusive_group()
    src.add_argument("--corpus", default="stdlib",
                     help="'stdlib' (default), a folder of .txt/.md files, a .jsonl/.csv file, or a BEIR folder")
    src.add_argument("--table", help="a table folder written by `softdb index`")
    s.add_argument("-k", type=_positive_int, default=5, help="number of hits (default 5)")
    s.add_argument("--temperature", type=_positive_float, help="softmax temperature (default: the table's)")
    s.add_argument("--mode", choices=["soft", "hard"], default="soft",
                   help="soft: hits with their weights; hard: the best rows by score")
    s.add_argument("--json", action="store_true", help="print one JSON object")

    ix = sub.add_parser("index", help="encode a corpus and save it as a table",
                        description="Build a table from a corpus and save it: build once, query many times.")
    ix.add_argument("corpus", help="'stdlib', a folder, a .jsonl/.csv file, or a BEIR folder")
    ix.add_argument("-o", "--output", required=True, help="the table folder to write")

    ev = sub.add_parser("eval", help="evaluate search on a BEIR folder (nDCG@10, Recall@100, MRR@10)",
                        description="Evaluate frozen (and fitted) search on BEIR-format data with trec_eval.")
    ev.add_argument("beir_dir", help="a BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
    ev.add_argument("--split", default="test", help="split to evaluate (default test)")
    ev.add_argument("--fit", metavar="SPLIT", help="fit a projection on this split (e.g. train)")
    ev.add_argument("--mode", choices=["soft", "hard"], default="soft")
    ev.add_argument("--max-docs", type=_positive_int, help="evaluate on a slice of the corpus")
    ev.add_argument("--max-queries", type=_positive_int, help="evaluate on the first N queries")
    ev.add_argument("--json", action="store_true", help="print exactly one JSON object")

    try:
        from . import _cli_intuitions
    except ImportError:  # pragma: no cover - only while the module is absent
        pass
    else:
        _cli_intuitions.add_parser(sub)
    from . import _cli_views

    _cli_views.add_parsers(sub)
    return parser


# ------------------------------------------------------------------ helpers
def _text_table(spec: str) -> Any:
    from .table import SoftTable
    from .text import load_corpus

    corpus = load_corpus(spec)
    return SoftTable.from_texts(corpus.texts, ids=corpus.ids, payloads=corpus.payloads)


def _load_table(path: str) -> Any:
    from .table import SoftTable

    if not os.path.exists(path):
        raise FileNotFoundError(f"no table at {path!r}; hint: build one with `softdb index CORPUS -o {path}`")
    return SoftTable.load(path)


def _hits_json(hits: Any, mode: str) -> list[dict[str, Any]]:
    out = []
    for i, s, w, p in zip(hits.ids, hits.scores, hits.weights, hits.payloads if hits.payloads is not None
                          else [None] * len(hits.ids)):
        if i is None:
            continue
        row = {"id": i, "score": round(float(s), 6)}
        if mode == "soft":
            row["weight"] = round(float(w), 6)
        row["payload"] = p
        out.append(row)
    return out


def _print_hits(hits: Any, mode: str) -> None:
    from .explain import snippet

    if mode == "soft":
        print(f"{'rank':>4}  {'weight':>6}  {'':<20} {'score':>6}  id — summary")
    else:
        print(f"{'rank':>4}  {'score':>6}  id — summary")
    pays = hits.payloads if hits.payloads is not None else [None] * len(hits.ids)
    for r, (i, s, w, p) in enumerate(zip(hits.ids, hits.scores, hits.weights, pays), 1):
        if i is None:
            continue
        text = snippet(p, 70)
        if mode == "soft":
            bar = "█" * int(round(float(w) * 20))
            print(f"{r:>4}  {w:>6.3f}  {bar:<20} {s:>6.3f}  {i} — {text}")
        else:
            print(f"{r:>4}  {s:>6.3f}  {i} — {text}")


# ----------------------------------------------------------------- commands
def _cmd_demo(args: argparse.Namespace) -> int:
    from .explain import explain

    t0 = time.perf_counter()
    print("softdb demo: attention as a soft database lookup over the Python standard library docs.")
    print("Each docstring is a row: key = its all-MiniLM-L6-v2 embedding; a query's weights are")
    print("softmax(cosine / τ) over every row; the hard lookup is just the best row.\n")
    table = _text_table("stdlib")
    print(f"table: {len(table)} rows, {table.dim}-d unit keys, default τ = {table.temperature:g} "
          f"(built in {time.perf_counter() - t0:.1f} s)\n")
    vectors = table.encoder.encode(DEMO_QUERIES)  # one encode for all queries (cached)
    for query, qv in zip(DEMO_QUERIES, vectors):
        e = explain(table, qv, k=5)
        print("=" * 100)
        print(f"query: {query!r}")
        print(f"hard answer (argmax): {e.ids[0]}")
        print(f"soft answer: weights over all {len(table)} rows at τ = {e.temperature:g}; the top 5:")
        _print_hits(table.search(qv, k=5), "soft")
        print(f"     the top 5 hold {e.covered:.0%} of the weight; entropy {e.entropy:.2f} nats; "
              f"effective rows 1/Σw² = {e.effective_rows:.1f}")
        print("  temperature sweep (weight of the top hit · effective number of rows attended):")
        for tau in DEMO_TEMPERATURES:
            et = explain(table, qv, k=1, temperature=tau)
            bar = "█" * int(round(et.weights[0] * 30))
            print(f"     τ = {tau:<5g} top weight {et.weights[0]:.3f} {bar:<30} effective rows {et.effective_rows:8.1f}")
        print()
    print("Small τ → the soft lookup becomes the hard one (one row gets all the weight);")
    print("large τ → the weights flatten towards the mean of all rows.")
    print(f"\n(done in {time.perf_counter() - t0:.1f} s; embeddings are cached, so the next run is fast)")
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    if not args.query.strip():
        raise UserError("the query is empty; hint: softdb search \"how do I read a csv file\"")
    if args.table:
        table = _load_table(args.table)
    else:
        table = _text_table(args.corpus)
    k = min(args.k, len(table))
    if table.encoder is None:
        raise UserError(f"the table at {args.table!r} records no text encoder, so it cannot take text "
                        "queries; hint: build it with `softdb index`")
    qv = table.encoder.encode([args.query])[0]  # (d,)
    hits = table.search(qv, k=k, temperature=args.temperature)
    if args.json:
        from .explain import explain

        e = explain(table, qv, k=k, temperature=args.temperature)
        print(json.dumps({"query": args.query, "mode": args.mode, "temperature": e.temperature,
                          "hits": _hits_json(hits, args.mode), "entropy": e.entropy,
                          "effective_rows": e.effective_rows}, default=str))
        return 0
    tau = table.temperature if args.temperature is None else args.temperature
    if args.mode == "soft":
        print(f"query: {args.query!r}   (soft lookup, τ = {tau:g}, {len(table)} rows)")
    else:
        print(f"query: {args.query!r}   (hard lookup: best rows by score, {len(table)} rows)")
    _print_hits(hits, args.mode)
    return 0


def _cmd_index(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    table = _text_table(args.corpus)
    table.save(args.output)
    print(f"indexed {len(table)} rows from {args.corpus!r} into {args.output} "
          f"({table.dim}-d keys, encoder {table.encoder.name}) in {time.perf_counter() - t0:.1f} s")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_beir

    if not os.path.isdir(args.beir_dir):
        raise FileNotFoundError(f"no BEIR folder at {args.beir_dir!r}; hint: it must hold corpus.jsonl, "
                                "queries.jsonl and qrels/<split>.tsv")
    report = evaluate_beir(args.beir_dir, split=args.split, fit=args.fit, mode=args.mode,
                           max_docs=args.max_docs, max_queries=args.max_queries)
    result = report.to_dict()
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{'model':<10} {'queries':<8} {'n':>4}  {'nDCG@10':>8} {'Recall@100':>10} {'MRR@10':>7}")
    for model in ("baseline", "fitted"):
        for subset, m in result.get(model, {}).items():
            print(f"{model:<10} {subset:<8} {m['queries']:>4}  {m['ndcg@10']:>8.4f} {m['recall@100']:>10.4f} "
                  f"{m['mrr@10']:>7.4f}")
    print(f"\n{args.split} split of {args.beir_dir}, mode {args.mode}; took {result['seconds']:.1f} s")
    return 0


COMMANDS = {"demo": _cmd_demo, "search": _cmd_search, "index": _cmd_index, "eval": _cmd_eval}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``softdb`` command; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command in COMMANDS:
            return COMMANDS[args.command](args)
        from . import _cli_views

        if args.command in _cli_views.COMMANDS:
            return _cli_views.run(args)
        from . import _cli_intuitions

        return _cli_intuitions.run(args)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
