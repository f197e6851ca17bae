"""A projection's weights as immutable versions, and the projected rows a table caches.

:class:`Params` is one version of W_Q, W_K, W_V (+ the optional biases b_Q, b_K, b_V
and output projection W_O, b_O) and log τ; :class:`ProjectedRows` is a rows version
projected with one ``Params``, split per head, in the table's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

__all__ = ["Params", "ProjectedRows", "check_split", "frozen", "init_matrix", "positive_int"]


@dataclass(frozen=True, eq=False)
class Params:
    """One immutable version of a projection's weights; setters swap in a new one."""

    W_Q: np.ndarray  # (d, d_k)  read-only float64
    W_K: np.ndarray  # (d, d_k)  `W_Q` itself when tied
    W_V: np.ndarray | None  # (d_v, d_out); None until the value width is known
    log_tau: float | None  # None: use the table's τ
    version: int
    b_Q: np.ndarray | None = None  # (d_k,)  read-only float64; None: no bias
    b_K: np.ndarray | None = None  # (d_k,)  `b_Q` itself when tied
    b_V: np.ndarray | None = None  # (d_out,)
    W_O: np.ndarray | None = None  # (d_out, d_o)  output projection; None: the concatenated heads
    b_O: np.ndarray | None = None  # (d_o,)

    def but(self, **changes: Any) -> Params:
        """A new version with some fields changed (the version number as given or +1)."""
        changes.setdefault("version", self.version + 1)
        return replace(self, **changes)


@dataclass(frozen=True, eq=False)
class ProjectedRows:
    """Projected keys and values of one rows version, split per head (table dtype)."""

    params: Params
    keys: tuple  # heads × (n, d_k / heads)  contiguous
    values: tuple  # heads × (n, d_out / heads)  contiguous
    key_norm_max: tuple  # heads × float
    w_q: tuple  # heads × (d, d_k / heads)  in the table's dtype
    b_q: tuple = ()  # heads × (d_k / heads,) in the table's dtype, or heads × None
    w_o: np.ndarray | None = None  # (d_out, d_o)  in the table's dtype
    b_o: np.ndarray | None = None  # (d_o,)  in the table's dtype, or None

    def output(self, x: np.ndarray, found: np.ndarray | None = None) -> np.ndarray:
        """Concatenated head answers (..., d_out) → after W_O (+ b_O): (..., d_o).

        ``found`` (...,) False marks "no match" rows, which stay all zero.
        """
        if self.w_o is None:
            return x
        y = x @ self.w_o  # (..., d_o)
        if self.b_o is not None:
            y += self.b_o
        if found is not None:
            y[~found] = 0
        return y.astype(x.dtype, copy=False)


def frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64, copy=True)
    a.flags.writeable = False
    return a


def init_matrix(rows: int, cols: int, init: str, rng: np.random.Generator) -> np.ndarray:
    if init == "identity":
        return np.eye(rows, cols)  # (rows, cols)  identity on the first min(rows, cols) dims
    return rng.standard_normal((rows, cols)) / np.sqrt(rows)  # (rows, cols)  keeps norms ≈


def positive_int(x: Any, name: str) -> int:
    if isinstance(x, bool) or not isinstance(x, int | np.integer) or x < 1:
        raise ValueError(f"{name} must be a positive int, got {x!r}")
    return int(x)


def check_split(width: int, heads: int, name: str) -> None:
    if width % heads:
        raise ValueError(
            f"{name}={width} does not split evenly into heads={heads}; "
            f"hint: choose {name} as a multiple of heads, e.g. {name}={heads * max(1, width // heads)}"
        )
