"""Best-hit cosine of related vs unrelated queries: the evidence for softdb's weak-match threshold.

`softdb search` calls a result a weak match when even the best hit's cosine is below
`softdb.table._explain.WEAK_MATCH_COSINE`. This script measures, with all-MiniLM-L6-v2, the
best-hit cosine of queries against a corpus about their topic (SciFact test queries
against SciFact abstracts; programming questions against the standard library docs)
and against an unrelated corpus (each set against the other corpus), and for a few
thresholds how many related queries would be flagged and how many unrelated ones not.

Run:  HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/weak_match_threshold.py [--beir DIR]
(the first run encodes 5,183 abstracts; later runs read the embedding cache).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from softdb.explain import WEAK_MATCH_COSINE
from softdb.text import beir_corpus, beir_queries, default_encoder, stdlib_corpus

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "beir" / "scifact"
STDLIB_QUERIES = [
    "parse command line arguments",
    "compress data with gzip",
    "read rows from a csv file",
    "run a shell command and capture its output",
    "read and write zip archives",
    "regular expression matching",
    "serialize python objects to bytes",
    "current date and time",
    "send an email",
    "open a url and read the page",
    "make a temporary directory",
    "hash a password",
    "sort a list in place",
    "format a number with commas",
    "copy a file",
    "walk a directory tree",
    "json encode a dict",
    "random number between two values",
    "measure elapsed time",
    "thread pool for parallel tasks",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--beir", type=Path, default=DEFAULT_DIR, help="a BEIR folder (default: SciFact)")
    args = ap.parse_args()
    enc = default_encoder()
    k_sci = enc.encode(beir_corpus(args.beir).texts)  # (n_sci, d) unit rows
    k_std = enc.encode(stdlib_corpus().texts)  # (n_std, d)
    q_sci = enc.encode(beir_queries(args.beir, "test").texts)  # (m_sci, d)
    q_std = enc.encode(STDLIB_QUERIES)  # (m_std, d)

    def best(q: np.ndarray, k: np.ndarray) -> np.ndarray:
        return (q @ k.T).max(axis=1)  # (m,) best cosine of each query

    related = {"SciFact queries -> SciFact": best(q_sci, k_sci), "stdlib queries -> stdlib": best(q_std, k_std)}
    unrelated = {"SciFact queries -> stdlib": best(q_sci, k_std), "stdlib queries -> SciFact": best(q_std, k_sci)}
    for name, v in {**related, **unrelated}.items():
        print(
            f"{name:28s} n={len(v):4d}  best-hit cosine min {v.min():.3f}  p5 {np.percentile(v, 5):.3f}  "
            f"median {np.median(v):.3f}  p95 {np.percentile(v, 95):.3f}  max {v.max():.3f}"
        )
    rel, unr = np.concatenate(list(related.values())), np.concatenate(list(unrelated.values()))
    for th in sorted({0.2, 0.25, 0.3, 0.35, 0.4, WEAK_MATCH_COSINE}):
        mark = "  <- WEAK_MATCH_COSINE" if th == WEAK_MATCH_COSINE else ""
        print(
            f"threshold {th:.2f}: related queries flagged weak {np.mean(rel < th):5.1%}, "
            f"unrelated queries not flagged {np.mean(unr >= th):5.1%}{mark}"
        )


if __name__ == "__main__":
    main()
