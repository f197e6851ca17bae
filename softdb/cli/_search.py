"""``softdb search QUERY … [--corpus C | --table DIR] [-k K] [--json]``: parsing and printing only.

Every query is encoded in one call and answered in one pass; the JSON objects come from
:func:`softdb.views.search_record`, as the web app's ``/api/search`` answers do.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from softdb._json import dumps
from softdb.cli import _shards as _cli_shards
from softdb.cli._args import (
    UserError,
    add_column_options,
    add_no_verify,
    finite_float,
    note,
    positive_float,
    positive_int,
    text_table,
)
from softdb.cli._hits import print_hit_rows

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    """Add the ``search`` subcommand to the ``softdb`` command's subparsers."""
    s = subparsers.add_parser(
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
    add_column_options(s)
    s.add_argument(
        "-k",
        type=positive_int,
        default=5,
        help="number of hits (default 5; more than the table's rows shows all of them, with a note)",
    )
    s.add_argument("--temperature", type=positive_float, help="softmax temperature (default: the table's)")
    s.add_argument(
        "--mode",
        choices=["soft", "hard"],
        default="soft",
        help="soft: hits with their weights; hard: the best rows by score",
    )
    s.add_argument(
        "--by",
        choices=["document", "chunk"],
        help="document (default for a table in one process): the best documents, each shown by its best chunk, "
        "weighing the sum of its chunks' weights; chunk: the best rows",
    )
    s.add_argument(
        "--rank",
        choices=["score", "weight"],
        default="score",
        help="with --by document: rank documents by their best chunk's score (default: it ranks better on "
        "SciFact, docs/guide/documents.md) or by their summed weight",
    )
    s.add_argument(
        "--min-score",
        type=finite_float,
        metavar="S",
        help="hide hits scoring below S (cosine, from -1 to 1, for text tables)",
    )
    s.add_argument(
        "--where",
        metavar="JSON",
        help='keep only rows whose payload passes this filter, e.g. \'{"year": {"$gte": 2020}}\' '
        "($eq $ne $gt $gte $lt $lte $in $nin $and $or, $contains on the text)",
    )
    add_no_verify(s)
    _cli_shards.add_search_arguments(s)
    s.add_argument("--json", action="store_true", help="print one JSON object per query, one per line (JSON Lines)")


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
    return text_table(args.corpus, args.text_column, args.id_column)


def _clamped_k(k: int, n: int, what: str = "rows") -> int:
    """The CLI clamps k to the table's rows or documents (the Python API raises instead), and says so."""
    if k <= n:
        return k
    note(f"-k {k} is more than the table's {n} {what}; showing all {n}")
    return n


def _search_results(table: Any, queries: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Encode every query in one call, answer them in one pass; one JSON-ready dict per query.

    The dicts are built by :func:`softdb.views.search_record`, as the web app's
    ``/api/search`` answers are: one shape for both.
    """
    from softdb.table._match import weak_rule
    from softdb.views import search_answers, search_record

    sharded = _cli_shards.is_sharded_table(table)
    by = args.by or ("chunk" if sharded else "document")
    if by == "document" and sharded:
        raise UserError("--by document needs a table in one process, not a sharded one; hint: --by chunk")
    if by == "document":
        from softdb.table._documents import document_ids

        k = _clamped_k(args.k, len(document_ids(table)), "documents")
    else:
        k = _clamped_k(args.k, len(table))
    qv = table.encoder.encode(queries)  # (m, d): one encoder call for all queries
    if sharded:  # on the workers
        answers = _cli_shards.search_answers(table, qv, k, temperature=args.temperature, where=args.where)
    else:
        answers = search_answers(table, qv, k, temperature=args.temperature, where=args.where, by=by, rank=args.rank)
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
            weak=weak_rule(table),
        )
        for query, a in zip(queries, answers)
    ]


def _print_search_result(result: dict[str, Any]) -> None:
    """The text form of one query's result."""
    if result["mode"] == "soft":
        print(f"query: {result['query']!r}   (soft lookup, τ = {result['temperature']:g}, {result['table_rows']} rows)")
    else:
        print(f"query: {result['query']!r}   (hard lookup: best rows by score, {result['table_rows']} rows)")
    if result["no_match"]:
        print(
            "     no match: no row matches this query (it holds no term the table knows); "
            "no hits rather than arbitrary rows at weight 1/n"
        )
        return
    if result["hits"]:
        print_hit_rows(result["hits"], result["mode"])
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
    if result["weak_match"] and result["weak_match_below"] is not None:
        print(
            f"     weak match: even the best hit has cosine {result['best_score']:.3f} (below "
            f"{result['weak_match_below']:g}); the corpus may hold nothing on this query: weights only "
            "rank the rows against each other"
        )
    if result["near_uniform"]:
        from softdb.table._match import NEAR_UNIFORM

        tau = result["suggested_temperature"]
        hint = (
            f"try --temperature {tau:.3g}, where the best row would weigh about as much as the rest"
            if tau is not None
            else "every row scores the same, so no temperature separates them"
        )
        print(
            f"     near-uniform weights: at τ = {result['temperature']:g} every weight is within "
            f"{NEAR_UNIFORM:.0%} of uniform at the top (the weights say nothing); {hint}"
        )


def run(args: argparse.Namespace) -> int:
    """Run ``softdb search``; returns the exit status."""
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
