"""``softdb demo``: soft vs hard retrieval over the Python standard library docs."""

from __future__ import annotations

import argparse
import time
from typing import Any

from softdb.cli._args import text_table
from softdb.cli._hits import hit_rows, print_hit_rows

__all__ = ["DEMO_QUERIES", "DEMO_TEMPERATURES", "add_parser", "run"]

DEMO_QUERIES = [
    "parse command line arguments",
    "compress data with gzip",
    "read rows from a csv file",
    "run a shell command and capture its output",
]
DEMO_TEMPERATURES = [0.01, 0.05, 0.2, 1.0]


def add_parser(subparsers: Any) -> None:
    """Add the ``demo`` subcommand to the ``softdb`` command's subparsers."""
    subparsers.add_parser(
        "demo",
        help="search the Python standard library docs and show soft vs hard retrieval",
        description="Encode the docstrings of the Python standard library with all-MiniLM-L6-v2 "
        "(cached after the first run) and show, for a few queries, the hard answer, the top hits "
        "with their soft weights, and how the weights change with temperature.",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``softdb demo``; returns the exit status."""
    from softdb.engine._plan import Ask
    from softdb.table._state import SearchResult

    t0 = time.perf_counter()
    print("softdb demo: attention as a soft database lookup over the Python standard library docs.")
    print("Each docstring is a row: key = its all-MiniLM-L6-v2 embedding; a query's weights are")
    print("softmax(cosine / τ) over every row; the hard lookup is just the best row.\n")
    table = text_table("stdlib")
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
        one = SearchResult._make(None if x is None else x[j] for x in hits)  # query j's hits
        print("=" * 100)
        print(f"query: {query!r}")
        print(f"hard answer (argmax): {one.ids[0]}")
        print(f"soft answer: weights over all {len(table)} rows at τ = {p.tau:g}; the top 5:")
        print_hit_rows(hit_rows(one, "soft"), "soft")
        print(
            f"     the top 5 hold {float(one.weights.sum()):.0%} of the weight; entropy {a.entropy[j]:.2f} nats; "
            f"effective rows 1/Σw² = {a.effective_rows[j]:.1f}"
        )
        print("  temperature sweep (weight of the top hit · effective number of rows attended):")
        for i, tau in enumerate(DEMO_TEMPERATURES):
            top_w, eff = float(top_at[i][j, 0]), float(eff_at[i][j])
            bar = "█" * round(top_w * 30)
            print(f"     τ = {tau:<5g} top weight {top_w:.3f} {bar:<30} effective rows {eff:8.1f}")
        print()
    print("Small τ → the soft lookup becomes the hard one (one row gets all the weight);")
    print("large τ → the weights flatten towards the mean of all rows.")
    print(f"\n(done in {time.perf_counter() - t0:.1f} s; embeddings are cached, so the next run is fast)")
    return 0
