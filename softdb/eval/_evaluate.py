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

from softdb.eval import _models as _beir_models
from softdb.eval._metrics import unseen_queries
from softdb.eval._rank import SplitReport, evaluate_table
from softdb.table._table import SoftTable

__all__ = ["BeirFit", "BeirReport", "evaluate_beir", "fit_beir_projection"]


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
    n_val = round(holdout * m)
    val, tr = np.sort(perm[:n_val]), np.sort(perm[n_val:])

    def fresh() -> SoftTable:
        proj = Projection(table.dim, learn=learn, temperature=temperature)
        return SoftTable(table.keys, ids=table.ids, payloads=table.payloads, metric=table.metric, projection=proj)

    opts: dict[str, Any] = dict(loss="rows", optimizer="lbfgs", reg=reg, max_iter=max_iter, seed=seed)
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


def _slice_info(
    max_docs: int | None,
    max_queries: int | None,
    doc_ids: Sequence[str],
    n_docs_total: int,
    q_ids: Sequence[str],
    n_queries_total: int,
) -> dict[str, int | None] | None:
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
