"""The explanation view: a readable "soft SELECT" behind one query.

One query, one encode, one pass of the query plan (:mod:`softdb.engine._plan`): the top
rows with their full-table weights, the entropy and effective number of rows of
the weights, and the soft and hard answers, side by side in the same space (the
projected values in projected mode).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from softdb.engine._plan import Ask
from softdb.render._html import snippet
from softdb.table._match import NEAR_UNIFORM, near_uniform, weak_match, weak_rule

if TYPE_CHECKING:  # pragma: no cover
    from softdb.table._table import SoftTable

__all__ = ["WEAK_MATCH_COSINE", "Explanation", "explain", "snippet", "weight_stats"]

#: Below this cosine, even the best hit is called a weak match. Measured with all-MiniLM-L6-v2
#: (benchmarks/weak_match_threshold.py): no related query (0 of 320, SciFact and stdlib) has a
#: best hit below 0.3, while 94% of unrelated ones do (median best hit 0.21).
WEAK_MATCH_COSINE = 0.3


@dataclass(frozen=True)
class Explanation:
    """Why a query got its answer.

    With ``head=h`` (a table with several heads), everything is that one head's: its
    weights, hits (scores are the head's raw scores), entropy, and its soft and hard
    answers in its own value space (before W_O).

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
    soft, hard : ndarray of shape (d_v,), or (d_out,) in projected mode
        The soft answer (weighted average of the values) and the hard one (the
        best row's value); in projected mode both are in the projected value
        space (with several heads, the hard answer is each head's best row).
    soft_nearest : id
        Among the rows shown, the one whose value (projected, in projected mode)
        is closest (cosine) to the soft answer.
    soft_hard_cosine : float
        Cosine between the soft and the hard answer (1 = the blend is the top row).
    projected : bool
        The table is in projected mode: ``soft`` and ``hard`` are projected values.
    taus, lse_at : tuples of float
        Extra temperatures asked for (``explain(..., taus=...)``) and the full-table
        log-sum-exp at each, from the same pass: a hit's weight at τ' is
        exp(score / τ' − lse(τ')) exactly (what the HTML explorer's slider uses).
    no_match : bool
        No row matches the query (a BM25 query with no term the table knows): no hits, zero answers.
    weak_match : bool
        Even the best hit is weak (the rule of :func:`softdb.table._match.weak_match`).
    near_uniform : bool
        τ makes the best row weigh at most 10% more than 1/n: the weights say nothing.
    suggested_temperature : float or None
        With ``near_uniform``, a τ that would separate the rows (see
        :func:`softdb.table._match.near_uniform`).
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
    projected: bool = False
    taus: tuple = ()
    lse_at: tuple = ()
    blocks: tuple = ()  # block tables: (name, weight) of each block
    block_scores: tuple = ()  # block tables: per hit, each block's raw score (score = Σ weight · raw)
    head: int | None = None  # explain(..., head=h): the weights, hits and answers of head h alone
    no_match: bool = False
    no_terms: bool = False  # the query holds no term the table's sparse keys know
    weak_match: bool = False
    near_uniform: bool = False
    suggested_temperature: float | None = None

    def _repr_html_(self) -> str:
        from softdb.render import explanation_html

        return explanation_html(self)

    def to_html(self, path: Any = None) -> str:
        """The explorer as one self-contained HTML page (inline CSS/JS/SVG, works offline).

        With ``path``, also writes it there. See :mod:`softdb.render`.
        """
        from softdb.render import explanation_html, write_html

        page = explanation_html(self, standalone=True)
        if path is not None:
            write_html(path, page)
        return page

    def __str__(self) -> str:
        head = "" if self.head is None else f"  (head {self.head})"
        if self.no_match:
            return "\n".join(
                [
                    f"query: {self.query}{head}",
                    "",
                    "no match: no row matches this query (it holds no term the table knows, or every row is "
                    "masked); no hits, and the soft and hard answers are zeros",
                ]
            )
        lines = [f"query: {self.query}{head}", "", f"{'rank':>4}  {'id':<34} {'score':>7} {'weight':>7}  payload"]
        for r, (i, s, w, p) in enumerate(zip(self.ids, self.scores, self.weights, self.payloads), 1):
            bar = "█" * round(w * 20)
            lines.append(f"{r:>4}  {str(i)[:34]:<34} {s:>7.3f} {w:>7.3f}  {bar} {snippet(p, 50)}")
            if self.block_scores and i is not None:
                lines.append(
                    f"{'':>6}{'':<34} = "
                    + " + ".join(
                        (f"{raw * bw:.3g} {name}" if bw == 1 else f"{bw:.3g} × {raw:.3g} {name}")
                        for (name, bw), raw in zip(self.blocks, self.block_scores[r - 1])
                    )
                )
        lines += [
            "",
            f"temperature {self.temperature:g}: the top {len(self.ids)} rows hold {self.covered:.1%} of the weight",
            f"entropy of the weights: {self.entropy:.3f} nats; effective number of rows attended "
            f"1/Σw² = {self.effective_rows:.1f}",
            f"hard answer: {self.ids[0]} (the best row)",
        ]
        space = " (projected values)" if self.projected else ""
        if self.soft.size <= 8:
            fmt = lambda v: "[" + ", ".join(f"{x:.3g}" for x in v) + "]"  # noqa: E731
            lines.append(f"soft answer{space}: {fmt(self.soft)}  vs hard value {fmt(self.hard)}")
        else:
            lines.append(
                f"soft answer{space}: a blend of {self.effective_rows:.1f} rows; nearest shown row "
                f"{self.soft_nearest}, cosine {self.soft_hard_cosine:.3f} to the hard answer"
            )
        lines += notes_of(self)
        return "\n".join(lines)


def notes_of(e: Any) -> list[str]:
    """The warnings of an explanation (or of a search record's figures): near-uniform weights, weak match."""
    out = []
    if e.near_uniform:
        hint = (
            f"; try temperature={e.suggested_temperature:.3g}, where the best row would weigh about as much as the rest"
            if e.suggested_temperature is not None
            else "; every row scores the same, so no temperature separates them"
        )
        out.append(
            f"near-uniform weights: at τ = {e.temperature:g} every weight is within {NEAR_UNIFORM:.0%} of "
            f"uniform at the top (the best row weighs at most {1 + NEAR_UNIFORM:g}/n){hint}"
        )
    if e.weak_match:
        out.append("weak match: even the best hit scores low; the table may hold nothing on this query")
    return out


def explain(
    table: Any,
    query: Any,
    k: int = 5,
    *,
    temperature: float | None = None,
    taus: tuple = (),
    head: int | None = None,
    where: Any = None,
) -> Explanation:
    """Explain one query: top rows with scores and weights, entropy, soft vs hard.

    One encode and one pass over the table (per head), whatever is shown.

    Parameters
    ----------
    table : SoftTable
    query : str or array_like of shape (d,)
        A string needs a table built with ``SoftTable.from_texts``.
    k : int
        Rows to show (at most the table's size).
    temperature : float, optional
    taus : tuple of float, optional
        Extra temperatures: the log-sum-exp at each comes from the same pass
        (plain or one-head tables, or with ``head``).
    head : int, optional
        Explain one head of a table with several (0 <= head < heads): its own
        weights, hits and answers. Default: all heads (weights are their mean,
        answers concatenated, then W_O if the projection has one).
    where : dict or str, optional
        A filter on the payloads (as in ``search``): weights are over the rows that pass.

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
    >>> from softdb import Projection
    >>> t2 = SoftTable(np.eye(2), ids=["x", "y"], temperature=1.0, projection=Projection(2, heads=2))
    >>> [round(w, 3) for w in explain(t2, [1.0, 0.0], k=2, head=1).weights]  # head 1 reads dim 1 only
    [0.5, 0.5]
    """
    if not isinstance(query, str):
        q = np.asarray(query)
        if q.ndim != 1:
            raise ValueError(f"explain takes one query of shape (d,), got shape {q.shape}; hint: explain one at a time")
    k = min(k, len(table)) if len(table) else k
    taus = tuple(float(t) for t in taus)
    ask = Ask(soft=True, hard=True, lse=True, stats=True, taus=taus, head=head)
    p = table._answer(query, ask, temperature=temperature, k=k, where=where)
    hits = p.hits()  # (k,) each
    a = p.answers
    soft, hard = a.soft[0], a.hard[0]  # (d_out,), (d_out,)
    hv = p.hit_values(hits.rows).astype(np.float64)  # (k, d_out)  values of the shown rows
    hv /= np.maximum(np.linalg.norm(hv, axis=1, keepdims=True), 1e-30)
    sn = soft / max(float(np.linalg.norm(soft)), 1e-30)
    hn = hard / max(float(np.linalg.norm(hard)), 1e-30)
    nearest = hits.ids[int(np.argmax(hv @ sn))]
    blocks: tuple = ()
    parts: tuple = ()
    if table.key_kind == "blocks":  # each block's share of each hit's score
        blocks = tuple(zip(_block_names(table), table.block_weights))
        found = np.atleast_1d(hits.rows)[np.atleast_1d(hits.rows) >= 0]
        parts = tuple(tuple(float(x) for x in row) for row in table.block_scores(query, found))
    pays = [None] * k if hits.payloads is None else list(hits.payloads)
    no_match = bool(hits.no_match)
    best = None if no_match else float(hits.scores[0])
    no_terms = p.no_terms is not None and bool(p.no_terms[0])
    uniform = near_uniform(float(hits.weights[0]), len(table), p.tau)
    e = Explanation(
        query=query if isinstance(query, str) else np.array2string(np.asarray(query), precision=3, threshold=8),
        ids=list(hits.ids),
        scores=[float(s) for s in hits.scores],
        weights=[float(x) for x in hits.weights],
        payloads=pays,
        temperature=p.tau,
        entropy=float(a.entropy[0]),
        effective_rows=float(a.effective_rows[0]),
        covered=float(hits.weights.sum()),
        soft=soft,
        hard=hard,
        soft_nearest=nearest,
        soft_hard_cosine=float(sn @ hn),
        projected=p.state.projection is not None,
        taus=taus,
        lse_at=tuple(float(x) for x in a.lse_at[0]) if taus else (),
        blocks=blocks,
        block_scores=parts,
        head=head,
        no_match=no_match,
        no_terms=no_terms,
        weak_match=weak_match(weak_rule(table), best, no_terms, WEAK_MATCH_COSINE),
        near_uniform=uniform.near_uniform,
        suggested_temperature=uniform.suggested_temperature,
    )
    object.__setattr__(e, "_source", (table, query))  # lets a view compute its slider grid later
    return e


def _block_names(table: SoftTable) -> list[str]:
    """ "dense" / "bm25" for a hybrid text table, else each block's kind and index."""
    from softdb.text._hybrid import HybridEncoder

    if isinstance(table.encoder, HybridEncoder):
        return ["dense", "bm25"]
    import scipy.sparse as sp

    return [f"{'sparse' if sp.issparse(k) else 'dense'}{i}" for i, k in enumerate(table.keys)]


def weight_stats(
    table: Any, queries: Any, *, temperature: float | None = None, max_cells: int = 1 << 22, where: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Entropy and effective number of rows of each query's full-table weights.

    One streaming pass of the query plan (memory O(m × chunk)); with several heads
    the mean of softmaxes needs the dense weights, so those are computed for a few
    queries at a time, at most ``max_cells`` floats.

    Parameters
    ----------
    table : SoftTable
    queries : array_like of shape (m, d)
    temperature : float, optional
    max_cells : int
        Queries per batch × rows, at most (tables with several heads).
    where : dict or str, optional
        A filter on the payloads: the weights over the rows that pass.

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
    import scipy.sparse as sp

    blocks = (
        isinstance(queries, list | tuple) and bool(queries) and all(sp.issparse(b) or np.ndim(b) == 2 for b in queries)
    )  # one query matrix per key block
    q = queries if blocks or sp.issparse(queries) else np.asarray(queries)
    proj = table.projection
    m = q[0].shape[0] if blocks else q.shape[0]
    step = m if proj is None or proj.heads == 1 else max(1, min(m, max_cells // max(len(table), 1)))
    entropy = np.empty(m, np.float64)  # (m,)
    effective = np.empty(m, np.float64)  # (m,)
    for start in range(0, m, max(step, 1)):
        part = [x[start : start + step] for x in q] if blocks else q[start : start + step]
        a = table._answer(part, Ask(stats=True), temperature=temperature, where=where).answers
        entropy[start : start + step] = a.entropy  # (b,)
        effective[start : start + step] = a.effective_rows  # (b,)
    return entropy, effective
