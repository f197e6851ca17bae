"""`softdb serve`'s JSON API over HTTP on 127.0.0.1: answers, every bad request a JSON 400, concurrency."""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softdb import SoftTable
from softdb.text import HashEncoder
from softdb.views import search_record
from softdb.views._app import MAX_COMPARE, MAX_K, MAX_QUERY_CHARS
from softdb.views._server import is_loopback, start_server

TEXTS = [
    "read rows from a csv file",
    "compress data with gzip",
    "<script>alert(1)</script> evil payload",
    "parse json text",
    "run a shell command and capture its output",
    "open a zip archive",
    "send an email message",
    "format dates and times",
    "walk a directory tree",
    "hash a password",
]
SWEEP_COUNTS: dict[tuple[str, int], int] = {}


class CountingEncoder:
    """HashEncoder that records how many threads are inside ``encode`` at once."""

    def __init__(self) -> None:
        self.inner, self.name, self.dim = HashEncoder(), "hash-64", 64
        self.active, self.max_active, self.calls = 0, 0, 0
        self._lock = threading.Lock()

    def encode(self, texts, **kw):
        with self._lock:
            self.active += 1
            self.calls += 1
            self.max_active = max(self.max_active, self.active)
        try:
            threading.Event().wait(0.002)  # long enough for a second thread to come in, if it could
            return self.inner.encode(texts, **kw)
        finally:
            with self._lock:
                self.active -= 1


@pytest.fixture(scope="module")
def table():
    t = SoftTable.from_texts(TEXTS, ids=[f"doc{i}" for i in range(len(TEXTS))], encoder=HashEncoder())
    t.encoder = CountingEncoder()
    return t


@pytest.fixture(scope="module")
def server(table):
    srv = start_server(table, port=0)
    try:
        yield srv
    finally:
        srv.shutdown()


def get(server, path: str, method: str = "GET") -> tuple[int, dict, dict]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, dict(resp.getheaders()), (json.loads(body) if body and method != "HEAD" else {})
    finally:
        conn.close()


def api(server, **params) -> tuple[int, dict]:
    status, _, body = get(server, "/api/search?" + urllib.parse.urlencode(params, doseq=True))
    return status, body


# ------------------------------------------------------------------ answers
def test_health(server, table):
    status, headers, body = get(server, "/api/health")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert body["status"] == "ok" and body["rows"] == len(table) and body["temperature"] == table.temperature


def test_search_is_the_cli_json_shape_and_matches_the_table(server, table):
    status, body = api(server, q="csv file", k=3, temperature=0.2)
    assert status == 200
    qv = table.encoder.encode(["csv file"])[0]
    e = table.explain(qv, k=3, temperature=0.2)  # four separate figures, from explain's own pass
    ref = search_record(e, "csv file", table_rows=len(table), k=3)
    assert sorted(body) == sorted(ref) and [sorted(h) for h in body["hits"]] == [sorted(h) for h in ref["hits"]]
    assert body["query"] == ref["query"] and body["mode"] == ref["mode"] and body["temperature"] == ref["temperature"]
    for name in ("entropy", "effective_rows", "covered"):
        assert body[name] == pytest.approx(ref[name], abs=2e-6), name
    hits = table.search(qv, k=3, temperature=0.2)
    assert [h["id"] for h in body["hits"]] == list(hits.ids)
    np.testing.assert_allclose([h["weight"] for h in body["hits"]], hits.weights, atol=1e-6)


def test_hard_mode_has_no_weights(server):
    status, body = api(server, q="gzip", k=2, mode="hard")
    assert status == 200 and body["mode"] == "hard" and all("weight" not in h for h in body["hits"])


def test_k_above_the_table_size_is_clamped(server, table):
    status, body = api(server, q="gzip", k=MAX_K)
    assert status == 200 and len(body["hits"]) == len(table)


def test_compare_gives_full_table_weights_of_the_union_of_top_rows(server, table):
    qs = ["csv file", "gzip", "email"]
    status, _, body = get(server, "/api/compare?" + urllib.parse.urlencode({"q": qs, "k": 2}, doseq=True))
    assert status == 200 and body["queries"] == qs
    qv = table.encoder.encode(qs)
    w = table.weights(qv)  # (3, n)
    tops = table.search(qv, k=2).ids  # (3, 2)
    assert set(body["ids"]) == set(tops.reshape(-1))
    cols = [table.row_of(i) for i in body["ids"]]
    np.testing.assert_allclose(body["weights"], w[:, cols], atol=1e-6)


def test_payloads_are_data_not_markup(server):
    _, body = api(server, q="evil payload", k=1)
    assert body["hits"][0]["payload"] == "<script>alert(1)</script> evil payload"
    _, headers, _ = get(server, "/api/search?q=evil")
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_page_has_a_strict_content_security_policy(server):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    conn.request("GET", "/?q=%3Cscript%3Ealert(1)%3C/script%3E")
    resp = conn.getresponse()
    page = resp.read().decode()
    conn.close()
    assert resp.status == 200 and "alert(1)" not in page  # the page never echoes the URL
    csp = resp.getheader("Content-Security-Policy")
    assert "default-src 'none'" in csp and re.search(r"script-src 'sha256-[A-Za-z0-9+/=]+'", csp)
    assert "http:" not in page.replace("http://", "") and "https:" not in page


# ---------------------------------------------------------- bad requests
BAD = [
    ({"q": ""}, "the query 'q' is empty"),
    ({"q": "   "}, "the query 'q' is empty"),
    ({}, "parameter 'q' (the query text) is missing"),
    ({"q": "x" * (MAX_QUERY_CHARS + 1)}, f"has {MAX_QUERY_CHARS + 1} characters but at most {MAX_QUERY_CHARS}"),
    ({"q": "a", "k": "0"}, "k must be >= 1, got k=0"),
    ({"q": "a", "k": "-3"}, "k must be >= 1, got k=-3"),
    ({"q": "a", "k": "ten"}, "k must be a whole number, got 'ten'"),
    ({"q": "a", "k": "2.5"}, "k must be a whole number, got '2.5'"),
    ({"q": "a", "k": str(MAX_K + 1)}, f"k={MAX_K + 1} is above the limit of {MAX_K}"),
    ({"q": "a", "k": "99999999999999999999"}, "is above the limit"),
    ({"q": "a", "temperature": "hot"}, "temperature must be a number, got 'hot'"),
    ({"q": "a", "temperature": "0"}, "temperature must be finite and > 0, got '0'"),
    ({"q": "a", "temperature": "-0.5"}, "temperature must be finite and > 0, got '-0.5'"),
    ({"q": "a", "temperature": "nan"}, "temperature must be finite and > 0, got 'nan'"),
    ({"q": "a", "temperature": "inf"}, "temperature must be finite and > 0, got 'inf'"),
    ({"q": "a", "temperature": "1e-300"}, "temperature must lie in"),
    ({"q": "a", "mode": "medium"}, "mode must be 'soft' or 'hard', got 'medium'"),
    ({"q": ["a", "b"]}, "parameter 'q' must be given once, got it 2 times"),
    ({"q": "a", "path": "/etc/passwd"}, "unknown parameter 'path'"),
    ({"q": "a\x00b"}, "contains a NUL character"),
]


@pytest.mark.parametrize("params, message", BAD, ids=[m[:30] for _, m in BAD])
def test_bad_requests_get_400_with_a_json_error(server, params, message):
    status, body = api(server, **params)
    assert status == 400 and body["status"] == 400
    assert message in body["error"]


def test_invalid_utf8_and_paths_and_methods(server):
    status, _, body = get(server, "/api/search?q=%ff%fe")
    assert status == 400 and "not valid UTF-8" in body["error"]
    for path in ("/../../etc/passwd", "/assets/../../../etc/passwd", "/softdb/views/_app.py", "/%2e%2e/x"):
        status, _, body = get(server, path)
        assert status == 404 and "no such page" in body["error"]
    status, headers, body = get(server, "/api/search?q=a", method="POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD" and "not allowed" in body["error"]


def _raw(server, data: bytes) -> str:
    """Send raw bytes, read until the server closes the connection."""
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode("latin-1")


def test_a_malformed_request_line_gets_json_and_the_server_keeps_serving(server):
    raw = _raw(server, b"GARBAGE\r\n\r\n")
    assert raw.startswith("HTTP/1.") and " 400 " in raw.split("\r\n")[0]
    assert json.loads(raw.split("\r\n\r\n", 1)[1])["status"] == 400
    raw = _raw(server, b"GET /api/search?q=" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert raw.split("\r\n")[0].split()[1] == "414"
    assert json.loads(raw.split("\r\n\r\n", 1)[1])["status"] == 414
    assert api(server, q="still serving")[0] == 200


def test_compare_limits(server):
    status, _, body = get(
        server, "/api/compare?" + urllib.parse.urlencode({"q": ["a"] * (MAX_COMPARE + 1)}, doseq=True)
    )
    assert status == 400 and f"at most {MAX_COMPARE} queries" in body["error"]
    status, _, body = get(server, "/api/compare?k=2")
    assert status == 400 and "repeated 'q' parameters" in body["error"]


_any_text = st.text(st.characters(codec="utf-8"), max_size=40)
_param = st.one_of(
    _any_text,
    st.sampled_from(
        [
            "",
            "0",
            "-1",
            "1",
            "10",
            "100",
            "101",
            "1e9",
            "nan",
            "inf",
            "-inf",
            "0.05",
            "1e-7",
            "1e300",
            "soft",
            "hard",
            "SOFT",
            " 5",
            "5 ",
            "0x10",
            "1_0",
            "\u0661",
            "%",
            "%zz",
        ]
    ),
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    q=st.one_of(st.none(), _any_text, st.text(min_size=490, max_size=520)),
    k=st.one_of(st.none(), st.integers(1, 20).map(str), _param),
    temperature=st.one_of(st.none(), st.floats(1e-3, 10.0).map(repr), _param),
    mode=st.one_of(st.none(), st.sampled_from(["soft", "hard"]), _param),
    extra=st.one_of(st.none(), st.none(), st.none(), st.tuples(_any_text, _any_text)),
    raw=st.booleans(),
    endpoint=st.sampled_from(["search", "search", "search", "compare"]),
    more=st.lists(_any_text, max_size=10),
)
def test_bad_input_sweep_every_answer_is_200_or_a_json_400(server, q, k, temperature, mode, extra, raw, endpoint, more):
    params = [
        (name, v)
        for name, v in (("q", q), ("k", k), ("temperature", temperature), ("mode", mode))
        if v is not None and not (endpoint == "compare" and name == "mode")
    ]
    if endpoint == "compare":  # several queries: repeated q parameters
        params += [("q", m) for m in more]
    if extra is not None:
        params.append(extra)
    if raw:  # the characters as they are, percent-encoding only what HTTP itself cannot carry
        qs = "&".join(f"{urllib.parse.quote(n, safe='%')}={urllib.parse.quote(v, safe='%=&')}" for n, v in params)
    else:
        qs = urllib.parse.urlencode(params)
    status, _, body = get(server, f"/api/{endpoint}?" + qs)
    key = (endpoint, status)
    SWEEP_COUNTS[key] = SWEEP_COUNTS.get(key, 0) + 1
    assert status in (200, 400), (status, body)
    assert isinstance(body, dict)
    if status == 400:
        assert body["status"] == 400 and body["error"]
    elif endpoint == "search":
        assert body["mode"] in ("soft", "hard") and isinstance(body["hits"], list)
    else:
        assert len(body["weights"]) == len(body["queries"]) and all(len(w) == len(body["ids"]) for w in body["weights"])


def test_zz_sweep_counts(capsys):
    """Print the sweep's tally (run after it: tests in a module run in order)."""
    if SWEEP_COUNTS:
        with capsys.disabled():
            counts = dict(sorted(SWEEP_COUNTS.items()))
            print(f"\nbad-input sweep: {sum(SWEEP_COUNTS.values())} requests, status counts {counts}")
        assert {status for _, status in SWEEP_COUNTS} <= {200, 400}


# ------------------------------------------------------------- concurrency
def test_concurrent_requests_get_their_own_answers_and_the_encoder_is_never_reentered(server, table):
    enc = table.encoder
    queries = [f"{w} {i}" for i, w in enumerate(["csv", "gzip", "json", "email", "shell", "zip", "dates", "hash"] * 8)]

    def one(q):
        return q, api(server, q=q, k=3)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, queries))
    for q, (status, body) in results:
        assert status == 200 and body["query"] == q
        qv = HashEncoder().encode([q])[0]
        assert [h["id"] for h in body["hits"]] == list(table.search(qv, k=3).ids)
    assert enc.max_active == 1, f"{enc.max_active} threads were inside the encoder at once"


def test_non_loopback_host_warns(capsys, table, monkeypatch):
    from softdb.views import _server

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")

    class NoBind:  # the warning comes before the bind; this test never opens a public socket
        def __init__(self, *a, **kw):
            raise OSError("not binding in a test")

    monkeypatch.setattr(_server, "ThreadingHTTPServer", NoBind)
    with pytest.raises(OSError, match="not binding in a test"):
        start_server(table, host="0.0.0.0", port=0)
    assert "softdb: warning: binding 0.0.0.0, not 127.0.0.1" in capsys.readouterr().err


def test_the_server_stops(table):
    srv = start_server(table, port=0)
    port = srv.port
    assert api(srv, q="x")[0] == 200
    srv.shutdown()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_seen_query_never_waits_for_a_slow_model_call():
    """While one thread is inside a slow encode (say the model's first load), cached queries are answered."""
    from softdb.views._app import _Encoder

    gate, inside = threading.Event(), threading.Event()

    class Slow:
        name, dim = "slow", 64

        def encode(self, texts, **kw):
            if "slow" in texts:
                inside.set()
                assert gate.wait(10)
            return HashEncoder().encode(texts)

    enc = _Encoder(Slow())
    first = enc.encode(["seen"])
    t = threading.Thread(target=enc.encode, args=(["slow"],))
    t.start()
    assert inside.wait(10)
    np.testing.assert_array_equal(enc.encode(["seen"]), first)  # answered while "slow" holds the model
    gate.set()
    t.join(10)
    np.testing.assert_array_equal(enc.encode(["slow", "seen"]), HashEncoder().encode(["slow", "seen"]))


def test_encoder_cache_is_bounded():
    from softdb.views._app import _Encoder

    enc = _Encoder(HashEncoder(), size=3)
    out = enc.encode([f"q{i}" for i in range(5)])  # a batch larger than the cache still answers
    np.testing.assert_array_equal(out, HashEncoder().encode([f"q{i}" for i in range(5)]))
    assert len(enc.cache) == 3
