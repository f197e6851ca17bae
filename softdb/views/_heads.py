"""The head view's data: every head of a real model's layers, as tables a page can show.

:func:`heads_view_data` asks each head table (one projected :class:`~softdb.SoftTable` per head,
built by :mod:`softdb.heads`) for the weights of every token of the sentence, its soft answer
(the head's context vector) and its hard answer, and turns them into strict-JSON numbers. The
page itself is rendered below the table, by :mod:`softdb.render._heads`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from softdb.intuitions._head_rules import HARD_ENTROPY
from softdb.render._explorer import write_html
from softdb.render._heads import heads_html

if TYPE_CHECKING:  # pragma: no cover
    from softdb.table._table import SoftTable

__all__ = ["HeadsLike", "heads_page", "heads_summary", "heads_view_data", "pick_layers", "write_heads_html"]

#: Weights are kept to this many decimals in the page (|page − weights()| ≤ 5e-8, below float32 noise at 1).
WEIGHT_DECIMALS = 7
#: Soft and hard answers are kept to this many significant digits.
ANSWER_DIGITS = 4
#: Tokens whose top retrieved token the text summary prints per head.
SUMMARY_TOKENS = 4


class HeadsLike(Protocol):
    """What the view needs of :class:`softdb.heads.Heads`: tokens and one table per layer and head."""

    @property
    def tokens(self) -> Sequence[str]: ...
    @property
    def layers(self) -> int: ...
    @property
    def heads(self) -> int: ...
    @property
    def d_head(self) -> int: ...

    def table(self, layer: int, head: int) -> SoftTable: ...


def pick_layers(heads: HeadsLike, layer: int | None) -> list[int]:
    """The layers to show: all of them, or the one asked for (checked against the model's depth).

    Examples
    --------
    >>> class H:
    ...     layers = 6
    >>> pick_layers(H(), None), pick_layers(H(), 2)
    ([0, 1, 2, 3, 4, 5], [2])
    """
    if layer is None:
        return list(range(heads.layers))
    if not 0 <= int(layer) < heads.layers:
        raise ValueError(
            f"layer must be in 0..{heads.layers - 1} (the model has {heads.layers} layers), got {layer}; "
            f"hint: --layer {heads.layers - 1} is the last one"
        )
    return [int(layer)]


def _sig(a: np.ndarray, digits: int) -> list[float]:
    """Numbers rounded to ``digits`` significant digits, as plain floats (finite)."""
    return [float(f"{x:.{digits}g}") for x in np.asarray(a, dtype=np.float64).reshape(-1)]


def head_lookups(t: SoftTable) -> dict[str, Any]:
    """One head's answers for every token of its sentence: weights, entropy, soft and hard answers.

    Parameters
    ----------
    t : SoftTable
        One head: keys = values = the token states, projected.

    Returns
    -------
    dict
        ``weights`` (n × n, rows: query tokens), ``entropy`` and ``effective_rows`` (n,),
        ``hard_row`` (n,), ``soft`` and ``hard`` (n × d_head answers), ``cosine`` (n,):
        the cosine of each soft answer to its hard one.

    Examples
    --------
    >>> from softdb import Projection, SoftTable
    >>> x = np.eye(3, dtype=np.float32)
    >>> d = head_lookups(SoftTable(x, x, temperature=1.0, projection=Projection(3)))
    >>> d["hard_row"], [round(e, 3) for e in d["entropy"]]
    ([0, 1, 2], [0.975, 0.975, 0.975])
    """
    x = t.keys  # (n, d)
    w = np.asarray(t.weights(x), dtype=np.float64)  # (n, n)
    soft = np.asarray(t.lookup(x), dtype=np.float64)  # (n, d_head)
    hard = np.asarray(t.lookup(x, mode="hard"), dtype=np.float64)  # (n, d_head)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = np.where(w > 0, -w * np.log(w), 0.0).sum(axis=1)  # (n,)
    eff = 1.0 / np.maximum((w**2).sum(axis=1), 1e-300)  # (n,)
    norms = np.linalg.norm(soft, axis=1) * np.linalg.norm(hard, axis=1)  # (n,)
    cos = np.where(norms > 0, (soft * hard).sum(axis=1) / np.where(norms > 0, norms, 1.0), 0.0)  # (n,)
    return {
        "weights": [[float(v) for v in row] for row in np.round(w, WEIGHT_DECIMALS)],
        "entropy": _sig(ent, 5),
        "effective_rows": _sig(eff, 5),
        "hard_row": [int(i) for i in w.argmax(axis=1)],
        "soft": [_sig(r, ANSWER_DIGITS) for r in soft],
        "hard": [_sig(r, ANSWER_DIGITS) for r in hard],
        "cosine": _sig(cos, 5),
    }


def heads_view_data(heads: HeadsLike, *, layer: int | None = None, text: str = "") -> dict[str, Any]:
    """Everything the head view shows, as strict JSON: tokens, and per layer and head its lookups.

    Parameters
    ----------
    heads : Heads
        From :func:`softdb.heads.all_heads` (or anything with ``tokens``, ``layers``, ``heads``,
        ``d_head`` and ``table(layer, head)``).
    layer : int, optional
        Show only this layer (default: all).
    text : str
        The sentence, shown as the page's title.

    Returns
    -------
    dict
        ``{"text", "model", "tokens", "layers", "heads", "d_head", "tau", "views": {layer: [head
        lookups]}}``; each head's lookups as :func:`head_lookups` returns them.

    Examples
    --------
    >>> from softdb import Projection, SoftTable
    >>> class Two:
    ...     tokens, layers, heads, d_head, model = ["[CLS]", "hi", "[SEP]"], 1, 2, 3, "toy"
    ...     def table(self, layer, head):
    ...         x = np.arange(9, dtype=np.float32).reshape(3, 3) / 9
    ...         return SoftTable(x, x, temperature=1.0, projection=Projection(3, init="random", seed=head))
    >>> d = heads_view_data(Two(), text="hi")
    >>> d["layers"], len(d["views"]["0"]), len(d["views"]["0"][1]["weights"])
    ([0], 2, 3)
    """
    layers = pick_layers(heads, layer)
    views: dict[str, list[dict[str, Any]]] = {}
    tau = None
    for li in layers:
        views[str(li)] = []
        for h in range(heads.heads):
            t = heads.table(li, h)
            tau = float(t.temperature)
            views[str(li)].append(head_lookups(t))
    return {
        "text": str(text),
        "model": str(getattr(heads, "model", "") or ""),
        "tokens": [str(tok) for tok in heads.tokens],
        "layers": layers,
        "heads": int(heads.heads),
        "model_layers": int(heads.layers),
        "d_head": int(heads.d_head),
        "tau": tau,
        "views": views,
    }


def heads_page(
    text: str, *, layer: int | None = None, model: Any = None, truncate: bool = False, standalone: bool = True
) -> str:
    """The head view of ``text`` as one self-contained HTML page (runs the model once).

    Parameters
    ----------
    text : str
    layer : int, optional
        Only this layer (default: every layer).
    model : optional
        A local BERT-family model folder (default: the bundled all-MiniLM-L6-v2).
    truncate : bool
        Cut a text longer than the model's window instead of refusing it.
    standalone : bool
        True: a whole offline page; False: the page for ``softdb serve`` (with a text box).

    Returns
    -------
    str
    """
    from softdb.heads import all_heads

    heads = all_heads(text, model=model, truncate=truncate)
    return heads_html(heads_view_data(heads, layer=layer, text=text), standalone=standalone)


def write_heads_html(data: dict[str, Any], path: str | os.PathLike[str]) -> int:
    """Write the standalone head view of ``data`` (from :func:`heads_view_data`); returns its size in bytes."""
    return write_html(path, heads_html(data, standalone=True))


def heads_summary(data: dict[str, Any], *, tokens: int = SUMMARY_TOKENS) -> str:
    """A short text summary of the head view's data: per head, mean entropy, effective rows, top tokens.

    Parameters
    ----------
    data : dict
        From :func:`heads_view_data`.
    tokens : int
        Show the top retrieved token of this many content tokens per head.

    Returns
    -------
    str

    Examples
    --------
    >>> d = {"tokens": ["[CLS]", "hi", "[SEP]"], "layers": [0], "heads": 1, "model": "toy", "text": "hi",
    ...      "views": {"0": [{"entropy": [0.1, 0.2, 0.3], "effective_rows": [1.0, 1.1, 1.2],
    ...                       "hard_row": [2, 0, 2]}]}}
    >>> print(heads_summary(d))
    toy · "hi" · 3 tokens: [CLS] hi [SEP]
    layer 0
      head  entropy  eff.rows  near-hard  top retrieved token (query → token)
         0    0.200      1.10      100%  hi→[CLS]
    """
    toks = data["tokens"]
    content = [i for i, tok in enumerate(toks) if tok not in ("[CLS]", "[SEP]", "[PAD]")][:tokens]
    lines = [f'{data["model"]} · "{data["text"]}" · {len(toks)} tokens: {" ".join(toks)}']
    for li in data["layers"]:
        lines.append(f"layer {li}")
        lines.append("  head  entropy  eff.rows  near-hard  top retrieved token (query → token)")
        for h, v in enumerate(data["views"][str(li)]):
            ent = np.asarray(v["entropy"], dtype=np.float64)  # (n,)
            eff = np.asarray(v["effective_rows"], dtype=np.float64)  # (n,)
            tops = " ".join(f"{toks[i]}→{toks[v['hard_row'][i]]}" for i in content)
            lines.append(
                f"  {h:>4}  {ent.mean():>7.3f}  {eff.mean():>8.2f}  {np.mean(ent <= HARD_ENTROPY):>9.0%}  {tops}"
            )
    return "\n".join(lines)
