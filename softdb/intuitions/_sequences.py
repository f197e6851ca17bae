"""Claims about sequences: 6 keys vs values, 8 self- vs cross-attention, 9 causal masks."""

from __future__ import annotations

import numpy as np

from softdb.intuitions._result import Intuition, experiment, fmt
from softdb.table._table import SoftTable

__all__ = ["causal", "keys_values", "self_vs_cross"]


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d))  # (n, d)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _nearest(answers: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Index of the candidate with the highest cosine to each answer."""
    a = answers / np.maximum(np.linalg.norm(answers, axis=1, keepdims=True), 1e-12)  # (m, d)
    return np.argmax(a @ candidates.T, axis=1)  # (m,)


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))  # (m,)


@experiment
def keys_values(*, seed: int = 0) -> Intuition:
    """Keys and values can differ: keys say where to look, values say what to return.

    Each of 24 positions holds a content vector c_t. Keys carry position plus
    content (k_t = c_t + p_t, as DETR adds positions to keys and not to values)
    and values carry content only (v_t = c_t). A query made of a position, p_t,
    then retrieves the content at that position. K = V is the special case
    ``SoftTable(keys)``: it retrieves the right row too, but returns the
    position along with the content; keys of content alone cannot be addressed
    by position at all. Holds when position queries retrieve the right content
    (nearest content) for at least 95% of positions with a cosine of at least
    0.95, K = V answers have a cosine at least 0.3 lower, content-only keys reach
    at most 25%, and ``SoftTable(keys)`` equals ``SoftTable(keys, keys)``.

    Examples
    --------
    >>> r = keys_values()
    >>> r.holds, r.figures["accuracy_separate"]
    (True, 1.0)
    """
    rng = np.random.default_rng(seed)
    n, d, tau = 24, 32, 0.25
    content = _unit(rng, n, d)  # (n, d)
    pos = 2.0 * _unit(rng, n, d)  # (n, d)  a position code per slot, stronger than the content
    ids = [f"t{t}" for t in range(n)]
    separate = SoftTable(content + pos, content, ids=ids, temperature=tau)  # K = c + p, V = c
    shared = SoftTable(content + pos, ids=ids, temperature=tau)  # K = V = c + p
    content_keys = SoftTable(content, ids=ids, temperature=tau)  # K = V = c: no position to match
    ans_sep = separate.lookup(pos).astype(np.float64)  # (n, d)
    ans_kv = shared.lookup(pos).astype(np.float64)  # (n, d)
    ans_c = content_keys.lookup(pos).astype(np.float64)  # (n, d)
    truth = np.arange(n)
    explicit = SoftTable(content + pos, content + pos, ids=ids, temperature=tau)
    kv_gap = float(
        np.abs(shared.weights(pos) - explicit.weights(pos)).max()
        + np.abs(shared.lookup(pos) - explicit.lookup(pos)).max()
    )
    figures = {
        "accuracy_separate": float(np.mean(_nearest(ans_sep, content) == truth)),
        "cosine_separate": float(_cos(ans_sep, content).mean()),
        "accuracy_k_equals_v": float(np.mean(_nearest(ans_kv, content) == truth)),
        "cosine_k_equals_v": float(_cos(ans_kv, content).mean()),
        "accuracy_content_keys": float(np.mean(_nearest(ans_c, content) == truth)),
        "k_equals_v_special_case_gap": kv_gap,
        "positions": n,
    }
    holds = (
        figures["accuracy_separate"] >= 0.95
        and figures["cosine_separate"] >= 0.95
        and figures["cosine_k_equals_v"] <= figures["cosine_separate"] - 0.3
        and figures["accuracy_content_keys"] <= 0.25
        and kv_gap == 0.0
    )
    summary = (
        f"by position: K=c+p,V=c acc {figures['accuracy_separate']:.0%} cos "
        f"{fmt(figures['cosine_separate'])}; K=V cos {fmt(figures['cosine_k_equals_v'])}; "
        f"K=c acc {figures['accuracy_content_keys']:.0%}"
    )
    plots = {
        "weights": separate.weights(pos[:12]),
        "labels": ids[:12],
        "columns": ids,
        "weights_content": content_keys.weights(pos[:12]),
    }
    return Intuition(
        "keys-values",
        "Keys and values can differ: keys with position + content, values "
        "with content only, retrieve content by position; K = V is a special case.",
        figures,
        holds,
        summary,
        plots,
    )


#: (English, French) word pairs of a toy lexicon; adjectives go after the noun in French.
_LEXICON = {
    "the": "le",
    "black": "noir",
    "white": "blanc",
    "small": "petit",
    "big": "grand",
    "red": "rouge",
    "cat": "chat",
    "dog": "chien",
    "bird": "oiseau",
    "car": "voiture",
    "house": "maison",
    "sleeps": "dort",
    "runs": "court",
    "sings": "chante",
    "eats": "mange",
}
_SENTENCES = [
    "the black cat sleeps",
    "the white dog runs",
    "the small bird sings",
    "the red car runs",
    "the big house sleeps",
    "the black dog eats",
]


def _french(sentence: str) -> tuple[list[str], list[int]]:
    """French word order ("the ADJ NOUN VERB" → "le NOUN ADJ VERB") and the gold alignment."""
    order = [0, 2, 1, 3]  # French position i translates English position order[i]
    words = sentence.split()
    return [_LEXICON[words[j]] for j in order], order


@experiment
def self_vs_cross(*, seed: int = 0) -> Intuition:
    """Self-attention reads its own sequence; cross-attention reads another one.

    In self-attention the queries, keys and values all come from one sequence;
    in cross-attention the queries come from one sequence (here a French
    sentence) and the keys and values from another (its English source), so the
    weights are an alignment between the two, reorderings included ("le chat
    noir" aligns with "the black cat" crosswise). Word vectors share a meaning
    vector across the two languages plus a per-language offset and noise. Holds
    when, over 6 sentence pairs, cross-attention aligns at least 95% of French
    words with their English source (including the reordered adjective and noun)
    and self-attention puts its largest weight on the word itself for at least
    95%.

    Examples
    --------
    >>> r = self_vs_cross()
    >>> r.holds, r.figures["cross_alignment_accuracy"]
    (True, 1.0)
    """
    rng = np.random.default_rng(seed)
    d, tau = 32, 0.1
    meaning = dict(zip(_LEXICON, _unit(rng, len(_LEXICON), d)))  # word -> (d,)
    lang_en, lang_fr = _unit(rng, 2, d)  # (d,), (d,)
    en_vec = {w: m + 0.6 * lang_en + 0.3 * _unit(rng, 1, d)[0] for w, m in meaning.items()}
    fr_vec = {_LEXICON[w]: m + 0.6 * lang_fr + 0.3 * _unit(rng, 1, d)[0] for w, m in meaning.items()}
    cross_hits, self_hits, swap_hits = [], [], []
    plots: dict = {}
    for s, sentence in enumerate(_SENTENCES):
        en = sentence.split()
        fr, gold = _french(sentence)
        fr_x = np.array([fr_vec[w] for w in fr])  # (4, d)
        source = SoftTable(np.array([en_vec[w] for w in en]), ids=en, metric="cosine", temperature=tau)
        own = SoftTable(fr_x, ids=fr, metric="cosine", temperature=tau)
        w_cross = source.weights(fr_x)  # (4, 4)  French queries × English keys
        w_self = own.weights(fr_x)  # (4, 4)
        cross_hits += list(np.argmax(w_cross, axis=1) == gold)
        swap_hits += [np.argmax(w_cross[i]) == gold[i] for i in (1, 2)]  # the reordered pair
        self_hits += list(np.argmax(w_self, axis=1) == np.arange(len(fr)))
        if s == 0:
            plots = {"french": fr, "english": en, "cross": w_cross, "self": w_self}
    figures = {
        "cross_alignment_accuracy": float(np.mean(cross_hits)),
        "reordered_alignment_accuracy": float(np.mean(swap_hits)),
        "self_attends_itself": float(np.mean(self_hits)),
        "sentence_pairs": len(_SENTENCES),
    }
    holds = (
        figures["cross_alignment_accuracy"] >= 0.95
        and figures["reordered_alignment_accuracy"] >= 0.95
        and figures["self_attends_itself"] >= 0.95
    )
    summary = (
        f"cross aligns {figures['cross_alignment_accuracy']:.0%} (reordered "
        f"{figures['reordered_alignment_accuracy']:.0%}); self attends itself "
        f"{figures['self_attends_itself']:.0%}"
    )
    return Intuition(
        "self-vs-cross",
        "Self-attention takes Q, K, V from one sequence; cross-attention "
        "takes Q from one and K = V from another, aligning them.",
        figures,
        holds,
        summary,
        plots,
    )


@experiment
def causal(*, seed: int = 0) -> Intuition:
    """Masked (causal) attention: each position sees only itself and earlier ones.

    With a lower-triangular mask, position t gives weight 0 to every later
    position, so changing the future cannot change its answer; without the mask
    it does. The keys and values are then "the memory of what was generated
    before": growing a table one row at a time with ``add`` and querying it with
    the newest token gives exactly the masked answers. Measured on a sequence of
    12 random tokens (float64). Holds when the weight on the future is 0, the
    masked answers do not move when the future changes (≤ 1e-12) while the
    unmasked ones do (> 1e-3), and the incremental table matches the masked one
    to 1e-9.

    Examples
    --------
    >>> r = causal()
    >>> r.holds, r.figures["weight_on_future"]
    (True, 0.0)
    """
    rng = np.random.default_rng(seed)
    t_len, d, d_v, t0 = 12, 8, 4, 5
    x = rng.standard_normal((t_len, d))  # (T, d)
    v = rng.standard_normal((t_len, d_v))  # (T, d_v)
    causal_mask = np.tril(np.ones((t_len, t_len), bool))  # (T, T)  row t may see columns <= t
    ids = [f"t{t}" for t in range(t_len)]
    table = SoftTable(x, v, ids=ids)
    w = table.weights(x, mask=causal_mask)  # (T, T)
    masked = table.lookup(x, mask=causal_mask)  # (T, d_v)
    open_ = table.lookup(x)  # (T, d_v)
    x2, v2 = x.copy(), v.copy()
    x2[t0 + 1 :] = rng.standard_normal((t_len - t0 - 1, d))  # a different future after t0
    v2[t0 + 1 :] = rng.standard_normal((t_len - t0 - 1, d_v))
    other = SoftTable(x2, v2, ids=ids)
    masked_moved = float(np.abs(other.lookup(x2, mask=causal_mask)[: t0 + 1] - masked[: t0 + 1]).max())
    open_moved = float(np.abs(other.lookup(x2)[: t0 + 1] - open_[: t0 + 1]).max())
    memory = SoftTable(x[:1], v[:1], ids=ids[:1])  # the KV cache after the first token
    incremental = [memory.lookup(x[0])]
    for t in range(1, t_len):
        memory.add(x[t : t + 1], v[t : t + 1], ids=[ids[t]])  # generate token t: append its key and value
        incremental.append(memory.lookup(x[t]))  # (d_v,)
    incr_gap = float(np.abs(np.array(incremental) - masked).max())
    figures = {
        "weight_on_future": float(w[~causal_mask].sum()),
        "masked_change_when_future_changes": masked_moved,
        "unmasked_change_when_future_changes": open_moved,
        "incremental_vs_masked_gap": incr_gap,
        "tokens": t_len,
    }
    holds = figures["weight_on_future"] == 0.0 and masked_moved <= 1e-12 and open_moved > 1e-3 and incr_gap <= 1e-9
    summary = (
        f"future weight {fmt(figures['weight_on_future'])}; past answers move by "
        f"{fmt(masked_moved)} masked vs {fmt(open_moved)} unmasked; KV-cache gap {fmt(incr_gap)}"
    )
    return Intuition(
        "causal",
        "Masked (causal) attention: each position sees only earlier ones; K and V "
        "are the memory of what was generated before.",
        figures,
        holds,
        summary,
        {"weights": w, "labels": ids},
    )
