"""Notebook displays (``_repr_html_``) of tables, search results, intuitions and fit reports.

Each is static HTML with its own small inline style: it renders the same in
Jupyter, VS Code, a saved notebook or offline. Sizes are bounded (a few rows
of a big table, a few queries of a big batch), so displaying never scans a table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from softdb.render._html import esc, fmt_num, snippet_text, sparkline, weight_bar

if TYPE_CHECKING:  # pragma: no cover
    from softdb.intuitions import Intuition
    from softdb.learn._fit import FitReport
    from softdb.table._table import SearchResult, SoftTable

__all__ = ["fit_report_html", "intuition_html", "search_result_html", "table_html"]

#: Rows of a table shown in its display.
TABLE_ROWS = 8
#: Queries of a batch of search results shown.
RESULT_QUERIES = 10

_STYLE = (
    "<style>"
    ".sdb{font:13px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1d1d1f}"
    ".sdb table{border-collapse:collapse;margin:.3em 0}"
    ".sdb th{text-align:left;border-bottom:2px solid #ccd;padding:2px 8px;font-weight:600}"
    ".sdb td{border-bottom:1px solid #eee;padding:2px 8px;vertical-align:top}"
    ".sdb .n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}"
    ".sdb .id{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.92em}"
    ".sdb .t{max-width:560px;white-space:pre-wrap;word-break:break-word;color:#333}"
    ".sdb .muted{color:#666}"
    ".sdb-bar{display:inline-block;width:110px;height:11px;background:#eef1f7;border-radius:2px;"
    "overflow:hidden;vertical-align:middle}"
    ".sdb-bar>span{display:block;height:100%;background:#3b6fd8}"
    ".sdb .ok{color:#0a7d32;font-weight:600}.sdb .bad{color:#b3261e;font-weight:600}"
    "</style>"
)


def _kv(pairs: list[tuple[str, Any]]) -> str:
    return "<table>" + "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in pairs) + "</table>"


def table_html(table: SoftTable) -> str:
    """A table's shape, settings and first rows (id, payload, the start of the key).

    Examples
    --------
    >>> import numpy as np
    >>> from softdb import SoftTable
    >>> "3 rows" in table_html(SoftTable(np.eye(3, dtype=np.float32)))
    True
    """
    n = len(table)
    enc = getattr(table.encoder, "name", None) if table.encoder is not None else None
    proj = table.projection
    head = (
        f"<b>SoftTable</b> · {n} rows · keys {n}×{table.dim} · values {n}×{table.value_dim} · "
        f"metric {esc(table.metric)} · τ = {fmt_num(table.temperature)} · {esc(table.dtype.name)}"
    )
    if enc:
        head += f" · encoder <span class='id'>{esc(enc)}</span>"
    if proj is not None:
        head += f" · projected ({esc(type(proj).__name__)})"
    show = min(n, TABLE_ROWS)
    ids, pays = table.ids, table.payloads
    keys = table.keys[:show]  # (show, d)
    rows = []
    for i in range(show):
        kp = ", ".join(fmt_num(x, 3) for x in keys[i, :4]) + (", …" if table.dim > 4 else "")
        text = "" if pays is None else esc(snippet_text(pays[i], 120))
        rows.append(
            f"<tr><td class='n'>{i}</td><td class='id'>{esc(ids[i])}</td><td class='t'>{text}</td>"
            f"<td class='id muted'>[{kp}]</td></tr>"
        )
    more = f"<p class='muted'>… and {n - show} more rows</p>" if n > show else ""
    return (
        f"{_STYLE}<div class='sdb'><p>{head}</p><table><thead><tr><th>row</th><th>id</th><th>payload</th>"
        f"<th>key</th></tr></thead><tbody>{''.join(rows)}</tbody></table>{more}</div>"
    )


def _hits_rows(ids: np.ndarray, scores: np.ndarray, weights: np.ndarray, pays: np.ndarray | None) -> str:
    out = []
    for r in range(len(ids)):
        if ids[r] is None:
            continue
        text = "" if pays is None else esc(snippet_text(pays[r], 200))
        out.append(
            f"<tr><td class='n'>{r + 1}</td><td class='id'>{esc(ids[r])}</td>"
            f"<td class='n'>{fmt_num(scores[r])}</td><td class='n'>{fmt_num(weights[r])}</td>"
            f"<td>{weight_bar(weights[r])}</td><td class='t'>{text}</td></tr>"
        )
    if not out:
        return "<tr><td colspan='6' class='muted'>no match (every row masked)</td></tr>"
    return "".join(out)


def search_result_html(res: SearchResult) -> str:
    """Hits with rank, id, score, full-table weight (number and bar) and payload; one block per query.

    Examples
    --------
    >>> import numpy as np
    >>> from softdb import SoftTable
    >>> t = SoftTable(np.eye(2, dtype=np.float32), payloads=["<script>alert(1)</script>", "b"])
    >>> "&lt;script&gt;" in t.search([1.0, 0.0], k=2)._repr_html_()
    True
    """
    ids = np.atleast_2d(np.asarray(res.ids, dtype=object))  # (m, k)
    scores, weights = np.atleast_2d(res.scores), np.atleast_2d(res.weights)  # (m, k), (m, k)
    pays = None if res.payloads is None else np.atleast_2d(np.asarray(res.payloads, dtype=object))  # (m, k)
    m = ids.shape[0]
    blocks = []
    for qi in range(min(m, RESULT_QUERIES)):
        title = f"<p><b>query {qi}</b></p>" if m > 1 else ""
        blocks.append(
            f"{title}<table><thead><tr><th>#</th><th>id</th><th>score</th><th>weight</th>"
            "<th>full-table weight</th><th>payload</th></tr></thead><tbody>"
            + _hits_rows(ids[qi], scores[qi], weights[qi], None if pays is None else pays[qi])
            + "</tbody></table>"
        )
    more = f"<p class='muted'>… and {m - RESULT_QUERIES} more queries</p>" if m > RESULT_QUERIES else ""
    head = f"<p><b>SearchResult</b> · {m} {'query' if m == 1 else 'queries'} × top {ids.shape[1]}</p>"
    return f"{_STYLE}<div class='sdb'>{head}{''.join(blocks)}{more}</div>"


def intuition_html(r: Intuition) -> str:
    """An experiment's claim, verdict, summary and measured figures.

    Examples
    --------
    >>> from softdb.intuitions import Intuition
    >>> "holds" in Intuition("x", "a claim", {"n": 3}, True, "n = 3")._repr_html_()
    True
    """
    verdict = "<span class='ok'>holds</span>" if r.holds else "<span class='bad'>FAILS</span>"
    figs = "".join(
        f"<tr><td class='id'>{esc(k)}</td><td class='n'>{fmt_num(v) if isinstance(v, float) else esc(v)}</td></tr>"
        for k, v in r.figures.items()
    )
    return (
        f"{_STYLE}<div class='sdb'><p><b>{esc(r.name)}</b> · {verdict}</p>"
        f"<p>{esc(r.claim)}</p><p class='muted'>{esc(r.summary)}</p>"
        f"<table><thead><tr><th>figure</th><th>measured</th></tr></thead><tbody>{figs}</tbody></table></div>"
    )


def fit_report_html(rep: FitReport) -> str:
    """A fit's optimiser, iterations, time, convergence and the loss / validation curves.

    Examples
    --------
    >>> from softdb import FitReport
    >>> html = FitReport((1.0, 0.5, 0.4), 2, 0.1, (), None, "lbfgs", True)._repr_html_()
    >>> "<svg" in html and "lbfgs" in html
    True
    """
    loss = np.asarray(rep.loss_history, dtype=np.float64)  # (t,)
    pairs: list[tuple[str, Any]] = [
        ("optimizer", esc(rep.optimizer)),
        ("iterations", str(int(rep.iterations))),
        ("seconds", fmt_num(rep.seconds, 3)),
        ("converged", "yes" if rep.converged else "no"),
        ("stopped early", "yes" if rep.stopped_early else "no"),
    ]
    if loss.size:
        pairs.append(
            (
                "loss",
                f"{fmt_num(loss[0])} → {fmt_num(loss[-1])} " + sparkline(loss, title="training loss per iteration"),
            )
        )
    if rep.val_metric_history:
        val = np.asarray(rep.val_metric_history, dtype=np.float64)  # (t,)
        best = "—" if rep.best_val_metric is None else fmt_num(rep.best_val_metric)
        pairs.append(
            (
                f"validation {rep.val_metric or ''}".strip(),
                f"best {best} " + sparkline(val, color="#0a7d32", title="validation metric per iteration"),
            )
        )
    return f"{_STYLE}<div class='sdb'><p><b>FitReport</b></p>{_kv(pairs)}</div>"
