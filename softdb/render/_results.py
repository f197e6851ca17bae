"""Results as plain Python: per-query lists of dicts, a pandas DataFrame, strict-JSON payloads."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from softdb.table._table import SearchResult

__all__ = ["PANDAS_HINT", "jsonable", "to_dicts", "to_pandas"]

PANDAS_HINT = 'SearchResult.to_pandas() needs pandas; install it with: pip install "softdb[views]"'


def _hit_lists(res: SearchResult) -> tuple[list[list[dict[str, Any]]], bool]:
    single = np.ndim(res.ids) == 1
    ids = np.atleast_2d(np.asarray(res.ids, dtype=object))  # (m, k)
    scores = np.atleast_2d(res.scores)  # (m, k)
    weights = np.atleast_2d(res.weights)  # (m, k)
    pays = None if res.payloads is None else np.atleast_2d(np.asarray(res.payloads, dtype=object))  # (m, k)
    out = []
    for qi in range(ids.shape[0]):
        hits = []
        for j in range(ids.shape[1]):
            if ids[qi, j] is None:  # no match: the slot past the allowed rows
                continue
            hits.append(
                {
                    "id": ids[qi, j],
                    "score": float(scores[qi, j]),
                    "weight": float(weights[qi, j]),
                    "payload": None if pays is None else pays[qi, j],
                }
            )
        out.append(hits)
    return out, single


def to_dicts(res: SearchResult) -> list:
    """Hits as ``{"id", "score", "weight", "payload"}`` dicts, best first.

    Like sentence-transformers' ``util.semantic_search``: a batch of m queries gives
    a list of m lists; one query (a 1-D result) gives its one list. Slots with no
    match (all rows masked) are left out. Numbers are Python floats.

    Examples
    --------
    >>> import numpy as np
    >>> from softdb import SoftTable
    >>> t = SoftTable(np.eye(2, dtype=np.float32), ids=["x", "y"], payloads=["ex", "why"], temperature=1.0)
    >>> [(h["id"], h["score"], h["payload"]) for h in t.search([1.0, 0.0], k=1).to_dicts()]
    [('x', 1.0, 'ex')]
    >>> len(t.search([[1.0, 0.0], [0.0, 1.0]], k=2).to_dicts())
    2
    """
    lists, single = _hit_lists(res)
    return lists[0] if single else lists


def to_pandas(res: SearchResult) -> Any:
    """Hits as a ``pandas.DataFrame``: one row per hit, columns query, rank, id, score, weight, payload.

    ``query`` is the query's position in the batch (0 for a 1-D result); ``rank``
    starts at 1.

    Raises
    ------
    ImportError
        pandas is not installed (it is the optional extra ``softdb[views]``).

    Examples
    --------
    >>> import numpy as np
    >>> from softdb import SoftTable
    >>> t = SoftTable(np.eye(2, dtype=np.float32), ids=["x", "y"], temperature=1.0)
    >>> t.search([1.0, 0.0], k=2).to_pandas()[["rank", "id"]].values.tolist()
    [[1, 'x'], [2, 'y']]
    """
    try:
        import pandas as pd
    except ImportError:
        raise ImportError(PANDAS_HINT) from None
    lists, _ = _hit_lists(res)
    rows = [{"query": qi, "rank": r, **h} for qi, hits in enumerate(lists) for r, h in enumerate(hits, 1)]
    return pd.DataFrame(rows, columns=["query", "rank", "id", "score", "weight", "payload"])


def jsonable(x: Any) -> Any:
    """A payload (or anything) as strict JSON: non-finite floats become None, others str.

    Examples
    --------
    >>> jsonable({"a": float("nan"), "b": [1, 2.5], "c": object}) == {"a": None, "b": [1, 2.5], "c": "<class 'object'>"}
    True
    """
    if x is None or isinstance(x, (bool, str, int)):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, np.generic):
        return jsonable(x.item())
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    return str(x)
