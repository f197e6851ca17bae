"""Every head of a real transformer layer as a projected :class:`~softdb.SoftTable`.

A head of layer l reads the token states X that enter the layer (n tokens × hidden):
the keys and the values of its table are X itself, its projection is the head's W_Q,
W_K, W_V (hidden × d_head) with biases, and τ = √d_head. So ``table.weights(X)`` is
the head's attention matrix and ``table.lookup(X)`` its context vectors (before W_O):
``tests/heads/test_exact.py`` checks both against the model to 1e-5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from softdb.heads._model import ModelRun, load, model_attentions
from softdb.learn._projection import Projection
from softdb.table._state import TableState
from softdb.table._table import SoftTable

__all__ = ["Heads", "all_heads", "heads_of_run", "layer_tables", "transformer_heads"]


def _in_range(x: Any, n: int, what: str, whole: str) -> int:
    if isinstance(x, bool) or not isinstance(x, int | np.integer) or not 0 <= x < n:
        raise ValueError(f"{what} must be an int in [0, {n}) ({whole} has {n} {what}s), got {x!r}; hint: count from 0")
    return int(x)


@dataclass(frozen=True, eq=False)
class Heads:
    """All layers × heads of one text, each head a table (from one model run).

    Attributes
    ----------
    tokens : tuple of str
        The text's tokens, special tokens included (e.g. ``("[CLS]", "the", ..., "[SEP]")``).
    tables : tuple of tuple of SoftTable
        ``tables[layer][head]``: keys = values = the states entering the layer.
    layers, heads, d_head : int
    model : str
        The model's name (the bundled default) or folder, for display.

    Examples
    --------
    A plain code block (the real model; ``tests/heads/test_heads.py`` runs the equivalent)::

        h = all_heads("the cat sat on the mat")
        h.layers, h.heads, h.d_head      # (6, 12, 32) for all-MiniLM-L6-v2
        t = h.table(2, 5)                # layer 2, head 5
        t.weights(t.keys)                # (8, 8): the head's attention over the 8 tokens
    """

    tokens: tuple[str, ...]
    tables: tuple[tuple[SoftTable, ...], ...]
    layers: int
    heads: int
    d_head: int
    model: str

    def table(self, layer: int, head: int) -> SoftTable:
        """The table of ``head`` in ``layer`` (both counted from 0; errors name the range)."""
        layer = _in_range(layer, self.layers, "layer", "the model")
        head = _in_range(head, self.heads, "head", "each layer")
        return self.tables[layer][head]


def layer_tables(x: np.ndarray, tokens: tuple[str, ...], weights: Any, heads: int) -> tuple[SoftTable, ...]:
    """One projected table per head over the states ``x`` (n, hidden) that enter a layer.

    Parameters
    ----------
    x : ndarray of shape (n, hidden)
        The layer's input token states (keys = values), float32.
    tokens : tuple of str
        n tokens: ids ``"<position>:<token>"``, payloads ``{"token", "position"}``.
    weights : LayerWeights
        The layer's W_Q, W_K, W_V (hidden, hidden) and biases.
    heads : int

    Returns
    -------
    tuple of SoftTable
        ``heads`` tables sharing one read-only rows version; τ = √d_head.

    Examples
    --------
    >>> from softdb.heads._model import LayerWeights
    >>> rng = np.random.default_rng(0)
    >>> w = LayerWeights(*(rng.standard_normal((4, 4), np.float32) for _ in range(3)), *(np.zeros(4, np.float32),) * 3)
    >>> t = layer_tables(rng.standard_normal((3, 4), np.float32), ("[CLS]", "hi", "[SEP]"), w, heads=2)
    >>> len(t), t[1].ids, t[1].temperature == 2 ** 0.5, t[1].weights(t[1].keys, heads="each").shape
    (2, ('0:[CLS]', '1:hi', '2:[SEP]'), True, (1, 3, 3))
    """
    x = np.ascontiguousarray(x, dtype=np.float32)  # (n, hidden)
    hidden = x.shape[1]
    dh = hidden // heads
    tau = math.sqrt(dh)
    ids = [f"{i}:{t}" for i, t in enumerate(tokens)]
    payloads = [{"token": t, "position": i} for i, t in enumerate(tokens)]
    state = TableState.build(x, None, ids=ids, payloads=payloads, metric="dot", temperature=tau)
    out = []
    for a in range(heads):
        s = slice(a * dh, (a + 1) * dh)
        p = Projection(hidden, dh, dh, d_v=hidden, temperature=tau)
        p.set_weights(
            W_Q=weights.W_Q[:, s],  # (hidden, d_head)
            W_K=weights.W_K[:, s],  # (hidden, d_head)
            W_V=weights.W_V[:, s],  # (hidden, d_head)
            b_Q=weights.b_Q[s],
            b_K=weights.b_K[s],
            b_V=weights.b_V[s],
        )
        t = SoftTable._from_state(state)  # the rows are shared (read-only); each head has its projection
        t.projection = p
        out.append(t)
    return tuple(out)


def heads_of_run(run: ModelRun, index: int = 0, layers: Any = None) -> Heads:
    """Text ``index`` of a model run as :class:`Heads` (its own tokens only: padding never enters).

    ``layers`` (an iterable of layer numbers) builds only those; the others are empty tuples.
    """
    index = _in_range(index, len(run.texts), "text", "the run")
    n = int(run.lengths[index])
    keep = run.mask[index]  # (T,)
    wanted = range(run.layers) if layers is None else set(layers)
    tables = tuple(
        layer_tables(run.hidden_states[layer, index][keep], run.tokens[index], run.weights[layer], run.heads)
        if layer in wanted
        else ()
        for layer in range(run.layers)
    )
    if any(len(t.ids) != n for layer in tables for t in layer):  # pragma: no cover - a broken run
        raise RuntimeError(f"text {index} has {n} tokens but its tables do not")
    return Heads(run.tokens[index], tables, run.layers, run.heads, run.d_head, run.model)


def transformer_heads(text: str, layer: int, *, model: Any = None, truncate: bool = False) -> list[SoftTable]:
    """Each head of one layer of a real transformer, run on ``text``, as a table.

    The model runs once. Head a's table has keys = values = the token states that enter
    the layer (``hidden_states[layer]``, float32, (n_tokens, hidden)), the projection
    of head a (W_Q, W_K, W_V as (hidden, d_head) matrices, with biases b_Q, b_K, b_V)
    and τ = √d_head; ids ``"<position>:<token>"`` (e.g. ``"0:[CLS]"``, ``"1:the"``),
    payloads ``{"token": str, "position": int}``. So, with ``X = table.keys``:

    - ``table.weights(X)`` (n, n) is the head's attention (query token × key token),
      what the model reports with ``output_attentions=True``;
    - ``table.lookup(X)`` (n, d_head) is the head's context vectors, before W_O;
    - ``table.search(X[i], k=3)`` names the tokens token i reads most.

    Parameters
    ----------
    text : str
        A non-empty text.
    layer : int
        0 <= layer < the model's layers (6 for all-MiniLM-L6-v2).
    model : str or path, optional
        A local BERT-family folder (Hugging Face or sentence-transformers); default the
        bundled all-MiniLM-L6-v2. The loaded model is cached per folder.
    truncate : bool
        A text longer than the model's window (512 tokens for MiniLM) is an error
        unless True (then its first window tokens are kept).

    Returns
    -------
    list of SoftTable
        One per head (12 for MiniLM).

    Examples
    --------
    A plain code block (the real model; ``tests/heads/test_exact.py`` runs the equivalent)::

        tables = transformer_heads("the cat sat on the mat", layer=2)
        t = tables[5]
        X = np.asarray(t.keys)            # (8, 384): [CLS] the cat sat on the mat [SEP]
        t.weights(X).shape                 # (8, 8): head 5's attention matrix
        t.search(X[2], k=2).ids            # the two tokens "cat" reads most
    """
    _check_text(text)
    n_layers = load(model).layers
    layer = _in_range(layer, n_layers, "layer", "the model")
    run = model_attentions([text], model=model, truncate=truncate)
    return list(heads_of_run(run, 0, layers=[layer]).tables[layer])


def all_heads(text: str, *, model: Any = None, truncate: bool = False) -> Heads:
    """Every layer and head of a real transformer, run once on ``text``, as tables.

    Parameters
    ----------
    text : str
    model : str or path, optional
        As in :func:`transformer_heads`.
    truncate : bool
        As in :func:`transformer_heads`.

    Returns
    -------
    Heads
        ``tables[layer][head]`` as :func:`transformer_heads` builds them (72 tables for
        all-MiniLM-L6-v2), with the tokens and the model's shape.

    Examples
    --------
    A plain code block (the real model; ``tests/heads/test_heads.py`` runs the equivalent)::

        h = all_heads("attention is a soft lookup")
        h.table(0, 3).search(h.table(0, 3).keys[1], k=3).ids
    """
    _check_text(text)
    return heads_of_run(model_attentions([text], model=model, truncate=truncate), 0)


def _check_text(text: Any) -> None:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}; hint: one text per call")
    if not text.strip():
        raise ValueError(f"text is empty ({text!r}); hint: a head needs at least one word to look at")
