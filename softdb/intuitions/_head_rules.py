"""The thresholds of the real-head experiments, and the per-sentence statistics they judge.

The thresholds were chosen and committed before any of them was measured on a real model
(see the git history of this file): they say what "some heads", "near-hard", "by position",
"a sink" and "asymmetric" mean here, in numbers. The statistics are plain numpy on one
sentence's attention weights, for every head at once; :mod:`softdb.intuitions._heads` adds them
up over the text set and decides the verdicts.
"""

from __future__ import annotations

import numpy as np

from softdb.intuitions._result import entropy

__all__ = [
    "ASYMMETRY_MEDIAN",
    "HARD_ENTROPY",
    "HARD_MIN_HEADS",
    "HARD_SHARE",
    "POSITION_MIN_HEADS",
    "POSITION_SHARE",
    "SINK_MASS",
    "SINK_MIN_HEADS",
    "TIED_CHANGE_MEDIAN",
    "WEIGHT_FLOOR",
    "antisymmetric_share",
    "sentence_counts",
]

# ------------------------------------------------------------------ thresholds (fixed before measuring)
#: A token's lookup is near-hard when its weights' entropy is at most this (nats): e^0.5 ≈ 1.65 rows.
HARD_ENTROPY = 0.5
#: A head is near-hard when at least this share of its query tokens (all tokens of all sentences) is.
HARD_SHARE = 0.75
#: "Some heads act as near-hard lookups": at least this many near-hard heads that are not sinks.
HARD_MIN_HEADS = 3

#: A head reads by position when, for at least this share of its content query tokens, the top
#: retrieved token is the previous one (or, counted apart, the next one).
POSITION_SHARE = 0.7
#: "Some heads read by position": at least this many such heads (previous and next together).
POSITION_MIN_HEADS = 2

#: A head is an attention sink when its query tokens put, on average, at least this much weight on
#: [CLS] and [SEP] together.
SINK_MASS = 0.5
#: "Some heads park their weight on [CLS]/[SEP]": at least this many sink heads.
SINK_MIN_HEADS = 3

#: "Real heads are asymmetric": the median head's antisymmetric share of its (double-centred)
#: scores is at least this (0 = symmetric scores, ≈ 0.71 = unrelated queries and keys).
ASYMMETRY_MEDIAN = 0.25
#: ... and tying W_K = W_Q (and b_K = b_Q) changes the median head's context vectors by at least
#: this much, relative: ‖c_tied − c‖_F / ‖c‖_F over a sentence's tokens.
TIED_CHANGE_MEDIAN = 0.25

#: Weights below this are taken as this before their log (float32 softmax can underflow to 0).
WEIGHT_FLOOR = 1e-30


def antisymmetric_share(w: np.ndarray) -> np.ndarray:
    """How far from symmetric the scores behind softmax weights are: 0 symmetric, 1 antisymmetric.

    The weights of row i are exp(s_ij − lse_i), so log w differs from the scores s by a constant
    per row. Double-centring (J log w J, J = I − 11ᵀ/n) removes that constant, and also any score
    term of the form a_i + b_j, which a symmetric score may carry (a bias-like term; with tied
    W_K = W_Q it is exactly symmetric). What is left, S_c, is symmetric for every symmetric score;
    the share is ‖(S_c − S_cᵀ)/2‖_F / ‖S_c‖_F. Independent random queries and keys give ≈ 0.71.

    Parameters
    ----------
    w : ndarray of shape (heads, n, n)
        Each head's weights of the n tokens (rows: query tokens, columns: retrieved tokens).

    Returns
    -------
    ndarray of shape (heads,)

    Examples
    --------
    >>> s = np.array([[0.0, 1.0], [1.0, 0.0]])
    >>> w = np.exp(s) / np.exp(s).sum(1, keepdims=True)
    >>> antisymmetric_share(w[None]).round(6)
    array([0.])
    >>> s = np.array([[0.0, 3.0], [0.0, 0.0]])
    >>> w = np.exp(s) / np.exp(s).sum(1, keepdims=True)
    >>> antisymmetric_share(w[None]).round(6)
    array([1.])
    """
    logw = np.log(np.maximum(np.asarray(w, dtype=np.float64), WEIGHT_FLOOR))  # (h, n, n)
    centred = logw - logw.mean(axis=2, keepdims=True)  # (h, n, n)  row means off
    centred = centred - centred.mean(axis=1, keepdims=True)  # (h, n, n)  column means off
    anti = 0.5 * (centred - centred.transpose(0, 2, 1))  # (h, n, n)
    total = np.sqrt((centred**2).sum(axis=(1, 2)))  # (h,)
    return np.where(total > 0, np.sqrt((anti**2).sum(axis=(1, 2))) / np.where(total > 0, total, 1.0), 0.0)


def sentence_counts(w: np.ndarray, special: np.ndarray) -> dict[str, np.ndarray]:
    """The counts one sentence adds to each head's tallies.

    Parameters
    ----------
    w : ndarray of shape (heads, n, n)
        Each head's weights; rows are query tokens.
    special : ndarray of shape (n,), bool
        True at [CLS] and [SEP].

    Returns
    -------
    dict of str to ndarray of shape (heads,)
        ``tokens`` (query tokens), ``hard`` (of them, near-hard: entropy ≤ :data:`HARD_ENTROPY`),
        ``sink_mass`` (sum over query tokens of the weight on special tokens), ``content`` (content
        query tokens), ``prev`` / ``next`` (of them, those whose top token is the previous / next
        one), ``top_special`` (content query tokens whose top token is special), ``asymmetry``
        (:func:`antisymmetric_share`).

    Examples
    --------
    >>> w = np.array([[[1, 0, 0], [1, 0, 0], [0, 1, 0]]], dtype=float)  # a previous-token head
    >>> c = sentence_counts(w, np.array([True, False, True]))
    >>> int(c["content"][0]), int(c["prev"][0]), int(c["hard"][0])
    (1, 1, 3)
    """
    w = np.asarray(w, dtype=np.float64)  # (h, n, n)
    h, n, _ = w.shape
    special = np.asarray(special, dtype=bool)  # (n,)
    ent = entropy(w.reshape(h * n, n)).reshape(h, n)  # (h, n)
    top = w.argmax(axis=2)  # (h, n)
    pos = np.arange(n)  # (n,)
    content = ~special  # (n,)
    return {
        "tokens": np.full(h, n, dtype=np.int64),
        "hard": (ent <= HARD_ENTROPY).sum(axis=1),
        "sink_mass": w[:, :, special].sum(axis=(1, 2)),
        "content": np.full(h, int(content.sum()), dtype=np.int64),
        "prev": ((top == pos - 1) & content).sum(axis=1),
        "next": ((top == pos + 1) & content).sum(axis=1),
        "top_special": (special[top] & content).sum(axis=1),
        "asymmetry": antisymmetric_share(w),
    }
