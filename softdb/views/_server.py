"""``softdb serve``: the web app on the standard library's ThreadingHTTPServer.

Why the standard library: the app answers a handful of small GET routes from
memory, so a threaded ``http.server`` is all it needs, and it adds no dependency
(core softdb is numpy + scipy). Each connection gets a thread; the table's arrays
are read-only and its lookups thread-safe, and the text encoder is called behind
one lock (see :class:`softdb.views._app._Encoder`), so the model is loaded once and
never entered by two threads at a time.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from softdb.views._app import JSON, App, error_body

if TYPE_CHECKING:  # pragma: no cover
    from softdb.table._table import SoftTable

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "Server", "is_loopback", "start_server"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
#: Longest request line (path + query string) accepted; longer gets a JSON 414.
MAX_REQUEST_LINE = 8192


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and "localhost".

    Examples
    --------
    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Handler(BaseHTTPRequestHandler):
    server_version = "softdb"
    sys_version = ""
    protocol_version = "HTTP/1.1"  # keep-alive: every answer carries Content-Length
    default_request_version = "HTTP/1.0"  # a garbled request line still gets a status line and headers
    # TCP_NODELAY: headers and body go out as two writes; with Nagle's algorithm the body would wait
    # for the client's (delayed, up to 40 ms) ACK of the headers on a keep-alive connection.
    disable_nagle_algorithm = True
    app: App  # set on the subclass made per server
    quiet: bool = True

    def _send(self, status: int, ctype: str, body: bytes, head_only: bool = False) -> None:
        scripts = " ".join(f"'{h}'" for h in self.app.script_hashes)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        self.send_header(
            "Content-Security-Policy",
            f"default-src 'none'; script-src {scripts}; style-src 'unsafe-inline'; "
            "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'",
        )
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Every error the HTTP layer itself raises (bad request line, 414, 501) answers in JSON."""
        try:
            text = message or self.responses.get(code, ("error",))[0]
            body = error_body(code, f"{text}" + (f": {explain}" if explain else ""))
            self.close_connection = True
            self.send_response(code, message)
            self.send_header("Content-Type", JSON)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD" and code >= 200 and code not in (204, 304):
                self.wfile.write(body)
        except OSError:  # pragma: no cover - the client went away
            pass

    def _answer(self, head_only: bool = False) -> None:
        if len(self.path) > MAX_REQUEST_LINE:
            self._send(
                414,
                JSON,
                error_body(
                    414, f"the request line has {len(self.path)} characters but at most {MAX_REQUEST_LINE} are allowed"
                ),
                head_only,
            )
            return
        try:
            parts = urlsplit(self.path)
            status, ctype, body = self.app.handle(parts.path, parts.query)
        except Exception:  # noqa: BLE001 - a bug, never a user's mistake: log it, answer JSON, keep serving
            traceback.print_exc(file=sys.stderr)
            status, ctype, body = 500, JSON, error_body(500, "internal error; see the server's log")
        self._send(status, ctype, body, head_only)

    def do_GET(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer(head_only=True)

    def _not_allowed(self) -> None:
        body = error_body(405, f"method {self.command} is not allowed; the app answers GET only")
        self.close_connection = True
        self.send_response(405)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Type", JSON)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if not self.quiet:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")


class _Server6(ThreadingHTTPServer):
    """The threading server on an IPv6 address (a ``host`` with a colon)."""

    address_family = socket.AF_INET6


class Server:
    """A running web app: ``url``, and ``shutdown()`` (also a context manager).

    Examples
    --------
    >>> from softdb import SoftTable
    >>> from softdb.text import HashEncoder
    >>> import json, urllib.request
    >>> t = SoftTable.from_texts(["read a csv file", "gzip a file"], encoder=HashEncoder())
    >>> with start_server(t, port=0) as srv:
    ...     json.load(urllib.request.urlopen(srv.url + "api/health"))["rows"]
    2
    """

    def __init__(self, httpd: ThreadingHTTPServer, thread: threading.Thread | None) -> None:
        self.httpd, self.thread = httpd, thread
        host, port = httpd.server_address[:2]
        self.host, self.port = str(host), int(port)
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}/"

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (the CLI's loop)."""
        self.httpd.serve_forever(poll_interval=0.25)

    def shutdown(self) -> None:
        """Stop serving and close the socket (waits for the serving thread)."""
        if self.thread is not None:
            self.httpd.shutdown()
            self.thread.join(timeout=10)
        self.httpd.server_close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()


def _limit_blas_threads() -> None:
    """One BLAS thread per request: many small products in parallel threads, not one product split."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        return
    threadpool_limits(limits=1, user_api="blas")


def start_server(
    table: SoftTable,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    background: bool = True,
    quiet: bool = True,
    title: str = "softdb",
) -> Server:
    """Start the web app on ``host:port`` (port 0: any free port).

    Parameters
    ----------
    table : SoftTable
        A table built from texts.
    host : str
        Default 127.0.0.1. Any non-loopback address prints a warning: the app has
        no authentication, so binding it elsewhere shows the table to the network.
    port : int
    background : bool
        Serve from a daemon thread (tests, benchmarks); False: call ``serve_forever``.
    quiet : bool
        False logs one line per request to stderr.

    Returns
    -------
    Server
    """
    app = App(table, title=title)
    if not is_loopback(host):
        print(
            f"softdb: warning: binding {host}, not 127.0.0.1: anyone who can reach this machine on port "
            f"{port} can query the table (the app has no authentication); bind 127.0.0.1 unless you mean it",
            file=sys.stderr,
        )
    _limit_blas_threads()
    handler = type("Handler", (_Handler,), {"app": app, "quiet": quiet})
    server_cls: type[ThreadingHTTPServer] = _Server6 if ":" in host else ThreadingHTTPServer
    httpd = server_cls((host, port), handler)
    httpd.daemon_threads = True
    thread = None
    if background:
        thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="softdb-serve", daemon=True
        )
        thread.start()
    return Server(httpd, thread)
