"""Claims that need learned projections: 2 queries ≠ keys, 7 multi-head attention."""

from __future__ import annotations

from typing import Any

import numpy as np

from softdb.intuitions._result import Intuition, experiment, fmt
from softdb.learn._projection import Projection
from softdb.table._table import SoftTable

__all__ = ["multi_head", "qk_differ"]


@experiment
def qk_differ(*, seed: int = 0) -> Intuition:
    """Queries and keys must differ to express a directed relation.

    With W_Q = W_K (tied), the score of x_i for x_j equals that of x_j for x_i,
    but relations in language are directed: "phone" may point to "RAM" without
    "RAM" pointing back. Take 60 tokens with random unit embeddings (d = 32),
    grouped into 20 directed 3-cycles a→b→c→a, and fit each token to retrieve
    its successor. Separate W_Q, W_K can; tied ones cannot get more than 2 of each
    3 right, since a symmetric score s would need s(a,b) > s(a,c) = s(c,a) >
    s(c,b) = s(b,c) > s(b,a) = s(a,b). (In practice tied does far worse: x W Wᵀ xᵀ
    is positive semi-definite, s(a,a) + s(b,b) ≥ 2 s(a,b), so most tokens
    retrieve themselves.) Holds when the separate fit reaches
    top-1 accuracy ≥ 0.99 and the tied fit ≤ 2/3.

    Examples
    --------
    >>> r = qk_differ()
    >>> r.holds, r.figures["accuracy_separate"]
    (True, 1.0)
    """
    rng = np.random.default_rng(seed)
    n, d = 60, 32
    x = rng.standard_normal((n, d))  # (n, d)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = [f"{'abc'[i % 3]}{i // 3}" for i in range(n)]  # a0 b0 c0 a1 ...
    succ = [ids[3 * (i // 3) + (i % 3 + 1) % 3] for i in range(n)]  # a→b→c→a
    acc: dict[bool, float] = {}
    plots: dict[str, Any] = {"labels": ids[:9]}
    for tied in (False, True):
        table = SoftTable(x, ids=ids, temperature=1.0, projection=Projection(d, tied=tied, learn=("q", "k"), seed=seed))
        table.fit(x, succ, loss="rows", max_iter=200, seed=seed)
        found = table.search(x, k=1).ids[:, 0]  # (n,)
        acc[tied] = float(np.mean(found == np.array(succ, dtype=object)))
        plots["tied" if tied else "separate"] = table.weights(x[:9])[:, :9]  # (9, 9)  three cycles
    figures = {"accuracy_separate": acc[False], "accuracy_tied": acc[True], "tokens": n, "dim": d}
    holds = acc[False] >= 0.99 and acc[True] <= 2 / 3
    summary = f"successor found: separate W_Q, W_K {acc[False]:.0%}, tied W_Q = W_K {acc[True]:.0%} (bound 67%)"
    return Intuition(
        "qk-differ",
        "Queries and keys must differ: tied W_Q = W_K gives symmetric scores and "
        "cannot learn a directed 3-cycle; separate ones can.",
        figures,
        holds,
        summary,
        plots,
    )


@experiment
def multi_head(*, seed: int = 0) -> Intuition:
    """Two heads can represent two relations at once where one head cannot.

    Each token of a 32-token sequence must return the content of its previous
    token and of its next one, side by side. Keys are content plus a one-hot
    position; values are the content alone (width 8). One head has one softmax,
    so its answer is a linear map of one blend of values: its 16 output numbers
    span at most 8 dimensions, while the targets span 16 (the floor on its error
    is the part of the targets outside their best 8-dimensional subspace). Two
    heads each attend to one neighbour. Both are fitted (loss="values"); the
    relative error is ‖answer − target‖² / ‖target‖². Holds when two heads reach
    a relative error ≤ 0.01 and one head stays at least 10× above it (it cannot
    go below the floor). (Nearest-content decoding would hide the one-head error:
    a blurred answer is often still nearest to the right content. Nor need the
    fitted heads attend sharply to one neighbour each: blends of many rows can
    also reach the targets; what one head cannot do is span 16 dimensions.)

    Examples
    --------
    >>> r = multi_head()
    >>> r.holds, r.figures["relative_error_one_head"] >= r.figures["one_head_error_floor"]
    (True, True)
    """
    rng = np.random.default_rng(seed)
    t_len, d_c = 32, 8
    content = rng.standard_normal((t_len, d_c))  # (T, d_c)
    content /= np.linalg.norm(content, axis=1, keepdims=True)
    x = np.hstack([content, np.eye(t_len)])  # (T, d_c + T)  content ⊕ one-hot position
    prev, nxt = np.roll(np.arange(t_len), 1), np.roll(np.arange(t_len), -1)  # cyclic neighbours
    target = np.hstack([content[prev], content[nxt]])  # (T, 2 d_c)
    s = np.linalg.svd(target, compute_uv=False)  # (2 d_c,)
    floor = float((s[d_c:] ** 2).sum() / (s**2).sum())  # best rank-d_c fit leaves this share
    ids = [f"t{t}" for t in range(t_len)]
    res: dict[int, dict] = {}
    for heads in (1, 2):
        proj = Projection(
            x.shape[1], d_k=2 * t_len, d_out=2 * d_c, heads=heads, init="random", seed=seed, learn_temperature=True
        )
        table = SoftTable(x, content, ids=ids, temperature=1.0, projection=proj)
        table.fit(x, target, loss="values", max_iter=300, seed=seed)
        out = table.lookup(x).astype(np.float64)  # (T, 2 d_c)
        err = float(((out - target) ** 2).sum() / (target**2).sum())
        cos = np.concatenate([_cos(out[:, :d_c], content[prev]), _cos(out[:, d_c:], content[nxt])])
        res[heads] = {"error": err, "cosine": float(cos.mean()), "table": table}
    figures = {
        "relative_error_one_head": res[1]["error"],
        "relative_error_two_heads": res[2]["error"],
        "one_head_error_floor": floor,
        "mean_cosine_one_head": res[1]["cosine"],
        "mean_cosine_two_heads": res[2]["cosine"],
        "tokens": t_len,
        "content_dim": d_c,
    }
    holds = res[2]["error"] <= 0.01 and res[1]["error"] >= 10 * res[2]["error"]
    summary = f"relative error: 1 head {fmt(res[1]['error'])} (floor {fmt(floor)}), 2 heads {fmt(res[2]['error'])}"
    plots = {"errors": (res[1]["error"], res[2]["error"]), "floor": floor}
    return Intuition(
        "multi-head",
        "Multi-head attention: two relations (previous and next token) that one "
        "head cannot represent at once, two heads can.",
        figures,
        holds,
        summary,
        plots,
    )


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))  # (m,)
