"""IR evaluation on BEIR-format data, the way the field does it.

Documents are encoded as ``(title + " " + text).strip()`` by the table's encoder
(embeddings cached on disk), every query of a split is searched, and nDCG@10,
Recall@100 and MRR@10 come from the reference trec_eval implementation
(``pytrec_eval``, package ``pytrec-eval-terrier``, in the ``eval`` extra).

When a projection is fitted on a train split, the test figures are reported twice:
on all test queries, and on the "unseen-document" queries, none of whose relevant
documents is judged relevant in train. On SciFact, 196 of 300 test queries share
relevant documents with train, so a fitted model can gain by learning *which
documents tend to be relevant* rather than by matching better.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from softdb.table._table import SoftTable

__all__ = [
    "BeirFit",
    "BeirReport",
    "Metrics",
    "SplitReport",
    "evaluate_beir",
    "evaluate_table",
    "fit_beir_projection",
    "rank",
    "summarize",
    "trec_eval",
    "unseen_queries",
]

MEASURES = {"ndcg@10": "ndcg_cut_10", "recall@100": "recall_100", "mrr@10": "recip_rank"}


def _pytrec_eval() -> Any:
    try:
        import pytrec_eval
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "evaluation needs pytrec_eval, the reference trec_eval implementation; "
            'install it with: pip install "softdb[eval]"'
        ) from None
    return pytrec_eval


@dataclass(frozen=True)
class Metrics:
    """Mean metrics over a set of queries (NaN over no query: the mean does not exist)."""

    ndcg_at_10: float
    recall_at_100: float
    mrr_at_10: float
    queries: int

    def to_dict(self) -> dict[str, float | int | None]:
        """The metrics as a JSON-ready dict; None (JSON null) for a metric over no query.

        Examples
        --------
        >>> Metrics(float("nan"), float("nan"), float("nan"), 0).to_dict()
        {'ndcg@10': None, 'recall@100': None, 'mrr@10': None, 'queries': 0}
        """

        def value(x: float) -> float | None:
            return x if np.isfinite(x) else None

        return {
            "ndcg@10": value(self.ndcg_at_10),
            "recall@100": value(self.recall_at_100),
            "mrr@10": value(self.mrr_at_10),
            "queries": self.queries,
        }


def trec_eval(
    qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]]
) -> dict[str, dict[str, float]]:
    """Per-query nDCG@10, Recall@100 and MRR@10 computed by pytrec_eval.

    MRR@10 is trec_eval's ``recip_rank`` on the run cut to its 10 best documents.

    Parameters
    ----------
    qrels : {query_id: {doc_id: relevance}}
    run : {query_id: {doc_id: score}}, higher score = better

    Returns
    -------
    {query_id: {"ndcg@10": …, "recall@100": …, "mrr@10": …}} for every query of
    ``qrels`` (a query missing from the run scores 0).

    Examples
    --------
    >>> qrels = {"q": {"d1": 1}}
    >>> trec_eval(qrels, {"q": {"d0": 2.0, "d1": 1.0}})["q"]["mrr@10"]
    0.5
    """
    pe = _pytrec_eval()
    qrels = {q: {d: int(r) for d, r in docs.items()} for q, docs in qrels.items()}
    run = {q: {d: float(s) for d, s in docs.items()} for q, docs in run.items()}
    top10 = {q: dict(sorted(docs.items(), key=lambda x: (-x[1], x[0]))[:10]) for q, docs in run.items()}
    main = pe.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100"}).evaluate(run)
    mrr = pe.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    out = {}
    for q in qrels:
        a, b = main.get(q, {}), mrr.get(q, {})
        out[q] = {
            "ndcg@10": a.get("ndcg_cut_10", 0.0),
            "recall@100": a.get("recall_100", 0.0),
            "mrr@10": b.get("recip_rank", 0.0),
        }
    return out


def summarize(per_query: Mapping[str, Mapping[str, float]], query_ids: Sequence[str] | None = None) -> Metrics:
    """Average per-query metrics over ``query_ids`` (default: all)."""
    ids = list(per_query) if query_ids is None else list(query_ids)
    if not ids:
        return Metrics(float("nan"), float("nan"), float("nan"), 0)
    vals = np.array([[per_query[q][m] for m in MEASURES] for q in ids], np.float64)  # (n_q, 3)
    mean = vals.mean(axis=0)
    return Metrics(float(mean[0]), float(mean[1]), float(mean[2]), len(ids))


def unseen_queries(
    test_qrels: Mapping[str, Mapping[str, int]], train_qrels: Mapping[str, Mapping[str, int]]
) -> list[str]:
    """Test queries none of whose relevant documents is relevant in train.

    Examples
    --------
    >>> unseen_queries({"a": {"d1": 1}, "b": {"d2": 1}}, {"t": {"d1": 1}})
    ['b']
    """
    seen = {d for docs in train_qrels.values() for d, r in docs.items() if r > 0}
    return [q for q, docs in test_qrels.items() if not any(d in seen for d, r in docs.items() if r > 0)]


def rank(
    table: SoftTable, queries: Any, query_ids: Sequence[str], *, k: int = 100, mode: str = "soft", batch: int = 256
) -> dict[str, dict[str, float]]:
    """Search every query and return a trec run ``{query_id: {doc_id: score}}``.

    ``mode="soft"`` scores each document by its soft weight, ``"hard"`` by its raw
    score; the orders agree because softmax is monotonic. One pass of the query
    plan per batch; "hard" needs no log-sum-exp, so it computes no weights.
    """
    from softdb.engine._plan import Ask

    if mode not in ("soft", "hard"):
        raise ValueError(f"mode must be 'soft' or 'hard', got {mode!r}")
    k = min(k, len(table))
    ask = Ask(lse=mode == "soft")
    run: dict[str, dict[str, float]] = {}
    for start in range(0, len(query_ids), batch):
        sl = slice(start, start + batch)
        p = table._answer([q[sl] for q in queries] if isinstance(queries, list) else queries[sl], ask, k=k)
        hits = p.state.rows.hits(p.answers.rows, p.answers.scores, p.answers.hit_weights)
        vals = hits.weights if mode == "soft" else hits.scores  # (b, k)
        for qid, ids, v in zip(query_ids[start : start + batch], hits.ids, vals.astype(np.float64)):
            run[qid] = dict(zip((str(i) for i in ids), v.tolist()))
    return run


@dataclass
class SplitReport:
    """Metrics of one table on one split: by subset, plus per-query detail."""

    subsets: dict[str, Metrics]
    per_query: dict[str, dict[str, float]] = field(repr=False)
    run: dict[str, dict[str, float]] = field(repr=False)

    def to_dict(self) -> dict[str, dict[str, float | int]]:
        return {name: m.to_dict() for name, m in self.subsets.items()}


def evaluate_table(
    table: SoftTable,
    query_vectors: Any,
    query_ids: Sequence[str],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    subsets: Mapping[str, Sequence[str]] | None = None,
    mode: str = "soft",
) -> SplitReport:
    """Rank, score with trec_eval, and summarise over ``subsets`` (always "all")."""
    run = rank(table, query_vectors, query_ids, mode=mode)
    per_query = trec_eval({q: qrels[q] for q in query_ids}, run)
    groups = {"all": list(query_ids), **(subsets or {})}
    return SplitReport({name: summarize(per_query, ids) for name, ids in groups.items()}, per_query, run)


@dataclass(frozen=True)
class BeirFit:
    """How :func:`fit_beir_projection` fitted: the held-out check, then the final refit."""

    holdout: Any  # FitReport of the fit on (1 - holdout) of train, early-stopped on the rest
    final: Any  # FitReport of the refit on all train queries
    options: dict


def fit_beir_projection(
    table: SoftTable,
    train_vectors: Any,
    targets: Sequence[Sequence[str]],
    *,
    learn: tuple[str, ...] = ("q",),
    temperature: float = 0.02,
    reg: float = 0.03,
    max_iter: int = 200,
    holdout: float = 0.15,
    patience: int = 20,
    seed: int = 0,
) -> tuple[SoftTable, BeirFit]:
    """Fit a query projection for retrieval; return a new projected table and the report.

    The default was chosen by measuring candidates on SciFact (README, "Evaluation on
    real benchmark data"):
    W_Q only (a full d × d matrix starting at the identity; W_K = I), τ fixed at
    0.02, λ‖W_Q − I‖² with λ = 0.03, full-batch L-BFGS on the "rows" loss
    −log Σ_{relevant j} w_j. First a fit on ``1 - holdout`` of the train queries,
    early-stopped on the held-out rest, checks that the held-out recall@1 rises;
    then the projection is refit on all train queries (to convergence or
    ``max_iter``), which is what the returned table holds.

    Parameters
    ----------
    table : SoftTable
        The frozen table (not modified).
    train_vectors : ndarray of shape (m, d)
        Encoded train queries.
    targets : list of lists of ids
        The relevant rows of each train query.
    """
    from softdb.learn._projection import Projection

    tv = np.asarray(train_vectors)
    m = len(targets)
    perm = np.random.default_rng(seed).permutation(m)
    n_val = int(round(holdout * m))
    val, tr = np.sort(perm[:n_val]), np.sort(perm[n_val:])

    def fresh() -> SoftTable:
        proj = Projection(table.dim, learn=learn, temperature=temperature)
        return SoftTable(table.keys, ids=table.ids, payloads=table.payloads, metric=table.metric, projection=proj)

    opts = dict(loss="rows", optimizer="lbfgs", reg=reg, max_iter=max_iter, seed=seed)
    held = None
    if n_val:
        held = fresh().fit(
            tv[tr], [targets[i] for i in tr], validation=(tv[val], [targets[i] for i in val]), patience=patience, **opts
        )
    final_table = fresh()
    final = final_table.fit(tv, list(targets), **opts)
    options = dict(
        learn=list(learn),
        temperature=temperature,
        reg=reg,
        max_iter=max_iter,
        holdout=holdout,
        patience=patience,
        seed=seed,
    )
    return final_table, BeirFit(held, final, options)


@dataclass
class BeirReport:
    """What :func:`evaluate_beir` measured.

    ``slice`` is None for a run on the whole split; after ``max_docs`` or
    ``max_queries`` it says so: ``{"max_docs", "max_queries", "docs",
    "docs_total", "queries", "queries_total"}``.
    """

    baseline: SplitReport
    fitted: SplitReport | None
    seconds: float
    fit_report: Any = None
    slice: dict[str, int | None] | None = None
    model: str = "dense"
    chosen: dict[str, Any] = field(default_factory=dict)  # "baseline" / "fitted" -> Selection, chosen on train

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "baseline": self.baseline.to_dict()}
        if self.fitted is not None:
            out["fitted"] = self.fitted.to_dict()
        if self.chosen:
            out["chosen"] = {k: v.to_dict() for k, v in self.chosen.items()}
        out["slice"] = self.slice
        out["seconds"] = round(self.seconds, 3)
        return out


def evaluate_beir(
    path: str,
    *,
    split: str = "test",
    fit: str | None = None,
    mode: str = "soft",
    encoder: Any = None,
    max_docs: int | None = None,
    max_queries: int | None = None,
    fit_options: Mapping[str, Any] | None = None,
    model: str = "dense",
    folds: int = 5,
) -> BeirReport:
    """Evaluate frozen (and optionally fitted) search on a BEIR folder.

    Parameters
    ----------
    path : str
        A BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv).
    split : str
        The split to evaluate, e.g. "test".
    fit : str, optional
        A train split: fit a projection on it (targets: each query's relevant
        documents) and report the fitted table too, on all queries and on the
        unseen-document queries.
    mode : {"soft", "hard"}
    encoder : optional
        Default all-MiniLM-L6-v2 (embeddings cached on disk).
    max_docs, max_queries : int, optional
        Evaluate on a slice (the documents relevant to the kept queries are always
        kept): for quick checks and CI. Published figures use the whole split.
    fit_options : mapping, optional
        Passed to :func:`fit_beir_projection` (in this module) (model "dense"); for
        "hybrid", ``{"candidates": {name: SoftTable.fit options}}`` replaces the
        cross-validated fits (default :data:`softdb.eval._models.FIT_CANDIDATES`).
    model : {"dense", "bm25", "hybrid"}
        Frozen MiniLM, Lucene BM25, or [MiniLM | BM25] block keys scored
        cos + β·BM25 (see :mod:`softdb.eval._models`). Whenever the folder has a
        train split, the report has unseen-document figures, and a hybrid's β is
        chosen by ``folds``-fold cross-validation on train; with ``fit``, so are
        the fitted hybrid's parameters. The test split never chooses.
    folds : int
        Folds of that cross-validation.
    """
    from softdb.eval import _models as _beir_models

    if model not in _beir_models.MODELS:
        raise ValueError(
            f"model must be one of {list(_beir_models.MODELS)}, got {model!r}; hint: 'hybrid' is MiniLM + BM25"
        )
    if model == "bm25" and fit is not None:
        raise ValueError(
            "model 'bm25' has nothing to fit that changes its ranking; hint: --model hybrid "
            "--fit train learns the blend of MiniLM and BM25"
        )
    from softdb.text import beir_corpus, beir_qrels, beir_queries, default_encoder

    t0 = time.perf_counter()
    if model != "bm25":
        encoder = encoder or default_encoder()
    corpus = beir_corpus(path)
    qrels = beir_qrels(path, split)
    queries = beir_queries(path, split)
    q_ids, q_texts = list(queries.ids), list(queries.texts)
    n_queries_total, n_docs_total = len(q_ids), len(corpus)
    train = None
    train_split = fit
    if train_split is None and split != "train" and os.path.isfile(os.path.join(path, "qrels", "train.tsv")):
        train_split = "train"  # unseen-document figures (and a hybrid's β) whenever there is a train split
    if train_split is not None:
        train_qrels = beir_qrels(path, train_split)
        train_q = beir_queries(path, train_split)
        train = (list(train_q.ids), list(train_q.texts), train_qrels)
    if max_queries is not None:
        q_ids, q_texts = q_ids[:max_queries], q_texts[:max_queries]
        if train is not None:
            train = (train[0][: 2 * max_queries], train[1][: 2 * max_queries], train[2])
    doc_ids, doc_texts = list(corpus.ids), list(corpus.texts)
    if max_docs is not None:
        needed = {d for q in q_ids for d in qrels[q]}
        if train is not None:
            needed |= {d for q in train[0] for d in train[2][q]}
        keep = [i for i, d in enumerate(doc_ids) if d in needed]
        keep += [i for i in range(len(doc_ids)) if doc_ids[i] not in needed][: max(0, max_docs - len(keep))]
        keep.sort()
        doc_ids, doc_texts = [doc_ids[i] for i in keep], [doc_texts[i] for i in keep]
    subsets = None
    fitted = fit_report = None
    chosen: dict[str, Any] = {}
    if train is not None:
        tr_ids, tr_texts, tr_qrels = train
        subsets = {"unseen": unseen_queries({q: qrels[q] for q in q_ids}, tr_qrels)}
    if model != "dense":
        need_train = train is not None and (model == "hybrid")
        enc = _beir_models.encode_beir(
            model, doc_ids, doc_texts, {"test": q_texts, **({"train": tr_texts} if need_train else {})}, encoder
        )
        qv = enc.queries["test"]
        table = _beir_models.build_table(enc)
        if need_train:
            chosen["baseline"] = _beir_models.select_beta(enc, enc.queries["train"], tr_ids, tr_qrels, folds=folds)
            table = _beir_models.build_table(enc, chosen["baseline"].chosen["beta"])
        baseline = evaluate_table(table, qv, q_ids, qrels, subsets=subsets, mode=mode)
        if fit is not None:
            fitted_table, chosen["fitted"] = _beir_models.select_fit(
                enc,
                table,
                enc.queries["train"],
                tr_ids,
                tr_qrels,
                folds=folds,
                candidates=(fit_options or {}).get("candidates"),
            )
            fitted = evaluate_table(fitted_table, qv, q_ids, qrels, subsets=subsets, mode=mode)
        return BeirReport(
            baseline,
            fitted,
            time.perf_counter() - t0,
            None,
            _slice_info(max_docs, max_queries, doc_ids, n_docs_total, q_ids, n_queries_total),
            model,
            chosen,
        )
    keys = encoder.encode(doc_texts)  # (n_docs, d)
    qv = encoder.encode(q_texts)  # (n_q, d)
    table = SoftTable(keys, ids=doc_ids, metric="cosine")
    baseline = evaluate_table(table, qv, q_ids, qrels, subsets=subsets, mode=mode)
    if fit is not None:
        known = set(table.ids)
        targets = [[d for d, r in tr_qrels[q].items() if r > 0 and d in known] for q in tr_ids]
        usable = [i for i, t in enumerate(targets) if t]  # a query needs a relevant row to learn from
        tv = encoder.encode([tr_texts[i] for i in usable])  # (n_train, d)
        fitted_table, fit_report = fit_beir_projection(
            table, tv, [targets[i] for i in usable], **dict(fit_options or {})
        )
        fitted = evaluate_table(fitted_table, qv, q_ids, qrels, subsets=subsets, mode=mode)
    sliced = _slice_info(max_docs, max_queries, doc_ids, n_docs_total, q_ids, n_queries_total)
    return BeirReport(baseline, fitted, time.perf_counter() - t0, fit_report, sliced)


def _slice_info(max_docs, max_queries, doc_ids, n_docs_total, q_ids, n_queries_total) -> dict | None:
    if max_docs is None and max_queries is None:
        return None
    return {
        "max_docs": max_docs,
        "max_queries": max_queries,
        "docs": len(doc_ids),
        "docs_total": n_docs_total,
        "queries": len(q_ids),
        "queries_total": n_queries_total,
    }
