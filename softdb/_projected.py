"""Projected mode of SoftTable: the projection, its cached projected rows, and fitting.

A mixin, so that :mod:`softdb.table` keeps the rows and lookups while this module
keeps what W_Q / W_K / W_V add to them.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _checks

if TYPE_CHECKING:  # pragma: no cover
    from ._fit import FitReport
    from .projection import Projection, _ProjectedRows
    from .table import _Rows

__all__ = ["ProjectedMode"]

#: Default temperature for metric="cosine": all-MiniLM-L6-v2 and most sentence
#: encoders are trained with a contrastive loss at scale 20, i.e. τ = 0.05.
COSINE_TEMPERATURE = 0.05


class ProjectedMode:
    """Projection state and fitting, mixed into :class:`softdb.SoftTable`."""

    _dim: int
    _value_dim: int
    _metric: str
    _temperature: float | None
    _rows: _Rows
    _lock: threading.Lock

    def _init_projection(self, projection: Projection | None) -> None:
        self._projection: Projection | None = None
        self._proj_cache: tuple[_Rows, _ProjectedRows] | None = None
        self._proj_lock = threading.Lock()
        if projection is not None:
            self.projection = projection

    @property
    def projection(self) -> Projection | None:
        """The table's :class:`softdb.Projection`, or None (plain mode).

        Setting it checks the widths (creating W_V for this table's value width
        if the projection has none yet); ``None`` returns to plain mode.

        Examples
        --------
        >>> from softdb import Projection, SoftTable
        >>> t = SoftTable(np.eye(2, dtype=np.float32), [[1.0], [2.0]], temperature=1.0)
        >>> t.projection = Projection(2)
        >>> t.projection.W_V.shape
        (1, 1)
        """
        return self._projection

    @projection.setter
    def projection(self, projection: Projection | None) -> None:
        from .projection import Projection

        if projection is not None:
            if not isinstance(projection, Projection):
                raise TypeError(
                    f"projection must be a softdb.Projection or None, got {type(projection).__name__}; "
                    f"hint: Projection({self._dim})"
                )
            projection._bind(self._dim, self._value_dim)
        with self._lock:
            self._projection = projection
            self._proj_cache = None

    def _snapshot(self) -> tuple[_Rows, _ProjectedRows | None]:
        """One consistent (rows, projected rows) pair; projects at most once per version."""
        rows = self._rows
        proj = self._projection
        if proj is None:
            return rows, None
        params = proj._params
        cache = self._proj_cache
        if cache is not None and cache[0] is rows and cache[1].params is params:
            return rows, cache[1]
        with self._proj_lock:
            cache = self._proj_cache
            if cache is not None and cache[0] is rows and cache[1].params is params:
                return rows, cache[1]
            projected = proj._project_rows(params, rows.keys, rows.values)
            if rows is self._rows and proj is self._projection:
                self._proj_cache = (rows, projected)
        return rows, projected

    def _projected_tau(self, temperature: float | None, params: Any = None) -> float:
        """τ in projected mode: the call's, else the projection's own, else the table's."""
        if temperature is not None:
            return _checks.as_temperature(temperature)
        proj = self._projection
        log_tau = (proj._params if params is None else params).log_tau
        if log_tau is not None:
            return float(np.exp(log_tau))
        if self._temperature is not None:
            return self._temperature
        if self._metric == "cosine":
            return COSINE_TEMPERATURE
        return float(np.sqrt(proj.d_k / proj.heads))

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
    ) -> FitReport:
        """Fit the table's projection to training queries, in float64.

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
        FitReport

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
        from ._fit import fit_table

        return fit_table(self, queries, targets, loss=loss, optimizer=optimizer, max_iter=max_iter,
                         reg=reg, validation=validation, patience=patience, batch_size=batch_size,
                         learning_rate=learning_rate, seed=seed, verbose=verbose)
