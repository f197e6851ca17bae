"""The web app's requests, as pure functions: parse and check parameters, answer in JSON.

No I/O here: :mod:`softdb.views._server` wires :meth:`App.handle` to an HTTP server.
Every answer is ``(status, content_type, body)``. A bad request is a 400 whose JSON
says what must hold, what was received and a hint; nothing a request says is ever
used as a file path (the routes are a fixed table and the page is built in memory).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import numpy as np

from softdb.render._grid import temperature_grid
from softdb.render._html import asset, esc, fmt_num, script_json, snippet_text
from softdb.render._results import jsonable
from softdb.table._match import weak_rule
from softdb.views._heads_route import HeadsRoute
from softdb.views._heads_route import script_hash as heads_script_hash
from softdb.views._model import search_answer, search_record

if TYPE_CHECKING:  # pragma: no cover
    from softdb.table._table import SoftTable

__all__ = ["MAX_COMPARE", "MAX_COMPARE_K", "MAX_K", "MAX_QUERY_CHARS", "TEMPERATURE_RANGE", "ApiError", "App"]

#: Longest query accepted, in characters (MiniLM reads ~256 tokens; longer text is truncated anyway).
MAX_QUERY_CHARS = 500
#: Largest k of /api/search; a k above the table's size (but within this) is clamped to the size.
MAX_K = 100
#: At most this many queries in one /api/compare.
MAX_COMPARE = 8
#: Largest k of /api/compare (top rows per query in the heatmap).
MAX_COMPARE_K = 20
#: Temperatures accepted by the API.
TEMPERATURE_RANGE = (1e-6, 1e6)
#: Query embeddings kept in memory (least recently used are dropped).
ENCODE_CACHE = 4096

JSON = "application/json; charset=utf-8"
HTML = "text/html; charset=utf-8"


class ApiError(Exception):
    """A bad request: answered 400 (or ``status``) with ``{"error": message}``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _json(status: int, obj: Any) -> tuple[int, str, bytes]:
    return status, JSON, json.dumps(obj, allow_nan=False, ensure_ascii=False).encode("utf-8")


def error_body(status: int, message: str) -> bytes:
    """The JSON body of an error answer: ``{"error": message, "status": status}``."""
    return json.dumps({"error": message, "status": status}, ensure_ascii=False).encode("utf-8")


class _Encoder:
    """The table's encoder behind one lock, with an in-memory LRU of query embeddings.

    ``model_lock`` serialises calls into the model (sentence-transformers/torch make
    no thread-safety promise); the LRU has its own short lock, so a query already
    seen (a shared URL, the slider moving over one query) never waits for a model
    call in progress, let alone for the model's first load.
    """

    def __init__(self, encoder: Any, size: int = ENCODE_CACHE) -> None:
        self.encoder, self.size = encoder, size
        self.model_lock = threading.Lock()
        self.cache_lock = threading.Lock()
        self.cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def _cached(self, texts: list[str]) -> list[str]:
        """Texts not in the cache (the others are marked recently used)."""
        with self.cache_lock:
            for t in texts:
                if t in self.cache:
                    self.cache.move_to_end(t)
            return [t for t in dict.fromkeys(texts) if t not in self.cache]

    def encode(self, texts: list[str]) -> np.ndarray:
        todo = self._cached(texts)
        if todo:
            with self.model_lock:
                todo = self._cached(todo)  # another thread may have encoded them meanwhile
                vecs = self.encoder.encode(todo) if todo else []  # (len(todo), d)
            with self.cache_lock:
                for t, v in zip(todo, vecs):
                    self.cache[t] = v
                hits = [self.cache.get(t) for t in texts]
                while len(self.cache) > self.size:
                    self.cache.popitem(last=False)
        else:
            with self.cache_lock:
                hits = [self.cache.get(t) for t in texts]
        found = [h for h in hits if h is not None]
        if len(found) < len(hits):  # evicted between the steps (a cache smaller than the batch)
            with self.model_lock:
                return np.asarray(self.encoder.encode(list(texts)))  # (len(texts), d)
        return np.stack(found)  # (len(texts), d)


class App:
    """The web app over one table: ``handle(path, query_string)`` → ``(status, content_type, body)``.

    Parameters
    ----------
    table : SoftTable
        A table built from texts (it must have an encoder).
    title : str
        Shown in the page header.
    heads_model : optional
        The model ``/heads`` looks inside: a local BERT-family folder (default: the bundled MiniLM).

    Examples
    --------
    >>> from softdb import SoftTable
    >>> from softdb.text import HashEncoder
    >>> app = App(SoftTable.from_texts(["read a csv file", "gzip a file"], encoder=HashEncoder()))
    >>> status, _, body = app.handle("/api/search", "q=csv&k=1")
    >>> status, json.loads(body)["hits"][0]["payload"]
    (200, 'read a csv file')
    >>> app.handle("/api/search", "q=csv&k=0")[0]
    400
    """

    def __init__(self, table: SoftTable, *, title: str = "softdb", heads_model: Any = None) -> None:
        if table.encoder is None:
            raise ValueError(
                "softdb serve needs a table built from texts (it encodes the typed queries), "
                "but this table has no encoder; hint: build it with SoftTable.from_texts or "
                "`softdb index`"
            )
        self.table = table
        self.encoder = _Encoder(table.encoder)
        self.grid = temperature_grid(table.temperature)  # (g,)
        self.page, self.script_hash = self._build_page(title)
        self.heads = HeadsRoute(ApiError, model=heads_model)
        #: Every script the app's pages run, as CSP sources (the search page's and the head view's).
        self.script_hashes = (self.script_hash, heads_script_hash())
        self.routes = {
            "/": self._page,
            "/index.html": self._page,
            "/api/search": self._search,
            "/api/compare": self._compare,
            "/api/health": self._health,
            "/heads": self.heads.handle,
            "/favicon.ico": lambda params: (204, "image/x-icon", b""),
        }

    # ----------------------------------------------------------------- page
    def config(self) -> dict[str, Any]:
        """What the page's script needs: limits, the default τ and the slider grid."""
        t = self.table
        return {
            "rows": len(t),
            "dim": t.dim,
            "encoder": getattr(t.encoder, "name", None),
            "temperature": float(t.temperature),
            "grid": [float(x) for x in self.grid],
            "max_query_chars": MAX_QUERY_CHARS,
            "max_k": MAX_K,
            "max_compare": MAX_COMPARE,
            "max_compare_k": MAX_COMPARE_K,
        }

    def _build_page(self, title: str) -> tuple[bytes, str]:
        script = asset("app.js")
        digest = hashlib.sha256(script.encode("utf-8")).digest()
        cfg = self.config()
        page = (
            asset("app.html")
            .replace("{{title}}", esc(title))
            .replace("{{rows}}", str(cfg["rows"]))
            .replace("{{encoder}}", esc(cfg["encoder"]))
            .replace("{{tau}}", fmt_num(cfg["temperature"]))
            .replace("{{style}}", asset("app.css"))
            .replace("{{config}}", script_json(cfg))
            .replace("{{script}}", script)
        )
        return page.encode("utf-8"), "sha256-" + base64.b64encode(digest).decode()

    def _page(self, params: dict[str, list[str]]) -> tuple[int, str, bytes]:
        return 200, HTML, self.page

    # ------------------------------------------------------------ parameters
    @staticmethod
    def _one(params: dict[str, list[str]], name: str, default: str | None = None) -> str | None:
        vals = params.get(name)
        if vals is None:
            return default
        if len(vals) > 1:
            raise ApiError(f"parameter {name!r} must be given once, got it {len(vals)} times")
        return vals[0]

    @staticmethod
    def _check_names(params: dict[str, list[str]], allowed: tuple[str, ...]) -> None:
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise ApiError(f"unknown parameter {unknown[0][:40]!r}; this endpoint takes {', '.join(allowed)}")

    @staticmethod
    def _query_text(q: str | None) -> str:
        if q is None:
            raise ApiError("parameter 'q' (the query text) is missing; hint: /api/search?q=read+a+csv+file")
        if not q.strip():
            raise ApiError("the query 'q' is empty; hint: type a few words, e.g. q=read+a+csv+file")
        if len(q) > MAX_QUERY_CHARS:
            raise ApiError(
                f"the query 'q' has {len(q)} characters but at most {MAX_QUERY_CHARS} are allowed; "
                "hint: shorten it (the model reads only its first ~256 tokens)"
            )
        if "\x00" in q:
            raise ApiError("the query 'q' contains a NUL character; hint: send plain text")
        return q

    def _one_process(self) -> bool:
        from softdb.table._table import SoftTable

        return isinstance(self.table, SoftTable)

    @staticmethod
    def _by(by: str | None, rank: str | None, *, one_process: bool = True) -> tuple[str, str]:
        """``by`` (default "document" for a table in one process, as on the command line) and ``rank``."""
        by = ("document" if one_process else "chunk") if by is None else by.strip()
        if by == "document" and not one_process:
            raise ApiError("by=document needs a table in one process, not a sharded one; hint: by=chunk")
        rank = "score" if rank is None else rank.strip()
        if by not in ("document", "chunk"):
            raise ApiError(f"by must be 'document' or 'chunk', got {by[:40]!r}; hint: by=chunk shows rows")
        if rank not in ("score", "weight"):
            raise ApiError(f"rank must be 'score' or 'weight', got {rank[:40]!r}; hint: rank=score (best chunk)")
        return by, rank

    def _k(self, text: str | None, default: int, limit: int, *, documents: bool = False) -> int:
        n = len(self.table)
        if documents:
            from softdb.table._documents import document_ids

            n = len(document_ids(self.table))
        return min(self._k_rows(text, default, limit), n)

    def _k_rows(self, text: str | None, default: int, limit: int) -> int:
        if text is None:
            return min(default, len(self.table))
        try:
            k = int(text.strip(), 10)
        except ValueError:
            raise ApiError(f"k must be a whole number, got {text[:40]!r}; hint: e.g. k=10") from None
        if k < 1:
            raise ApiError(f"k must be >= 1, got k={k}; hint: e.g. k=10")
        if k > limit:
            raise ApiError(
                f"k={k} is above the limit of {limit} (the table has {len(self.table)} rows); "
                f"hint: use k <= {min(limit, len(self.table))}"
            )
        return min(k, len(self.table))

    def _temperature(self, text: str | None) -> float:
        if text is None:
            return float(self.table.temperature)
        try:
            t = float(text.strip())
        except ValueError:
            raise ApiError(f"temperature must be a number, got {text[:40]!r}; hint: e.g. temperature=0.05") from None
        lo, hi = TEMPERATURE_RANGE
        if not math.isfinite(t) or t <= 0:
            raise ApiError(
                f"temperature must be finite and > 0, got {text[:40]!r}; hint: small values sharpen "
                "the weights, large ones flatten them"
            )
        if not lo <= t <= hi:
            raise ApiError(f"temperature must lie in [{lo:g}, {hi:g}], got {t:g}")
        return t

    @staticmethod
    def _where(text: str | None) -> str | None:
        """``where=``: a JSON filter, parsed and checked by the table (a bad one: 400 with its message)."""
        if text is not None and len(text) > MAX_QUERY_CHARS:
            raise ApiError(f"where= has {len(text)} characters but at most {MAX_QUERY_CHARS} are allowed")
        return text

    @staticmethod
    def _mode(text: str | None) -> str:
        if text is None:
            return "soft"
        if text not in ("soft", "hard"):
            raise ApiError(f"mode must be 'soft' or 'hard', got {text[:40]!r}")
        return text

    # ------------------------------------------------------------- endpoints
    def _search(self, params: dict[str, list[str]]) -> tuple[int, str, bytes]:
        self._check_names(params, ("q", "k", "temperature", "mode", "where", "by", "rank"))
        q = self._query_text(self._one(params, "q"))
        by, rank = self._by(self._one(params, "by"), self._one(params, "rank"), one_process=self._one_process())
        k_text = self._one(params, "k")
        k = self._k(k_text, 10, MAX_K, documents=by == "document")
        k_asked = None if k_text is None else int(k_text.strip(), 10)
        tau = self._temperature(self._one(params, "temperature"))
        mode = self._mode(self._one(params, "mode"))
        where = self._where(self._one(params, "where"))
        qv = self.encoder.encode([q])[0]  # (d,)
        a = search_answer(self.table, qv, k, temperature=tau, where=where, by=by, rank=rank)
        return _json(
            200,
            search_record(
                a,
                q,
                mode=mode,
                table_rows=len(self.table),
                k=k,
                k_requested=k_asked,
                cosine=self.table.metric == "cosine",
                weak=weak_rule(self.table),
            ),
        )

    def _compare(self, params: dict[str, list[str]]) -> tuple[int, str, bytes]:
        self._check_names(params, ("q", "k", "temperature"))
        qs = params.get("q") or []
        if not qs:
            raise ApiError(
                "give the queries to compare as repeated 'q' parameters; hint: /api/compare?q=read+csv&q=gzip+a+file"
            )
        if len(qs) > MAX_COMPARE:
            raise ApiError(f"at most {MAX_COMPARE} queries can be compared at once, got {len(qs)}")
        qs = [self._query_text(q) for q in qs]
        k = self._k(self._one(params, "k"), 5, MAX_COMPARE_K)
        tau = self._temperature(self._one(params, "temperature"))
        qv = self.encoder.encode(qs)  # (m, d)
        hits = self.table.search(qv, k=k, temperature=tau)  # (m, k) each
        rows = list(dict.fromkeys(int(r) for r in np.asarray(hits.rows).reshape(-1) if r >= 0))  # union, first seen
        w = self.table.weights(qv, temperature=tau)[:, rows]  # (m, u)  full-table weights of those rows
        ids, pays = self.table.ids, self.table.payloads
        return _json(
            200,
            {
                "queries": qs,
                "temperature": tau,
                "k": k,
                "ids": [jsonable(ids[r]) for r in rows],
                "texts": [snippet_text(pays[r], 160) if pays is not None else "" for r in rows],
                "weights": [[round(float(x), 6) for x in row] for row in w],
            },
        )

    def _health(self, params: dict[str, list[str]]) -> tuple[int, str, bytes]:
        self._check_names(params, ())
        from softdb import __version__

        t = self.table
        return _json(
            200,
            {
                "status": "ok",
                "version": __version__,
                "rows": len(t),
                "dim": t.dim,
                "encoder": getattr(t.encoder, "name", None),
                "temperature": float(t.temperature),
            },
        )

    # --------------------------------------------------------------- dispatch
    def handle(self, path: str, query_string: str) -> tuple[int, str, bytes]:
        """Answer one GET: ``(status, content_type, body)``; a bad request is a JSON 400."""
        route = self.routes.get(path)
        if route is None:
            return _json(
                404,
                {
                    "error": f"no such page {path[:80]!r}; the pages are /, /heads, /api/search, /api/compare "
                    "and /api/health",
                    "status": 404,
                },
            )
        try:
            try:
                params = parse_qs(
                    query_string,
                    keep_blank_values=True,
                    strict_parsing=False,
                    encoding="utf-8",
                    errors="strict",
                    max_num_fields=2 * MAX_COMPARE + 8,
                )
            except UnicodeDecodeError:
                raise ApiError(
                    "the query string is not valid UTF-8 after percent-decoding; "
                    "hint: percent-encode the UTF-8 bytes of the text"
                ) from None
            except ValueError as exc:  # too many fields
                raise ApiError(f"bad query string: {exc}") from None
            return route(params)
        except ApiError as exc:
            return _json(exc.status, {"error": str(exc), "status": exc.status})
        except (ValueError, TypeError) as exc:  # softdb's own checks (e.g. scores underflowing at a tiny τ)
            return _json(400, {"error": str(exc), "status": 400})
