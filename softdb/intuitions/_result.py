"""The result type of every experiment, and small helpers they share."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

__all__ = ["Intuition", "entropy", "experiment", "fmt", "one_blas_thread"]

F = TypeVar("F", bound=Callable[..., "Intuition"])

Figure = float | int | str


@dataclass(frozen=True)
class Intuition:
    """What one experiment measured, and whether the claim held.

    Attributes
    ----------
    name : str
        Short registry name, e.g. ``"one-hot"``.
    claim : str
        The claim in one plain sentence.
    figures : dict of str to float, int or str
        The measured numbers (JSON-able).
    holds : bool
        The verdict, computed from ``figures`` by a rule stated in the
        experiment's docstring.
    summary : str
        The headline measurement in one short line (what the CLI prints).
    plots : dict
        Arrays and labels for :mod:`softdb.intuitions.figures` (not compared,
        not printed, not in :meth:`to_dict`).
    """

    name: str
    claim: str
    figures: Mapping[str, Figure]
    holds: bool
    summary: str
    plots: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        # numpy scalars (np.True_, np.float64) become plain bool / float / int: JSON-able, and
        # ``holds is True`` works.
        figs = {str(k): v.item() if isinstance(v, np.generic) else v for k, v in self.figures.items()}
        bad = {k: type(v).__name__ for k, v in figs.items() if type(v) not in (float, int, str)}
        if bad:
            raise TypeError(f"figures must be float, int or str; got {bad}")
        object.__setattr__(self, "figures", figs)
        object.__setattr__(self, "holds", bool(self.holds))

    def _repr_html_(self) -> str:
        from softdb.render import intuition_html

        return intuition_html(self)

    def to_dict(self) -> dict[str, Any]:
        """``{"name", "claim", "figures", "holds"}``, ready for ``json.dumps``.

        Examples
        --------
        >>> Intuition("x", "a claim", {"n": 3}, True, "n = 3").to_dict()
        {'name': 'x', 'claim': 'a claim', 'figures': {'n': 3}, 'holds': True}
        """
        return {"name": self.name, "claim": self.claim, "figures": dict(self.figures), "holds": bool(self.holds)}


def entropy(w: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row of weights; 0·log 0 counts as 0.

    Examples
    --------
    >>> entropy(np.array([[0.5, 0.5], [1.0, 0.0]])).round(4)
    array([0.6931, 0.    ])
    """
    w = np.asarray(w, dtype=np.float64)  # (m, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(w > 0, -w * np.log(w), 0.0)  # (m, n)
    return terms.sum(axis=-1)  # (m,)


def fmt(x: float) -> str:
    """Four significant digits, as the CLI prints figures.

    Examples
    --------
    >>> fmt(0.000123456), fmt(12.0), fmt(1234567.0)
    ('0.0001235', '12', '1.235e+06')
    """
    return f"{x:.4g}"


@contextlib.contextmanager
def one_blas_thread() -> Iterator[str]:
    """Run BLAS on one thread (if threadpoolctl is installed); yields "1" or "default".

    The experiments multiply small matrices. On a busy machine a multi-threaded
    BLAS spends most of such a product handing work between threads (we
    measured 64×64 by 64×256 products taking 15-30 ms on two threads under load,
    30 µs on one), so one thread is both faster and steadier.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        yield "default"
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield "1"


def experiment(fn: F) -> F:
    """Mark ``fn`` as an experiment: it runs with BLAS on one thread."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Intuition:
        with one_blas_thread():
            return fn(*args, **kwargs)

    return run  # type: ignore[return-value]
