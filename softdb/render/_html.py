"""Small HTML building blocks shared by every view: escaping, bars, sparklines, assets.

Every piece of table data (ids, payloads, queries) goes through :func:`esc`, and
data handed to a script goes through :func:`script_json`, so no payload can
become markup or code.
"""

from __future__ import annotations

import html
import json
import math
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

__all__ = ["asset", "esc", "fmt_num", "script_json", "snippet_text", "sparkline", "weight_bar"]


def esc(x: Any) -> str:
    """``str(x)`` escaped for HTML text and attribute values.

    Examples
    --------
    >>> esc("<script>alert(1)</script>")
    '&lt;script&gt;alert(1)&lt;/script&gt;'
    """
    return html.escape("" if x is None else str(x), quote=True)


def snippet(payload: Any, width: int = 60) -> str:
    """One line of a payload: its summary/title/text, shortened to ``width``."""
    if payload is None:
        return ""
    if isinstance(payload, dict):
        for key in ("summary", "text", "title"):
            if payload.get(key):
                payload = payload[key]
                break
    text = " ".join(str(payload).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def snippet_text(payload: Any, width: int = 300) -> str:
    """A payload's readable text (its summary/title/text for a dict), at most ``width`` characters."""
    return snippet(payload, width)


def fmt_num(x: float, digits: int = 4) -> str:
    """A number with ``digits`` significant digits; "—" for a missing or non-finite one.

    Examples
    --------
    >>> fmt_num(0.73105857), fmt_num(float("nan")), fmt_num(2.5e-7)
    ('0.7311', '—', '2.5e-07')
    """
    if x is None or not math.isfinite(float(x)):
        return "—"
    return f"{float(x):.{digits}g}"


def weight_bar(w: float, cls: str = "sdb-bar") -> str:
    """A horizontal bar whose width is the weight (0..1 of the cell): the full-table weight."""
    pct = 0.0 if not math.isfinite(float(w)) else min(max(float(w), 0.0), 1.0) * 100
    return f'<span class="{cls}"><span style="width:{pct:.2f}%"></span></span>'


def sparkline(series: Any, *, width: int = 160, height: int = 36, color: str = "#3b6fd8", title: str = "") -> str:
    """An inline SVG polyline of a 1-D series (finite values only); "" when there is nothing to draw.

    Examples
    --------
    >>> sparkline([3.0, 2.0, 1.5]).startswith("<svg")
    True
    """
    y = np.asarray(series, dtype=np.float64).reshape(-1)  # (t,)
    y = y[np.isfinite(y)]
    if y.size < 2:
        return ""
    lo, hi = float(y.min()), float(y.max())
    span = hi - lo or 1.0
    xs = np.linspace(2, width - 2, y.size)  # (t,)
    ys = height - 2 - (y - lo) / span * (height - 4)  # (t,)
    pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(xs, ys))
    t = f"<title>{esc(title)}</title>" if title else ""
    return (
        f'<svg class="sdb-spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img">{t}'
        f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{pts}"/></svg>'
    )


def script_json(data: Any) -> str:
    """JSON safe to put inside ``<script type="application/json">``: no ``<``, ``>`` or ``&``.

    Examples
    --------
    >>> script_json({"p": "</script>"})
    '{"p": "\\\\u003c/script\\\\u003e"}'
    """
    text = json.dumps(data, allow_nan=False, ensure_ascii=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


@cache
def asset(name: str) -> str:
    """The text of a file shipped in ``softdb/render/assets`` (read once, then cached)."""
    return resources.files("softdb.render").joinpath("assets", name).read_text(encoding="utf-8")
