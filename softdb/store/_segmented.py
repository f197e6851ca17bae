"""Format 2: a table folder of segment folders and a manifest naming each by checksum; saves write what changed.

Layout (``format_version`` 2; documented for users in ``docs/format.md``)::

    my_table/
        manifest.json                 format, format_version 2, the table's fields (n, dim, value_dim,
                                      dtype, metric, temperature, shared_kv, keys, projection, encoder),
                                      files (the table-level arrays), segments, checksum
        seg-<sha256[:20]>/            one sealed segment: a format-1 table folder of its rows
            manifest.json               (ids, payloads, files, its own checksum)
            keys.npy, values.npy, …
        seg-<…>.live.<sha256[:16]>.npy   a segment's live bitmap (bool, False = removed), if any
        <stem>.<sha256[:16]>.npy      table-level arrays (projection, encoder state, query W_Q)

A segment folder is named by the checksum of its manifest (with ``created`` blank), so the same
rows always get the same name, and every file is named by its content: a name that the current
manifest lists is never written again. ``segments`` lists, in global row order, each segment's
``folder``, ``n`` (its rows, removed ones included), ``checksum`` and ``live`` (null, or the
bitmap's ``file``, ``sha256``, ``bytes`` and ``removed`` count).

Saving over a format-2 table is incremental and in place: new segment folders and new files
are written and fsynced first, then the new manifest replaces the old one by one atomic
rename (fsynced), and only then are the files no manifest names any more deleted. At any
moment ``manifest.json`` is the old one or the new one, and every file it names is complete,
so a crash (even kill -9) leaves the old table or the new one. A save over anything else (no
folder, a format-1 table) writes a whole new folder and swaps it in
(:func:`softdb.store._atomic.publish`). Loads and saves hold the parent folder's lock
(shared / exclusive), so a load never sees a save half done.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from softdb._version import __version__
from softdb.store import _arrays, _manifest
from softdb.store._atomic import WRITER_LOCK, _locked, _names, _publish_locked, fsync_dir, reading

__all__ = ["FORMAT_VERSION", "SegmentOut", "load_segmented", "save_segmented"]

FORMAT_VERSION = 2
SEGMENT = re.compile(r"^seg-[0-9a-f]{20}$")
LIVE = re.compile(r"^seg-[0-9a-f]{20}\.live\.[0-9a-f]{16}\.npy$")


@dataclass
class SegmentOut:
    """One segment to save.

    Attributes
    ----------
    name : str or None
        Its folder name if it was saved before (reused when the folder's manifest lists it).
    contents : callable
        ``contents()`` → (manifest fields, [(file name, array), …]) of the segment folder, as
        :func:`softdb.store._manifest.build` takes them; called only when it must be written.
    live : ndarray of bool, shape (n,), or None
        False where a row is removed.
    n : int
    """

    name: str | None
    contents: Callable[[], tuple[dict, Sequence[tuple[str, Any]]]]
    live: np.ndarray | None
    n: int
    segment: Any = None  # the caller's own object for this segment (told its name once saved)


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


def _write_bytes(folder: str, fname: str, data: bytes) -> None:
    tmp = os.path.join(folder, f".{fname}.tmp-{secrets.token_hex(4)}")
    with open(tmp, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(folder, fname))


def _content_file(folder: str, stem: str, arr: np.ndarray, listed: dict, files: dict, written: list) -> str:
    """Write ``arr`` as ``<stem>.<sha16>.npy`` unless the current manifest lists that name; return the name."""
    data = _npy_bytes(arr)
    sha = hashlib.sha256(data).hexdigest()
    fname = f"{stem}.{sha[:16]}.npy"
    if fname in listed and listed[fname].get("sha256") == sha:
        files[fname] = listed[fname]
        return fname
    _write_bytes(folder, fname, data)
    written.append((fname, len(data)))
    files[fname] = _manifest.file_entry(sha, len(data), np.asarray(arr))
    return fname


def _write_segment(root: str, seg: SegmentOut, written: list) -> dict:
    """Write one segment folder (unless present) and return its ``segments`` entry (without ``live``)."""
    fields, arrays = seg.contents()
    manifest = _manifest.build(**fields, version=__version__, files={}, created="")
    tmp = os.path.join(root, f".seg-tmp-{secrets.token_hex(6)}")
    os.mkdir(tmp)
    try:
        files: dict = {}
        for fname, arr in arrays:
            _arrays.write_npy(tmp, fname, arr, files)
        manifest["files"] = files
        from softdb.store._storage import write_manifest

        text = write_manifest(tmp, manifest)
        checksum = json.loads(text)["checksum"]
        name = f"seg-{checksum[:20]}"
        dest = os.path.join(root, name)
        if os.path.isdir(dest):
            shutil.rmtree(dest)  # left by a killed save (no manifest named it): ours is complete
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    written.append((name, sum(e["bytes"] for e in files.values()) + len(text)))
    return {"folder": name, "n": int(fields["n"]), "checksum": checksum}


def v1_segment_name(manifest: dict) -> str:
    """The segment name a format-1 table folder gets when a save turns it into format 2."""
    return f"seg-{manifest['checksum'][:20]}"


def _adopt_v1(folder: str, v1: dict, name: str) -> dict:
    """Make the format-1 table at ``folder`` a segment folder of itself, by hard links (no byte copied)."""
    dest = os.path.join(folder, name)
    if os.path.isdir(dest):
        shutil.rmtree(dest)  # left by a killed save
    tmp = os.path.join(folder, f".seg-tmp-{secrets.token_hex(6)}")
    os.mkdir(tmp)
    for fname in [*v1["files"], "manifest.json"]:
        try:
            os.link(os.path.join(folder, fname), os.path.join(tmp, fname))
        except OSError:  # pragma: no cover - a file system without hard links: copy
            shutil.copy2(os.path.join(folder, fname), os.path.join(tmp, fname))
    fsync_dir(tmp)
    os.rename(tmp, dest)
    return {"folder": name, "n": int(v1["n"]), "checksum": v1["checksum"]}


def _current(target: str) -> dict | None:
    """The intact manifest at ``target`` (format 2, or format 1: adopted as a segment), else None."""
    try:
        with open(os.path.join(target, "manifest.json"), "rb") as f:
            text = f.read()
        m = json.loads(text)
    except (OSError, ValueError):
        return None
    if not (isinstance(m, dict) and m.get("format") == _manifest.FORMAT and m.get("format_version") in (1, 2)):
        return None
    if m.get("checksum") != _manifest.checksum(m):
        return None
    return m


def _fill(
    folder: str, current: dict | None, head: dict, head_arrays: Sequence[tuple[str, Any]], segs: Sequence[SegmentOut]
) -> tuple[dict, list]:
    """Write what ``folder`` lacks and return the new manifest (not yet written) and what was written."""
    written: list = []
    v1 = current if current is not None and current.get("format_version") == 1 else None
    if v1 is not None:
        current = None  # its files are the table's, not shared ones: adopted below if a segment is it
    listed_segs = {s["folder"]: s for s in (current or {}).get("segments", [])}
    listed_files = dict((current or {}).get("files", {}))
    for s in (current or {}).get("segments", []):
        if s.get("live"):
            listed_files[s["live"]["file"]] = s["live"]
    files: dict = {}
    names: dict[str, str] = {}
    for stem, arr in head_arrays:
        names[stem] = _content_file(folder, stem, arr, listed_files, files, written)
    entries = []
    for seg in segs:
        if seg.name is not None and seg.name in listed_segs and os.path.isdir(os.path.join(folder, seg.name)):
            entry = {k: listed_segs[seg.name][k] for k in ("folder", "n", "checksum")}
        elif v1 is not None and seg.name == v1_segment_name(v1):
            entry = _adopt_v1(folder, v1, seg.name)
        else:
            entry = _write_segment(folder, seg, written)
            seg.name = entry["folder"]
        live = None
        if seg.live is not None:
            live_files: dict = {}
            fname = _content_file(
                folder, f"{entry['folder']}.live", np.asarray(seg.live, bool), listed_files, live_files, written
            )
            e = live_files[fname]
            live = {
                "file": fname,
                "sha256": e["sha256"],
                "bytes": e["bytes"],
                "removed": int(seg.n - np.count_nonzero(seg.live)),
            }
        entries.append({**entry, "live": live})
    manifest = {
        "format": _manifest.FORMAT,
        "format_version": FORMAT_VERSION,
        "softdb_version": __version__,
        "created": "",
        **head,
        "files": files,
        "arrays": names,
        "segments": entries,
    }
    from softdb.store._storage import now

    manifest["created"] = now()
    return manifest, written


def _manifest_bytes(m: dict) -> bytes:
    body = {k: v for k, v in m.items() if k != "checksum"}
    body["checksum"] = _manifest.checksum(m)
    return (json.dumps(body, indent=1, ensure_ascii=True, allow_nan=False) + "\n").encode("ascii")


def _replace_manifest(folder: str, m: dict) -> int:
    text = _manifest_bytes(m)
    _write_bytes(folder, "manifest.json", text)  # write + fsync a temporary file, then one atomic rename
    fsync_dir(folder)
    return len(text)


def _collect(folder: str, m: dict) -> None:
    """Delete what the manifest ``m`` no longer names (after it is in place)."""
    keep = {"manifest.json", WRITER_LOCK, *m["files"]}
    for s in m["segments"]:
        keep.add(s["folder"])
        if s["live"]:
            keep.add(s["live"]["file"])
    for name in os.listdir(folder):
        if name in keep:
            continue
        p = os.path.join(folder, name)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(p)


def save_segmented(
    path: str | os.PathLike[str], head: dict, head_arrays: Sequence[tuple[str, Any]], segs: Sequence[SegmentOut]
) -> list[tuple[str, int]]:
    """Save a segmented table at ``path`` (the module docstring says how); return what was written.

    Parameters
    ----------
    path : str or PathLike
    head : dict
        The table's fields: n, dim, value_dim, dtype (a name), metric, temperature, shared_kv,
        keys (or None), projection (or None; its ``arrays`` name stems of ``head_arrays``),
        encoder (or None).
    head_arrays : sequence of (stem, ndarray)
        Table-level arrays, written as ``<stem>.<sha16>.npy``; ``arrays`` maps stem → file.
    segs : sequence of SegmentOut
        In global row order; each one's ``name`` is set to its folder once saved.

    Returns
    -------
    list of (name, bytes)
        Every file or segment folder written (the manifest last).
    """
    _manifest.check_json_value(head.get("encoder"), "encoder")
    target, parent, aside = _names(path)
    with _locked(parent, exclusive=True):
        current = _current(target) if os.path.isdir(target) else None
        if current is not None:
            m, written = _fill(target, current, head, head_arrays, segs)
            written.append(("manifest.json", _replace_manifest(target, m)))
            fsync_dir(target)
            _collect(target, m)
            return written
        out: list = []

        def build(tmp: str) -> None:
            m, written = _fill(tmp, None, head, head_arrays, segs)
            written.append(("manifest.json", _replace_manifest(tmp, m)))
            out.extend(written)

        _publish_locked(build, target, parent, aside)
        return out


@dataclass(frozen=True)
class LoadedSegment:
    """One segment as loaded: its folder name, checked manifest and arrays, keys, values, live bits."""

    name: str
    manifest: dict
    keys: Any
    values: np.ndarray | None
    live: np.ndarray | None


def _bad(where: str, what: str) -> ValueError:
    return ValueError(f"{where}: {what}; the table folder is damaged")


def read_manifest(folder: str, *, verify: bool) -> dict:
    """The checked format-2 manifest of ``folder`` (what :func:`load_segmented` reads first)."""
    mpath = os.path.join(folder, "manifest.json")
    with open(mpath, "rb") as f:
        text = f.read()
    try:
        m = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{mpath} is not valid JSON ({exc}); the table folder is corrupted") from None
    if verify and m.get("checksum") != _manifest.checksum(m):
        raise ValueError(
            f"{mpath} is corrupted: its checksum does not match its content (was it edited by hand?); "
            "hint: load it anyway with SoftTable.load(…, verify=False) (on the command line: --no-verify)"
        )
    segs = m.get("segments")
    if not isinstance(segs, list) or not isinstance(m.get("files"), dict) or not isinstance(m.get("arrays"), dict):
        raise _bad(mpath, "it must list 'segments', 'files' and 'arrays'")
    for i, s in enumerate(segs):
        ok = (
            isinstance(s, dict)
            and isinstance(s.get("folder"), str)
            and SEGMENT.match(s["folder"])
            and isinstance(s.get("n"), int)
            and isinstance(s.get("checksum"), str)
            and (s.get("live") is None or (isinstance(s["live"], dict) and LIVE.match(str(s["live"].get("file")))))
        )
        if not ok:
            raise _bad(mpath, f"segment {i}'s entry must hold a seg-… folder, n, checksum and live (null or a file)")
    return m


def load_segmented(path: str | os.PathLike[str], *, mmap: bool, verify: bool) -> tuple[str, dict, dict, list]:
    """Open a format-2 table: (manifest path, manifest, table-level arrays by stem, [LoadedSegment])."""
    from softdb.store._storage import _open

    with reading(path) as folder:
        m = read_manifest(folder, verify=verify)
        mpath = os.path.join(folder, "manifest.json")
        files = m["files"]
        arrays = {}
        for stem, fname in m["arrays"].items():
            if fname not in files or not _manifest.FILE_NAME.match(fname):
                raise _bad(mpath, f"array {stem!r} names {fname!r}, which it does not list")
            arrays[stem] = _arrays.open_array(folder, fname, files[fname], verify=verify, mmap=False)
        out = []
        for s in m["segments"]:
            seg_folder = os.path.join(folder, s["folder"])
            try:
                sm, sarrays, keys = _open(seg_folder, mmap=mmap, verify=verify)
                if sm.get("checksum") != s["checksum"] or sm["n"] != s["n"]:
                    raise ValueError(
                        f"{os.path.join(seg_folder, 'manifest.json')} is not the version manifest.json lists "
                        "(checksum or n differ)"
                    )
                live = None
                if s["live"] is not None:
                    e = s["live"]
                    entry = {"sha256": e["sha256"], "bytes": e["bytes"], "shape": [s["n"]], "dtype": "|b1"}
                    live = _arrays.open_array(folder, e["file"], entry, verify=verify, mmap=False)
                    live = np.ascontiguousarray(live, bool)
            except (OSError, ValueError) as exc:
                kind = FileNotFoundError if isinstance(exc, FileNotFoundError) else ValueError
                raise kind(f"segment {s['folder']} of {folder}: {exc}") from None
            values = None if sm["shared_kv"] else sarrays["values.npy"]
            out.append(LoadedSegment(s["folder"], sm, keys, values, live))
    return mpath, m, arrays, out


def is_segmented(path: str | os.PathLike[str]) -> bool:
    """Whether the table at ``path`` is in format 2 (a quick look at its manifest's head)."""
    with reading(path) as folder:
        try:
            with open(os.path.join(folder, "manifest.json"), "rb") as f:
                head = f.read(256)
        except FileNotFoundError:
            return False
    return re.search(rb'"format_version":\s*2\b', head) is not None
