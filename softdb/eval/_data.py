"""Getting BEIR benchmark data: the official zips, checked against BEIR's md5, unpacked atomically.

``get("scifact")`` downloads ``scifact.zip`` from BEIR's host (or a mirror), checks it
against the md5 BEIR publishes for that data set, and only then unpacks it into
``<cache>/beir/scifact`` (:func:`softdb.text.cache_dir`, the folder that already holds the
embedding cache) or into ``<dir>/scifact``. Running it again is a no-op.

Guarantees, each pinned by a test against a loopback HTTP server:

- a host that does not answer fails after ``timeout`` seconds (name lookup, connect and
  every read are bounded), an HTTP error names its status, and neither leaves a file;
- the zip goes to a temporary file beside the target and is hashed while it streams; a
  size or md5 mismatch deletes it, so nothing is ever unpacked from a bad download;
- every zip entry is checked before anything is written: an absolute path, a ``..``
  component, a drive letter or a symbolic link is refused;
- the archive is unpacked into a temporary folder beside the target and moved into place
  with one rename, so the target is either absent or complete, even after a crash.

Why not a library: pooch (the best-kept candidate) checks hashes and bounds timeouts, but
it unpacks in place and lets :mod:`zipfile` silently rewrite ``../`` entries rather than
refuse them, and it would add ``requests`` to the core dependencies. The standard
library's :mod:`urllib` with a timeout, :mod:`hashlib` and :mod:`zipfile` do the job in a
page. tqdm draws the progress bar when it is installed (the ``text`` and ``eval`` extras
bring it); without it, a plain line says what is being downloaded.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import socket
import stat
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

__all__ = ["DATASETS", "BeirDataset", "DataError", "data_dir", "dataset_path", "get", "resolve"]

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"
DEFAULT_TIMEOUT = 30.0
_CHUNK = 1 << 16


class DataError(RuntimeError):
    """A download or unpack that failed; the message says why and what to try."""


@dataclass(frozen=True)
class BeirDataset:
    """One BEIR data set: its official zip (md5 and size) and what is in it."""

    name: str
    md5: str  # BEIR's README, "Available Datasets" table
    zip_bytes: int  # ir_datasets' size_hint for the same zip (same md5)
    documents: int
    test_queries: int
    splits: tuple[str, ...]

    @property
    def url(self) -> str:
        """The official download address."""
        return BEIR_URL.format(name=self.name)


# md5: the table of https://github.com/beir-cellar/beir (README, "Available Datasets"). Sizes:
# allenai/ir_datasets ir_datasets/etc/downloads.json ("size_hint", listed with the same md5).
# Documents and test queries: ir_datasets/etc/metadata.json (as in the BEIR paper's Table 1).
DATASETS: dict[str, BeirDataset] = {
    d.name: d
    for d in [
        BeirDataset("scifact", "5f7d1de60b170fc8027bb7898e2efca1", 2_816_079, 5_183, 300, ("train", "test")),
        BeirDataset("nfcorpus", "a89dba18a62ef92f7d323ec890a0d38d", 2_448_432, 3_633, 323, ("train", "dev", "test")),
        BeirDataset("arguana", "8ad3e3c2a5867cdced806d6503f29b99", 3_773_617, 8_674, 1_406, ("test",)),
        BeirDataset("quora", "18fb154900ba42a600f84b839c173167", 15_853_968, 522_931, 10_000, ("dev", "test")),
        BeirDataset("fiqa", "17918ed23cd04fb15047f73e6c3bd9d9", 17_948_027, 57_638, 648, ("train", "dev", "test")),
        BeirDataset("trec-covid", "ce62140cb23feb9becf6270d0d1fe6d1", 73_876_720, 171_332, 50, ("test",)),
        BeirDataset("scidocs", "38121350fc3a4d2f48850f6aff52e4a9", 142_471_588, 25_657, 1_000, ("test",)),
    ]
}


def data_dir() -> Path:
    """The folder that ``get`` unpacks into by default: ``<softdb cache>/beir``.

    Examples
    --------
    >>> from unittest import mock
    >>> with mock.patch.dict("os.environ", {"SOFTDB_CACHE_DIR": "/tmp/softdb-doc"}):
    ...     print(data_dir().as_posix())
    /tmp/softdb-doc/beir
    """
    from softdb.text._cache import cache_dir

    return cache_dir() / "beir"


def _known(name: str) -> BeirDataset:
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(DATASETS)} (see `softdb data list`)")
    return DATASETS[name]


def dataset_path(name: str, dir: str | os.PathLike[str] | None = None) -> Path:  # noqa: A002 - the public keyword of --dir
    """Where data set ``name`` lives once downloaded: ``<dir or data_dir()>/<name>``.

    Examples
    --------
    >>> dataset_path("scifact", "/data").as_posix()
    '/data/scifact'
    """
    _known(name)
    return Path(dir).expanduser() / name if dir is not None else data_dir() / name


def resolve(spec: str) -> str:
    """Turn a data set name into its downloaded folder; pass anything else through.

    An existing path always wins (a folder called ``scifact`` in the working directory
    is that folder). A known BEIR name that is not a path resolves to
    ``data_dir() / name`` if it has been downloaded.

    Raises
    ------
    FileNotFoundError
        A known name that has not been downloaded; the message gives the command.

    Examples
    --------
    >>> resolve("stdlib"), resolve("notes/")
    ('stdlib', 'notes/')
    """
    if spec not in DATASETS or os.path.exists(spec):
        return spec
    path = dataset_path(spec)
    if (path / "corpus.jsonl").is_file():
        return str(path)
    raise FileNotFoundError(
        f"data set {spec!r} has not been downloaded (looked in {path}); get it with "
        f"`softdb data get {spec}`, or pass the folder of a copy you already have"
    )


# ------------------------------------------------------------------ download
def _check_host(url: str, timeout: float) -> None:
    """Resolve the host (or the proxy that will be used) within ``timeout``: name lookup ignores socket timeouts."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname):
        parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if not parts.hostname:
            return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:  # a port that is not a number
        raise DataError(f"{url} is not a valid address: {exc}") from None
    outcome: list[BaseException | None] = []

    def lookup() -> None:
        try:
            socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
            outcome.append(None)
        except OSError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=lookup, daemon=True)
    worker.start()
    worker.join(timeout)
    if not outcome:
        raise DataError(
            f"cannot reach {parts.hostname}: no answer to the name lookup within {timeout:g} s; "
            "check the network, or pass --url with a mirror you can reach"
        )
    if outcome[0] is not None:
        raise DataError(
            f"cannot reach {parts.hostname}: {outcome[0]}; check the network or the address, "
            "or pass --url with a mirror you can reach"
        )


def _progress(total: int | None, label: str, enabled: bool) -> tuple[Callable[[int], Any], Callable[[], Any]]:
    if not enabled:
        return (lambda n: None), (lambda: None)
    try:
        from tqdm import tqdm
    except ImportError:
        size = f" ({total / 1e6:.1f} MB)" if total else ""
        print(f"downloading {label}{size} ...", file=sys.stderr, flush=True)
        return (lambda n: None), (lambda: None)
    bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label, file=sys.stderr, leave=True)
    return bar.update, bar.close


def _download(url: str, out: BinaryIO, *, timeout: float, label: str, progress: bool) -> tuple[str, int]:
    """Stream ``url`` into ``out``; return (md5 hex digest, bytes written)."""
    _check_host(url, timeout)
    request = urllib.request.Request(url, headers={"User-Agent": "softdb"})  # noqa: S310 - http(s) or a file: mirror
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) or file
    except urllib.error.HTTPError as exc:
        raise DataError(
            f"{url} answered HTTP {exc.code} {exc.reason}; check the address "
            "(--url must name the zip itself, e.g. https://mirror/beir/scifact.zip)"
        ) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            reason = f"no answer within {timeout:g} s"
        raise DataError(
            f"cannot reach {url}: {reason}; check the network, or pass --url with a mirror you can reach"
        ) from None
    except TimeoutError:
        raise DataError(
            f"{url} sent no answer within {timeout:g} s; try again later, or pass --url with a mirror you can reach"
        ) from None
    except (OSError, http.client.HTTPException) as exc:
        raise DataError(f"cannot download {url}: {exc}; check the address, or try again") from None
    digest, written = hashlib.md5(usedforsecurity=False), 0
    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        update, close = _progress(total, label, progress)
        read = getattr(response, "read1", response.read)  # what has arrived, not a full chunk
        try:
            while True:
                try:
                    chunk = read(_CHUNK)
                except TimeoutError:
                    raise DataError(
                        f"{url} stopped sending after {written} bytes (nothing for {timeout:g} s); try again"
                    ) from None
                except (OSError, http.client.HTTPException) as exc:
                    raise DataError(
                        f"the download from {url} broke off after {written} bytes: {exc}; try again"
                    ) from None
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                written += len(chunk)
                update(len(chunk))
        finally:
            close()
    if total is not None and written != total:
        raise DataError(f"the download from {url} is truncated: {written} of {total} bytes; try again")
    return digest.hexdigest(), written


# -------------------------------------------------------------------- unpack
def _unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "is an absolute path"
    if ".." in parts:
        return "climbs out of the folder with '..'"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symbolic link"
    return None


def _unpack(zip_path: Path, target: Path, label: str) -> None:
    """Unpack into a temporary folder beside ``target``, then move the data folder into place."""
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as exc:
        raise DataError(f"{label} is not a valid zip ({exc})") from None
    with archive:
        for info in archive.infolist():
            reason = _unsafe_reason(info)
            if reason:
                raise DataError(f"refusing to unpack {label}: entry {info.filename!r} {reason}; nothing was written")
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.unpack-", dir=target.parent))
        try:
            (work / "zip").mkdir()  # normal permissions, unlike mkdtemp's 0700, whatever the zip's layout
            archive.extractall(work / "zip")
            found = sorted({p.parent for p in (work / "zip").rglob("corpus.jsonl")}, key=lambda p: len(p.parts))
            if not found:
                raise DataError(f"{label} holds no corpus.jsonl, so it is not a BEIR data set")
            try:
                os.rename(found[0], target)
            except OSError as exc:
                if not (target / "corpus.jsonl").is_file():  # else a concurrent `get` finished first
                    raise DataError(
                        f"cannot move the unpacked data into {target}: {exc}; that folder exists "
                        "without corpus.jsonl: remove it, or pass --dir"
                    ) from None
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _clean_stale(parent: Path, name: str, *, older_than: float = 3600.0) -> None:
    """Remove what a killed ``get`` left beside the target (untouched for ``older_than`` seconds)."""
    import time

    for p in parent.glob(f".{name}.*"):
        if re.fullmatch(rf"\.{re.escape(name)}\.(.+\.zip\.part|unpack-.+)", p.name):
            try:
                if time.time() - p.lstat().st_mtime > older_than:
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
            except OSError:
                pass


def get(
    name: str,
    *,
    dir: str | os.PathLike[str] | None = None,  # noqa: A002 - the public keyword of --dir
    url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool = True,
) -> Path:
    """Download BEIR data set ``name``, check its md5, unpack it; return its folder.

    Parameters
    ----------
    name : str
        A key of :data:`DATASETS`, e.g. ``"scifact"``.
    dir : path-like, optional
        Unpack into ``dir/name`` instead of ``data_dir()/name``.
    url : str, optional
        A mirror to download from instead of BEIR's host (http, https or file). The zip
        is still checked against BEIR's published md5 for ``name``.
    timeout : float, default 30
        Seconds allowed for the name lookup, the connection, and each read.
    progress : bool, default True
        Draw a progress bar on stderr (tqdm if installed).

    Returns
    -------
    Path
        The folder holding corpus.jsonl, queries.jsonl and qrels/. If it already
        holds corpus.jsonl nothing is downloaded.

    Raises
    ------
    DataError
        Unknown name, unreachable host, HTTP error, truncated or corrupted download
        (md5 mismatch), or an unsafe zip. Nothing is left behind.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> _ = (dataset_path("scifact", d) / "qrels").mkdir(parents=True)
    >>> _ = (dataset_path("scifact", d) / "corpus.jsonl").write_text("")
    >>> get("scifact", dir=d) == dataset_path("scifact", d)  # already there: a no-op
    True
    """
    ds = _known(name)
    target = dataset_path(name, dir)
    if (target / "corpus.jsonl").is_file():
        return target
    if not timeout > 0:
        raise DataError(f"timeout must be > 0 seconds, got {timeout!r}")
    source = url or ds.url
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {target.parent}: {exc}") from None
    _clean_stale(target.parent, name)
    fd, part = tempfile.mkstemp(prefix=f".{name}.", suffix=".zip.part", dir=target.parent)
    part_path = Path(part)
    try:
        with os.fdopen(fd, "wb") as out:
            md5, size = _download(source, out, timeout=timeout, label=f"{name}.zip", progress=progress)
        if md5 != ds.md5:
            raise DataError(
                f"{name}.zip from {source} has md5 {md5} ({size} bytes) but BEIR publishes "
                f"{ds.md5} ({ds.zip_bytes} bytes); the download is corrupted or not BEIR's "
                f"{name}.zip, so nothing was unpacked; try again or use another mirror"
            )
        _unpack(part_path, target, f"{name}.zip")
    finally:
        part_path.unlink(missing_ok=True)
    return target
