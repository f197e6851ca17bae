#!/usr/bin/env python
"""BM25 that grows: what an ``add_texts`` costs, and what weighing at query time costs a search.

On the SciFact slice in tests/data (300 abstracts, 120 claims), repeated ``--copies`` times with
fresh ids (so the table has 300 × copies documents):

- build a BM25 table on all but the last 300 documents, then add those one at a time with
  ``add_texts``: median and 99th percentile per add (tokenise, count, update N / df / Σ|d|);
- remove 300 documents one at a time: median per remove;
- search the 120 claims (k = 10) on the grown table (its segments, weights computed at query
  time from the postings of the claims' terms) against the same rows built at once by
  ``from_texts``, against a table of precomputed BM25 weights (frozen statistics, as before BM25
  grew), and against bm25s's own ``retrieve`` on an index of those rows, interleaved round by
  round; medians and ratios.

    python benchmarks/bench_text_writes.py              # 300 × 20 = 6,000 documents
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(HERE), str(HERE / "benchmarks")]
from bench_lookup import machine

from softdb import SoftTable
from softdb.text import beir_corpus, beir_queries

SCIFACT = HERE / "tests" / "data" / "scifact"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    import bm25s
    import Stemmer

    corpus = beir_corpus(SCIFACT)
    queries = beir_queries(SCIFACT, "test").texts + beir_queries(SCIFACT, "train").texts
    docs = [t for _ in range(args.copies) for t in corpus.texts]
    ids = [f"{c}-{i}" for c in range(args.copies) for i in corpus.ids]
    tail = len(corpus.texts)
    print(machine())
    print(f"{len(docs)} documents, {len(queries)} queries")

    table = SoftTable.from_texts(docs[:-tail], ids=ids[:-tail], encoder="bm25")
    adds = []
    for d, i in zip(docs[-tail:], ids[-tail:]):
        t0 = time.perf_counter()
        table.add_texts([d], ids=[i])
        adds.append(time.perf_counter() - t0)
    ms = np.asarray(adds) * 1e3
    print(f"add_texts, one document: median {np.median(ms):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms")

    rng = np.random.default_rng(0)
    gone = list(rng.choice(ids, size=tail, replace=False))
    rem = []
    for i in gone:
        t0 = time.perf_counter()
        table.remove([i])
        rem.append(time.perf_counter() - t0)
    ms = np.asarray(rem) * 1e3
    print(f"remove, one document: median {np.median(ms):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms")
    print(f"segments after the writes: {len(table._state.rows.views)}")

    live = list(table.payloads)
    fresh = SoftTable.from_texts(live, encoder="bm25")
    stem = Stemmer.Stemmer("english")
    retriever = bm25s.BM25(method="lucene")
    retriever.index(bm25s.tokenize(live, stopwords="en", stemmer=stem, show_progress=False), show_progress=False)
    qtok = bm25s.tokenize(queries, stopwords="en", stemmer=stem, show_progress=False)
    q_grown, q_fresh = table.encoder.encode(queries), fresh.encoder.encode(queries)
    from softdb.text import BM25Encoder

    frozen_enc = BM25Encoder()
    frozen = SoftTable(frozen_enc.encode_corpus(live), temperature=1.0)  # precomputed weights: cannot grow
    q_frozen = frozen_enc.encode(queries)

    def grown() -> None:
        table.search(q_grown, k=10)

    def built() -> None:
        fresh.search(q_fresh, k=10)

    def weights() -> None:
        frozen.search(q_frozen, k=10)

    def peer() -> None:
        retriever.retrieve(qtok, k=10, show_progress=False, n_threads=1)

    names = ["grown", "built at once", "precomputed weights (frozen, as before)", "bm25s retrieve"]
    funcs = (grown, built, weights, peer)
    times: dict[str, list[float]] = {n: [] for n in names}
    for f in funcs:
        f()  # warm-up (the grown table builds its segments' postings once)
    for _ in range(args.rounds):
        for name, f in zip(names, funcs):
            t0 = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    base = med["built at once"]
    for name, v in med.items():
        print(f"search {len(queries)} queries, k=10, {name}: {v:.2f} ms ({v / base:.2f}× built at once)")


if __name__ == "__main__":
    main()
