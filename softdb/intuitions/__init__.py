"""The textbook claims about attention, as runnable experiments with measured verdicts.

Each function runs one small, seeded experiment on :class:`softdb.SoftTable` and
returns an :class:`Intuition`: the measured figures and whether the claim held,
decided from those figures. :data:`REGISTRY` maps short names to the functions,
in the order of the claims; :func:`run` runs some or all of them.

Examples
--------
>>> from softdb import intuitions
>>> r = intuitions.REGISTRY["causal"]()
>>> r.name, r.holds
('causal', True)
>>> list(intuitions.REGISTRY)[:3]
['one-hot', 'qk-differ', 'self-attention']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from softdb.intuitions._basics import approximate_select, dot_vs_additive, one_hot, sqrt_d
from softdb.intuitions._heads import asymmetric_heads, hard_heads, positional_heads, sink_heads
from softdb.intuitions._language import search_engine, self_attention
from softdb.intuitions._projected import multi_head, qk_differ
from softdb.intuitions._result import Intuition
from softdb.intuitions._sequences import causal, keys_values, self_vs_cross

__all__ = [
    "LANGUAGE",
    "REAL_HEADS",
    "REGISTRY",
    "Intuition",
    "approximate_select",
    "asymmetric_heads",
    "causal",
    "dot_vs_additive",
    "hard_heads",
    "keys_values",
    "multi_head",
    "one_hot",
    "positional_heads",
    "qk_differ",
    "run",
    "search_engine",
    "self_attention",
    "self_vs_cross",
    "sink_heads",
    "sqrt_d",
]

#: Short name → experiment, in the order of the claims (1 to 11, then 12 to 15 on a real model's heads).
REGISTRY: dict[str, Callable[..., Intuition]] = {
    "one-hot": one_hot,
    "qk-differ": qk_differ,
    "self-attention": self_attention,
    "sqrt-d": sqrt_d,
    "dot-vs-additive": dot_vs_additive,
    "keys-values": keys_values,
    "multi-head": multi_head,
    "self-vs-cross": self_vs_cross,
    "causal": causal,
    "search-engine": search_engine,
    "approximate-select": approximate_select,
    "heads-hard": hard_heads,
    "heads-position": positional_heads,
    "heads-sink": sink_heads,
    "heads-asymmetric": asymmetric_heads,
}

#: Experiments that use the real sentence encoder (they accept ``encoder=``).
LANGUAGE = frozenset({"self-attention", "search-engine"})

#: Experiments on a real transformer's heads (they accept ``model=``, a local BERT-family folder).
REAL_HEADS = frozenset({"heads-hard", "heads-position", "heads-sink", "heads-asymmetric"})


def run(names: Iterable[str] | None = None, *, encoder: object = None) -> Iterator[Intuition]:
    """Run experiments by name (all of them by default), yielding each result as it finishes.

    Parameters
    ----------
    names : iterable of str, optional
        Keys of :data:`REGISTRY`.
    encoder : optional
        Passed to the language experiments; default ``softdb.text.default_encoder()``.

    Raises
    ------
    KeyError
        For an unknown name (the message lists the valid ones), before anything runs.

    Examples
    --------
    >>> [r.holds for r in run(["one-hot", "causal"])]
    [True, True]
    """
    names = list(REGISTRY) if names is None else list(names)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise KeyError(f"unknown intuition {unknown[0]!r}; valid names: {', '.join(REGISTRY)}")
    for name in names:
        kwargs = {"encoder": encoder} if name in LANGUAGE and encoder is not None else {}
        yield REGISTRY[name](**kwargs)
