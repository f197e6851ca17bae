"""Honest selection: every choice made on data is made by k-fold cross-validation on train.

The test split never chooses. A choice (β of a hybrid table, which parameters a
fit learns, λ, τ) is scored by k-fold cross-validation over the *train* queries:
each fold is held out once, the candidate is fitted on the other folds (if it
fits anything) and its held-out queries are ranked through the table and scored
by trec_eval's nDCG@10. Two figures come out per candidate, the mean over folds of

- **all**: every held-out query;
- **unseen**: the held-out queries none of whose relevant documents is relevant
  to a query of the training folds: the same split as the test report's
  "unseen-document" queries, so a fit that only learns *which documents tend to
  be relevant* shows up here as no gain.

:func:`choose` picks the candidate with the best CV "all" among those whose CV
"unseen" is at least the reference's (no loss on unseen documents), the
reference itself when none is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["DEFAULT_FOLDS", "CVScore", "choose", "cross_validate", "kfold"]

DEFAULT_FOLDS = 5


@dataclass(frozen=True)
class CVScore:
    """Cross-validated nDCG@10 of one candidate."""

    name: str
    options: dict
    all: float
    unseen: float
    folds: tuple = field(default=(), repr=False)  # ((all, unseen), …) per fold

    def to_dict(self) -> dict[str, Any]:
        def value(x: float) -> float | None:  # JSON null where a mean has no query
            return round(x, 4) if np.isfinite(x) else None

        return {
            "name": self.name,
            "options": self.options,
            "cv_ndcg@10": value(self.all),
            "cv_ndcg@10_unseen": value(self.unseen),
        }


def kfold(m: int, k: int = DEFAULT_FOLDS, seed: int = 0) -> list[np.ndarray]:
    """k disjoint sorted folds of ``range(m)`` after a seeded shuffle.

    Examples
    --------
    >>> [f.tolist() for f in kfold(5, 2)]
    [[2, 3, 4], [0, 1]]
    """
    if not 2 <= k <= m:
        raise ValueError(
            f"k-fold cross-validation needs 2 <= k <= {m} (the train queries), got k={k}; "
            "hint: use fewer folds or more train queries"
        )
    perm = np.random.default_rng(seed).permutation(m)  # (m,)
    return [np.sort(f) for f in np.array_split(perm, k)]


def cross_validate(
    name: str,
    options: Mapping[str, Any],
    fit: Callable[[np.ndarray], Any],
    score: Callable[[Any, np.ndarray], Mapping[int, float]],
    folds: Sequence[np.ndarray],
    targets: Sequence[Sequence[Any]],
) -> CVScore:
    """Mean held-out nDCG@10 ("all", "unseen") of one candidate over the folds.

    Parameters
    ----------
    name, options
        What the candidate is (reported).
    fit : callable(train_rows) -> model
        Fits the candidate on the train queries ``train_rows`` (indices).
    score : callable(model, rows) -> {query index: nDCG@10}
        Scores the model on held-out queries.
    folds : list of index arrays
    targets : list of lists
        The relevant documents of each train query (to find the unseen ones).

    Examples
    --------
    >>> folds = kfold(4, 2)
    >>> cv = cross_validate("const", {}, lambda tr: None, lambda mdl, rows: {int(i): 0.5 for i in rows},
    ...                     folds, [["a"], ["a"], ["b"], ["c"]])
    >>> cv.all, cv.unseen
    (0.5, 0.5)
    """
    per_fold = []
    for f, held in enumerate(folds):
        train = np.sort(np.concatenate([g for i, g in enumerate(folds) if i != f]))
        seen = {d for i in train for d in targets[i]}
        unseen = [int(i) for i in held if not any(d in seen for d in targets[i])]
        model = fit(train)
        got = score(model, held)
        a = float(np.mean([got[int(i)] for i in held]))
        u = float(np.mean([got[i] for i in unseen])) if unseen else float("nan")
        per_fold.append((a, u))
    arr = np.array(per_fold)  # (k, 2)
    unseen_mean = float(np.nanmean(arr[:, 1])) if np.isfinite(arr[:, 1]).any() else float("nan")
    return CVScore(name, dict(options), float(arr[:, 0].mean()), unseen_mean, tuple(per_fold))


def choose(candidates: Sequence[CVScore], reference: CVScore | None = None) -> CVScore:
    """The best CV "all" among candidates with CV "unseen" >= the reference's.

    Without a reference: the best CV "all". Ties go to the earlier candidate.

    Examples
    --------
    >>> ref = CVScore("base", {}, 0.70, 0.75)
    >>> choose([ref, CVScore("memorises", {}, 0.85, 0.70), CVScore("generalises", {}, 0.74, 0.76)], ref).name
    'generalises'
    """
    if not candidates:
        raise ValueError("choose needs at least one candidate")
    ok = list(candidates)
    if reference is not None and np.isfinite(reference.unseen):
        ok = [c for c in candidates if c.unseen >= reference.unseen] or [reference]
    best = ok[0]
    for c in ok[1:]:
        if c.all > best.all:
            best = c
    return best
