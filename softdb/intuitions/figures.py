"""One PNG figure per experiment (matplotlib, imported lazily: ``pip install "softdb[plot]"``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from softdb import plot
from softdb.intuitions._result import Intuition

__all__ = ["draw", "save_figures"]


def _one_hot(fig: Any, r: Intuition) -> None:
    p, ax = r.plots, fig.subplots()
    floor = 1e-17  # exact zeros cannot sit on a log axis
    ax.loglog(p["taus"], np.maximum(p["to_hard"], floor), marker="o", label="max |soft − hard lookup|")
    ax.loglog(p["taus"], np.maximum(p["to_mean"], floor), marker="s", label="max |soft − mean of values|")
    ax.set_xlabel("temperature τ")
    ax.set_ylabel(f"distance (zeros drawn at {floor:g})")
    ax.set_title("Soft lookup: hard lookup as τ → 0, mean of the values as τ → ∞")
    ax.legend()


def _pair(
    fig: Any,
    r: Intuition,
    left: str,
    right: str,
    titles: tuple[str, str],
    labels: Any,
    col_labels: Any = None,
    xlabel: str = "row (key)",
    ylabel: str = "query",
) -> None:
    axes = fig.subplots(1, 2)
    for ax, key, title in zip(axes, (left, right), titles):
        plot.heatmap(
            r.plots[key],
            row_labels=labels,
            col_labels=labels if col_labels is None else col_labels,
            ax=ax,
            title=title,
            xlabel=xlabel,
            ylabel=ylabel,
        )


def _qk(fig: Any, r: Intuition) -> None:
    f = r.figures
    _pair(
        fig,
        r,
        "separate",
        "tied",
        (
            f"separate W_Q, W_K: {f['accuracy_separate']:.0%} find successor",
            f"tied W_Q = W_K: {f['accuracy_tied']:.0%}",
        ),
        r.plots["labels"],
        xlabel="key token (a→b→c→a)",
        ylabel="query token",
    )
    fig.suptitle("Directed 3-cycles: queries and keys must differ")


def _self_attention(fig: Any, r: Intuition) -> None:
    f = r.figures
    _pair(
        fig,
        r,
        "plain",
        "learned",
        (
            "no projection: the pronoun attends to itself",
            f"learned W_Q, W_K: {f['pronoun_to_referent_learned']:.0%} find the referent",
        ),
        r.plots["queries"],
        col_labels=r.plots["positions"],
        xlabel="word of the same sentence",
        ylabel="pronoun query (noun 1 / noun 2)",
    )
    fig.suptitle("Held-out sentences “the N1 VERB a N2 because PRONOUN was ADJ” (MiniLM word embeddings)")


def _sqrt_d(fig: Any, r: Intuition) -> None:
    p = r.plots
    a1, a2 = fig.subplots(1, 2)
    for ax, key, ylabel in ((a1, "h", "entropy / log n"), (a2, "g", "median ‖∂w/∂s‖_F")):
        ax.semilogx(p["dims"], p[f"{key}_raw"], marker="o", label="scores q·k (τ = 1)")
        ax.semilogx(p["dims"], p[f"{key}_scaled"], marker="s", label="scores q·k / √d")
        ax.set_xlabel("dimension d")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.legend()
    a1.set_title("Entropy of the weights")
    a2.set_title("Gradient reaching the scores")
    fig.suptitle("Without √d scaling the softmax saturates as d grows")


def _dot_additive(fig: Any, r: Intuition) -> None:
    p, ax = r.plots, fig.subplots()
    ax.loglog(p["sizes"], 1e3 * p["t_add"], marker="o", label="additive: u·tanh(qW_q + kW_k), m × n times")
    ax.loglog(p["sizes"], 1e3 * p["t_dot"], marker="s", label="dot product: one GEMM (SoftTable)")
    for n, a, d in zip(p["sizes"], p["t_add"], p["t_dot"]):
        ax.annotate(
            f"{a / d:.0f}× slower", (n, 1e3 * a), textcoords="offset points", xytext=(0, -14), ha="center", fontsize=9
        )
    ax.set_xlabel("rows n (64 queries, width 64)")
    ax.set_ylabel("time per lookup (ms, best of 3)")
    ax.set_title("Dot-product vs additive scoring")
    ax.legend()


def _keys_values(fig: Any, r: Intuition) -> None:
    f = r.figures
    _pair(
        fig,
        r,
        "weights",
        "weights_content",
        (
            f"K = content + position: {f['accuracy_separate']:.0%} right",
            f"K = content only: {f['accuracy_content_keys']:.0%} right",
        ),
        r.plots["labels"],
        col_labels=r.plots["columns"],
        xlabel="row (slot)",
        ylabel="query: position of slot",
    )
    fig.suptitle("Query by position: keys need the position, values need only the content")


def _multi_head(fig: Any, r: Intuition) -> None:
    f = r.figures
    ax = fig.subplots()
    errs = [f["relative_error_one_head"], f["relative_error_two_heads"]]
    ax.bar([0, 1], errs, color=["tab:red", "tab:green"], width=0.5)
    ax.axhline(
        f["one_head_error_floor"],
        color="black",
        linestyle="--",
        label=f"floor for one head: targets outside their best {f['content_dim']}-dim subspace",
    )
    ax.set_yscale("log")
    ax.set_xticks([0, 1], ["1 head (d_k = 64)", "2 heads (d_k = 2 × 32)"])
    ax.set_xlabel("attention layer fitted with loss='values' (32 tokens, values of width 8)")
    ax.set_ylabel("relative error ‖answer − target‖² / ‖target‖²")
    for i, e in enumerate(errs):
        ax.annotate(f"{e:.2g}", (i, e), ha="center", va="bottom")
    ax.set_title("Return the previous and the next token's content at once (fitted)")
    ax.legend(loc="upper right", fontsize=8)


def _self_cross(fig: Any, r: Intuition) -> None:
    p = r.plots
    a1, a2 = fig.subplots(1, 2)
    plot.heatmap(
        p["self"],
        row_labels=p["french"],
        col_labels=p["french"],
        ax=a1,
        title="self-attention: Q, K, V = French",
        xlabel="key (French)",
        ylabel="query (French)",
    )
    plot.heatmap(
        p["cross"],
        row_labels=p["french"],
        col_labels=p["english"],
        ax=a2,
        title="cross-attention: Q = French, K = V = English",
        xlabel="key (English)",
        ylabel="query (French)",
    )
    fig.suptitle("Self- vs cross-attention: the cross weights align the translation")


def _causal(fig: Any, r: Intuition) -> None:
    plot.heatmap(
        r.plots["weights"],
        row_labels=r.plots["labels"],
        col_labels=r.plots["labels"],
        ax=fig.subplots(),
        title="Causal mask: position t sees only positions ≤ t",
        xlabel="key position",
        ylabel="query position",
        annotate=False,
    )


def _search(fig: Any, r: Intuition) -> None:
    p = r.plots
    a1, a2 = fig.subplots(1, 2)
    plot.temperature_sweep(
        p["table"], p["q"], k=5, ax=a1, temperatures=np.logspace(-3, 0, 25).tolist(), title=f"query: “{p['query']}”"
    )
    a2.loglog(p["taus"], p["l1"], marker="o")
    a2.set_xlabel("temperature τ")
    a2.set_ylabel("mean L1(soft module mix, top hit's module)")
    a2.set_title(f"Soft → hard top hit ({r.figures['queries']} queries)")
    fig.suptitle(f"Searching {r.figures['rows']} stdlib docstrings with all-MiniLM-L6-v2")


def _select(fig: Any, r: Intuition) -> None:
    p, ax = r.plots, fig.subplots()
    names = [f"clear: {p['clear_id']}", "soft answer", f"{p['pair'][0]}", f"{p['pair'][1]}", "soft answer"]
    vals = [p["clear_price"], p["clear_blend"], *p["pair_prices"], p["blend"]]
    colors = ["tab:blue", "tab:green", "tab:blue", "tab:blue", "tab:red"]
    ax.bar(range(5), vals, color=colors)
    ax.axvline(1.5, color="grey", linestyle=":")
    ax.set_xticks(range(5), names)
    ax.set_ylabel("price")
    ax.set_xlabel("matching rows (blue) and the soft answer, a weighted blend (green: good, red: misleading)")
    ax.set_title("SELECT price WHERE name ≈ q: clear match (left) vs query between two rows (right)")
    for i, v in enumerate(vals):
        ax.annotate(f"{v:.1f}", (i, v), ha="center", va="bottom")


def _heads(fig: Any, r: Intuition) -> None:
    grid = np.asarray(r.plots["grid"])  # (layers, heads)
    plot.heatmap(
        grid,
        row_labels=[f"L{i}" for i in range(grid.shape[0])],
        col_labels=[f"H{j}" for j in range(grid.shape[1])],
        ax=fig.subplots(),
        title=f"{r.name}: {r.plots['what']}, per head of the model",
        xlabel="head",
        ylabel="layer",
        annotate=True,
    )


_DRAW: dict[str, tuple[Callable[[Any, Intuition], None], tuple[float, float]]] = {
    "one-hot": (_one_hot, (7, 4.5)),
    "qk-differ": (_qk, (12, 5)),
    "self-attention": (_self_attention, (13, 5.5)),
    "sqrt-d": (_sqrt_d, (11, 4.5)),
    "dot-vs-additive": (_dot_additive, (7, 4.5)),
    "keys-values": (_keys_values, (13, 5.5)),
    "multi-head": (_multi_head, (7.5, 4.5)),
    "self-vs-cross": (_self_cross, (11, 4.5)),
    "causal": (_causal, (7, 5.5)),
    "search-engine": (_search, (13, 5)),
    "approximate-select": (_select, (9, 4.5)),
    "heads-hard": (_heads, (10, 5)),
    "heads-position": (_heads, (10, 5)),
    "heads-sink": (_heads, (10, 5)),
    "heads-asymmetric": (_heads, (10, 5)),
}


def draw(result: Intuition) -> Any:
    """The matplotlib Figure of one experiment's result (not attached to pyplot).

    Examples
    --------
    >>> from softdb.intuitions import causal
    >>> fig = draw(causal())
    >>> fig.axes[0].get_xlabel()
    'key position'
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(plot._HINT) from exc
    fn, size = _DRAW[result.name]
    fig = Figure(figsize=size, layout="constrained")
    fn(fig, result)
    return fig


def save_figures(results: Iterable[Intuition], directory: str | os.PathLike[str]) -> list[Path]:
    """Write ``<name>.png`` for each result into ``directory`` (created if needed).

    Returns
    -------
    list of Path
        The files written.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for r in results:
        path = out / f"{r.name}.png"
        draw(r).savefig(path, dpi=110)
        written.append(path)
    return written
