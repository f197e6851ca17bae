"""The models ``softdb eval`` compares, and their honest selection on the train split.

- **dense**: frozen all-MiniLM-L6-v2, cosine (τ 0.05).
- **bm25**: Lucene BM25 as sparse keys (bm25s's scores exactly).
- **hybrid**: block keys [MiniLM | BM25], score cos + β·BM25, τ 0.05.

With a train split, β is chosen by k-fold cross-validation on the train queries
(:mod:`softdb.eval._crossval`) from :data:`BETA_GRID`; without one it is the
documented default 0.05. Fitting a hybrid (``--fit train``) cross-validates
:data:`FIT_CANDIDATES` (the blend's weights and τ; W_Q of the dense block at
several λ) against the unfitted hybrid, picks by :func:`softdb.eval._crossval.choose`
(best CV nDCG@10 with no CV loss on unseen-document queries) and refits the
choice on every train query. The test split is only ever evaluated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from softdb.eval._crossval import DEFAULT_FOLDS, CVScore, choose, cross_validate, kfold
from softdb.eval._metrics import trec_eval
from softdb.eval._rank import rank
from softdb.table._table import SoftTable

__all__ = [
    "BETA_GRID",
    "FIT_CANDIDATES",
    "MODELS",
    "Encoded",
    "Selection",
    "build_table",
    "encode_beir",
    "select_beta",
    "select_fit",
]

MODELS = ("dense", "bm25", "hybrid")
#: β values cross-validated for ``cos + β·BM25``.
BETA_GRID = (0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15)
#: Fits cross-validated for ``--fit`` on a hybrid table (name -> SoftTable.fit options).
#: "temperature" sets τ before the fit (the W_Q fits keep it; the blend fit learns it).
FIT_CANDIDATES: dict[str, dict[str, Any]] = {
    "blend (β, τ)": {"learn": ("tau", "weights")},
    "W_Q, τ 0.05, λ 0.03": {"learn": ("q",), "reg": 0.03},
    "W_Q, τ 0.05, λ 0.1": {"learn": ("q",), "reg": 0.1},
    "W_Q, τ 0.02, λ 0.03": {"learn": ("q",), "reg": 0.03, "temperature": 0.02},
    "W_Q, τ 0.02, λ 0.1": {"learn": ("q",), "reg": 0.1, "temperature": 0.02},
}
HYBRID_TAU = 0.05
DENSE_TAU = 0.05


@dataclass
class Encoded:
    """Document keys and query vectors of one model: what a table and its queries need."""

    model: str
    doc_ids: list
    keys: Any  # (n, d) dense, (n, V) CSR, or [dense, CSR]
    queries: dict[str, Any]  # split -> (m, ·) queries of that split, in its query order
    encoder: Any = None


@dataclass
class Selection:
    """What was chosen on train, with every candidate's CV score."""

    chosen: dict[str, Any]
    cv: list[CVScore] = field(default_factory=list)
    folds: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**self.chosen, "folds": self.folds, "cv": [c.to_dict() for c in self.cv]}


def encode_beir(
    model: str, doc_ids: list, doc_texts: list, split_texts: Mapping[str, list], dense_encoder: Any = None
) -> Encoded:
    """Encode the corpus and every split's queries for ``model``."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {list(MODELS)}, got {model!r}; hint: 'hybrid' is MiniLM + BM25")
    from softdb.text import BM25Encoder, HybridEncoder, default_encoder

    if model == "bm25":
        bm25 = BM25Encoder()
        return Encoded(
            model, doc_ids, bm25.encode_corpus(doc_texts), {s: bm25.encode(t) for s, t in split_texts.items()}, bm25
        )
    dense = dense_encoder or default_encoder()
    if model == "dense":
        return Encoded(
            model, doc_ids, dense.encode(doc_texts), {s: dense.encode(t) for s, t in split_texts.items()}, dense
        )
    hybrid = HybridEncoder(dense=dense)
    return Encoded(
        model, doc_ids, hybrid.encode_corpus(doc_texts), {s: hybrid.encode(t) for s, t in split_texts.items()}, hybrid
    )


def build_table(enc: Encoded, beta: float | None = None) -> SoftTable:
    """The unfitted table of a model (β for hybrid; default 0.05)."""
    if enc.model == "dense":
        return SoftTable(enc.keys, ids=enc.doc_ids, metric="cosine", temperature=DENSE_TAU)
    if enc.model == "bm25":
        return SoftTable(enc.keys, ids=enc.doc_ids, temperature=1.0)
    from softdb.text._hybrid import DEFAULT_BM25_WEIGHT

    beta = DEFAULT_BM25_WEIGHT if beta is None else beta
    return SoftTable(list(enc.keys), ids=enc.doc_ids, block_weights=(1.0, float(beta)), temperature=HYBRID_TAU)


def _rows(q: Any, idx: np.ndarray) -> Any:
    """Rows ``idx`` of queries of any kind."""
    if isinstance(q, list | tuple):
        return [b[idx] for b in q]
    return q[idx]


def _scorer(table_of: Any, queries: Any, qids: Sequence[str], qrels: Mapping) -> Any:
    """score(model, rows) -> {row: nDCG@10} of held-out train queries, ranked through the table."""

    def score(model: Any, rows: np.ndarray) -> dict[int, float]:
        table = table_of(model)
        ids = [qids[i] for i in rows]
        per_query = trec_eval({q: qrels[q] for q in ids}, rank(table, _rows(queries, rows), ids, k=10, mode="hard"))
        return {int(i): per_query[q]["ndcg@10"] for i, q in zip(rows, ids)}

    return score


def train_targets(train_ids: Sequence[str], train_qrels: Mapping, known: set) -> tuple[list[int], list[list[str]]]:
    """Train queries with at least one relevant document in the table, and those documents."""
    targets = [[d for d, r in train_qrels[q].items() if r > 0 and d in known] for q in train_ids]
    usable = [i for i, t in enumerate(targets) if t]
    return usable, [targets[i] for i in usable]


def select_beta(
    enc: Encoded,
    train_queries: Any,
    train_ids: Sequence[str],
    train_qrels: Mapping,
    *,
    folds: int = DEFAULT_FOLDS,
    grid: Sequence[float] = BETA_GRID,
) -> Selection:
    """β of cos + β·BM25 by k-fold CV nDCG@10 on train (nothing is fitted per fold)."""
    usable, targets = train_targets(train_ids, train_qrels, set(enc.doc_ids))
    q = _rows(train_queries, np.asarray(usable))
    ids = [train_ids[i] for i in usable]
    split = kfold(len(ids), min(folds, len(ids)))
    base = build_table(enc)
    scores = []
    for beta in grid:
        table = SoftTable(base.keys, ids=base.ids, block_weights=(1.0, beta), temperature=HYBRID_TAU)
        scores.append(
            cross_validate(
                f"β {beta:g}",
                {"beta": beta},
                lambda tr: None,
                _scorer(lambda _m, t=table: t, q, ids, train_qrels),
                split,
                targets,
            )
        )
    best = choose(scores)
    return Selection({"beta": best.options["beta"], "temperature": HYBRID_TAU}, scores, len(split))


def _fitted(base: SoftTable, X: Any, targets: list, options: Mapping[str, Any]) -> SoftTable:
    opts = dict(options)
    tau = opts.pop("temperature", base.temperature)
    t = SoftTable(base.keys, ids=base.ids, block_weights=base.block_weights, temperature=tau)
    t.fit(X, targets, **opts)
    return t


def _fit_on(base: SoftTable, q: Any, targets: list, options: Mapping[str, Any]) -> Callable[[np.ndarray], SoftTable]:
    """fit(train_rows) of one candidate for :func:`cross_validate`: ``options`` fitted on those rows."""
    return lambda tr: _fitted(base, _rows(q, tr), [targets[i] for i in tr], options)


def select_fit(
    enc: Encoded,
    base: SoftTable,
    train_queries: Any,
    train_ids: Sequence[str],
    train_qrels: Mapping,
    *,
    folds: int = DEFAULT_FOLDS,
    candidates: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[SoftTable, Selection]:
    """Cross-validate the fits of a hybrid table against no fit; refit the choice on all train."""
    candidates = FIT_CANDIDATES if candidates is None else candidates
    usable, targets = train_targets(train_ids, train_qrels, set(enc.doc_ids))
    idx = np.asarray(usable)
    q = _rows(train_queries, idx)
    ids = [train_ids[i] for i in usable]
    split = kfold(len(ids), min(folds, len(ids)))
    score = _scorer(lambda t: t, q, ids, train_qrels)
    ref = cross_validate("no fit", {}, lambda tr: base, score, split, targets)
    scores = [ref]
    for name, opts in candidates.items():
        scores.append(
            cross_validate(
                name,
                _jsonable(opts),
                _fit_on(base, q, targets, opts),
                score,
                split,
                targets,
            )
        )
    best = choose(scores[1:], ref)
    table = base if best is ref else _fitted(base, q, targets, candidates[best.name])
    weights = table.block_weights
    assert weights is not None  # a hybrid table: [dense | sparse] blocks
    chosen = {
        "fit": best.name,
        "beta": weights[1],
        "temperature": table.temperature,
        "learned_W_Q": table.query_projection is not None,
    }
    return table, Selection(chosen, scores, len(split))


def _jsonable(opts: Mapping[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in opts.items()}
