"""The explanation view: one query's hits, weights, entropy, soft vs hard, and a temperature slider.

The same markup serves a notebook cell (``Explanation._repr_html_``) and a
standalone file (``Explanation.to_html()``, ``softdb explain --html``). Its CSS,
script and SVG are inline and it loads nothing, so it works offline. The page is
complete without its script (the hits at the explained τ); the script only moves
the weights with the slider, exactly: w_j(τ) = exp(s_j / τ − lse(τ)), with lse(τ)
over the whole table precomputed for every grid temperature
(:func:`softdb.render._grid.grid_log_sum_exp`).

This module renders what the table returns (an ``Explanation``) and never imports the table.
"""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np

from softdb.render._grid import TemperatureGrid, grid_from, grid_log_sum_exp, grid_taus
from softdb.render._html import asset, esc, fmt_num, script_json, snippet_text, sparkline, weight_bar
from softdb.render._results import jsonable

if TYPE_CHECKING:  # pragma: no cover
    from softdb.table._explain import Explanation

__all__ = [
    "explanation_data",
    "explanation_grid",
    "explanation_html",
    "write_explanation_html",
    "write_html",
]

#: Soft and hard answers of at most this many numbers are printed in full.
SMALL_ANSWER = 8
#: Sparklines of wider answers show their first this many components.
SPARK_DIMS = 64


def explanation_grid(e: Explanation) -> TemperatureGrid | None:
    """The explanation's slider grid: from its own pass, else one more pass over its table.

    Its own pass is one that asked for :func:`grid_taus` (as ``softdb.views.explain_view`` does).
    """
    grid = getattr(e, "_grid", None)
    if grid is None and e.lse_at and tuple(e.taus) == grid_taus(e.temperature):
        grid = grid_from(e.temperature, e.lse_at)
        object.__setattr__(e, "_grid", grid)
    if grid is None and getattr(e, "_source", None) is not None:
        table, query = e._source  # type: ignore[attr-defined]
        grid = grid_log_sum_exp(table, query, e.temperature)
        object.__setattr__(e, "_grid", grid)
    return grid


def _answer_json(v: np.ndarray) -> dict[str, Any]:
    v = np.asarray(v, dtype=np.float64).reshape(-1)  # (d_v,)
    out: dict[str, Any] = {"dim": int(v.size)}
    if v.size <= SMALL_ANSWER:
        out["values"] = [float(x) for x in v]
    return out


def explanation_data(e: Explanation) -> dict[str, Any]:
    """The explorer's data: strict-JSON hits, summary figures and the slider grid.

    Returns
    -------
    dict
        ``{"query", "temperature", "hits": [{"id", "score", "weight", "text"}], "entropy",
        "effective_rows", "covered", "hard", "soft", "grid"}``; ``grid`` is None when
        the table has several heads (no slider).

    Examples
    --------
    >>> import numpy as np
    >>> from softdb import SoftTable
    >>> t = SoftTable(np.eye(2, dtype=np.float32), ids=["x", "y"], temperature=1.0)
    >>> d = explanation_data(t.explain([1.0, 0.0], k=2))
    >>> [h["id"] for h in d["hits"]], len(d["grid"]["temperatures"]), d["hard"]["id"]
    (['x', 'y'], 81, 'x')
    """
    grid = explanation_grid(e)
    hits = [
        {"id": jsonable(i), "score": float(s), "weight": float(w), "text": snippet_text(p)}
        for i, s, w, p in zip(e.ids, e.scores, e.weights, e.payloads)
        if i is not None
    ]
    return {
        "query": str(e.query),
        "temperature": float(e.temperature),
        "hits": hits,
        "entropy": float(e.entropy),
        "effective_rows": float(e.effective_rows),
        "covered": float(e.covered),
        "hard": {"id": jsonable(e.ids[0]) if e.ids else None, **_answer_json(e.hard)},
        "soft": {
            "nearest": jsonable(e.soft_nearest),
            "cosine_to_hard": float(e.soft_hard_cosine),
            **_answer_json(e.soft),
        },
        "grid": None if grid is None else grid.to_dict(),
    }


def _answers_html(e: Explanation, data: dict[str, Any]) -> str:
    soft, hard = np.asarray(e.soft, np.float64).reshape(-1), np.asarray(e.hard, np.float64).reshape(-1)
    hard_text = snippet_text(e.payloads[0], 160) if e.payloads else ""

    def vec(v: np.ndarray) -> str:
        if v.size <= SMALL_ANSWER:
            return "<code>[" + ", ".join(fmt_num(x, 3) for x in v) + "]</code>"
        return sparkline(
            v[:SPARK_DIMS],
            width=220,
            height=40,
            color="#555",
            title=f"first {min(SPARK_DIMS, v.size)} of {v.size} components",
        )

    return (
        '<div class="sdbx-answers">'
        '<div class="sdbx-answer"><h4>hard answer <small>(the best row)</small></h4>'
        f'<p><b class="sdbx-id">{esc(data["hard"]["id"])}</b> {esc(hard_text)}</p>{vec(hard)}</div>'
        '<div class="sdbx-answer"><h4>soft answer <small>(the weighted blend, at the explained τ)</small></h4>'
        f"<p>a blend of ≈{fmt_num(e.effective_rows, 3)} rows at τ = {fmt_num(e.temperature)}; nearest row "
        f'<b class="sdbx-id">{esc(data["soft"]["nearest"])}</b>; cosine to the hard answer '
        f"<b>{fmt_num(e.soft_hard_cosine, 3)}</b></p>{vec(soft)}</div>"
        "</div>"
    )


def explanation_html(e: Explanation, *, standalone: bool = False) -> str:
    """The explorer as HTML: a fragment for a notebook cell, or a whole offline document.

    Parameters
    ----------
    e : Explanation
    standalone : bool
        True: a complete ``<!doctype html>`` page; False: a ``<div>`` for a notebook.

    Returns
    -------
    str

    Examples
    --------
    >>> import numpy as np
    >>> from softdb import SoftTable
    >>> t = SoftTable(np.eye(2, dtype=np.float32), ids=["<b>", "y"], temperature=1.0)
    >>> page = explanation_html(t.explain([1.0, 0.0], k=2), standalone=True)
    >>> '<td class="sdbx-id">&lt;b&gt;</td>' in page, '<td class="sdbx-id"><b>' in page
    (True, False)
    """
    data = explanation_data(e)
    root = "sdbx-" + uuid.uuid4().hex[:12]
    rows = []
    for rank, h in enumerate(data["hits"], 1):
        rows.append(
            f'<tr class="sdbx-hit"><td class="sdbx-rank">{rank}</td><td class="sdbx-id">{esc(h["id"])}</td>'
            f'<td class="sdbx-num">{fmt_num(h["score"])}</td>'
            f'<td class="sdbx-num sdbx-w">{fmt_num(h["weight"])}</td>'
            f'<td class="sdbx-barcell">{weight_bar(h["weight"], "sdbx-bar")}</td>'
            f'<td class="sdbx-text">{esc(h["text"])}</td></tr>'
        )
    grid = data["grid"]
    if grid is None:
        slider = '<p class="sdbx-note">no temperature slider: this table is projected.</p>'
    else:
        t = grid["temperatures"]
        slider = (
            '<div class="sdbx-slider-row"><label>temperature τ '
            f'<input type="range" class="sdbx-slider" min="0" max="{len(t) - 1}" step="1" '
            f'value="{grid["base"]}" aria-label="temperature"></label> '
            f'<b class="sdbx-tau">{fmt_num(data["temperature"])}</b>'
            f" <small>(grid {fmt_num(t[0], 3)} … {fmt_num(t[-1], 3)}; explained at {fmt_num(data['temperature'])})"
            "</small></div>"
        )
    body = (
        f'<div class="sdbx" id="{root}">'
        f'<h3 class="sdbx-query">{esc(data["query"])}</h3>'
        f"{slider}"
        '<div class="sdbx-stats">'
        f'<span>top {len(data["hits"])} hold <b class="sdbx-covered">{fmt_num(100 * data["covered"], 3)}%</b>'
        " of the weight</span>"
        f'<span>effective rows 1/Σw² <b class="sdbx-eff">{fmt_num(data["effective_rows"], 4)}</b></span>'
        f"<span>entropy <b>{fmt_num(data['entropy'], 4)}</b> nats <small>(at τ = {fmt_num(data['temperature'])})"
        "</small></span></div>"
        '<table class="sdbx-hits"><thead><tr><th>#</th><th>id</th><th>score</th><th>weight</th>'
        "<th>full-table weight</th><th>payload</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        + _answers_html(e, data)
        + f'<script type="application/json" class="sdbx-data">{script_json(data)}</script>'
        + f"<script>{asset('explorer.js')}\nsoftdbExplorer({script_json(root)});</script>"
        + "</div>"
    )
    style = f"<style>{asset('explorer.css')}</style>"
    if not standalone:
        return style + body
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>softdb explain: {esc(data['query'])}</title>{style}</head>"
        f"<body>{body}</body></html>\n"
    )


def write_explanation_html(e: Explanation, path: str | os.PathLike[str]) -> int:
    """Write the standalone explorer to ``path`` (atomically); returns its size in bytes."""
    return write_html(path, explanation_html(e, standalone=True))


def write_html(path: str | os.PathLike[str], page: str) -> int:
    """Write ``page`` to ``path`` atomically (a temporary file, then a rename); returns its size in bytes.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.html"
    >>> write_html(path, "<p>é</p>") == len("<p>é</p>".encode()) == path.stat().st_size
    True
    """
    text = page.encode("utf-8")
    tmp = f"{os.fspath(path)}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "wb") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return len(text)
