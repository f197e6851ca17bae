"""How flat are the weights of unit embeddings at each default τ? The evidence behind the near-uniform note.

softdb's default metric is "dot" at τ = √d (``SoftTable(keys)``, ``softdb index --vectors``).
Unit sentence embeddings (all-MiniLM-L6-v2, d = 384) in such a table rank exactly as under
cosine, but at τ = √384 ≈ 19.6 their weights are nearly flat. This script measures, on the
standard library docs and on SciFact, for each query: the best row's weight times n (1 = uniform),
whether softdb's near-uniform rule flags it (w₁·n − 1 <= 1%), the τ it would suggest, and the
weight the top 10 hold; at τ = √384 (dot) and at τ = 0.05 (cosine).

Run:  HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/near_uniform_default.py [--beir DIR]
(the first run encodes 5,183 abstracts; later runs read the embedding cache).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from softdb import SoftTable
from softdb.table._match import NEAR_UNIFORM, near_uniform
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
]


def report(name: str, keys: np.ndarray, queries: np.ndarray) -> None:
    n = len(keys)
    for label, table in (("dot, τ = √d", SoftTable(keys)), ("cosine, τ = 0.05", SoftTable(keys, metric="cosine"))):
        hits = table.search(queries, k=10)  # (m, 10): one pass, full-table weights
        ratio = hits.weights[:, 0].astype(np.float64) * n  # (m,) w₁·n
        judged = [near_uniform(float(w), n, table.temperature) for w in hits.weights[:, 0]]
        flagged = np.mean([u.near_uniform for u in judged])
        top10 = hits.weights.astype(np.float64).sum(axis=1)  # (m,)
        taus = [u.suggested_temperature for u in judged if u.suggested_temperature is not None]
        print(
            f"{name:8s} n={n:5d} m={len(queries):4d}  {label:17s} τ={table.temperature:7.3f}  "
            f"w1·n median {np.median(ratio):9.3f} min {ratio.min():9.3f} max {ratio.max():9.3f}  "
            f"flagged (<= {NEAR_UNIFORM:.0%}) {flagged:5.1%}  top-10 weight median {np.median(top10):.3f}"
            + (f"  suggested τ median {np.median(taus):.3f}" if taus else "")
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--beir", type=Path, default=DEFAULT_DIR, help="a BEIR folder (default: SciFact)")
    args = ap.parse_args()
    enc = default_encoder()
    report("stdlib", enc.encode(stdlib_corpus().texts), enc.encode(STDLIB_QUERIES))
    report("SciFact", enc.encode(beir_corpus(args.beir).texts), enc.encode(beir_queries(args.beir, "test").texts))


if __name__ == "__main__":
    main()
