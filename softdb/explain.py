"""The explanation view: a readable "soft SELECT" behind one query."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .table import SoftTable

__all__ = ["Explanation", "WEAK_MATCH_COSINE", "explain", "snippet", "weight_stats"]

#: Below this cosine, even the best hit is called a weak match (see README, "Weak matches").
WEAK_MATCH_COSINE = 0.3


def snippet(payload: Any, width: int = 60) -> str:
    """One line of a payload: its summary/title/text, shortened to ``width``."""
    if payload is None:
        return ""
    if isinstance(payload, dict):
        for key in ("summary", "title", "text"):
            if payload.get(key):
                payload = payload[key]
                break
    text = " ".join(str(payload).split())
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass(frozen=True)
class Explanation:
    """Why a query got its answer.

    Attributes
    ----------
    ids, scores, weights, payloads : lists of length k
        The top rows (the "soft SELECT"), best first; weights are full-table weights.
    temperature : float
    entropy : float
        Entropy of the weights over the whole table, in nats (0 = one row).
    effective_rows : float
        1 / Σ w²: how many rows the soft answer effectively blends.
    covered : float
        Total weight of the k rows shown.
    soft, hard : ndarray of shape (d_v,)
        The soft answer (weighted average of the values) and the hard one (the
        best row's value).
    soft_nearest : id
        The row whose value is closest (cosine) to the soft answer.
    soft_hard_cosine : float
        Cosine between the soft and the hard answer (1 = the blend is the top row).
    """

    query: str
    ids: list
    scores: list[float]
    weights: list[float]
    payloads: list
    temperature: float
    entropy: float
    effective_rows: float
    covered: float
    soft: np.ndarray
    hard: np.ndarray
    soft_nearest: Any
    soft_hard_cosine: float

    def __str__(self) -> str:
        lines = [f"query: {self.query}", "",
                 f"{'rank':>4}  {'id':<34} {'score':>7} {'weight':>7}  payload"]
        for r, (i, s, w, p) in enumerate(zip(self.ids, self.scores, self.weights, self.payloads), 1):
            bar = "█" * int(round(w * 20))
            lines.append(f"{r:>4}  {str(i)[:34]:<34} {s:>7.3f} {w:>7.3f}  {bar} {snippet(p, 50)}")
        lines += [
            "",
            f"temperature {self.temperature:g}: the top {len(self.ids)} rows hold {self.covered:.1%} of the weight",
            f"entropy of the weights: {self.entropy:.3f} nats; effective number of rows attended "
            f"1/Σw² = {self.effective_rows:.1f}",
            f"hard answer: {self.ids[0]} (the best row)",
        ]
        if self.soft.size <= 8:
            fmt = lambda v: "[" + ", ".join(f"{x:.3g}" for x in v) + "]"  # noqa: E731
            lines.append(f"soft answer: {fmt(self.soft)}  vs hard value {fmt(self.hard)}")
        else:
            lines.append(
                f"soft answer: a blend of {self.effective_rows:.1f} rows; nearest row {self.soft_nearest}, "
                f"cosine {self.soft_hard_cosine:.3f} to the hard answer"
            )
        return "\n".join(lines)


def explain(table: SoftTable, query: Any, k: int = 5, *, temperature: float | None = None) -> Explanation:
    """Explain one query: top rows with scores and weights, entropy, soft vs hard.

    Parameters
    ----------
    table : SoftTable
    query : str or array_like of shape (d,)
        A string needs a table built with ``SoftTable.from_texts``.
    k : int
        Rows to show (at most the table's size).
    temperature : float, optional

    Returns
    -------
    Explanation
        ``print()`` it for the readable table.

    Examples
    --------
    >>> import numpy as np
    >>> from softdb import SoftTable
    >>> t = SoftTable(np.eye(3), [[1.0], [2.0], [3.0]], ids=["a", "b", "c"], temperature=0.5)
    >>> e = explain(t, [1.0, 0.2, 0.0], k=2)
    >>> e.ids, round(e.effective_rows, 2)
    (['a', 'b'], 1.69)
    """
    if not isinstance(query, str):
        q = np.asarray(query)
        if q.ndim != 1:
            raise ValueError(f"explain takes one query of shape (d,), got shape {q.shape}; hint: explain one at a time")
    k = min(k, len(table)) if len(table) else k
    hits = table.search(query, k=k, temperature=temperature)
    w = table.weights(query, temperature=temperature).astype(np.float64)  # (n,)
    nz = w[w > 0]
    entropy = float(-(nz * np.log(nz)).sum())
    soft = table.lookup(query, temperature=temperature)  # (d_v,)
    hard = table.lookup(query, mode="hard")  # (d_v,)
    values = table.values
    vn = values / np.maximum(np.linalg.norm(values, axis=1, keepdims=True), 1e-30)  # (n, d_v)
    sn = soft / max(float(np.linalg.norm(soft)), 1e-30)
    hn = hard / max(float(np.linalg.norm(hard)), 1e-30)
    nearest = table.ids[int(np.argmax(vn @ sn))]
    pays = [None] * k if hits.payloads is None else list(hits.payloads)
    return Explanation(
        query=query if isinstance(query, str) else np.array2string(np.asarray(query), precision=3, threshold=8),
        ids=list(hits.ids), scores=[float(s) for s in hits.scores], weights=[float(x) for x in hits.weights],
        payloads=pays, temperature=table.temperature if temperature is None else float(temperature),
        entropy=entropy, effective_rows=float(1.0 / (w @ w)), covered=float(hits.weights.sum()),
        soft=soft, hard=hard, soft_nearest=nearest, soft_hard_cosine=float(sn @ hn),
    )


def weight_stats(table: SoftTable, queries: Any, *, temperature: float | None = None,
                 max_cells: int = 1 << 22) -> tuple[np.ndarray, np.ndarray]:
    """Entropy and effective number of rows of each query's full-table weights.

    The weights are computed for a few queries at a time, so memory stays at about
    ``max_cells`` floats however many queries there are.

    Parameters
    ----------
    table : SoftTable
    queries : array_like of shape (m, d)
    temperature : float, optional
    max_cells : int
        Queries per batch × rows, at most.

    Returns
    -------
    entropy : ndarray of shape (m,)
        −Σ w log w in nats (0 = all the weight on one row; log n = uniform).
    effective_rows : ndarray of shape (m,)
        1 / Σ w²: how many rows the soft answer effectively blends.

    Examples
    --------
    >>> import numpy as np
    >>> from softdb import SoftTable
    >>> t = SoftTable(np.eye(3), [[1.0], [2.0], [3.0]], temperature=0.5)
    >>> entropy, rows = weight_stats(t, [[1.0, 0.2, 0.0], [0.0, 0.0, 0.0]])
    >>> rows.round(2), bool(np.isclose(entropy[1], np.log(3)))
    (array([1.69, 3.  ]), True)
    """
    q = np.asarray(queries)
    m = len(q)
    step = max(1, min(m, max_cells // max(len(table), 1)))
    entropy = np.empty(m, np.float64)  # (m,)
    effective = np.empty(m, np.float64)  # (m,)
    for start in range(0, m, step):
        w = np.asarray(table.weights(q[start:start + step], temperature=temperature), np.float64)  # (b, n)
        logw = np.log(np.where(w > 0, w, 1.0))  # (b, n); 0 log 0 = 0
        entropy[start:start + step] = -(w * logw).sum(axis=1)  # (b,)
        effective[start:start + step] = 1.0 / (w * w).sum(axis=1)  # (b,)
    return entropy, effective
