"""The chunk loop of one kernel pass over a range of rows (one thread).

:func:`softdb.engine._kernel.run` sets a :class:`Pass` up once (a bound scorer, the
values, a :class:`~softdb.engine._config.PassConfig`) and runs ``Pass.rows`` over one
row range per thread. Each range walks its rows in chunks: the scorer fills a score
buffer, a :class:`~softdb.engine._reductions.Reducer` takes the chunk, and a soft
answer blends the chunk's values. Two loops:

- ``rows``: chunks of scores laid out by query, (m, c) (or by row, (c, m), for top-k);
- ``_bounded_blend``: one query's soft answer when |score / τ| <= FAST_BOUND, which needs
  no running max: each cache-sized chunk is blended while its values are in cache, and
  the reductions run once per big chunk;
- :func:`softdb.engine._fused.online_rows`: one query's soft answer over dense keys, any
  |score / τ|, when the compiled loop is there (``cfg.fused``): it scores, softmaxes and
  blends row by row with a running max, and the reductions run once per big chunk.

Examples
--------
>>> import numpy as np
>>> from softdb.engine._scorers import DenseScorer
>>> bound = DenseScorer(np.eye(3, dtype=np.float32)).bind(np.array([[0, 5, 0]], np.float32))
>>> st = Pass(bound, None, PassConfig(dtype=np.dtype(np.float32), step=2, hard=True)).rows(0, 3)
>>> int(st.hard.row[0])
1
"""

from __future__ import annotations

from typing import Any

import numpy as np

from softdb.engine import _fused
from softdb.engine._config import PassConfig
from softdb.engine._protocols import BoundScorer, is_one_query, is_row_scorer
from softdb.engine._reductions import Reducer
from softdb.engine._scorers import is_sparse
from softdb.engine._states import KernelState

__all__ = ["Pass", "PassConfig"]


class Pass:
    """One kernel pass, set up once; ``rows(a, b)`` runs its chunk loop over rows a..b (one thread).

    Parameters
    ----------
    bound : BoundScorer
        The scorer bound to the pass's m queries.
    values : ndarray or scipy.sparse matrix of shape (n, d_v), optional
        The values of a soft answer.
    cfg : PassConfig
    """

    def __init__(self, bound: BoundScorer, values: Any, cfg: PassConfig) -> None:
        self.bound, self.values, self.cfg = bound, values, cfg
        self.by_row = bound if cfg.by_row and is_row_scorer(bound) else None  # the RowScorer, when by row
        self.one = bound if (cfg.one or cfg.outer) and is_one_query(bound) else None  # the OneQueryScorer

    @np.errstate(over="ignore", invalid="ignore")  # numpy's error state is per thread: set it in each
    def rows(self, a: int, b: int) -> KernelState:
        """The state of rows a..b (local rows of the scorer; reported as ``offset + row``)."""
        cfg = self.cfg
        if cfg.fused and self.one is not None:
            return _fused.online_rows(self.one, self.values, cfg, a, b)
        if cfg.outer:
            return self._bounded_blend(a, b)
        bound, values, step, blend, offset = self.bound, self.values, cfg.step, cfg.blend, cfg.offset
        by_row, one = self.by_row, self.one
        m = bound.m
        st = Reducer(m, cfg)
        buf = np.empty(m * min(step, b - a), st.dt)  # (m·step,)  one score buffer for every chunk
        for start in range(a, b, step):
            stop = min(start + step, b)
            if by_row is not None:
                s = buf[: m * (stop - start)].reshape(stop - start, m)  # (c, m)  contiguous view
                s = by_row.scores_by_row(start, stop, s)  # (c, m)  scores (divided by τ when soft)
                st.reduce_rows(s, start, start + offset)
                continue
            s = buf[: m * (stop - start)].reshape(m, stop - start)  # (m, c)  contiguous view
            s = (
                one.scores_one(start, stop, s) if one is not None else bound.scores(start, stop, s)
            )  # (m, c)  scores (/ τ when soft)
            e = st.reduce(s, start, start + offset)  # (m, c)  exp(s - mx), or None
            if e is None or st.o is None:
                continue
            if blend:
                st.o += np.einsum("c,cd->d", e[0], values[start:stop], out=st.o_chunk[0])  # (1, d_v)  V chunk in cache
            else:
                v = values[start:stop]  # (c, d_v)
                st.o += (v.T @ e.T).T if is_sparse(v) else np.matmul(e, v, out=st.o_chunk)  # (m, d_v)
        return st.state(a, b)

    def _bounded_blend(self, a: int, b: int) -> KernelState:
        """One query, a soft answer, |score / τ| <= FAST_BOUND: o = Σ exp(l_j) v_j with no shift.

        Each cache-sized chunk (``step`` rows, BLEND_CHUNK_BYTES of keys and values) is scored
        into a big chunk's score buffer and blended at once, while its values are in cache;
        the reductions (log-sum-exp, hard, top-k, entropy, grid) then run once per big chunk
        (``outer`` rows), so their fixed cost per call is paid ~outer/step times less often.
        """
        cfg, values, one = self.cfg, self.values, self.one
        assert one is not None, "run() sets a bounded blend up for one-query scorers only"
        step, outer, offset = cfg.step, cfg.outer, cfg.offset
        st = Reducer(1, cfg)
        o = np.zeros(values.shape[1], st.dt)  # (d_v,)  Σ exp(l_j) v_j: shift 0
        buf = np.empty(min(outer, b - a), st.dt)  # (outer,)  scores of one big chunk
        tmp = np.empty_like(o)  # (d_v,)
        ebuf = np.empty(min(step, b - a), st.dt)  # (step,)  exp of one small chunk at a time
        for start in range(a, b, outer):
            stop = min(start + outer, b)
            s = buf[: stop - start].reshape(1, stop - start)  # (1, c)
            for i in range(start, stop, step):
                j = min(i + step, stop)
                si = s[:, i - start : j - start]  # (1, c_i)  view
                one.scores_one(i, j, si)
                st.apply_mask(si, i)
                e = np.exp(si[0], out=ebuf[: j - i])  # (c_i,)  masked: 0
                o += np.einsum("c,cd->d", e, values[i:j], out=tmp)  # (d_v,)  values still in cache
            st.reduce(s, start, start + offset)
        res = st.state(a, b)
        soft = res.soft
        assert soft is not None, "a blend is a soft answer: cfg.soft is set"
        with np.errstate(over="ignore"):
            rebase = np.where(soft.se > 0, np.exp(-soft.mx), 0).astype(st.dt)  # (1,)  Σ e^l v → Σ e^(l-mx) v
        soft.o = (o * rebase)[None, :]  # (1, d_v)
        return res
