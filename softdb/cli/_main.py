"""The ``softdb`` command: argument parsing, printing and exit codes; no maths.

User mistakes print ``softdb: error: …`` to stderr and exit with status 2,
without a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from typing import Any

from softdb import __version__
from softdb._json import dumps
from softdb.cli import _data as _cli_data
from softdb.cli import _shards as _cli_shards
from softdb.eval import _data as data

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


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
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
    parser = _Parser(
        prog="softdb",
        description="Attention as a soft database lookup: search text with "
        "real sentence embeddings and see the soft weights behind every answer.",
    )
    parser.add_argument("--version", action="version", version=f"softdb {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    sub.add_parser(
        "demo",
        help="search the Python standard library docs and show soft vs hard retrieval",
        description="Encode the docstrings of the Python standard library with all-MiniLM-L6-v2 "
        "(cached after the first run) and show, for a few queries, the hard answer, the top hits "
        "with their soft weights, and how the weights change with temperature.",
    )

    s = sub.add_parser(
        "search",
        help="search a corpus or a saved table",
        description="Search a corpus (encoded on the fly, cached) or a table saved by "
        "`softdb index`. Several queries (positional, or --queries FILE) are encoded "
        "and searched together, with the model loaded once.",
    )
    s.add_argument("query", nargs="*", help="one or more query texts")
    s.add_argument(
        "--queries", metavar="FILE", help="also read queries from FILE, one per line (blank lines skipped; '-' = stdin)"
    )
    src = s.add_mutually_exclusive_group()
    src.add_argument(
        "--corpus",
        default="stdlib",
        help="'stdlib' (default), a folder of .txt/.md files, a .jsonl/.csv file, a BEIR folder or name",
    )
    src.add_argument("--table", help="a table folder written by `softdb index`")
    _add_column_options(s)
    s.add_argument(
        "-k",
        type=_positive_int,
        default=5,
        help="number of hits (default 5; more than the table's rows shows all of them, with a note)",
    )
    s.add_argument("--temperature", type=_positive_float, help="softmax temperature (default: the table's)")
    s.add_argument(
        "--mode",
        choices=["soft", "hard"],
        default="soft",
        help="soft: hits with their weights; hard: the best rows by score",
    )
    s.add_argument(
        "--min-score",
        type=_finite_float,
        metavar="S",
        help="hide hits scoring below S (cosine, from -1 to 1, for text tables)",
    )
    _add_no_verify(s)
    _cli_shards.add_search_arguments(s)
    s.add_argument("--json", action="store_true", help="print one JSON object per query, one per line (JSON Lines)")

    ix = sub.add_parser(
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
    _add_column_options(ix)
    _cli_shards.add_index_arguments(ix, _positive_int)

    ev = sub.add_parser(
        "eval",
        help="evaluate search on a BEIR folder (nDCG@10, Recall@100, MRR@10)",
        description="Evaluate frozen (and fitted) search on BEIR-format data with trec_eval.",
    )
    ev.add_argument(
        "beir_dir", help="a BEIR folder (corpus.jsonl, queries.jsonl, qrels/) or a name of `softdb data list`"
    )
    ev.add_argument("--split", default="test", help="split to evaluate (default test)")
    ev.add_argument(
        "--fit",
        metavar="SPLIT",
        help="fit on this split (e.g. train): a projection (dense), "
        "or the hybrid's blend and W_Q, chosen by cross-validation on it",
    )
    ev.add_argument(
        "--model",
        choices=["dense", "bm25", "hybrid"],
        default="dense",
        help="dense: MiniLM (default); bm25: Lucene BM25; hybrid: cos + β·BM25, β chosen by "
        "cross-validation on the train split",
    )
    ev.add_argument("--folds", type=_positive_int, default=5, help="folds of that cross-validation (default 5)")
    ev.add_argument("--mode", choices=["soft", "hard"], default="soft")
    ev.add_argument(
        "--max-docs", type=_positive_int, help="evaluate on a slice of the corpus (the output says it is a slice)"
    )
    ev.add_argument(
        "--max-queries", type=_positive_int, help="evaluate on the first N queries (the output says it is a slice)"
    )
    ev.add_argument("--json", action="store_true", help="print exactly one JSON object")

    try:
        from softdb.cli import _intuitions as _cli_intuitions
    except ImportError:  # pragma: no cover - only while the module is absent
        pass
    else:
        _cli_intuitions.add_parser(sub)
    _cli_data.add_parser(sub)
    from softdb.cli import _views as _cli_views

    _cli_views.add_parsers(sub)
    return parser


def _add_column_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--text-column", metavar="NAME", help="for a .jsonl/.csv corpus: the column holding the text (default 'text')"
    )
    p.add_argument(
        "--id-column",
        metavar="NAME",
        help="for a .jsonl/.csv corpus: the column holding unique ids (default: row numbers)",
    )


def _add_no_verify(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="load --table without checking its checksums (e.g. a hand-edited manifest.json)",
    )


# ------------------------------------------------------------------ helpers
def _warn(message: str) -> None:
    print(f"softdb: warning: {message}", file=sys.stderr)


def _note(message: str) -> None:
    print(f"softdb: note: {message}", file=sys.stderr)


def _text_table(spec: str, text_column: str | None = None, id_column: str | None = None, model: str = "dense") -> Any:
    from softdb.table._table import SoftTable
    from softdb.text import load_corpus

    corpus = load_corpus(data.resolve(spec), text_column=text_column, id_column=id_column)
    if corpus.skipped:
        _warn(f"{corpus.skipped_message()} (in {spec})")
    return SoftTable.from_texts(
        corpus.texts, ids=corpus.ids, payloads=corpus.payloads, encoder=None if model == "dense" else model
    )


def _load_table(path: str, *, verify: bool = True) -> Any:
    from softdb.table._table import SoftTable

    if not os.path.exists(path):
        raise FileNotFoundError(f"no table at {path!r}; hint: build one with `softdb index CORPUS -o {path}`")
    return SoftTable.load(path, verify=verify)


def _hits_json(hits: Any, mode: str) -> list[dict[str, Any]]:
    out = []
    for i, s, w, p in zip(
        hits.ids, hits.scores, hits.weights, hits.payloads if hits.payloads is not None else [None] * len(hits.ids)
    ):
        if i is None:
            continue
        row = {"id": i, "score": round(float(s), 6)}
        if mode == "soft":
            row["weight"] = round(float(w), 6)
        row["payload"] = p
        out.append(row)
    return out


def _print_hits(hits: Any, mode: str) -> None:
    _print_hit_rows(_hits_json(hits, mode), mode)


def _print_hit_rows(rows: list[dict[str, Any]], mode: str) -> None:
    from softdb.table._explain import snippet

    if mode == "soft":
        print(f"{'rank':>4}  {'weight':>6}  {'':<20} {'score':>6}  id — summary")
    else:
        print(f"{'rank':>4}  {'score':>6}  id — summary")
    for r, row in enumerate(rows, 1):
        text = snippet(row["payload"], 70)
        if mode == "soft":
            bar = "█" * int(round(row["weight"] * 20))
            print(f"{r:>4}  {row['weight']:>6.3f}  {bar:<20} {row['score']:>6.3f}  {row['id']} — {text}")
        else:
            print(f"{r:>4}  {row['score']:>6.3f}  {row['id']} — {text}")


# ----------------------------------------------------------------- commands
def _cmd_demo(args: argparse.Namespace) -> int:
    from softdb.engine._plan import Ask
    from softdb.table._state import SearchResult

    t0 = time.perf_counter()
    print("softdb demo: attention as a soft database lookup over the Python standard library docs.")
    print("Each docstring is a row: key = its all-MiniLM-L6-v2 embedding; a query's weights are")
    print("softmax(cosine / τ) over every row; the hard lookup is just the best row.\n")
    table = _text_table("stdlib")
    print(
        f"table: {len(table)} rows, {table.dim}-d unit keys, default τ = {table.temperature:g} "
        f"(built in {time.perf_counter() - t0:.1f} s)\n"
    )
    vectors = table.encoder.encode(DEMO_QUERIES)  # one encode for all queries (cached)
    # one pass for every query and every τ of the sweep: the log-sum-exp at τ gives the top hit's
    # weight exp(s/τ − lse(τ)), and at τ/2 the effective rows 1/Σw² = exp(2·lse(τ) − lse(τ/2))
    g = len(DEMO_TEMPERATURES)
    sweep = tuple(DEMO_TEMPERATURES) + tuple(t / 2 for t in DEMO_TEMPERATURES)
    p = table._answer(vectors, Ask(lse=True, stats=True, taus=sweep), k=5)
    hits, a = p.hits(), p.answers
    top_at = [p.hit_weights_at(i) for i in range(g)]  # g × (m, 5)
    eff_at = [p.effective_rows_at(i, g + i) for i in range(g)]  # g × (m,)
    for j, query in enumerate(DEMO_QUERIES):
        one = SearchResult(*(None if x is None else x[j] for x in hits))
        print("=" * 100)
        print(f"query: {query!r}")
        print(f"hard answer (argmax): {one.ids[0]}")
        print(f"soft answer: weights over all {len(table)} rows at τ = {p.tau:g}; the top 5:")
        _print_hits(one, "soft")
        print(
            f"     the top 5 hold {float(one.weights.sum()):.0%} of the weight; entropy {a.entropy[j]:.2f} nats; "
            f"effective rows 1/Σw² = {a.effective_rows[j]:.1f}"
        )
        print("  temperature sweep (weight of the top hit · effective number of rows attended):")
        for i, tau in enumerate(DEMO_TEMPERATURES):
            top_w, eff = float(top_at[i][j, 0]), float(eff_at[i][j])
            bar = "█" * int(round(top_w * 30))
            print(f"     τ = {tau:<5g} top weight {top_w:.3f} {bar:<30} effective rows {eff:8.1f}")
        print()
    print("Small τ → the soft lookup becomes the hard one (one row gets all the weight);")
    print("large τ → the weights flatten towards the mean of all rows.")
    print(f"\n(done in {time.perf_counter() - t0:.1f} s; embeddings are cached, so the next run is fast)")
    return 0


def _search_queries(args: argparse.Namespace) -> list[str]:
    """The queries of one `softdb search`: the positional ones, then those of --queries."""
    queries = list(args.query)
    for q in queries:
        if not q.strip():
            raise UserError('a query is empty; hint: softdb search "how do I read a csv file"')
    if args.queries is not None:
        if args.queries == "-":
            lines = sys.stdin.read().splitlines()
        else:
            try:
                with open(args.queries, encoding="utf-8-sig") as f:
                    lines = f.read().splitlines()
            except OSError as exc:
                raise UserError(
                    f"cannot read --queries {args.queries!r}: {exc.strerror}; hint: a text file with one query per line"
                ) from None
            except UnicodeDecodeError:
                raise UserError(
                    f"--queries {args.queries!r} is not UTF-8 text; hint: save it as UTF-8, one query per line"
                ) from None
        from_file = [line.strip() for line in lines if line.strip()]
        if not from_file:
            raise UserError(f"--queries {args.queries!r} holds no queries; hint: one query per line")
        queries += from_file
    if not queries:
        raise UserError(
            'no query given; hint: softdb search "how do I read a csv file" '
            "(several queries: one argument each, or --queries FILE)"
        )
    return queries


def _search_table(args: argparse.Namespace, stack: contextlib.ExitStack) -> Any:
    if args.scheduler and not args.table:
        raise UserError("--scheduler runs a sharded --table on a Dask cluster; hint: add --table DIR")
    if args.table:
        if args.text_column is not None or args.id_column is not None:
            raise UserError(
                "--text-column/--id-column choose the columns of a --corpus .jsonl/.csv file; "
                "a --table was built with its columns already chosen; hint: drop them"
            )
        table = stack.enter_context(
            _cli_shards.open_table(args.table, verify=args.verify, scheduler=args.scheduler)
        )  # maybe sharded
        if table.encoder is None:
            raise UserError(
                f"the table at {args.table!r} records no text encoder, so it cannot take text "
                "queries; hint: build it with `softdb index`"
            )
        return table
    if not args.verify:
        raise UserError("--no-verify applies to a saved --table; a --corpus is encoded afresh; hint: drop it")
    return _text_table(args.corpus, args.text_column, args.id_column)


def _clamped_k(k: int, n: int) -> int:
    """The CLI clamps k to the table's rows (the Python API raises instead), and says so."""
    if k <= n:
        return k
    _note(f"-k {k} is more than the table's {n} rows; showing all {n}")
    return n


def _search_results(table: Any, queries: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Encode every query in one call, answer them in one pass; one JSON-ready dict per query.

    The dicts are built by :func:`softdb.views.search_record`, as the web app's
    ``/api/search`` answers are: one shape for both.
    """
    from softdb.views import search_answers, search_record

    k = _clamped_k(args.k, len(table))
    qv = table.encoder.encode(queries)  # (m, d): one encoder call for all queries
    answer = _cli_shards.search_answers if _cli_shards.is_sharded_table(table) else search_answers
    answers = answer(table, qv, k, temperature=args.temperature)  # one pass (sharded: on the workers)
    return [
        search_record(
            a,
            query,
            mode=args.mode,
            table_rows=len(table),
            k=k,
            k_requested=args.k,
            min_score=args.min_score,
            cosine=table.metric == "cosine",
        )
        for query, a in zip(queries, answers)
    ]


def _print_search_result(result: dict[str, Any]) -> None:
    """The text form of one query's result."""
    if result["mode"] == "soft":
        print(f"query: {result['query']!r}   (soft lookup, τ = {result['temperature']:g}, {result['table_rows']} rows)")
    else:
        print(f"query: {result['query']!r}   (hard lookup: best rows by score, {result['table_rows']} rows)")
    if result["hits"]:
        _print_hit_rows(result["hits"], result["mode"])
    if result.get("hidden"):
        if result["hits"]:
            print(
                f"     ({result['hidden']} of the top {result['k']} hidden: score below --min-score "
                f"{result['min_score']:g})"
            )
        else:
            print(
                f"     no hit scores --min-score {result['min_score']:g} or more "
                f"(the best scores {result['best_score']:.3f})"
            )
    if result["mode"] == "soft":
        print(
            f"     the top {result['k']} hold {result['covered']:.0%} of the weight; "
            f"entropy {result['entropy']:.2f} nats; effective rows 1/Σw² = {result['effective_rows']:.1f}"
        )
    if result["weak_match"]:
        print(
            f"     weak match: even the best hit has cosine {result['best_score']:.3f} (below "
            f"{result['weak_match_below']:g}); the corpus may hold nothing on this query: weights only "
            "rank the rows against each other"
        )


def _cmd_search(args: argparse.Namespace) -> int:
    queries = _search_queries(args)
    with contextlib.ExitStack() as stack:  # a sharded table's cluster closes at the end
        results = _search_results(_search_table(args, stack), queries, args)
    for n, result in enumerate(results):
        if args.json:
            print(dumps(result))
            continue
        if n:
            print()
        _print_search_result(result)
    return 0


def _cmd_index(args: argparse.Namespace) -> int:
    done = _cli_shards.index(args, lambda a: _text_table(a.corpus, a.text_column, a.id_column))
    if done is not None:  # --shards or --vectors
        return done
    if args.corpus is None:
        raise UserError("give a CORPUS to index, or --vectors EMB.npy; hint: softdb index stdlib -o my_table")
    t0 = time.perf_counter()
    table = _text_table(args.corpus, args.text_column, args.id_column, args.model)
    table.save(args.output)
    print(
        f"indexed {len(table)} rows from {args.corpus!r} into {args.output} "
        f"({table.dim}-d keys, encoder {table.encoder.name}) in {time.perf_counter() - t0:.1f} s"
    )
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from softdb.eval._evaluate import evaluate_beir

    args.beir_dir = data.resolve(args.beir_dir)  # a name of `softdb data list`, or a folder
    if not os.path.isdir(args.beir_dir):
        raise FileNotFoundError(
            f"no BEIR folder at {args.beir_dir!r}; hint: it must hold corpus.jsonl, queries.jsonl and qrels/<split>.tsv"
        )
    if args.folds < 2:
        raise UserError(f"--folds must be at least 2 for cross-validation, got {args.folds}")
    report = evaluate_beir(
        args.beir_dir,
        split=args.split,
        fit=args.fit,
        mode=args.mode,
        max_docs=args.max_docs,
        max_queries=args.max_queries,
        model=args.model,
        folds=args.folds,
    )
    result = report.to_dict()
    if args.json:
        print(dumps(result))
        return 0
    _print_eval(result, args)
    return 0


def _metric(x: float | None, width: int) -> str:
    return f"{'—':>{width}}" if x is None else f"{x:>{width}.4f}"


def _slice_line(sliced: dict[str, Any]) -> str:
    parts = []
    if sliced["max_docs"] is not None:
        parts.append(f"{sliced['docs']} of {sliced['docs_total']} documents (--max-docs {sliced['max_docs']})")
    if sliced["max_queries"] is not None:
        parts.append(
            f"{sliced['queries']} of {sliced['queries_total']} queries (--max-queries {sliced['max_queries']})"
        )
    return "on a slice: " + ", ".join(parts) + "; published figures use the whole split"


def _print_eval(result: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"{'model':<10} {'queries':<8} {'n':>4}  {'nDCG@10':>8} {'Recall@100':>10} {'MRR@10':>7}")
    for model in ("baseline", "fitted"):
        for subset, m in result.get(model, {}).items():
            print(
                f"{model:<10} {subset:<8} {m['queries']:>4}  {_metric(m['ndcg@10'], 8)} "
                f"{_metric(m['recall@100'], 10)} {_metric(m['mrr@10'], 7)}"
            )
    if any(m["queries"] == 0 for model in ("baseline", "fitted") for m in result.get(model, {}).values()):
        print("(— : a subset with no queries has no mean)")
    for stage, sel in result.get("chosen", {}).items():
        picked = ", ".join(
            f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in sel.items() if k not in ("cv", "folds")
        )
        print(f"\n{stage}: chosen by {sel['folds']}-fold cross-validation on the train split: {picked}")
        for c in sel["cv"]:
            print(f"  {c['name']:<16} CV nDCG@10 {c['cv_ndcg@10']:.4f}   unseen {_metric(c['cv_ndcg@10_unseen'], 6)}")
    print(
        f"\n{args.split} split of {args.beir_dir}, model {result['model']}, mode {args.mode}; "
        f"took {result['seconds']:.1f} s"
    )
    if result.get("slice"):
        print(_slice_line(result["slice"]))


COMMANDS = {"demo": _cmd_demo, "search": _cmd_search, "index": _cmd_index, "eval": _cmd_eval, "data": _cli_data.run}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``softdb`` command; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command in COMMANDS:
            return COMMANDS[args.command](args)
        from softdb.cli import _views as _cli_views

        if args.command in _cli_views.COMMANDS:
            return _cli_views.run(args)
        from softdb.cli import _intuitions as _cli_intuitions

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
