"""Learning on a SoftTable: ``fit`` (a projection, or a block table's blend) and ``block_scores``.

``fit`` reads one version of the rows; a projection's weights are written back with
``projection.set_weights``, a blend's (block weights, τ, W_Q of the dense block) by
swapping in a new state under the table's lock.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import scipy.sparse as sp

from softdb.engine._plan import Head
from softdb.table._state import TableState

if TYPE_CHECKING:  # pragma: no cover
    from softdb.learn._blend import BlendFit
    from softdb.learn._fit import FitReport

__all__ = ["Fitting"]


class Fitting:
    """``fit`` and ``block_scores`` of :class:`softdb.SoftTable` (a mixin over its state and lock)."""

    _state: TableState
    _lock: threading.Lock

    def _queries(self, queries: Any, st: TableState) -> tuple[Any, bool]:
        raise NotImplementedError  # softdb.table._table.SoftTable._queries

    def fit(
        self,
        queries: Any,
        targets: Any,
        *,
        loss: str = "rows",
        optimizer: str = "auto",
        max_iter: int = 100,
        reg: float = 0.0,
        validation: tuple[Any, Any] | None = None,
        patience: int = 10,
        batch_size: int = 256,
        learning_rate: float = 0.01,
        seed: int = 0,
        verbose: bool = False,
        learn: Sequence[str] | None = None,
    ) -> FitReport | BlendFit:
        """Fit the table's projection to training queries, in float64 (or a block table's blend).

        Block tables (e.g. hybrid [dense | sparse]) fit their blend instead, with
        :func:`softdb.learn._blend.fit_blend`: ``learn`` ⊆ {"tau", "weights", "q"} (default
        ("tau", "weights"): a handful of parameters; block 0's weight stays fixed),
        ``reg`` (λ of λ‖W_Q − I‖², with "q") and ``max_iter``; the loss is
        −log Σ_{j∈targets} w_j over the whole table. That returns a ``BlendFit``.

        Parameters
        ----------
        queries : array_like of shape (m, d)
            Raw training queries (normalised first when metric="cosine").
        targets : sequence or array_like
            loss="rows": one row id per query, or a list of ids per query; the
            loss is the mean of −log Σ_{j∈targets} w̄_j over the whole table
            (w̄: mean weight over heads). loss="values": (m, d_out) target answers;
            the loss is the mean squared error of the soft lookup.
        loss : {"rows", "values"}
        optimizer : {"auto", "lbfgs", "adam"}
            "lbfgs": full batch, scipy L-BFGS-B. "adam": mini-batches of queries
            (each against the whole table). "auto": L-BFGS up to 2·10⁷ query × row
            scores, else Adam.
        max_iter : int
            L-BFGS iterations or Adam epochs.
        reg : float
            λ of the penalty λ Σ ‖W − W₀‖² towards the starting weights.
        validation : (queries, targets), optional
            Evaluated after every iteration: recall@1 (rows; ties broken by the
            validation loss) or MSE (values). The best weights are kept, and the
            fit stops after ``patience`` iterations without improvement.
        patience : int
        batch_size : int
            Adam mini-batch size (queries).
        learning_rate : float
            Adam step size.
        seed : int
            Seeds Adam's shuffling and the low-rank factors.
        verbose : bool
            Print the loss (and validation metric) of every iteration.

        Returns
        -------
        FitReport, or BlendFit for a block table

        Notes
        -----
        What is learned is set on the projection: ``learn`` (subset of "q", "k",
        "v"; W_V only matters to loss="values"), ``tied``, ``rank`` (low-rank
        update W₀ + A Bᵀ) and ``learn_temperature`` (log τ). The fit reads one
        version of the rows and writes the weights back with
        ``projection.set_weights`` (lookups then re-project the rows).

        Examples
        --------
        >>> from softdb import Projection, SoftTable
        >>> x = np.eye(3, dtype=np.float32)
        >>> t = SoftTable(x, ids=["a", "b", "c"], projection=Projection(3))
        >>> t.search(x, k=1).ids.ravel().tolist()  # identity: each row retrieves itself
        ['a', 'b', 'c']
        >>> report = t.fit(x, ["b", "c", "a"])  # a → b → c → a
        >>> t.search(x, k=1).ids.ravel().tolist(), report.loss_history[-1] < 0.01
        (['b', 'c', 'a'], True)
        """
        if self._state.kind == "blocks":
            return self._fit_blend(
                queries, targets, learn=("tau", "weights") if learn is None else learn, reg=reg, max_iter=max_iter
            )
        if learn is not None:
            raise TypeError(
                "learn= is for block tables; a dense table's projection says what it learns (Projection(d, learn=...))"
            )
        from softdb.learn._fit import as_targets, check_options, fit_arrays

        st = self._state
        proj = st.projection
        if proj is None:
            raise ValueError(
                "this table has no projection to fit; hint: table.projection = Projection(table.dim) "
                "(or SoftTable(..., projection=Projection(d)))"
            )
        check_options(loss, optimizer, max_iter, batch_size, patience, reg)
        rows = st.rows

        def prepare(q: Any, t: Any, what: str) -> tuple[np.ndarray, Any]:
            x = self._queries(q, st)[0].astype(np.float64)  # (m, d)
            if loss == "rows":
                return x, as_targets(t, len(x), rows.index, what)
            y = np.asarray(t, dtype=np.float64)  # (m, d_o)
            d_o = proj.d_o  # the answers' width: W_O's columns, else d_out (a learned, absent W_O starts as I)
            y = y[:, None] if y.ndim == 1 and d_o == 1 else y
            if y.shape != (len(x), d_o):
                raise ValueError(
                    f"{what} must have shape ({len(x)}, {d_o}) (one answer of width "
                    f"{'d_out' if proj.W_O is None else 'd_o'}={d_o} "
                    f"per query), got {y.shape}; hint: loss='values' targets are vectors, loss='rows' takes ids"
                )
            if not np.isfinite(y).all():
                raise ValueError(f"{what} must be finite")
            return x, y

        X, target = prepare(queries, targets, "targets")
        val = None if validation is None else prepare(validation[0], validation[1], "validation targets")
        params = proj.params
        update, report = fit_arrays(
            rows.keys.astype(np.float64),
            rows.values.astype(np.float64) if loss == "values" else None,
            X,
            target,
            params.W_Q,
            params.W_K,
            params.W_V,
            math.log(st.tau(None, params)),
            loss=loss,
            heads=proj.heads,
            tied=proj.tied,
            learn=proj.learn,
            learn_temperature=proj.learn_temperature,
            rank=proj.rank,
            optimizer=optimizer,
            max_iter=max_iter,
            reg=reg,
            validation=val,
            patience=patience,
            batch_size=batch_size,
            learning_rate=learning_rate,
            seed=seed,
            verbose=verbose,
            extras={name: getattr(params, name) for name in ("b_Q", "b_K", "b_V", "W_O", "b_O")},
        )
        proj.set_weights(**update)
        return report

    def _fit_blend(self, queries: Any, targets: Any, *, learn: Sequence[str], reg: float, max_iter: int) -> BlendFit:
        """fit() of a block table: its blend (block weights, τ, W_Q of the dense block)."""
        from softdb.learn._blend import BlendParams, fit_blend
        from softdb.learn._fit import as_targets

        st = self._state
        rows = st.rows
        if not isinstance(rows.keys[0], np.ndarray):
            raise ValueError(
                "fit() of a block table needs a dense first block (its weight stays fixed and "
                "learn='q' fits its W_Q), but block 0 is sparse; hint: put the dense block first"
            )
        q, _ = self._queries(queries, st)  # raw queries: W_Q applies inside the fit
        tgt = as_targets(targets, q.shape[0], rows.index)
        start = BlendParams(cast(tuple, st.block_weights), st.tau(), st.query_w)  # a block table has weights
        X = np.asarray(q[0], np.float64)  # (m, d_0)
        K = np.asarray(rows.keys[0], np.float64)  # (n, d_0)
        res = fit_blend(
            X,
            K,
            list(q[1:]),
            list(st.weighted_keys[1:]),
            tgt,
            start,
            learn=learn,
            reg=float(reg),
            max_iter=int(max_iter),
        )
        with self._lock:
            self._state = self._state.with_(
                block_weights=tuple(res.params.weights), temperature=res.params.temperature, query_w=res.params.W_Q
            )
        return res

    def block_scores(self, query: Any, rows: Any) -> np.ndarray:
        """Each key block's raw score q_b·k_b of one query against some rows: (len(rows), n_blocks).

        A row's score is ``block_scores @ block_weights``; explain shows the parts.

        Examples
        --------
        >>> import scipy.sparse as sp
        >>> from softdb import SoftTable
        >>> t = SoftTable([np.eye(2, dtype=np.float32), sp.csr_matrix(np.array([[0, 4], [2, 0]], np.float32))],
        ...               block_weights=[1.0, 0.5])
        >>> t.block_scores([np.array([1, 0], np.float32), sp.csr_matrix(np.array([[0, 1]], np.float32))], [0, 1])
        array([[1., 4.],
               [0., 0.]])
        """
        st = self._state
        if st.kind != "blocks":
            raise ValueError(f"block_scores needs block keys, but this table's keys are {st.kind}")
        r = st.rows
        q, _ = self._queries(query, st)
        q = Head(r.keys, w_q=st.query_w).project(q)
        idx = np.asarray(rows, np.int64)  # (k,)
        out = np.zeros((len(idx), len(r.keys)))  # (k, n_blocks)
        for b, (qb, kb) in enumerate(zip(q, st.weighted_keys)):
            s = kb[idx] @ qb[:1].T  # (k, 1)
            out[:, b] = (cast(Any, s).toarray() if sp.issparse(s) else np.asarray(s)).ravel()
        return out
