"""``softdb eval BEIR [--fit SPLIT] [--model M] [--json]``: parsing and printing only."""

from __future__ import annotations

import argparse
import os
from typing import Any

from softdb._json import dumps
from softdb.cli._args import UserError, positive_int
from softdb.eval import _data as data

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    """Add the ``eval`` subcommand to the ``softdb`` command's subparsers."""
    ev = subparsers.add_parser(
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
    ev.add_argument("--folds", type=positive_int, default=5, help="folds of that cross-validation (default 5)")
    ev.add_argument("--mode", choices=["soft", "hard"], default="soft")
    ev.add_argument(
        "--max-docs", type=positive_int, help="evaluate on a slice of the corpus (the output says it is a slice)"
    )
    ev.add_argument(
        "--max-queries", type=positive_int, help="evaluate on the first N queries (the output says it is a slice)"
    )
    ev.add_argument("--json", action="store_true", help="print exactly one JSON object")


def run(args: argparse.Namespace) -> int:
    """Run ``softdb eval``; returns the exit status."""
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
