"""Reproduce the README's quality tables on a BEIR folder (default: SciFact).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_beir.py [BEIR_DIR] [--candidates] [--markdown]

Keyword and meaning (README, first table): frozen MiniLM, BM25 (softdb's sparse keys, and
bm25s itself with the same settings in the same run), the hybrid cos + β·BM25 with β chosen
by 5-fold cross-validation on train, and the fitted hybrid whose fit is chosen the same way
(`softdb.eval._models`); then BM25 retrieval speed, queries/s of `SoftTable.search` against
`bm25s.BM25.retrieve` (both single-threaded, same queries, k = 10). Then the projection table:

Frozen all-MiniLM-L6-v2 (soft and hard ranking), then the default fitted projection
(`softdb.eval._evaluate.fit_beir_projection`), on all test queries and on the test queries none
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
from softdb.eval import _models as _beir_models
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
    ap.add_argument(
        "beir_dir",
        nargs="?",
        default="scifact",
        help="a BEIR folder, or a name fetched by `softdb data get` (default scifact)",
    )
    ap.add_argument("--candidates", action="store_true", help="also fit the alternatives")
    ap.add_argument(
        "--all-fits",
        action="store_true",
        help="also refit every hybrid fit candidate on all train and report it on test (not used to choose)",
    )
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

    hybrid_rows = keyword_and_meaning(
        args.beir_dir, corpus, test_q, train_q, test_qrels, train_qrels, subsets, enc, all_fits=args.all_fits
    )
    _print_table(hybrid_rows)
    bm25_exactness(corpus, test_q.texts)
    bm25_speed(corpus, test_q.texts + train_q.texts)

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
        print(
            f"{name}: fit {secs:.0f} s; held-out recall@1 {held.best_val_metric:.3f} "
            f"(start {held.val_metric_history[0] if held.val_metric_history else float('nan'):.3f}); "
            f"refit {fit.final.iterations} L-BFGS iterations, converged={fit.final.converged}"
        )
        rows.append((name, rep.to_dict(), secs))

    _print_table(rows)
    n_all, n_unseen = rows[0][1]["all"]["queries"], rows[0][1]["unseen"]["queries"]
    print(
        f"\n{n_all} test queries, {n_unseen} with unseen documents; {platform.processor() or platform.machine()}, "
        f"total {time.perf_counter() - t0:.0f} s"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({name: d for name, d, _ in hybrid_rows + rows}, indent=2))


def _print_table(rows: list[tuple[str, dict, float]]) -> None:
    print()
    print("| model | nDCG@10 all | Recall@100 all | MRR@10 all | nDCG@10 unseen | fit time |")
    print("|---|---|---|---|---|---|")
    for name, d, secs in rows:
        a, u = d["all"], d["unseen"]
        print(
            f"| {name} | {a['ndcg@10']:.4f} | {a['recall@100']:.4f} | {a['mrr@10']:.4f} | "
            f"{u['ndcg@10']:.4f} | {f'{secs:.0f} s' if secs else '–'} |",
            flush=True,
        )


def _bm25s_run(corpus, test_q, k: int = 100) -> dict:
    """bm25s's own Lucene BM25 (k1 1.2, b 0.75, English stopwords, Snowball stemmer): a trec run."""
    import bm25s
    import Stemmer

    stem = Stemmer.Stemmer("english")
    retriever = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    retriever.index(
        bm25s.tokenize(corpus.texts, stopwords="en", stemmer=stem, show_progress=False), show_progress=False
    )
    res = retriever.retrieve(
        bm25s.tokenize(test_q.texts, stopwords="en", stemmer=stem, show_progress=False), k=k, show_progress=False
    )
    ids = np.asarray(corpus.ids)
    return {
        q: dict(zip(ids[res.documents[i]].tolist(), res.scores[i].astype(float).tolist()))
        for i, q in enumerate(test_q.ids)
    }


def keyword_and_meaning(
    beir_dir, corpus, test_q, train_q, test_qrels, train_qrels, subsets, dense_encoder, all_fits: bool = False
):
    """Rows of the first README table: dense, BM25 (softdb, bm25s), hybrid, fitted hybrid."""
    from softdb.evaluate import summarize, trec_eval

    out: list[tuple[str, dict, float]] = []
    texts = {"test": test_q.texts, "train": train_q.texts}
    for model in ("dense", "bm25"):
        enc = _beir_models.encode_beir(model, corpus.ids, corpus.texts, texts, dense_encoder)
        rep = evaluate_table(
            _beir_models.build_table(enc), enc.queries["test"], test_q.ids, test_qrels, subsets=subsets, mode="hard"
        )
        out.append(
            (f"{'frozen MiniLM, cosine' if model == 'dense' else 'BM25, softdb sparse keys'}", rep.to_dict(), 0.0)
        )
    per_query = trec_eval(test_qrels, _bm25s_run(corpus, test_q))
    ref = {"all": summarize(per_query).to_dict(), "unseen": summarize(per_query, subsets["unseen"]).to_dict()}
    out.append(("BM25, bm25s itself (same settings, same run)", ref, 0.0))
    enc = _beir_models.encode_beir("hybrid", corpus.ids, corpus.texts, texts, dense_encoder)
    t1 = time.perf_counter()
    sel = _beir_models.select_beta(enc, enc.queries["train"], train_q.ids, train_qrels)
    beta = sel.chosen["beta"]
    print(
        "hybrid β by 5-fold CV on train: "
        + ", ".join(f"{c.name} {c.all:.4f}/{c.unseen:.4f}" for c in sel.cv)
        + f" -> β = {beta:g}",
        flush=True,
    )
    base = _beir_models.build_table(enc, beta)
    rep = evaluate_table(base, enc.queries["test"], test_q.ids, test_qrels, subsets=subsets, mode="hard")
    out.append((f"hybrid cos + {beta:g}·BM25 (β by CV on train)", rep.to_dict(), 0.0))
    fitted, fsel = _beir_models.select_fit(enc, base, enc.queries["train"], train_q.ids, train_qrels)
    secs = time.perf_counter() - t1
    print(
        "fitted hybrid, 5-fold CV on train (all / unseen): "
        + "; ".join(f"{c.name} {c.all:.4f}/{c.unseen:.4f}" for c in fsel.cv)
        + f" -> {fsel.chosen['fit']}",
        flush=True,
    )
    rep = evaluate_table(fitted, enc.queries["test"], test_q.ids, test_qrels, subsets=subsets, mode="hard")
    out.append((f"fitted hybrid, chosen by CV: {fsel.chosen['fit']}", rep.to_dict(), secs))
    if all_fits:  # for the record only: the test split chose nothing above
        usable, targets = _beir_models.train_targets(train_q.ids, train_qrels, set(corpus.ids))
        q = _beir_models._rows(enc.queries["train"], np.asarray(usable))
        for name, opts in _beir_models.FIT_CANDIDATES.items():
            t2 = time.perf_counter()
            fitted = _beir_models._fitted(base, q, targets, opts)
            rep = evaluate_table(fitted, enc.queries["test"], test_q.ids, test_qrels, subsets=subsets, mode="hard")
            out.append(
                (
                    f"(not chosen, for the record) {name}; β {fitted.block_weights[1]:.3g}, τ {fitted.temperature:.3g}",
                    rep.to_dict(),
                    time.perf_counter() - t2,
                )
            )
    return out


def bm25_exactness(corpus, query_texts) -> float:
    """Max relative difference of softdb's BM25 scores from bm25s's get_scores, every query × document."""
    import bm25s
    import Stemmer

    from softdb.text import BM25Encoder

    enc = BM25Encoder()
    keys = enc.encode_corpus(corpus.texts)  # (n, V)
    ours = (enc.encode(query_texts) @ keys.T).toarray()  # (m, n)
    stem = Stemmer.Stemmer("english")
    retriever = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    retriever.index(
        bm25s.tokenize(corpus.texts, stopwords="en", stemmer=stem, show_progress=False), show_progress=False
    )
    toks = bm25s.tokenize(query_texts, stopwords="en", stemmer=stem, return_ids=False, show_progress=False)
    worst = 0.0
    for i, t in enumerate(toks):
        ref = retriever.get_scores(t) if any(w in retriever.vocab_dict for w in t) else np.zeros(len(corpus))
        rel = np.abs(ours[i] - ref) / np.where(ref == 0, 1.0, np.abs(ref))  # (n,)
        worst = max(worst, float(rel.max()))
    print(
        f"\nBM25 exactness: softdb vs bm25s get_scores over {len(query_texts)} queries x {len(corpus)} documents: "
        f"max relative difference {worst:.2e}",
        flush=True,
    )
    return worst


def bm25_speed(corpus, query_texts, repeats: int = 5) -> None:
    """Queries/s of BM25 top-10 search: softdb's sparse keys vs bm25s.BM25.retrieve, one thread each."""
    import bm25s
    import Stemmer

    from softdb.text import BM25Encoder

    enc = BM25Encoder()
    table = SoftTable(enc.encode_corpus(corpus.texts), temperature=1.0)
    stem = Stemmer.Stemmer("english")
    retriever = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    retriever.index(
        bm25s.tokenize(corpus.texts, stopwords="en", stemmer=stem, show_progress=False), show_progress=False
    )
    q_ours = enc.encode(query_texts)  # (m, V) term counts
    q_theirs = bm25s.tokenize(query_texts, stopwords="en", stemmer=stem, show_progress=False)

    def median(f) -> float:
        f()  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            f()
            times.append(time.perf_counter() - t)
        return float(np.median(times))

    a = median(lambda: table.search(q_ours, k=10))
    b = median(lambda: retriever.retrieve(q_theirs, k=10, show_progress=False, n_threads=0))
    m = len(query_texts)
    print(f"\nBM25 top-10 retrieval, {m} queries x {len(corpus)} documents, one thread each (median of {repeats}):")
    print("| method | queries/s | x bm25s |\n|---|---|---|")
    print(f"| softdb SoftTable.search (CSR keys, full-table weights) | {m / a:.0f} | {b / a:.2f} |")
    print(f"| bm25s BM25.retrieve (backend {retriever.backend}) | {m / b:.0f} | 1.00 |", flush=True)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
