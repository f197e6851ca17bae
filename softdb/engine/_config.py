"""How one kernel pass runs: the reductions it keeps and the way it walks the rows.

:func:`softdb.engine._kernel.run` decides this once per pass, from what was asked and
what the bound scorer offers, as a :class:`PassConfig`; the pass
(:class:`softdb.engine._pass.Pass`) and its running state
(:class:`softdb.engine._reductions.Reducer`) only read it.

Examples
--------
>>> import numpy as np
>>> cfg = PassConfig(dtype=np.dtype(np.float32), step=1024, hard=True, k=5)
>>> cfg.soft, cfg.k, cfg.outer
(False, 5, 0)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["PassConfig"]


class PassConfig(NamedTuple):
    """One kernel pass over some rows of a bound scorer, decided once (immutable).

    A NamedTuple rather than a frozen dataclass: it is built on every pass, and a frozen
    dataclass's 18 ``object.__setattr__`` calls cost ~2.6 µs against ~1 µs, a few per cent
    of a one-query lookup over a small table.
    """

    dtype: np.dtype
    """Float dtype of the scores and of every running state."""
    step: int
    """Rows scored per chunk (per cache-sized chunk in a bounded blend)."""
    soft: bool = False
    """Keep the online softmax: the log-sum-exp (and the soft answer, ``dense``, ``stats``)."""
    hard: bool = False
    """Keep each query's best score and row (ties: the lowest row)."""
    k: int = 0
    """Keep each query's k best scores and rows (0: none)."""
    dense: np.ndarray | None = None
    """(m, n): receives every scaled score (with ``soft``); over the scorer's own rows."""
    mask: np.ndarray | None = None
    """Bool (n,) or (m, n): True where a row is allowed; over the scorer's own rows."""
    stats: bool = False
    """With ``soft``, also keep Σ e·(l − mx) and Σ e² (entropy, effective number of rows)."""
    grid: tuple[float, ...] = ()
    """Factors from the kernel's score units to each extra temperature's logits."""
    fast: bool = False
    """|score / τ| <= FAST_BOUND and no ``stats``: the soft reduction keeps no running max."""
    post_scale: float | None = None
    """An extreme 1 / τ, applied to each chunk's scores instead of to the queries (or None)."""
    d_v: int | None = None
    """Width of the values the chunk loop blends into the soft answer (None: no blend there)."""
    offset: int = 0
    """Global row of the scorer's row 0: hard and top-k report ``offset + row``."""
    one: bool = False
    """One query, scored by the scorer's ``scores_one`` (numpy's loop, no BLAS call)."""
    blend: bool = False
    """One query with a soft answer: each chunk blended while its values are in cache."""
    by_row: bool = False
    """Scores laid out by row, (c, m), for top-k (with the log-sum-exp at most)."""
    outer: int = 0
    """A bounded blend: rows per reduction chunk (``step`` rows per blended chunk); 0: none."""
    fused: bool = False
    """One query's soft answer by :mod:`softdb.engine._fused`'s compiled online softmax (any score scale)."""
