"""Reproduce the README's quality table on a BEIR folder (default: SciFact).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_beir.py [BEIR_DIR] [--candidates] [--markdown]

Frozen all-MiniLM-L6-v2 (soft and hard ranking), then the default fitted projection
(`softdb.evaluate.fit_beir_projection`), on all test queries and on the test queries none
of whose relevant documents is judged relevant in train ("unseen"). With --candidates it
also fits the alternatives we measured before choosing the default. Metrics come from
trec_eval (pytrec_eval). Embeddings are cached, so only the first run encodes (~4 min).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from softdb import SoftTable
from softdb.data import resolve
from softdb.evaluate import evaluate_table, fit_beir_projection, unseen_queries
from softdb.text import beir_corpus, beir_qrels, beir_queries, default_encoder


#: Candidates measured before choosing the default (name -> fit_beir_projection options).
CANDIDATES = {
    "W_Q, τ 0.05, λ 0.01": dict(learn=("q",), temperature=0.05, reg=0.01),
    "W_Q, τ 0.05, λ 0.1": dict(learn=("q",), temperature=0.05, reg=0.1),
    "W_Q + W_K, τ 0.05, λ 0.01": dict(learn=("q", "k"), temperature=0.05, reg=0.01),
    "W_Q, τ 0.02, λ 0.01": dict(learn=("q",), temperature=0.02, reg=0.01),
    "W_Q, τ 0.02, λ 0.1": dict(learn=("q",), temperature=0.02, reg=0.1),
}
DEFAULT_NAME = "W_Q, τ 0.02, λ 0.03 (default)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("beir_dir", nargs="?", default="scifact",
                    help="a BEIR folder, or a name fetched by `softdb data get` (default scifact)")
    ap.add_argument("--candidates", action="store_true", help="also fit the alternatives")
    ap.add_argument("--markdown", action="store_true", help="print a README-ready table")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args()

    t0 = time.perf_counter()
    enc = default_encoder()
    try:
        args.beir_dir = resolve(args.beir_dir)
    except FileNotFoundError as exc:
        ap.error(str(exc))
    corpus = beir_corpus(args.beir_dir)
    test_q, train_q = beir_queries(args.beir_dir, "test"), beir_queries(args.beir_dir, "train")
    test_qrels, train_qrels = beir_qrels(args.beir_dir, "test"), beir_qrels(args.beir_dir, "train")
    keys = enc.encode(corpus.texts)  # (n_docs, 384)
    qv, tv = enc.encode(test_q.texts), enc.encode(train_q.texts)  # (n_test, 384), (n_train, 384)
    print(f"encoded {len(corpus)} documents and {len(qv) + len(tv)} queries in {time.perf_counter() - t0:.0f} s")
    table = SoftTable(keys, ids=corpus.ids, metric="cosine")
    unseen = unseen_queries(test_qrels, train_qrels)
    subsets = {"unseen": unseen}
    rows: list[tuple[str, dict, float]] = []

    for mode in ("soft", "hard"):
        rep = evaluate_table(table, qv, test_q.ids, test_qrels, subsets=subsets, mode=mode)
        rows.append((f"frozen MiniLM ({mode} ranking)", rep.to_dict(), 0.0))

    targets = [[d for d, r in train_qrels[q].items() if r > 0] for q in train_q.ids]
    configs = {DEFAULT_NAME: {}}
    if args.candidates:
        configs.update(CANDIDATES)
    for name, opts in configs.items():
        t1 = time.perf_counter()
        fitted, fit = fit_beir_projection(table, tv, targets, **opts)
        secs = time.perf_counter() - t1
        rep = evaluate_table(fitted, qv, test_q.ids, test_qrels, subsets=subsets)
        held = fit.holdout
        print(f"{name}: fit {secs:.0f} s; held-out recall@1 {held.best_val_metric:.3f} "
              f"(start {held.val_metric_history[0] if held.val_metric_history else float('nan'):.3f}); "
              f"refit {fit.final.iterations} L-BFGS iterations, converged={fit.final.converged}")
        rows.append((name, rep.to_dict(), secs))

    print()
    head = "| model | nDCG@10 all | Recall@100 all | MRR@10 all | nDCG@10 unseen | fit time |"
    print(head)
    print("|---|---|---|---|---|---|")
    for name, d, secs in rows:
        a, u = d["all"], d["unseen"]
        print(f"| {name} | {a['ndcg@10']:.4f} | {a['recall@100']:.4f} | {a['mrr@10']:.4f} | "
              f"{u['ndcg@10']:.4f} | {f'{secs:.0f} s' if secs else '–'} |")
    n_all, n_unseen = rows[0][1]["all"]["queries"], rows[0][1]["unseen"]["queries"]
    print(f"\n{n_all} test queries, {n_unseen} with unseen documents; {platform.processor() or platform.machine()}, "
          f"total {time.perf_counter() - t0:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({name: d for name, d, _ in rows}, indent=2))


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
