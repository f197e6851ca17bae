"""Claims about the lookup itself: 1 one-hot, 4 √d scaling, 5 dot vs additive, 11 soft SELECT."""

from __future__ import annotations

import time

import numpy as np
from scipy.optimize import linprog
from scipy.special import softmax

from softdb.intuitions._result import Intuition, entropy, experiment, fmt, one_blas_thread
from softdb.table._table import SoftTable

__all__ = ["approximate_select", "dot_vs_additive", "one_hot", "sqrt_d"]


@experiment
def one_hot(*, seed: int = 0) -> Intuition:
    """One-hot weights are an exact lookup, and the soft lookup interpolates.

    As the temperature τ goes to 0 the weights become one-hot and the soft answer
    equals the hard lookup (the value of the best-scoring row); as τ goes to
    infinity the weights become uniform and the answer is the mean of the values;
    in between the answer is a convex combination of the values ("proportional
    retrieval"), so it lies in their convex hull. Measured on 40 random rows and
    16 queries in float64; the hull membership is checked by a linear program,
    independently of the weights. Holds when the answer is within 1e-6 of the hard
    one at τ = 1e-4, within 1e-4 of the mean at τ = 1e6, and in the hull for every
    query at τ = 0.1, 1 and 10.

    Examples
    --------
    >>> r = one_hot()
    >>> r.holds, r.figures["max_weight_tau_min"] > 0.999999
    (True, True)
    """
    rng = np.random.default_rng(seed)
    n, d, d_v, m = 40, 8, 3, 16
    keys = rng.standard_normal((n, d))  # (n, d)  float64 stays float64
    values = rng.standard_normal((n, d_v))  # (n, d_v)
    queries = rng.standard_normal((m, d))  # (m, d)
    table = SoftTable(keys, values, temperature=1.0)
    hard = table.lookup(queries, mode="hard")  # (m, d_v)
    mean = values.mean(axis=0)  # (d_v,)
    taus = np.logspace(-4, 6, 21)
    to_hard, to_mean = [], []
    for tau in taus:
        soft = table.lookup(queries, temperature=tau)  # (m, d_v)
        to_hard.append(float(np.abs(soft - hard).max()))
        to_mean.append(float(np.abs(soft - mean).max()))
    inside = []
    for tau in (0.1, 1.0, 10.0):
        for out in table.lookup(queries, temperature=tau):  # (d_v,)
            # Is there λ >= 0 with Σλ = 1 and λ·V = out?  (feasibility LP)
            a_eq = np.vstack([values.T, np.ones(n)])  # (d_v + 1, n)
            res = linprog(np.zeros(n), A_eq=a_eq, b_eq=np.append(out, 1.0), bounds=(0, None), method="highs")
            inside.append(res.status == 0)
    w_min = table.weights(queries, temperature=taus[0])  # (m, n)
    figures = {
        "tau_min": float(taus[0]),
        "max_abs_soft_minus_hard_tau_min": to_hard[0],
        "tau_max": float(taus[-1]),
        "max_abs_soft_minus_mean_tau_max": to_mean[-1],
        "max_weight_tau_min": float(w_min.max(axis=1).min()),
        "in_hull_fraction": float(np.mean(inside)),
        "rows": n,
        "queries": m,
    }
    holds = to_hard[0] < 1e-6 and to_mean[-1] < 1e-4 and figures["in_hull_fraction"] == 1.0
    summary = (
        f"|soft-hard| {fmt(to_hard[0])} at τ=1e-4; |soft-mean| {fmt(to_mean[-1])} at τ=1e6; "
        f"in hull {figures['in_hull_fraction']:.0%}"
    )
    plots = {"taus": taus, "to_hard": np.array(to_hard), "to_mean": np.array(to_mean)}
    return Intuition(
        "one-hot",
        "One-hot weights are an exact lookup: soft → hard as τ → 0, → mean "
        "of the values as τ → ∞, in their convex hull in between.",
        figures,
        holds,
        summary,
        plots,
    )


@experiment
def sqrt_d(*, seed: int = 0) -> Intuition:
    """Scaling scores by 1/√d keeps the softmax from saturating as d grows.

    Scores q·k of random vectors with unit-variance entries have standard
    deviation √d, so without scaling the weights become one-hot as d grows: their
    entropy goes to 0 and so does the gradient that reaches the scores, the norm
    of the softmax Jacobian ‖diag(w) − w wᵀ‖_F (median over queries: a few
    near-ties keep the mean up). Dividing by τ = √d keeps both roughly
    constant. Measured for d from 2 to 8192 (32 keys, 64 queries). Holds when,
    at the largest d, the unscaled entropy and gradient are below a tenth of the
    scaled ones, and the scaled entropy varies by less than a factor 1.5 across d.

    Examples
    --------
    >>> r = sqrt_d()
    >>> r.holds, r.figures["entropy_scaled_d8192"] > 10 * r.figures["entropy_unscaled_d8192"]
    (True, True)
    """
    rng = np.random.default_rng(seed)
    n, m = 32, 64
    dims = [2, 8, 32, 128, 512, 2048, 8192]
    out: dict[str, list[float]] = {k: [] for k in ("h_raw", "h_scaled", "g_raw", "g_scaled")}
    for d in dims:
        keys = rng.standard_normal((n, d)).astype(np.float32)  # (n, d)
        queries = rng.standard_normal((m, d)).astype(np.float32)  # (m, d)
        table = SoftTable(keys)  # default τ = √d for metric="dot"
        for tag, tau in (("raw", 1.0), ("scaled", None)):
            w = table.weights(queries, temperature=tau).astype(np.float64)  # (m, n)
            # ‖diag(w) − w wᵀ‖_F² = Σ w² − 2 Σ w³ + (Σ w²)²
            s2, s3 = (w**2).sum(1), (w**3).sum(1)  # (m,)
            jac = np.sqrt(np.maximum(s2 - 2 * s3 + s2**2, 0))  # (m,)
            out[f"h_{tag}"].append(float(entropy(w).mean() / np.log(n)))
            out[f"g_{tag}"].append(float(np.median(jac)))
    figures: dict[str, float | int] = {"keys": n}
    for i, d in enumerate(dims):
        figures[f"entropy_unscaled_d{d}"] = out["h_raw"][i]
        figures[f"entropy_scaled_d{d}"] = out["h_scaled"][i]
        figures[f"grad_unscaled_d{d}"] = out["g_raw"][i]
        figures[f"grad_scaled_d{d}"] = out["g_scaled"][i]
    hs = out["h_scaled"]
    holds = out["h_raw"][-1] < 0.1 * hs[-1] and out["g_raw"][-1] < 0.1 * out["g_scaled"][-1] and max(hs) < 1.5 * min(hs)
    summary = (
        f"entropy/log n at d={dims[-1]}: {fmt(out['h_raw'][-1])} unscaled vs "
        f"{fmt(hs[-1])} scaled (d={dims[0]}: {fmt(hs[0])})"
    )
    plots = {"dims": np.array(dims), **{k: np.array(v) for k, v in out.items()}}
    return Intuition(
        "sqrt-d",
        "Without 1/√d scaling the weights saturate as d grows (entropy → 0, gradients vanish); with it they do not.",
        figures,
        holds,
        summary,
        plots,
    )


def _additive_lookup(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, w_q: np.ndarray, w_k: np.ndarray, u: np.ndarray
) -> np.ndarray:
    """Bahdanau attention: score_ij = u · tanh(q_i W_q + k_j W_k), then softmax and blend."""
    qa, ka = q @ w_q, k @ w_k  # (m, h), (n, h)
    out = np.empty((len(q), v.shape[1]), np.float32)  # (m, d_v)
    for s in range(0, len(q), 8):  # 8 queries at a time bounds the (8, n, h) tensor
        hidden = np.tanh(qa[s : s + 8, None, :] + ka[None, :, :])  # (b, n, h)  the network, b × n times
        scores = hidden @ u  # (b, n)
        out[s : s + 8] = softmax(scores, axis=1) @ v  # (b, d_v)
    return out


@experiment
def dot_vs_additive(*, seed: int = 0, sizes: tuple[int, ...] = (256, 1024, 4096)) -> Intuition:
    """Dot-product scoring is cheaper than additive (Bahdanau) scoring.

    Additive attention scores each (query, key) pair with a small network,
    u·tanh(q W_q + k W_k): the tanh layer runs m × n times. Dot-product attention
    projects the m queries and n keys once and scores them all with one matrix
    product (a BLAS GEMM), here through SoftTable. Both are timed (best of 3) for
    64 queries, hidden width 64 and n keys as n grows, on one BLAS thread when
    threadpoolctl is installed (small GEMMs on a busy machine are otherwise
    dominated by thread hand-offs). Holds when the additive lookup is slower than
    the dot-product lookup at the largest n.

    Examples
    --------
    >>> r = dot_vs_additive(sizes=(64, 128))
    >>> sorted(k for k in r.figures if k.startswith("ratio"))
    ['ratio_n128', 'ratio_n64']
    >>> r.holds == (r.figures["ratio_n128"] > 1)
    True
    """
    rng = np.random.default_rng(seed)
    m, d, h, d_v = 64, 64, 64, 16
    w_q, w_k = (rng.standard_normal((d, h)).astype(np.float32) / np.sqrt(d) for _ in range(2))
    u = rng.standard_normal(h).astype(np.float32) / np.sqrt(h)  # (h,)
    t_add, t_dot = [], []
    with one_blas_thread() as threads:
        for n in sizes:
            t_a, t_d = _time_pair(rng, n, m, d, d_v, w_q, w_k, u)
            t_add.append(t_a)
            t_dot.append(t_d)
    ratios = [a / b for a, b in zip(t_add, t_dot)]
    figures: dict[str, float | int | str] = {"queries": m, "hidden": h, "blas_threads": threads}
    for n, a, b, r in zip(sizes, t_add, t_dot, ratios):
        figures[f"additive_ms_n{n}"] = 1e3 * a
        figures[f"dot_ms_n{n}"] = 1e3 * b
        figures[f"ratio_n{n}"] = r
    holds = ratios[-1] > 1
    summary = f"additive / dot time: {fmt(ratios[0])}× at n={sizes[0]}, {fmt(ratios[-1])}× at n={sizes[-1]}"
    plots = {"sizes": np.array(sizes), "t_add": np.array(t_add), "t_dot": np.array(t_dot)}
    return Intuition(
        "dot-vs-additive",
        "Dot-product scoring (one matrix product) is cheaper than additive scoring (a network run m × n times).",
        figures,
        holds,
        summary,
        plots,
    )


def _time_pair(
    rng: np.random.Generator, n: int, m: int, d: int, d_v: int, w_q: np.ndarray, w_k: np.ndarray, u: np.ndarray
) -> tuple[float, float]:
    """Best-of-3 seconds of the additive and of the dot-product lookup, for n keys."""
    q = rng.standard_normal((m, d)).astype(np.float32)  # (m, d)
    k = rng.standard_normal((n, d)).astype(np.float32)  # (n, d)
    v = rng.standard_normal((n, d_v)).astype(np.float32)  # (n, d_v)

    def dot() -> np.ndarray:
        table = SoftTable(k @ w_k, v)  # project the n keys once: (n, h)
        return table.lookup(q @ w_q)  # project the m queries, one GEMM: (m, d_v)

    best = {}
    for name, fn in (("dot", dot), ("add", lambda: _additive_lookup(q, k, v, w_q, w_k, u))):
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t0)
        best[name] = min(runs)
    return best["add"], best["dot"]


@experiment
def approximate_select(*, seed: int = 0) -> Intuition:
    """A soft table answers "SELECT price WHERE name ≈ q" as a weighted blend.

    When one row matches the query clearly, the blend is essentially that row's
    price: a good answer. When the query sits between two rows with very
    different prices (say "apple" the fruit and "Apple" the laptop), the blend is
    an average that matches neither row: a misleading answer. The effective number
    of rows attended, 1/Σw², tells the two cases apart. Measured on 20 products
    with random unit name vectors and log-normal prices (cosine table, τ = 0.05).
    Holds when clear queries have a median relative error below 5%, ambiguous
    ones (the normalised midpoint of two rows whose prices differ by at least 3×)
    have a median error above 25% against the nearer of the two prices, and the
    median 1/Σw² is below 1.5 for clear queries and above 1.5 for ambiguous ones.

    Examples
    --------
    >>> r = approximate_select()
    >>> r.holds, r.figures["median_rel_error_clear"] < 0.05
    (True, True)
    """
    rng = np.random.default_rng(seed)
    n, d = 20, 32
    names = rng.standard_normal((n, d))  # (n, d)
    names /= np.linalg.norm(names, axis=1, keepdims=True)
    prices = np.exp(rng.normal(3.0, 1.5, size=n))  # (n,)
    table = SoftTable(
        names.astype(np.float32), prices[:, None].astype(np.float32), ids=[f"p{i}" for i in range(n)], metric="cosine"
    )
    clear_q = names + 0.15 * rng.standard_normal((n, d)) / np.sqrt(d)  # (n, d)  near one row each
    soft_clear = table.lookup(clear_q)[:, 0].astype(np.float64)  # (n,)
    err_clear = np.abs(soft_clear - prices) / prices  # (n,)
    neff_clear = 1 / (table.weights(clear_q).astype(np.float64) ** 2).sum(1)  # (n,)
    pairs = [
        (i, j) for i in range(n) for j in range(i + 1, n) if max(prices[i], prices[j]) >= 3 * min(prices[i], prices[j])
    ]
    pairs = [pairs[i] for i in rng.choice(len(pairs), size=min(20, len(pairs)), replace=False)]
    a, b = np.array(pairs).T  # (p,), (p,)
    amb_q = names[a] + names[b]  # (p, d)  the cosine table normalises it
    soft_amb = table.lookup(amb_q)[:, 0].astype(np.float64)  # (p,)
    nearest = np.minimum(np.abs(soft_amb - prices[a]) / prices[a], np.abs(soft_amb - prices[b]) / prices[b])
    neff_amb = 1 / (table.weights(amb_q).astype(np.float64) ** 2).sum(1)  # (p,)
    figures = {
        "median_rel_error_clear": float(np.median(err_clear)),
        "median_rel_error_ambiguous": float(np.median(nearest)),
        "median_rows_attended_clear": float(np.median(neff_clear)),
        "median_rows_attended_ambiguous": float(np.median(neff_amb)),
        "products": n,
        "ambiguous_queries": len(pairs),
    }
    holds = (
        figures["median_rel_error_clear"] < 0.05
        and figures["median_rel_error_ambiguous"] > 0.25
        and figures["median_rows_attended_clear"] < 1.5 < figures["median_rows_attended_ambiguous"]
    )
    summary = (
        f"median error {figures['median_rel_error_clear']:.1%} clear vs "
        f"{figures['median_rel_error_ambiguous']:.0%} ambiguous; rows attended "
        f"{fmt(figures['median_rows_attended_clear'])} vs {fmt(figures['median_rows_attended_ambiguous'])}"
    )
    k = int(np.argmax(np.abs(np.log(prices[a] / prices[b]))))  # the most misleading pair, for the plot
    plots = {
        "pair": (f"p{a[k]}", f"p{b[k]}"),
        "pair_prices": (float(prices[a[k]]), float(prices[b[k]])),
        "blend": float(soft_amb[k]),
        "clear_id": "p0",
        "clear_price": float(prices[0]),
        "clear_blend": float(soft_clear[0]),
    }
    return Intuition(
        "approximate-select",
        "A soft table answers SELECT price WHERE name ≈ q as a "
        "weighted blend: good for a clear match, misleading between two rows.",
        figures,
        holds,
        summary,
        plots,
    )
