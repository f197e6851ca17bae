"""The explorer's table side: explain one query and ask its pass for the slider grid.

The page itself is rendered below the table, by :mod:`softdb.render._explorer`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from softdb.render._grid import grid_taus, has_slider

if TYPE_CHECKING:  # pragma: no cover
    from softdb.table._explain import Explanation
    from softdb.table._table import SoftTable

__all__ = ["explain_view"]


def explain_view(
    table: SoftTable, query: Any, k: int = 10, *, temperature: float | None = None, where: Any = None
) -> Explanation:
    """Explain one query and precompute its slider grid: everything the explorer shows.

    Parameters
    ----------
    table : SoftTable
    query : str or array_like of shape (d,)
        A string is encoded once, with the table's encoder.
    k : int
        Hits to show (at most the table's size).
    temperature : float, optional
        τ0, the explained temperature; default the table's.
    where : dict or str, optional
        A filter on the payloads (``SoftTable.search``'s ``where=``).

    Returns
    -------
    Explanation
        With its temperature grid attached (see :func:`softdb.views.explanation_grid`).

    Examples
    --------
    >>> import numpy as np
    >>> from softdb import SoftTable
    >>> from softdb.views import explanation_grid
    >>> t = SoftTable(np.eye(3, dtype=np.float32), ids=["a", "b", "c"], temperature=0.5)
    >>> e = explain_view(t, [1.0, 0.5, 0.0], k=2)
    >>> g = explanation_grid(e)
    >>> e.ids, float(g.temperatures[g.base])
    (['a', 'b'], 0.5)
    """
    from softdb.table._explain import explain

    label = query if isinstance(query, str) else None
    if isinstance(query, str):
        if table.encoder is None:
            raise TypeError(
                "string queries need a table built from texts (SoftTable.from_texts), which "
                "knows its encoder; this table has none; hint: pass an encoded query"
            )
        if getattr(table, "key_kind", "dense") == "dense":  # sparse and block queries stay text: explain encodes
            query = table.encoder.encode([query])[0]  # (d,)  one encode for every answer below
    tau0 = table.temperature if temperature is None else float(temperature)
    taus = grid_taus(tau0) if has_slider(table) else ()
    e = explain(
        table, query, k=k, temperature=temperature, taus=taus, where=where
    )  # one pass: hits, answers and the grid
    if label is not None:
        object.__setattr__(e, "query", label)
    return e
