"""Per-query partial states of the kernel's reductions, with an exact, associative merge.

The kernel (:func:`softdb.engine._kernel.run`) leaves one :class:`KernelState` per batch of
m queries and per run over some rows. Rows are *global*: a run over a part of a
table (a shard, a memory-mapped slice) passes its first row as ``offset`` and
reports global row numbers. Two states of the same queries over disjoint rows
merge into the state of their union::

    whole = merge(run(part_a), run(part_b))       # = run(part_a + part_b)
    answers = finalize(whole)                     # KernelResult

and ``merge`` is commutative and associative, so parts may be merged in any
grouping. Hard and top-k merges are exact (ties go to the lowest global row, as in
one run); soft merges are exact up to float rounding (the online-softmax rescale).

Every state is a small dataclass of plain numpy arrays (and floats): picklable,
cheap to send over a network (issue 13 ships them from Dask workers). Scores are
kept in the units the kernel compared them in (``KernelState.score_scale`` turns
them into raw scores), so a merge ranks exactly as one run would.

State fields (m queries, k hits, d_v value width, g extra temperatures)
------------------------------------------------------------------------
:class:`SoftState` (online softmax over the logits ``l = score / τ``)
    ``mx`` (m,) running max (a shift, not necessarily the max: the kernel's fast
    path fixes it at 0), ``se`` (m,) Σ exp(l − mx), ``o`` (m, d_v) or None
    Σ exp(l − mx)·v, ``allowed`` (m,) bool: some row was allowed (unmasked),
    optional ``ent`` (m,) Σ exp(l − mx)·(l − mx) and ``sq`` (m,) Σ exp(l − mx)²
    (entropy and effective number of rows of the weights).
:class:`HardState`
    ``score`` (m,) best score (kernel units), ``row`` (m,) int64 global row, -1 = none.
:class:`TopKState`
    ``scores`` (m, k) descending (kernel units), ``rows`` (m, k) int64 global,
    -1 / -inf = none. Its log-sum-exp (for full-table weights) is the
    ``soft`` state of the same :class:`KernelState`.
:class:`KernelState`
    ``soft``, ``hard``, ``top`` (each None unless asked for), ``grid``: a tuple of
    g SoftStates (lse only) at extra temperatures, ``score_scale``: raw score =
    kernel score × score_scale, and ``scale`` = 1 / τ.

Examples
--------
>>> import numpy as np
>>> from softdb.engine._kernel import run
>>> from softdb.engine._scorers import DenseScorer
>>> K = np.array([[1.0], [3.0], [2.0], [3.0]], np.float32)
>>> q = np.ones((1, 1), np.float32)
>>> a = run(DenseScorer(K[:2]), q, k=2, hard=True)
>>> b = run(DenseScorer(K[2:]), q, k=2, hard=True, offset=2)
>>> r = finalize(merge(b, a))
>>> r.top_rows.tolist(), int(r.best_row[0])  # the tie 3 = 3 goes to the lowest row
([[1, 3]], 1)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import reduce
from typing import TypeVar

import numpy as np

from softdb import _checks

__all__ = ["HardState", "KernelResult", "KernelState", "SoftState", "TopKState", "finalize", "merge"]

T = TypeVar("T")
R = TypeVar("R")


def _opt(a: T | None, b: T | None, f: Callable[[T, T], R]) -> R | None:
    """``f(a, b)``, or None when both are None (a reduction neither state holds)."""
    if a is not None and b is not None:
        return f(a, b)
    if a is not None or b is not None:
        raise ValueError(
            "cannot merge states that hold different reductions; hint: run every part with the same options"
        )
    return None


@dataclass
class SoftState:
    """Online-softmax state of m queries over some rows (see the module docstring)."""

    mx: np.ndarray  # (m,)  shift of the sums below
    se: np.ndarray  # (m,)  Σ exp(l - mx)
    o: np.ndarray | None = None  # (m, d_v)  Σ exp(l - mx) v
    allowed: np.ndarray | None = None  # (m,) bool  some row allowed
    ent: np.ndarray | None = None  # (m,)  Σ exp(l - mx) (l - mx)
    sq: np.ndarray | None = None  # (m,)  Σ exp(l - mx)²

    @property
    def lse(self) -> np.ndarray:
        """log Σ exp(l) over the rows seen: (m,), -inf where there were none."""
        with np.errstate(divide="ignore"):
            return np.where(self.se == 0, -np.inf, self.mx + np.log(self.se)).astype(self.se.dtype)  # (m,)

    def merge(self, other: SoftState) -> SoftState:
        """The state over the rows of both (exact up to float rounding)."""
        new = np.maximum(self.mx, other.mx)  # (m,)
        shift = np.where(new == -np.inf, 0, new).astype(self.mx.dtype)  # (m,)  both empty: 0
        with np.errstate(invalid="ignore", over="ignore"):
            a, b = np.exp(self.mx - shift), np.exp(other.mx - shift)  # (m,) each; 0 for an empty side
        out = SoftState(new, a * self.se + b * other.se)
        out.o = _opt(self.o, other.o, lambda x, y: a[:, None] * x + b[:, None] * y)  # (m, d_v)
        out.allowed = _opt(self.allowed, other.allowed, np.logical_or)
        out.sq = _opt(self.sq, other.sq, lambda x, y: a * a * x + b * b * y)
        if _opt(self.ent, other.ent, lambda x, y: True):
            with np.errstate(invalid="ignore"):  # rebase Σ e (l - mx) onto the new shift
                ea = np.where(self.se == 0, 0, a * (self.ent + (self.mx - shift) * self.se))  # (m,)
                eb = np.where(other.se == 0, 0, b * (other.ent + (other.mx - shift) * other.se))  # (m,)
            out.ent = (ea + eb).astype(self.se.dtype)
        return out


@dataclass
class HardState:
    """Best score and global row of m queries (ties: lowest row)."""

    score: np.ndarray  # (m,)  kernel units; -inf = none
    row: np.ndarray  # (m,) int64  -1 = none

    def merge(self, other: HardState) -> HardState:
        take = (other.score > self.score) | (
            (other.score == self.score) & (other.row >= 0) & ((self.row < 0) | (other.row < self.row))
        )  # (m,)
        return HardState(np.where(take, other.score, self.score), np.where(take, other.row, self.row))  # (m,) each


@dataclass
class TopKState:
    """The k best (score, global row) of m queries, descending, ties to the lowest row."""

    scores: np.ndarray  # (m, k)  kernel units; -inf = none
    rows: np.ndarray  # (m, k) int64  -1 = none

    def merge(self, other: TopKState) -> TopKState:
        k = self.scores.shape[1]
        s = np.concatenate([self.scores, other.scores], axis=1)  # (m, 2k)
        r = np.concatenate([self.rows, other.rows], axis=1)  # (m, 2k)
        r_key = np.where(r < 0, np.iinfo(np.int64).max, r)  # (m, 2k)  empty slots last
        order = np.lexsort((r_key, -s), axis=1)[:, :k]  # (m, k)  score desc, then row asc
        return TopKState(np.take_along_axis(s, order, 1), np.take_along_axis(r, order, 1))  # (m, k) each


@dataclass
class KernelState:
    """Everything one kernel run keeps for m queries; see the module docstring."""

    soft: SoftState | None = None
    hard: HardState | None = None
    top: TopKState | None = None
    grid: tuple = ()  # g × SoftState: log-sum-exp at extra temperatures
    score_scale: float = 1.0  # raw score = kernel score × score_scale
    scale: float = 1.0  # 1 / τ of ``soft``
    grid_scales: tuple = field(default=())  # g × (1 / τ_j)

    def merge(self, other: KernelState) -> KernelState:
        """The state over the rows of both runs (same queries and options, disjoint rows)."""
        if (self.score_scale, self.scale, self.grid_scales) != (other.score_scale, other.scale, other.grid_scales):
            raise ValueError(
                f"cannot merge states of different temperatures (1/τ {self.scale} vs {other.scale}, "
                f"grid {self.grid_scales} vs {other.grid_scales}); hint: run every part with the same τ"
            )
        if len(self.grid) != len(other.grid):
            raise ValueError(
                f"cannot merge states with {len(self.grid)} and {len(other.grid)} extra "
                "temperatures; hint: run every part with the same options"
            )
        return replace(
            self,
            soft=_opt(self.soft, other.soft, SoftState.merge),
            hard=_opt(self.hard, other.hard, HardState.merge),
            top=_opt(self.top, other.top, TopKState.merge),
            grid=tuple(a.merge(b) for a, b in zip(self.grid, other.grid)),
        )


def merge(*states: KernelState) -> KernelState:
    """Merge the states of runs over disjoint rows (any number, any order)."""
    return reduce(KernelState.merge, states)


@dataclass
class KernelResult:
    """Answers of one run (fields not asked for are None)."""

    out: np.ndarray | None = None  # (m, d_v) soft answer
    lse: np.ndarray | None = None  # (m,) log Σ exp(score / τ) over allowed rows
    best_row: np.ndarray | None = None  # (m,) int64, -1 = no match
    best_score: np.ndarray | None = None  # (m,) raw scores
    top_rows: np.ndarray | None = None  # (m, k) int64, -1 = no match
    top_scores: np.ndarray | None = None  # (m, k) raw scores, descending
    lse_grid: np.ndarray | None = None  # (m, g) log-sum-exp at the extra temperatures
    entropy: np.ndarray | None = None  # (m,) nats of the weights; 0 for no match
    effective_rows: np.ndarray | None = None  # (m,) 1 / Σ w²; 0 for no match


def finalize(state: KernelState) -> KernelResult:
    """Turn a (merged) state into answers; raises if every allowed score / τ underflowed."""
    res = KernelResult()
    soft = state.soft
    if soft is not None:
        empty = soft.se == 0  # (m,)  no allowed row (or every exp underflowed)
        if soft.allowed is not None and (empty & soft.allowed).any():
            raise _checks.scores_underflowed(1.0 / state.scale, soft.se.dtype)
        res.lse = soft.lse  # (m,)
        denom = np.where(empty, 1, soft.se)  # (m,)
        if soft.o is not None:
            res.out = soft.o / denom[:, None]  # (m, d_v)  zeros for no match
        if soft.ent is not None and soft.sq is not None:  # kept together (``stats``)
            with np.errstate(divide="ignore"):
                h = np.log(denom) - soft.ent / denom  # (m,)  H = log Σe - Σ e (l - mx) / Σe
            res.entropy = np.where(empty, 0, np.maximum(h, 0)).astype(np.float64)  # (m,)
            res.effective_rows = np.where(empty, 0, denom.astype(np.float64) ** 2 / np.where(empty, 1, soft.sq)).astype(
                np.float64
            )
    if state.grid:
        res.lse_grid = np.stack([g.lse for g in state.grid], axis=1)  # (m, g)
    unscale = state.score_scale
    if state.hard is not None:
        res.best_row = state.hard.row
        res.best_score = state.hard.score * state.hard.score.dtype.type(unscale)
    if state.top is not None:
        res.top_rows = state.top.rows
        res.top_scores = state.top.scores * state.top.scores.dtype.type(unscale)
    return res
