"""The head view's page: a token × token heatmap per head, a layer and head picker, and each
token's soft lookup (the tokens it retrieves, their weights, entropy, effective rows, soft vs hard).

One self-contained document: its CSS, script and data are inline, and it loads nothing, so it
works offline (``softdb heads --html``); ``softdb serve`` answers the same page at ``/heads``
with a text box above it. The data comes from :func:`softdb.views.heads_view_data`; this module
renders what it is handed and never imports the table.
"""

from __future__ import annotations

from typing import Any

from softdb.render._html import asset, esc, fmt_num, script_json

__all__ = ["heads_html", "heads_script"]


def heads_script() -> str:
    """The page's script (also hashed by the server's Content-Security-Policy)."""
    return asset("heads.js")


def _form(data: dict[str, Any] | None, form: dict[str, Any]) -> str:
    text = "" if data is None else data["text"]
    n_layers = int(form.get("layers", 6))
    chosen = form.get("layer")
    opts = ['<option value="">all layers</option>'] + [
        f'<option value="{i}"{" selected" if chosen == i else ""}>layer {i}</option>' for i in range(n_layers)
    ]
    return (
        '<form id="heads-form" method="get" action="/heads" autocomplete="off">'
        f'<input id="text" name="text" type="search" maxlength="{int(form.get("max_chars", 500))}" '
        f'value="{esc(text)}" placeholder="type a sentence, e.g. The cat sat on the mat because it was warm." '
        'aria-label="sentence">'
        f'<select id="layer-param" name="layer" aria-label="layer">{"".join(opts)}</select>'
        '<button type="submit">look inside</button></form>'
    )


def heads_html(data: dict[str, Any] | None, *, standalone: bool = True, form: dict[str, Any] | None = None) -> str:
    """The head view as one HTML document.

    Parameters
    ----------
    data : dict or None
        From :func:`softdb.views.heads_view_data`; None for the empty page of ``/heads``.
    standalone : bool
        Unused by the markup (the page is always whole); kept for symmetry with the explorer.
    form : dict, optional
        Add the ``/heads`` text box: ``{"layers": model depth, "layer": chosen or None,
        "max_chars": int}``.

    Returns
    -------
    str

    Examples
    --------
    >>> d = {"text": "<b>hi</b>", "model": "toy", "tokens": ["[CLS]", "hi", "[SEP]"], "layers": [0],
    ...      "heads": 1, "model_layers": 1, "d_head": 2, "tau": 1.41, "views": {"0": []}}
    >>> page = heads_html(d)
    >>> page.startswith("<!doctype html>"), "&lt;b&gt;hi&lt;/b&gt;" in page, "<b>hi</b>" in page
    (True, True, False)
    """
    if data is None:
        title, sub = "What each head retrieves", "type a sentence to see every head of the model as a soft table"
        body = '<p id="empty" class="muted">No sentence yet.</p>'
    else:
        title = f"What each head retrieves: {data['text']}"
        sub = (
            f"{data['model']} · {len(data['tokens'])} tokens · {data['heads']} heads per layer · "
            f"d_head = {data['d_head']} · τ = √d_head = {fmt_num(data['tau'] or 0.0)} · "
            "each head is a table: keys = values = the token states entering the layer"
        )
        body = (
            '<section id="picker"><label>layer <select id="layer" aria-label="layer"></select></label>'
            '<span class="muted">click a head (its heatmap is a thumbnail), then a token</span>'
            '<div id="head-thumbs"></div></section>'
            '<section id="sentence" aria-label="tokens"></section>'
            '<div id="panes"><section id="heat-pane"><h2 id="heat-title"></h2>'
            '<p class="muted">rows: query tokens · columns: the tokens they retrieve · darker = more weight</p>'
            '<div id="heat-wrap"><table id="heatmap"></table></div></section>'
            '<section id="lookup" aria-live="polite"></section></div>'
            f'<script type="application/json" id="heads-data">{script_json(data)}</script>'
        )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>softdb heads: {esc(data['text'] if data else '')}</title>"
        f"<style>{asset('heads.css')}</style></head><body>"
        f'<header><h1>{esc(title)}</h1><p class="muted">{esc(sub)}</p></header>'
        + (_form(data, form) if form is not None else "")
        + f"<main>{body}</main>"
        + (f"<script>{heads_script()}</script>" if data is not None else "")
        + "</body></html>\n"
    )
