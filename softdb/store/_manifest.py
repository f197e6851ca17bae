"""The manifest of a saved table: build it, serialise it, check it.

The manifest is ``manifest.json`` in a table folder (see :mod:`softdb.store._storage`
for the folder layout, :mod:`softdb.store._atomic` for the atomic-save protocol).
This module knows only JSON and numbers: it never touches the file system, so
every rule about what a manifest may hold lives in one place.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from typing import Any, Protocol

import numpy as np

__all__ = [
    "ARRAY_NAME",
    "FILE_NAME",
    "FORMAT",
    "FORMAT_VERSION",
    "Shaped",
    "build",
    "check_header",
    "check_json_value",
    "checksum",
    "dumps",
    "file_entry",
    "loads",
]

FORMAT = "softdb-table"
FORMAT_VERSION = 1
DTYPES = ("float32", "float64")
#: Array file names: plain names inside the table folder, never a path.
FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.npy$")
ARRAY_NAME = re.compile(r"^[A-Za-z0-9_]+$")


# ------------------------------------------------------------------ JSON values
def check_json_value(x: Any, where: str, _path: tuple = ()) -> None:
    """Raise unless ``x`` survives a JSON round trip unchanged.

    Allowed: None, bool, int, finite float, str, and lists and str-keyed dicts
    of these. Tuples (they come back as lists), dicts with non-str keys (they
    come back as str), NaN/inf and every other type are refused, never
    silently converted.

    Examples
    --------
    >>> check_json_value({"title": "a", "tags": ["x", 1, 2.5, None]}, "payloads[0]")
    >>> check_json_value((1, 2), "payloads[3]")
    Traceback (most recent call last):
    ...
    TypeError: payloads[3] is a tuple, which JSON would turn into a list; ...
    """
    if x is None or isinstance(x, bool | int | str):
        return
    if isinstance(x, float):
        if not math.isfinite(x):
            raise ValueError(f"{where} is {x!r}, which JSON cannot store; hint: use None for a missing number")
        return
    if isinstance(x, list | dict):
        if id(x) in _path:
            raise ValueError(f"{where} contains itself (a circular reference), which JSON cannot store")
        path = (*_path, id(x))
        if isinstance(x, list):
            for i, item in enumerate(x):
                check_json_value(item, f"{where}[{i}]", path)
            return
        for key, item in x.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"{where} has a {type(key).__name__} key {key!r}; JSON keys are strings, so it "
                    "would not load back the same; hint: use str keys"
                )
            check_json_value(item, f"{where}[{key!r}]", path)
        return
    if isinstance(x, tuple):
        raise TypeError(
            f"{where} is a tuple, which JSON would turn into a list; saved payloads must load back "
            "identical; hint: use lists instead of tuples"
        )
    hint = (
        "convert it with .item() or .tolist()"
        if isinstance(x, np.generic | np.ndarray)
        else ("store a JSON-friendly form (str, number, list, dict) and rebuild the object after load")
    )
    raise TypeError(f"{where} is a {type(x).__module__}.{type(x).__qualname__}, which JSON cannot store; hint: {hint}")


# ------------------------------------------------------------------- building
class Shaped(Protocol):
    """What a file entry reads of an array: an ndarray, or a writer that knows the file's shape."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> np.dtype: ...


def file_entry(sha256: str, nbytes: int, arr: Shaped) -> dict:
    """The manifest entry of one array file."""
    return {"sha256": sha256, "bytes": int(nbytes), "shape": list(arr.shape), "dtype": arr.dtype.str}


def build(
    *,
    n: int,
    dim: int,
    value_dim: int,
    dtype: np.dtype,
    metric: str,
    temperature: float | None,
    shared_kv: bool,
    ids: tuple,
    payloads: tuple | None,
    files: dict,
    version: str,
    created: str,
    projection: dict | None = None,
    encoder: dict | None = None,
    keys: dict | None = None,
) -> dict:
    """Assemble a manifest (ids and payloads last, to keep the head readable).

    Raises TypeError/ValueError naming the row for a payload or id JSON cannot store.
    """
    id_list = [i if type(i) in (str, int) else int(i) if isinstance(i, int) else str(i) for i in ids]
    pay_list = None
    if payloads is not None:
        for row, p in enumerate(payloads):
            if p is None or type(p) in (str, int, bool):
                continue  # fast path: nothing to check
            check_json_value(p, f"payloads[{row}] (id {ids[row]!r})")
        pay_list = list(payloads)
    m: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "softdb_version": version,
        "created": created,
        "n": int(n),
        "dim": int(dim),
        "value_dim": int(value_dim),
        "dtype": np.dtype(dtype).name,
        "metric": metric,
        "temperature": temperature,
        "shared_kv": bool(shared_kv),
        "files": files,
    }
    if keys is not None:
        check_json_value(keys, "keys")
        m["keys"] = keys
    if projection is not None:
        check_json_value(projection["config"], "projection config")
        m["projection"] = projection
    if encoder is not None:
        check_json_value(encoder, "encoder")
        m["encoder"] = encoder
    m["ids"] = id_list
    m["payloads"] = pay_list
    return m


def _canonical_sha256(m: dict) -> str:
    body = {k: v for k, v in m.items() if k != "checksum"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def checksum(m: dict) -> str:
    """The sha256 of the canonical JSON of every field of ``m`` but ``checksum`` (see :func:`dumps`)."""
    return _canonical_sha256(m)


def dumps(m: dict) -> bytes:
    """Serialise with a ``checksum``: sha256 of the canonical JSON of every other field.

    Canonical JSON is ``json.dumps(fields, sort_keys=True, separators=(",", ":"),
    ensure_ascii=True)``, so anyone can re-check a manifest without softdb. The
    file itself is indented, with the long ``ids`` and ``payloads`` lists last,
    one line each.
    """
    head = {k: v for k, v in m.items() if k not in ("ids", "payloads", "checksum")}
    tail = [(k, m[k]) for k in ("ids", "payloads") if k in m] + [("checksum", _canonical_sha256(m))]
    text = json.dumps(head, indent=1, ensure_ascii=True, allow_nan=False)[:-2]  # drop "\n}"
    for k, v in tail:
        text += f",\n {json.dumps(k)}: " + json.dumps(v, ensure_ascii=True, allow_nan=False)
    return (text + "\n}\n").encode("ascii")


# -------------------------------------------------------------------- reading
def _field(m: dict, name: str, types: tuple, where: str) -> Any:
    if name not in m:
        raise ValueError(f"{where} has no {name!r} field; the manifest is incomplete or corrupted")
    v = m[name]
    if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
        raise ValueError(f"{where}: field {name!r} is {v!r}, of the wrong type; the manifest is corrupted")
    return v


def loads(text: bytes, where: str, *, verify: bool = True) -> dict:
    """Parse and check a manifest; ``where`` (the file's path) starts every error.

    Checks the format name and version, the checksum (when ``verify``), field
    types, and that shapes and dtypes of the listed files agree with n, dim,
    value_dim and dtype.
    """
    try:
        m = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where} is not valid JSON ({exc}); the table folder is corrupted") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise ValueError(f"{where} is not a softdb table manifest (its 'format' is not {FORMAT!r})")
    version = _field(m, "format_version", (int,), where)
    if version != FORMAT_VERSION:
        newer = "; hint: upgrade softdb" if version > 2 else ""  # 2: segment folders (softdb.store._segmented)
        raise ValueError(f"{where} has format_version {version}, but this softdb reads format_versions 1 and 2{newer}")
    if verify:
        want = m.get("checksum")
        if not isinstance(want, str) or want != _canonical_sha256(m):
            folder = os.path.dirname(where) or "."
            raise ValueError(
                f"{where} is corrupted: its checksum does not match its content (was it edited by hand?); "
                f"hint: rebuild the table with `softdb index CORPUS -o {folder}`, or load it anyway with "
                "SoftTable.load(…, verify=False) (on the command line: --no-verify)"
            )
    n = _field(m, "n", (int,), where)
    dim = _field(m, "dim", (int,), where)
    value_dim = _field(m, "value_dim", (int,), where)
    dtype = _field(m, "dtype", (str,), where)
    if dtype not in DTYPES or min(n, dim, value_dim) < 0:
        raise ValueError(f"{where}: dtype {dtype!r}, n={n}, dim={dim}, value_dim={value_dim} are not valid")
    _field(m, "metric", (str,), where)
    t = _field(m, "temperature", (int, float, type(None)), where)
    if t is not None and not (math.isfinite(t) and t > 0):
        raise ValueError(f"{where}: temperature {t!r} is not a finite number > 0")
    shared = _field(m, "shared_kv", (bool,), where)
    ids = _field(m, "ids", (list,), where)
    pays = _field(m, "payloads", (list, type(None)), where)
    if len(ids) != n or (pays is not None and len(pays) != n):
        raise ValueError(
            f"{where}: n={n} but it lists {len(ids)} ids and {'no' if pays is None else len(pays)} payloads"
        )
    first = (m.get("keys") or {}).get("blocks") or [{"dim": dim}]  # K = V: values are the (first block of) keys
    if shared and value_dim != (first[0].get("dim") if isinstance(first[0], dict) else None):
        raise ValueError(f"{where}: shared_kv is true but value_dim={value_dim} != dim={dim}")
    files = _field(m, "files", (dict,), where)
    want_files = ({} if shared else {"values.npy": [n, value_dim]}) | _want_key_files(m, n, dim, where)
    proj = m.get("projection")
    if proj is not None:
        if not (isinstance(proj, dict) and isinstance(proj.get("arrays"), dict) and "config" in proj):
            raise ValueError(f"{where}: 'projection' must hold 'config' and 'arrays'")
        for name, fname in proj["arrays"].items():
            if not ARRAY_NAME.match(str(name)) or fname not in files:
                raise ValueError(f"{where}: projection array {name!r} -> {fname!r} is not a listed file")
    for fname, e in files.items():
        if not FILE_NAME.match(fname):
            raise ValueError(f"{where}: file name {fname!r} is not a plain .npy name inside the folder")
        ok = (
            isinstance(e, dict)
            and isinstance(e.get("sha256"), str)
            and isinstance(e.get("bytes"), int)
            and isinstance(e.get("shape"), list)
            and all(isinstance(s, int) and s >= 0 for s in e["shape"])
            and isinstance(e.get("dtype"), str)
        )
        if not ok:
            raise ValueError(f"{where}: the entry of {fname} needs sha256, bytes, shape and dtype")
    for fname, shape in want_files.items():
        if fname not in files:
            raise ValueError(f"{where} lists no {fname}, which this table needs")
        e = files[fname]
        if shape is None:
            continue  # CSR parts: their shapes and index dtypes are checked when loaded
        if e["shape"] != shape or _dtype_or_none(e["dtype"]) != np.dtype(dtype):
            raise ValueError(
                f"{where}: {fname} is listed as {e['dtype']} {e['shape']}, but the table is {dtype} {shape}"
            )
    return m


def _csr_parts(prefix: str) -> dict:
    """The three files of a CSR matrix (their shapes are checked when loaded)."""
    return {f"{prefix}.{part}.npy": None for part in ("data", "indices", "indptr")}


def _want_key_files(m: dict, n: int, dim: int, where: str) -> dict:
    """Key files the manifest must list: name -> [shape] (dense), or None (a CSR part)."""
    keys = m.get("keys")
    if keys is None:
        return {"keys.npy": [n, dim]}
    if not isinstance(keys, dict) or keys.get("kind") not in ("csr", "blocks"):
        raise ValueError(f"{where}: field 'keys' must say kind 'csr' or 'blocks', got {keys!r}")
    if keys["kind"] == "csr":
        return _csr_parts("keys")
    blocks, weights = keys.get("blocks"), keys.get("weights")
    if not (
        isinstance(blocks, list)
        and blocks
        and isinstance(weights, list)
        and len(weights) == len(blocks)
        and all(
            isinstance(b, dict) and b.get("kind") in ("dense", "csr") and isinstance(b.get("dim"), int) and b["dim"] > 0
            for b in blocks
        )
        and all(isinstance(w, int | float) and math.isfinite(w) for w in weights)
        and sum(b["dim"] for b in blocks) == dim
    ):
        raise ValueError(
            f"{where}: field 'keys' must list blocks of kind 'dense' or 'csr' whose dims sum to "
            f"dim={dim}, and one finite weight per block"
        )
    out: dict = {}
    for i, b in enumerate(blocks):
        out |= _csr_parts(f"keys.{i}") if b["kind"] == "csr" else {f"keys.{i}.npy": [n, b["dim"]]}
    if keys.get("query_projection") is not None:
        if keys["query_projection"] != "keys.query_projection.npy":
            raise ValueError(f"{where}: keys.query_projection must name keys.query_projection.npy")
        out["keys.query_projection.npy"] = None  # float64 (d_0, d_0): checked when loaded
    return out


def _dtype_or_none(s: str) -> np.dtype | None:
    try:
        return np.dtype(s)
    except (TypeError, ValueError):
        return None


def check_header(fname: str, entry: dict, shape: tuple, dtype: np.dtype) -> None:
    """Raise if an .npy header disagrees with the file's manifest entry."""
    if list(shape) != entry["shape"] or dtype != _dtype_or_none(entry["dtype"]):
        raise ValueError(
            f"{fname} holds {dtype.str} {list(shape)}, but manifest.json says "
            f"{entry['dtype']} {entry['shape']}; the table folder is corrupted"
        )
