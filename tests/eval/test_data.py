"""`softdb data`: downloads from a loopback HTTP server, md5 checks, atomic and safe unpacking.

Every zip is built here, from the SciFact slice in tests/data; the server binds 127.0.0.1
and is shut down after each test. Nothing touches the internet.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import json
import re
import socket
import stat
import threading
import zipfile
from pathlib import Path

import pytest

from softdb.cli import main
from softdb.eval import _data as data

SLICE = Path(__file__).resolve().parents[1] / "data" / "scifact"
FILES = ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv", "qrels/train.tsv"]
pytestmark = pytest.mark.timeout(60)  # a hang is a failure, not a stuck run


def beir_zip(name: str = "scifact", extra: dict[str, bytes] | None = None) -> bytes:
    """A zip laid out as BEIR's: one top folder NAME/ holding the data set."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for f in FILES:
            z.writestr(f"{name}/{f}", (SLICE / f).read_bytes())
        for entry, content in (extra or {}).items():
            z.writestr(entry, content)
    return buf.getvalue()


def md5(blob: bytes) -> str:
    return hashlib.md5(blob).hexdigest()


class Server:
    """A threaded HTTP server on 127.0.0.1 serving ``routes`` (path -> bytes); 404 elsewhere."""

    def __init__(self, routes: dict[str, bytes], *, short_by: int = 0):
        self.routes, self.requests = routes, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                body = outer.routes.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) - short_by])  # short_by > 0: the connection drops early

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """The cache (and so data_dir()) lives in tmp_path; no proxy can reroute loopback traffic."""
    monkeypatch.delenv("SOFTDB_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "cache" / "softdb"


def publish(monkeypatch, blob: bytes, name: str = "scifact") -> None:
    """Make ``blob`` the zip whose md5 softdb expects for ``name`` (the test's stand-in for BEIR's)."""
    monkeypatch.setitem(
        data.DATASETS, name, dataclasses.replace(data.DATASETS[name], md5=md5(blob), zip_bytes=len(blob))
    )


def leftovers(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) if root.exists() else []


def test_known_data_sets_carry_beirs_published_md5():
    want = {"scifact", "nfcorpus", "fiqa", "arguana", "scidocs", "trec-covid", "quora"}
    assert want <= set(data.DATASETS)
    for d in data.DATASETS.values():
        assert re.fullmatch(r"[0-9a-f]{32}", d.md5) and d.zip_bytes > 0 and d.documents > 0
        assert d.url == f"https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{d.name}.zip"
    assert data.DATASETS["scifact"].md5 == "5f7d1de60b170fc8027bb7898e2efca1"  # BEIR's README table


def test_get_checks_md5_then_unpacks_and_a_second_run_is_a_no_op(monkeypatch, private_cache):
    blob = beir_zip()
    publish(monkeypatch, blob)
    with Server({"/mirror/scifact.zip": blob}) as srv:
        path = data.get("scifact", url=srv.url("/mirror/scifact.zip"), timeout=5, progress=False)
        assert path == private_cache / "beir" / "scifact" == data.dataset_path("scifact")
        for f in FILES:
            assert (path / f).read_bytes() == (SLICE / f).read_bytes()
        assert leftovers(private_cache / "beir") == ["scifact", *sorted(f"scifact/{f}" for f in [*FILES, "qrels"])]
        assert srv.requests == ["/mirror/scifact.zip"]
        again = data.get("scifact", url=srv.url("/mirror/scifact.zip"), timeout=5, progress=False)
        assert again == path and srv.requests == ["/mirror/scifact.zip"]  # no second request
    assert data.resolve("scifact") == str(path)


def test_get_into_dir(monkeypatch, tmp_path):
    blob = beir_zip()
    publish(monkeypatch, blob)
    with Server({"/scifact.zip": blob}) as srv:
        path = data.get("scifact", dir=tmp_path / "mine", url=srv.url("/scifact.zip"), timeout=5, progress=False)
    assert path == tmp_path / "mine" / "scifact" and (path / "qrels" / "train.tsv").is_file()


def test_get_from_a_file_url(monkeypatch, tmp_path):
    blob = beir_zip()
    publish(monkeypatch, blob)
    (tmp_path / "scifact.zip").write_bytes(blob)
    path = data.get("scifact", dir=tmp_path / "d", url=(tmp_path / "scifact.zip").as_uri(), progress=False)
    assert (path / "corpus.jsonl").read_bytes() == (SLICE / "corpus.jsonl").read_bytes()


def test_a_mirror_serving_another_zip_is_refused_by_beirs_md5(tmp_path):
    blob = beir_zip()  # not BEIR's scifact.zip: the published md5 does not match
    want = data.DATASETS["scifact"].md5
    with Server({"/scifact.zip": blob}) as srv:
        url = srv.url("/scifact.zip")
        msg = (
            f"scifact.zip from {url} has md5 {md5(blob)} ({len(blob)} bytes) but BEIR publishes {want} "
            f"({data.DATASETS['scifact'].zip_bytes} bytes); the download is corrupted or not BEIR's scifact.zip, "
            "so nothing was unpacked; try again or use another mirror"
        )
        with pytest.raises(data.DataError, match=re.escape(msg)):
            data.get("scifact", dir=tmp_path / "d", url=url, timeout=5, progress=False)
    assert leftovers(tmp_path / "d") == []


def test_a_corrupted_zip_leaves_nothing_behind(monkeypatch, tmp_path):
    blob = beir_zip()
    publish(monkeypatch, blob)
    bad = bytearray(blob)
    bad[len(bad) // 2] ^= 0xFF  # one flipped byte in the middle of the deflated data
    with (
        Server({"/scifact.zip": bytes(bad)}) as srv,
        pytest.raises(data.DataError, match=re.escape(f"has md5 {md5(bytes(bad))}")),
    ):
        data.get("scifact", dir=tmp_path / "d", url=srv.url("/scifact.zip"), timeout=5, progress=False)
    assert leftovers(tmp_path / "d") == []


def test_a_truncated_download_leaves_nothing_behind(monkeypatch, tmp_path):
    blob = beir_zip()
    publish(monkeypatch, blob)
    with Server({"/scifact.zip": blob}, short_by=1000) as srv:
        url = srv.url("/scifact.zip")
        with pytest.raises(data.DataError, match=re.escape(f"the download from {url} ")):
            data.get("scifact", dir=tmp_path / "d", url=url, timeout=5, progress=False)
    assert leftovers(tmp_path / "d") == []


def test_http_404(tmp_path):
    with Server({}) as srv:
        url = srv.url("/nowhere/scifact.zip")
        msg = (
            f"{url} answered HTTP 404 Not Found; check the address "
            "(--url must name the zip itself, e.g. https://mirror/beir/scifact.zip)"
        )
        with pytest.raises(data.DataError, match=re.escape(msg)):
            data.get("scifact", dir=tmp_path / "d", url=url, timeout=5, progress=False)
    assert leftovers(tmp_path / "d") == []


def test_a_server_that_never_answers_fails_after_the_timeout(tmp_path):
    # a listening socket that never accepts: the kernel completes the handshake, nobody replies
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/scifact.zip"
        msg = f"{url} sent no answer within 0.3 s; try again later, or pass --url with a mirror you can reach"
        with pytest.raises(data.DataError, match=re.escape(msg)):
            data.get("scifact", dir=tmp_path / "d", url=url, timeout=0.3, progress=False)
    assert leftovers(tmp_path / "d") == []


def test_an_unreachable_host_fails_fast(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]  # closed again below: connecting is refused
    url = f"http://127.0.0.1:{port}/scifact.zip"
    with pytest.raises(data.DataError, match=re.escape(f"cannot reach {url}: [Errno 111] Connection refused")):
        data.get("scifact", dir=tmp_path / "d", url=url, timeout=5, progress=False)
    assert leftovers(tmp_path / "d") == []


def test_a_name_lookup_that_hangs_is_bounded(monkeypatch, tmp_path):
    release = threading.Event()
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: release.wait(30) and [])  # never resolves
    try:
        msg = "cannot reach beir.example.invalid: no answer to the name lookup within 0.2 s"
        with pytest.raises(data.DataError, match=re.escape(msg)):
            data.get(
                "scifact",
                dir=tmp_path / "d",
                url="http://beir.example.invalid/scifact.zip",
                timeout=0.2,
                progress=False,
            )
    finally:
        release.set()
    assert leftovers(tmp_path / "d") == []


def _symlink_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for f in FILES:
            z.writestr(f"scifact/{f}", (SLICE / f).read_bytes())
        link = zipfile.ZipInfo("scifact/escape")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(link, "/etc")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("blob", "entry", "reason"),
    [
        (
            beir_zip(extra={"scifact/../../evil.txt": b"x"}),
            "scifact/../../evil.txt",
            "climbs out of the folder with '..'",
        ),
        (beir_zip(extra={"../evil.txt": b"x"}), "../evil.txt", "climbs out of the folder with '..'"),
        (beir_zip(extra={"/tmp/evil.txt": b"x"}), "/tmp/evil.txt", "is an absolute path"),
        (beir_zip(extra={"C:/evil.txt": b"x"}), "C:/evil.txt", "is an absolute path"),
        (
            beir_zip(extra={"scifact\\..\\..\\evil.txt": b"x"}),
            "scifact\\..\\..\\evil.txt",
            "climbs out of the folder with '..'",
        ),
        (_symlink_zip(), "scifact/escape", "is a symbolic link"),
    ],
    ids=["dotdot", "leading-dotdot", "absolute", "drive", "backslash", "symlink"],
)
def test_entries_that_escape_the_target_are_refused(monkeypatch, tmp_path, blob, entry, reason):
    publish(monkeypatch, blob)
    with Server({"/scifact.zip": blob}) as srv:
        msg = f"refusing to unpack scifact.zip: entry {entry!r} {reason}; nothing was written"
        with pytest.raises(data.DataError, match=re.escape(msg)):
            data.get("scifact", dir=tmp_path / "a" / "b", url=srv.url("/scifact.zip"), timeout=5, progress=False)
    assert leftovers(tmp_path) == ["a", "a/b"]  # the target's parent, created for the download, is empty


def test_a_zip_without_corpus_is_not_beir(monkeypatch, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("scifact/readme.txt", "no data here")
    publish(monkeypatch, buf.getvalue())
    with (
        Server({"/scifact.zip": buf.getvalue()}) as srv,
        pytest.raises(data.DataError, match=re.escape("scifact.zip holds no corpus.jsonl, so it is not a BEIR")),
    ):
        data.get("scifact", dir=tmp_path / "d", url=srv.url("/scifact.zip"), timeout=5, progress=False)
    assert leftovers(tmp_path / "d") == []


def test_unknown_name():
    msg = "unknown data set 'sci-fact'; known: " + ", ".join(data.DATASETS) + " (see `softdb data list`)"
    with pytest.raises(data.DataError, match=re.escape(msg)):
        data.get("sci-fact", progress=False)


def test_resolve_names_and_paths(tmp_path, monkeypatch, private_cache):
    assert data.resolve("stdlib") == "stdlib"
    assert data.resolve(str(tmp_path)) == str(tmp_path)
    assert data.resolve("no/such/folder") == "no/such/folder"  # the caller says it does not exist
    msg = (
        f"data set 'nfcorpus' has not been downloaded (looked in {private_cache / 'beir' / 'nfcorpus'}); "
        "get it with `softdb data get nfcorpus`, or pass the folder of a copy you already have"
    )
    with pytest.raises(FileNotFoundError, match=re.escape(msg)):
        data.resolve("nfcorpus")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nfcorpus").mkdir()
    assert data.resolve("nfcorpus") == "nfcorpus"  # an existing path wins over the name


# --------------------------------------------------------------------------- CLI
def test_cli_get_list_and_eval_by_name(monkeypatch, capsys, private_cache):
    from softdb.text import HashEncoder

    blob = beir_zip()
    publish(monkeypatch, blob)
    assert main(["eval", "scifact"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"softdb: error: data set 'scifact' has not been downloaded (looked in "
        f"{private_cache / 'beir' / 'scifact'}); get it with `softdb data get scifact`, or pass the "
        "folder of a copy you already have\n"
    )
    with Server({"/scifact.zip": blob}) as srv:
        assert main(["data", "get", "scifact", "--url", srv.url("/scifact.zip"), "--timeout", "5"]) == 0
        out = capsys.readouterr().out
        path = private_cache / "beir" / "scifact"
        assert out == (
            f"scifact: md5 checked against BEIR's, unpacked into {path}\nevaluate with: softdb eval scifact\n"
        )
        assert main(["data", "get", "scifact", "--url", srv.url("/scifact.zip")]) == 0
        assert capsys.readouterr().out.startswith(f"scifact is already in {path}; nothing to do\n")
    assert main(["data", "list"]) == 0
    rows = {line.split()[0]: line.split()[-1] for line in capsys.readouterr().out.splitlines()[1:8]}
    assert rows == {name: "yes" if name == "scifact" else "no" for name in data.DATASETS}
    monkeypatch.setattr("softdb.text.default_encoder", lambda: HashEncoder(32))
    assert main(["eval", "scifact", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    test_queries = {line.split("\t")[0] for line in (SLICE / "qrels" / "test.tsv").read_text().splitlines()[1:]}
    assert out["baseline"]["all"]["queries"] == len(test_queries)


def test_cli_errors_exit_2_without_traceback(capsys, tmp_path):
    with Server({}) as srv:
        url = srv.url("/scifact.zip")
        assert main(["data", "get", "scifact", "--url", url, "--dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"softdb: error: {url} answered HTTP 404 Not Found; check the address "
        "(--url must name the zip itself, e.g. https://mirror/beir/scifact.zip)\n"
    )
    assert main(["data", "get", "nope"]) == 2
    assert "softdb: error: unknown data set 'nope'" in capsys.readouterr().err
    assert main(["search", "a claim", "--corpus", "fiqa"]) == 2  # --corpus takes names too
    assert capsys.readouterr().err.startswith("softdb: error: data set 'fiqa' has not been downloaded (looked in ")
    with pytest.raises(SystemExit) as exc:
        main(["data"])
    assert exc.value.code == 2 and "softdb: error:" in capsys.readouterr().err


def test_leftovers_of_a_killed_run_are_removed_by_the_next(monkeypatch, tmp_path):
    import os

    blob = beir_zip()
    publish(monkeypatch, blob)
    root = tmp_path / "d"
    (root / ".scifact.unpack-old" / "zip").mkdir(parents=True)
    (root / ".scifact.old.zip.part").write_bytes(b"half a zip")
    (root / ".scifact.live.zip.part").write_bytes(b"another get, still writing")
    for p in (root / ".scifact.unpack-old", root / ".scifact.old.zip.part"):
        os.utime(p, (1e9, 1e9))  # untouched since 2001
    with Server({"/scifact.zip": blob}) as srv:
        data.get("scifact", dir=root, url=srv.url("/scifact.zip"), timeout=5, progress=False)
    assert sorted(p.name for p in root.iterdir()) == [".scifact.live.zip.part", "scifact"]


def test_a_foreign_folder_at_the_target_is_left_alone(monkeypatch, tmp_path):
    blob = beir_zip()
    publish(monkeypatch, blob)
    (tmp_path / "d" / "scifact").mkdir(parents=True)
    (tmp_path / "d" / "scifact" / "notes.txt").write_text("mine")
    target = tmp_path / "d" / "scifact"
    with (
        Server({"/scifact.zip": blob}) as srv,
        pytest.raises(data.DataError, match=re.escape(f"cannot move the unpacked data into {target}: ")),
    ):
        data.get("scifact", dir=tmp_path / "d", url=srv.url("/scifact.zip"), timeout=5, progress=False)
    assert leftovers(tmp_path / "d") == ["scifact", "scifact/notes.txt"]


@pytest.mark.parametrize("with_tqdm", [True, False])
def test_progress_bar_with_or_without_tqdm(monkeypatch, capsys, tmp_path, with_tqdm):
    import sys

    blob = beir_zip()
    publish(monkeypatch, blob)
    if not with_tqdm:
        monkeypatch.setitem(sys.modules, "tqdm", None)  # `import tqdm` now raises ImportError
    with Server({"/scifact.zip": blob}) as srv:
        data.get("scifact", dir=tmp_path, url=srv.url("/scifact.zip"), timeout=5)
    err = capsys.readouterr().err
    if with_tqdm:
        assert "scifact.zip: 100%" in err
    else:
        assert err == f"downloading scifact.zip ({len(blob) / 1e6:.1f} MB) ...\n"


def test_a_server_that_stalls_mid_download_fails_after_the_timeout(tmp_path):
    done = threading.Event()

    def stall(server: socket.socket) -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 10)
            done.wait(10)  # then say nothing more

    with socket.create_server(("127.0.0.1", 0)) as server:
        worker = threading.Thread(target=stall, args=(server,), daemon=True)
        worker.start()
        url = f"http://127.0.0.1:{server.getsockname()[1]}/scifact.zip"
        try:
            with pytest.raises(
                data.DataError, match=re.escape(f"{url} stopped sending after 10 bytes (nothing for 0.3 s)")
            ):
                data.get("scifact", dir=tmp_path / "d", url=url, timeout=0.3, progress=False)
        finally:
            done.set()
            worker.join(5)
    assert leftovers(tmp_path / "d") == []
