"""The claims measured on a real transformer: every head of all-MiniLM-L6-v2 as a soft table.

:func:`softdb.heads.all_heads` runs the model once per sentence of the shipped text set
(:data:`softdb.intuitions._head_texts.HEAD_TEXTS`) and gives one projected table per layer and
head; each table is asked for the weights of every token (its attention row), its soft answer
(the head's context vector) and, with W_K tied to W_Q, the same answers from a symmetric score.
The four experiments share that one measurement (made once per process and model) and judge it
by the thresholds fixed, before measuring, in :mod:`softdb.intuitions._head_rules`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from softdb.intuitions import _head_rules as rules
from softdb.intuitions._head_texts import HEAD_TEXTS
from softdb.intuitions._result import Figure, Intuition, experiment, fmt
from softdb.learn._projection import Projection
from softdb.table._table import SoftTable

__all__ = ["HeadTallies", "asymmetric_heads", "hard_heads", "measure_heads", "positional_heads", "sink_heads"]

SPECIAL = ("[CLS]", "[SEP]")


@dataclass(frozen=True)
class HeadTallies:
    """Per-head totals over the text set; every array has shape (layers, heads).

    ``tokens``/``hard``/``sink_mass``/``content``/``prev``/``next``/``top_special`` add up
    :func:`softdb.intuitions._head_rules.sentence_counts` over the sentences; ``asymmetry`` and
    ``tied_change`` are means over the sentences; ``self_top``/``self_top_tied`` count the tokens
    whose top retrieved token is themselves, as measured and with W_K = W_Q.
    """

    layers: int
    heads: int
    sentences: int
    tokens: np.ndarray
    hard: np.ndarray
    sink_mass: np.ndarray
    content: np.ndarray
    prev: np.ndarray
    next: np.ndarray
    top_special: np.ndarray
    asymmetry: np.ndarray
    tied_change: np.ndarray
    self_top: np.ndarray
    self_top_tied: np.ndarray

    def share(self, part: str, whole: str) -> np.ndarray:
        """``part / whole`` per head, e.g. ``share("hard", "tokens")``."""
        return np.asarray(getattr(self, part), np.float64) / np.maximum(getattr(self, whole), 1)


def tied_table(t: SoftTable) -> SoftTable:
    """The same head with W_K := W_Q (and b_K := b_Q): a symmetric score, as the seed essay asks.

    Everything else (W_V, b_V, τ, keys, values, ids) is the head's own.
    """
    p = t.projection
    if p is None:  # pragma: no cover - head tables are always projected
        raise ValueError("tied_table needs a projected table (one head of softdb.heads)")
    q = Projection(p.d, d_k=p.d_k, d_out=p.d_out, d_v=p.d_v, heads=p.heads, temperature=p.temperature)
    extras = {k: getattr(p, k) for k in ("b_Q", "b_V", "W_O", "b_O") if getattr(p, k, None) is not None}
    if "b_Q" in extras:
        extras["b_K"] = extras["b_Q"]
    q.set_weights(W_Q=p.W_Q, W_K=p.W_Q, W_V=p.W_V, **extras)
    return SoftTable(t.keys, t.values, ids=list(t.ids), temperature=t.temperature, projection=q)


def _sentence(heads: Any) -> dict[str, np.ndarray]:
    """One sentence's counts for every head, (layers, heads) each."""
    special = np.array([tok in SPECIAL for tok in heads.tokens])  # (n,)
    n = len(special)
    eye = np.arange(n)  # (n,)
    ws, change, self_top, self_tied = [], [], [], []
    for li in range(heads.layers):
        for h in range(heads.heads):
            t = heads.table(li, h)
            x = t.keys  # (n, d)  the token states entering the layer
            w = np.asarray(t.weights(x), dtype=np.float64)  # (n, n)  the head's attention rows
            tt = tied_table(t)
            wt = np.asarray(tt.weights(x), dtype=np.float64)  # (n, n)  with W_K = W_Q
            c = np.asarray(t.lookup(x), dtype=np.float64)  # (n, d_head)  context vectors
            ct = np.asarray(tt.lookup(x), dtype=np.float64)  # (n, d_head)
            ws.append(w)
            change.append(float(np.linalg.norm(ct - c)) / max(float(np.linalg.norm(c)), 1e-300))
            self_top.append(int((w.argmax(axis=1) == eye).sum()))
            self_tied.append(int((wt.argmax(axis=1) == eye).sum()))
    counts = rules.sentence_counts(np.stack(ws), special)  # each (layers * heads,)
    counts["tied_change"] = np.array(change)
    counts["self_top"] = np.array(self_top)
    counts["self_top_tied"] = np.array(self_tied)
    return {k: v.reshape(heads.layers, heads.heads) for k, v in counts.items()}


@functools.cache
def measure_heads(model: str | None = None, texts: tuple[str, ...] = HEAD_TEXTS) -> HeadTallies:
    """Run the model on every text and add up each head's counts (cached per model and texts).

    Parameters
    ----------
    model : str, optional
        A local BERT-family model folder; default the bundled all-MiniLM-L6-v2.
    texts : tuple of str
        Default: the shipped text set.

    Returns
    -------
    HeadTallies
    """
    from softdb.heads import all_heads

    total: dict[str, np.ndarray] = {}
    layers = heads_per_layer = 0
    for text in texts:
        heads = all_heads(text, model=model)
        layers, heads_per_layer = heads.layers, heads.heads
        for k, v in _sentence(heads).items():
            total[k] = total[k] + v if k in total else v.astype(np.float64)
    m = len(texts)
    return HeadTallies(
        layers=layers,
        heads=heads_per_layer,
        sentences=m,
        asymmetry=total.pop("asymmetry") / m,
        tied_change=total.pop("tied_change") / m,
        **total,
    )


def _name(flat: int, heads: int) -> str:
    return f"L{flat // heads}H{flat % heads}"


def _plots(grid: np.ndarray, what: str) -> dict[str, Any]:
    return {"grid": grid, "what": what}


@experiment
def hard_heads(*, model: str | None = None) -> Intuition:
    """Some heads of a real model act as near-hard lookups: low entropy for most tokens.

    Every head of all-MiniLM-L6-v2 (6 layers × 12) reads the 30 shipped sentences; each token's
    lookup is near-hard when the entropy of its weights is ≤ 0.5 nats (≈ 1.65 rows). A head is
    near-hard when ≥ 75% of its tokens are. A head that parks its weight on [CLS]/[SEP] (a sink,
    see ``heads-sink``) is near-hard too but retrieves nothing; it does not count here. Holds when
    at least 3 near-hard heads are not sinks.

    Notes
    -----
    It runs the real model (about 40 s for the four claims), so it is not a doctest:
    ``softdb intuitions heads-hard`` prints the verdict and its figures, and
    ``tests/intuitions/test_heads_intuitions.py`` re-derives them from the model's own attentions.
    """
    t = measure_heads(model)
    share = t.share("hard", "tokens")  # (L, H)
    sink = t.share("sink_mass", "tokens") >= rules.SINK_MASS  # (L, H)
    hard = share >= rules.HARD_SHARE  # (L, H)
    real = hard & ~sink
    best = int(np.argmax(np.where(sink, -1.0, share)))
    figures: dict[str, Figure] = {
        "heads": t.layers * t.heads,
        "near_hard_heads": int(hard.sum()),
        "near_hard_heads_not_sinks": int(real.sum()),
        "best_head_not_sink": _name(best, t.heads),
        "best_share_not_sink": float(share.reshape(-1)[best]),
        "median_share": float(np.median(share)),
        "entropy_threshold_nats": rules.HARD_ENTROPY,
        "share_threshold": rules.HARD_SHARE,
        "min_heads": rules.HARD_MIN_HEADS,
        "sentences": t.sentences,
    }
    holds = int(real.sum()) >= rules.HARD_MIN_HEADS
    summary = (
        f"{int(hard.sum())} of {t.layers * t.heads} heads are near-hard (≥ {rules.HARD_SHARE:.0%} of tokens at "
        f"≤ {rules.HARD_ENTROPY} nats), {int(real.sum())} of them not sinks (need {rules.HARD_MIN_HEADS}); "
        f"best non-sink {figures['best_head_not_sink']} at {figures['best_share_not_sink']:.0%}"
    )
    return Intuition(
        "heads-hard",
        "Some heads of a real model act as near-hard lookups: low entropy for most tokens.",
        figures,
        holds,
        summary,
        _plots(share, "share of near-hard tokens"),
    )


@experiment
def positional_heads(*, model: str | None = None) -> Intuition:
    """Some heads of a real model read by position (the previous or next token), not by content.

    Every head of all-MiniLM-L6-v2 reads the 30 shipped sentences. For each content token (not
    [CLS]/[SEP]) take the token it weights most; a head reads the previous (next) token when that
    top token is the one just before (after) it for ≥ 70% of the content tokens, whatever the
    words. Holds when at least 2 heads do (previous and next together).

    Notes
    -----
    It runs the real model (about 40 s for the four claims), so it is not a doctest:
    ``softdb intuitions heads-position`` prints the verdict and its figures, and
    ``tests/intuitions/test_heads_intuitions.py`` re-derives them from the model's own attentions.
    """
    t = measure_heads(model)
    prev, nxt = t.share("prev", "content"), t.share("next", "content")  # (L, H) each
    is_prev, is_next = prev >= rules.POSITION_SHARE, nxt >= rules.POSITION_SHARE
    bp, bn = int(np.argmax(prev)), int(np.argmax(nxt))
    figures: dict[str, Figure] = {
        "heads": t.layers * t.heads,
        "previous_token_heads": int(is_prev.sum()),
        "next_token_heads": int(is_next.sum()),
        "best_previous_head": _name(bp, t.heads),
        "best_previous_share": float(prev.reshape(-1)[bp]),
        "best_next_head": _name(bn, t.heads),
        "best_next_share": float(nxt.reshape(-1)[bn]),
        "share_threshold": rules.POSITION_SHARE,
        "min_heads": rules.POSITION_MIN_HEADS,
        "content_tokens": int(t.content.reshape(-1)[0]),
    }
    n_pos = int(is_prev.sum() + is_next.sum())
    holds = n_pos >= rules.POSITION_MIN_HEADS
    summary = (
        f"{int(is_prev.sum())} previous-token and {int(is_next.sum())} next-token heads (top token at that "
        f"offset for ≥ {rules.POSITION_SHARE:.0%} of {figures['content_tokens']} content tokens; need "
        f"{rules.POSITION_MIN_HEADS}); best {figures['best_previous_head']} {fmt(prev.reshape(-1)[bp])} "
        f"previous, {figures['best_next_head']} {fmt(nxt.reshape(-1)[bn])} next"
    )
    return Intuition(
        "heads-position",
        "Some heads of a real model read by position (previous or next token) rather than by content.",
        figures,
        holds,
        summary,
        _plots(np.maximum(prev, nxt), "share of content tokens whose top token is a neighbour"),
    )


@experiment
def sink_heads(*, model: str | None = None) -> Intuition:
    """Some heads park their weight on [CLS]/[SEP]: an attention sink, the soft lookup's no-op.

    A soft lookup must spend all of its weight; a head with nothing to retrieve for a token can put
    it on a row whose value changes little. Every head of all-MiniLM-L6-v2 reads the 30 shipped
    sentences; a head is a sink when its tokens put, on average, ≥ 0.5 of their weight on [CLS] and
    [SEP] together. Holds when at least 3 heads are sinks.

    Notes
    -----
    It runs the real model (about 40 s for the four claims), so it is not a doctest:
    ``softdb intuitions heads-sink`` prints the verdict and its figures, and
    ``tests/intuitions/test_heads_intuitions.py`` re-derives them from the model's own attentions.
    """
    t = measure_heads(model)
    mass = t.share("sink_mass", "tokens")  # (L, H)
    sink = mass >= rules.SINK_MASS
    best = int(np.argmax(mass))
    figures: dict[str, Figure] = {
        "heads": t.layers * t.heads,
        "sink_heads": int(sink.sum()),
        "heaviest_head": _name(best, t.heads),
        "heaviest_mass": float(mass.reshape(-1)[best]),
        "median_mass": float(np.median(mass)),
        "sink_heads_per_layer": " ".join(str(int(s)) for s in sink.sum(axis=1)),
        "mass_threshold": rules.SINK_MASS,
        "min_heads": rules.SINK_MIN_HEADS,
    }
    holds = int(sink.sum()) >= rules.SINK_MIN_HEADS
    summary = (
        f"{int(sink.sum())} of {t.layers * t.heads} heads put ≥ {rules.SINK_MASS:.0%} of their weight on "
        f"[CLS]/[SEP] (need {rules.SINK_MIN_HEADS}); per layer {figures['sink_heads_per_layer']}; heaviest "
        f"{figures['heaviest_head']} at {figures['heaviest_mass']:.0%}, median head {figures['median_mass']:.0%}"
    )
    return Intuition(
        "heads-sink",
        "Some heads park their weight on [CLS]/[SEP] (an attention sink: the soft lookup's no-op).",
        figures,
        holds,
        summary,
        _plots(mass, "mean weight on [CLS] + [SEP]"),
    )


@experiment
def asymmetric_heads(*, model: str | None = None) -> Intuition:
    """Real heads are asymmetric, w(i→j) ≠ w(j→i), and tying W_K = W_Q changes what they return.

    For every head of all-MiniLM-L6-v2 and each of the 30 shipped sentences, take the log weights
    (the scores up to a constant per row), remove every row and column constant (double-centring:
    a symmetric score stays symmetric), and measure the antisymmetric share ‖A‖/‖S‖: 0 for a
    symmetric score, ≈ 0.71 for unrelated queries and keys. Then tie W_K := W_Q (b_K := b_Q), a
    symmetric score, and measure the relative change of the head's context vectors,
    ‖c_tied − c‖_F / ‖c‖_F. Holds when the median head's share is ≥ 0.25 and its relative change
    is ≥ 0.25.

    Notes
    -----
    It runs the real model (about 40 s for the four claims), so it is not a doctest:
    ``softdb intuitions heads-asymmetric`` prints the verdict and its figures, and
    ``tests/intuitions/test_heads_intuitions.py`` re-derives them from the model's own attentions.
    """
    t = measure_heads(model)
    a, ch = t.asymmetry, t.tied_change  # (L, H) each
    tokens = float(t.tokens.sum())
    figures: dict[str, Figure] = {
        "heads": t.layers * t.heads,
        "median_antisymmetric_share": float(np.median(a)),
        "min_antisymmetric_share": float(a.min()),
        "max_antisymmetric_share": float(a.max()),
        "median_tied_change": float(np.median(ch)),
        "min_tied_change": float(ch.min()),
        "max_tied_change": float(ch.max()),
        "self_retrieval": float(t.self_top.sum() / tokens),
        "self_retrieval_tied": float(t.self_top_tied.sum() / tokens),
        "asymmetry_threshold": rules.ASYMMETRY_MEDIAN,
        "tied_change_threshold": rules.TIED_CHANGE_MEDIAN,
    }
    holds = np.median(a) >= rules.ASYMMETRY_MEDIAN and np.median(ch) >= rules.TIED_CHANGE_MEDIAN
    summary = (
        f"median head: antisymmetric share {fmt(np.median(a))} (range {fmt(a.min())}–{fmt(a.max())}; need "
        f"{rules.ASYMMETRY_MEDIAN}); tying W_K = W_Q moves its context vectors by {fmt(np.median(ch))} "
        f"(need {rules.TIED_CHANGE_MEDIAN}); tokens retrieving themselves {figures['self_retrieval']:.0%} → "
        f"{figures['self_retrieval_tied']:.0%} tied"
    )
    return Intuition(
        "heads-asymmetric",
        "Real heads are asymmetric, w(i→j) ≠ w(j→i): tying W_K = W_Q (a symmetric score) changes their output.",
        figures,
        holds,
        summary,
        _plots(a, "antisymmetric share of the scores"),
    )
