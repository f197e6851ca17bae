"""The temperature slider's grid: the temperatures it snaps to and the full-table log-sum-exp at each.

A view re-weights its hits exactly at any grid temperature τ from one number per τ:
w_j(τ) = exp(s_j / τ − lse(τ)), with lse(τ) = log Σ_j exp(s_j / τ) over the *whole* table.

- :func:`temperature_grid`: the grid of temperatures the sliders snap to.
- :func:`grid_taus`, :func:`grid_from`: the temperatures to ask a pass for, and the
  :class:`TemperatureGrid` built from its answer.
- :func:`grid_log_sum_exp`: that pass, for one query of a table (duck-typed: this layer
  sits below the table and never imports it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from softdb.table._table import SoftTable

__all__ = [
    "OCTAVES",
    "STEPS_PER_OCTAVE",
    "TemperatureGrid",
    "grid_from",
    "grid_log_sum_exp",
    "grid_taus",
    "has_slider",
    "temperature_grid",
]

#: Grid points per doubling of τ: neighbours differ by 2^(1/8) ≈ 9 %.
STEPS_PER_OCTAVE = 8
#: The grid spans τ0 / 2^OCTAVES .. τ0 · 2^OCTAVES (τ0 / 32 .. 32 τ0).
OCTAVES = 5


@dataclass(frozen=True)
class TemperatureGrid:
    """Temperatures a slider snaps to, with the full-table log-sum-exp at each.

    Attributes
    ----------
    temperatures : ndarray of float64, shape (g,)
        τ0 · 2^(i / STEPS_PER_OCTAVE) for i = -OCTAVES·STEPS .. OCTAVES·STEPS, ascending.
    base : int
        Index of τ0 (the explained temperature) in ``temperatures``.
    lse : ndarray of float64, shape (g,)
        log Σ_j exp(s_j / τ) over every row of the table, at each τ.
    lse_half : ndarray of float64, shape (g,)
        The same at τ / 2: Σ_j w_j(τ)² = exp(lse_half − 2 lse), so the effective number
        of rows 1 / Σ w² is exact at every grid point too.
    """

    temperatures: np.ndarray
    base: int
    lse: np.ndarray
    lse_half: np.ndarray

    def effective_rows(self) -> np.ndarray:
        """1 / Σ_j w_j(τ)² at each grid temperature, shape (g,).

        Examples
        --------
        >>> import numpy as np
        >>> g = TemperatureGrid(np.array([1.0]), 0, np.array([np.log(2.0)]), np.array([np.log(2.0)]))
        >>> g.effective_rows()  # two rows of equal score: weights 1/2, 1/2
        array([2.])
        """
        return np.exp(2 * self.lse - self.lse_half)  # (g,)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: ``{"temperatures", "base", "lse", "effective_rows"}``."""
        return {
            "temperatures": [float(t) for t in self.temperatures],
            "base": int(self.base),
            "lse": [float(x) for x in self.lse],
            "effective_rows": [float(x) for x in self.effective_rows()],
        }


def temperature_grid(tau: float) -> np.ndarray:
    """The slider's grid around ``tau``: τ · 2^(i/8) for i = -40..40, shape (81,).

    ``tau`` itself is the middle point, exactly.

    Examples
    --------
    >>> g = temperature_grid(0.05)
    >>> len(g), float(g[40]), bool(np.isclose(g[0], 0.05 / 32)), bool(np.isclose(g[-1], 0.05 * 32))
    (81, 0.05, True, True)
    """
    i = np.arange(-OCTAVES * STEPS_PER_OCTAVE, OCTAVES * STEPS_PER_OCTAVE + 1)  # (g,)
    grid = tau * np.exp2(i / STEPS_PER_OCTAVE)  # (g,)
    grid[OCTAVES * STEPS_PER_OCTAVE] = tau  # exactly τ0, not τ0 · 2^0 rounded
    return grid


def grid_taus(tau: float) -> tuple[float, ...]:
    """The extra temperatures a slider needs from the plan: the grid, then the grid halved (2g values).

    Examples
    --------
    >>> t = grid_taus(0.05)
    >>> len(t), t[40], t[81 + 40]
    (162, 0.05, 0.025)
    """
    grid = temperature_grid(tau)  # (g,)
    return tuple(float(t) for t in grid) + tuple(float(t) / 2 for t in grid)


def grid_from(tau: float, lse_at: Any) -> TemperatureGrid:
    """A :class:`TemperatureGrid` from the plan's log-sum-exp at :func:`grid_taus` (2g values).

    Examples
    --------
    >>> import numpy as np
    >>> g = grid_from(1.0, np.zeros(162))
    >>> g.base, len(g.lse), float(g.effective_rows()[0])
    (40, 81, 1.0)
    """
    temps = temperature_grid(tau)  # (g,)
    lse = np.asarray(lse_at, dtype=np.float64)  # (2g,)
    g = len(temps)
    return TemperatureGrid(temps, OCTAVES * STEPS_PER_OCTAVE, lse[:g], lse[g:])


def has_slider(table: SoftTable) -> bool:
    """Plain and one-head tables: one score per row, so w(τ) = exp(s / τ − lse(τ)) holds.

    Examples
    --------
    >>> import numpy as np
    >>> from softdb import SoftTable
    >>> has_slider(SoftTable(np.eye(2, dtype=np.float32)))
    True
    """
    proj = table.projection
    return len(table) > 0 and (proj is None or int(getattr(proj, "heads", 1)) == 1)


def grid_log_sum_exp(table: SoftTable, query: Any, tau: float | None = None) -> TemperatureGrid | None:
    """The full-table log-sum-exp of one query at every temperature of the slider grid.

    One pass of the query plan (``Ask(lse=True, taus=...)``), with the same float32
    scores a ``search(temperature=τ)`` uses.

    Parameters
    ----------
    table : SoftTable
        A table with several projection heads returns None (a mean of softmaxes has
        no single score per row to re-weight).
    query : str or array_like of shape (d,)
    tau : float, optional
        τ0, the grid's centre; default the table's temperature.

    Returns
    -------
    TemperatureGrid or None

    Examples
    --------
    >>> import numpy as np
    >>> from softdb import SoftTable
    >>> t = SoftTable(np.eye(2, dtype=np.float32), temperature=1.0)
    >>> g = grid_log_sum_exp(t, [1.0, 0.0])
    >>> w = np.exp(1.0 / g.temperatures[g.base] - g.lse[g.base])  # row 0's weight at τ0
    >>> round(float(w), 4) == round(float(t.weights([1.0, 0.0])[0]), 4)
    True
    """
    from softdb.engine._plan import Ask

    if not has_slider(table):
        return None
    tau0 = table.temperature if tau is None else float(tau)
    p = table._answer(query, Ask(lse=True, taus=grid_taus(tau0)), temperature=tau0)
    lse_at = p.answers.lse_at  # (1, 2g)
    assert lse_at is not None  # asked for: Ask(taus=...)
    return grid_from(tau0, lse_at[0])
