"""``GET /heads`` of ``softdb serve``: the head view of a typed sentence, with a text box.

``/heads`` alone answers the empty page (the text box); ``/heads?text=…&layer=…`` runs the
model once on the text and answers the same page ``softdb heads --html`` writes, with the text
box above it. A bad request (an empty or too long text, a layer out of range, an unknown
parameter) is a 400 whose JSON says what must hold. The model is entered by one thread at a
time, and the last few pages are kept in memory.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections import OrderedDict
from typing import Any

from softdb.render._heads import heads_html, heads_script

__all__ = ["MAX_HEADS_CHARS", "HeadsRoute", "script_hash"]

#: Longest text accepted at /heads, in characters.
MAX_HEADS_CHARS = 500
#: Pages kept in memory (least recently used are dropped).
PAGE_CACHE = 16
#: The bundled MiniLM's depth, for the empty page's layer menu.
DEFAULT_LAYERS = 6

HTML = "text/html; charset=utf-8"


def script_hash() -> str:
    """The CSP source of the head view's script: ``sha256-…``."""
    return "sha256-" + base64.b64encode(hashlib.sha256(heads_script().encode("utf-8")).digest()).decode()


class HeadsRoute:
    """Answers ``/heads``: ``handle(params)`` → ``(status, content_type, body)``.

    Parameters
    ----------
    error : type
        The exception class the app answers as a JSON error (``ApiError``).
    model : optional
        A local BERT-family model folder (default: the bundled MiniLM).
    """

    def __init__(self, error: type[Exception], *, model: Any = None) -> None:
        self.error, self.model = error, model
        self.lock = threading.Lock()
        self.cache: OrderedDict[tuple[str, int | None], bytes] = OrderedDict()
        self.layers = DEFAULT_LAYERS

    def _param(self, params: dict[str, list[str]], name: str) -> str | None:
        vals = params.get(name)
        if vals is None:
            return None
        if len(vals) > 1:
            raise self.error(f"parameter {name!r} must be given once, got it {len(vals)} times")
        return vals[0]

    def _layer(self, text: str | None) -> int | None:
        if text is None or text == "":
            return None
        try:
            layer = int(text.strip(), 10)
        except ValueError:
            raise self.error(f"layer must be a whole number, got {text[:40]!r}; hint: e.g. layer=2") from None
        if not 0 <= layer < self.layers:
            raise self.error(
                f"layer must be in 0..{self.layers - 1} (the model has {self.layers} layers), got {layer}; "
                "hint: leave it out to see every layer"
            )
        return layer

    def handle(self, params: dict[str, list[str]]) -> tuple[int, str, bytes]:
        unknown = sorted(set(params) - {"text", "layer"})
        if unknown:
            raise self.error(f"unknown parameter {unknown[0][:40]!r}; /heads takes text and layer")
        text = self._param(params, "text")
        layer = self._layer(self._param(params, "layer"))
        form = {"layers": self.layers, "layer": layer, "max_chars": MAX_HEADS_CHARS}
        if text is None:
            return 200, HTML, heads_html(None, form=form).encode("utf-8")
        if not text.strip():
            raise self.error("the text is empty; hint: /heads?text=The+cat+sat+on+the+mat")
        if len(text) > MAX_HEADS_CHARS:
            raise self.error(
                f"the text has {len(text)} characters but at most {MAX_HEADS_CHARS} are allowed at /heads; "
                'hint: shorten it, or run softdb heads "…" --truncate --html out.html'
            )
        if "\x00" in text:
            raise self.error("the text contains a NUL character; hint: send plain text")
        key = (text, layer)
        with self.lock:
            page = self.cache.get(key)
            if page is None:
                page = self._page(text, layer, form)
                self.cache[key] = page
                while len(self.cache) > PAGE_CACHE:
                    self.cache.popitem(last=False)
            self.cache.move_to_end(key)
        return 200, HTML, page

    def _page(self, text: str, layer: int | None, form: dict[str, Any]) -> bytes:
        from softdb.heads import all_heads
        from softdb.views._heads import heads_view_data

        heads = all_heads(text, model=self.model)  # ValueError (too long, …) → a JSON 400 in App.handle
        self.layers = form["layers"] = int(heads.layers)
        return heads_html(heads_view_data(heads, layer=layer, text=text), form=form).encode("utf-8")
