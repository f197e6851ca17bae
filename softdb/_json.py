"""Strict JSON for every ``--json`` output: no NaN, no Infinity, ever.

Python's ``json.dumps`` writes ``NaN`` and ``Infinity`` by default, which no strict
JSON parser accepts. Here a non-finite float becomes ``null`` (a metric that does not
exist, e.g. the mean over an empty subset), numpy scalars and arrays become plain
JSON, and anything else unknown is written as its ``str``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

__all__ = ["dumps", "strict"]


def strict(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (recursively).

    Examples
    --------
    >>> strict({"a": float("nan"), "b": [1.5, float("inf")], "c": np.float32(2.0)})
    {'a': None, 'b': [1.5, None], 'c': 2.0}
    """
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return strict(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """Strict JSON text of ``obj`` (see :func:`strict`); ``kwargs`` go to ``json.dumps``.

    Examples
    --------
    >>> dumps({"ndcg@10": float("nan"), "queries": 0})
    '{"ndcg@10": null, "queries": 0}'
    """
    return json.dumps(strict(obj), allow_nan=False, default=str, **kwargs)
