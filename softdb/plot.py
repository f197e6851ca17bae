"""Pictures of soft lookups: weight heatmaps and temperature sweeps (matplotlib, imported lazily).

Install the extra with ``pip install "softdb[plot]"``. Every function draws on
the Axes it is given (``ax=``) or on a new figure, and returns the Axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

    from softdb.table._table import SoftTable

__all__ = ["heatmap", "temperature_sweep", "weights"]

_HINT = 'softdb.plot needs matplotlib; install it with: pip install "softdb[plot]"'
_MAX_TICKS = 40  # beyond this many rows or columns, tick labels are thinned


def _new_axes(ax: Axes | None, size: tuple[float, float]) -> Axes:
    """``ax`` itself, or the Axes of a new pyplot figure; ImportError with the hint if matplotlib is missing."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(_HINT) from exc
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=size, layout="constrained")
    return ax


def _short(label: Any, width: int = 24) -> str:
    s = str(label).replace("\n", " ")
    return s if len(s) <= width else s[: width - 1] + "…"


def _ticks(n: int) -> np.ndarray:
    step = max(1, int(np.ceil(n / _MAX_TICKS)))
    return np.arange(0, n, step)


def heatmap(
    w: Any,
    *,
    row_labels: Sequence[Any] | None = None,
    col_labels: Sequence[Any] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    xlabel: str = "row (key)",
    ylabel: str = "query",
    annotate: bool | None = None,
    vmax: float | None = 1.0,
    cmap: str = "viridis",
) -> Axes:
    """Draw a matrix of weights with labelled rows and columns, and a colour bar.

    Parameters
    ----------
    w : array_like of shape (m, n)
        Weights (queries × rows), or any non-negative matrix.
    row_labels, col_labels : sequence, optional
        Tick labels (default: indices); long labels are shortened.
    ax : matplotlib Axes, optional
        Where to draw; default a new figure.
    title, xlabel, ylabel : str, optional
    annotate : bool, optional
        Write each weight in its cell; default when the matrix has at most 12 × 12 cells.
    vmax : float or None
        Top of the colour scale (1 by default, so pictures compare; None: the data's max).
    cmap : str

    Returns
    -------
    matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> ax = heatmap([[0.9, 0.1], [0.5, 0.5]], row_labels=["q1", "q2"], col_labels=["a", "b"])
    >>> [t.get_text() for t in ax.get_xticklabels()]
    ['a', 'b']
    """
    w = np.atleast_2d(np.asarray(w, dtype=np.float64))  # (m, n)
    if w.ndim != 2:
        raise ValueError(f"w must be a 2-D matrix of weights, got shape {w.shape}")
    m, n = w.shape
    for labels, count, what in ((row_labels, m, "row_labels"), (col_labels, n, "col_labels")):
        if labels is not None and len(labels) != count:
            raise ValueError(
                f"{what} has {len(labels)} labels but w has {count} "
                f"{'rows' if what == 'row_labels' else 'columns'} (w has shape {w.shape})"
            )
    ax = _new_axes(ax, (min(2 + 0.45 * n, 14), min(1.5 + 0.4 * m, 10)))
    img = ax.imshow(w, cmap=cmap, vmin=0.0, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.figure.colorbar(img, ax=ax, label="weight", shrink=0.9)
    rows, cols = _ticks(m), _ticks(n)
    ax.set_yticks(rows, [_short(row_labels[i]) if row_labels is not None else str(i) for i in rows])
    ax.set_xticks(
        cols,
        [_short(col_labels[j]) if col_labels is not None else str(j) for j in cols],
        rotation=60 if n > 4 else 0,
        ha="right" if n > 4 else "center",
    )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if annotate if annotate is not None else (m <= 12 and n <= 12):
        top = vmax if vmax is not None else (w.max() or 1.0)
        for i in range(m):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    f"{w[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black" if w[i, j] > 0.6 * top else "white",
                )
    return ax


def weights(
    table: SoftTable,
    queries: Any,
    *,
    ax: Axes | None = None,
    query_labels: Sequence[Any] | None = None,
    temperature: float | None = None,
    mask: Any = None,
    title: str | None = None,
    annotate: bool | None = None,
) -> Axes:
    """Heatmap of a table's attention weights: queries down, row ids across.

    Works on any table (plain or projected; with several heads, the mean weight).

    Parameters
    ----------
    table : SoftTable
    queries : array_like of shape (m, d) or (d,), or str / list of str
        String queries need a table built with :meth:`SoftTable.from_texts`;
        they also label the rows of the picture.
    ax : matplotlib Axes, optional
    query_labels : sequence, optional
        Default: the query strings, else ``q0, q1, …``.
    temperature : float, optional
        τ of the weights; default the table's.
    mask : array_like of bool, optional
        As in :meth:`SoftTable.weights`.
    title : str, optional
        Default "attention weights (τ = …)".
    annotate : bool, optional
        As in :func:`heatmap`.

    Returns
    -------
    matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from softdb import SoftTable
    >>> t = SoftTable(np.eye(3, dtype=np.float32), ids=["a", "b", "c"], temperature=0.5)
    >>> ax = weights(t, np.eye(3)[:2])
    >>> [t.get_text() for t in ax.get_yticklabels()], ax.get_xlabel()
    (['q0', 'q1'], 'row id')
    """
    w = np.atleast_2d(table.weights(queries, temperature=temperature, mask=mask))  # (m, n)
    if query_labels is None:
        if isinstance(queries, str):
            query_labels = [queries]
        elif isinstance(queries, list | tuple) and queries and all(isinstance(q, str) for q in queries):
            query_labels = list(queries)
        else:
            query_labels = [f"q{i}" for i in range(len(w))]
    tau = table.temperature if temperature is None else temperature
    return heatmap(
        w,
        row_labels=query_labels,
        col_labels=table.ids,
        ax=ax,
        annotate=annotate,
        title=title or f"attention weights (τ = {tau:g})",
        xlabel="row id",
        ylabel="query",
    )


def temperature_sweep(
    table: SoftTable,
    query: Any,
    *,
    temperatures: Sequence[float] | None = None,
    k: int = 5,
    ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """Plot how the weights of a query's top rows change with the temperature τ.

    As τ → 0 the best row's weight goes to 1 (the hard lookup); as τ grows all
    weights approach 1/n (the mean).

    Parameters
    ----------
    table : SoftTable
    query : array_like of shape (d,), or str
    temperatures : sequence of float, optional
        Default 25 values log-spaced over four decades around the table's τ.
    k : int
        Rows to follow: the top k at the table's τ.
    ax : matplotlib Axes, optional
    title : str, optional

    Returns
    -------
    matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from softdb import SoftTable
    >>> t = SoftTable(np.eye(3, dtype=np.float32), ids=["a", "b", "c"])
    >>> ax = temperature_sweep(t, [1.0, 0.5, 0.0], k=2)
    >>> ax.get_legend_handles_labels()[1]
    ['a', 'b', '1/n = 0.33']
    """
    base = table.temperature
    taus = (
        np.logspace(np.log10(base) - 2, np.log10(base) + 2, 25)
        if temperatures is None
        else np.asarray(temperatures, dtype=np.float64)
    )
    from softdb.engine._plan import Ask

    proj = table.projection
    if proj is None or proj.heads == 1:  # one pass: the top k at the table's τ, and lse at every τ
        p = table._answer(query, Ask(taus=tuple(float(t) for t in taus)), k=k)
        top = p.hits()
        w = np.stack([p.hit_weights_at(i)[0] for i in range(len(taus))])  # (n_tau, k)
    else:  # the mean of several heads' softmaxes is no function of one log-sum-exp: dense weights
        top = table.search(query, k=k)
        rows = np.asarray(top.rows).ravel()  # (k,)
        w = np.array([np.atleast_2d(table.weights(query, temperature=t))[0, rows] for t in taus])  # (n_tau, k)
    ax = _new_axes(ax, (6.5, 4))
    for j, row_id in enumerate(np.asarray(top.ids).ravel()):
        ax.plot(taus, w[:, j], marker="o", markersize=3, label=_short(row_id, 32))
    ax.axhline(1 / len(table), color="grey", linestyle=":", linewidth=1, label=f"1/n = {1 / len(table):.2g}")
    ax.axvline(base, color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("temperature τ (dashed: the table's τ)")
    ax.set_ylabel("weight")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title or f"weights of the top {k} rows against τ")
    ax.legend(fontsize=8, loc="best")
    return ax
