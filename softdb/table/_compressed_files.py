"""Compressed segments on disk: the arrays of each segment's compressed keys in a format-2 table folder.

A :class:`~softdb.table._compressed.CompressedTable` saves its table (format 2, always) and, for
each segment in row order, its compressed keys as table-level arrays named by content, like every
other array of the folder (``<stem>.<sha256[:16]>.npy``, listed with their sha256, shape and dtype
under ``files``)::

    compressed.<precision>.<i>.codes       (n_i, d) int8 codes, or uint16 bf16 bit patterns
    compressed.<precision>.<i>.scale       (n_i,) float32 (int8 only)
    compressed.<precision>.<i>.rho         (n_i,) float32  ρ_j ≥ ‖k_j − k̂_j‖, rounded up
    compressed.<precision>.<i>.hat_norm    (n_i,) float32  ≥ ‖k̂_j‖
    compressed.<precision>.<i>.key_norm    (n_i,) float32  ≥ ‖k_j‖

and the manifest says which: ``"compressed": {"precision": "int8", "segments": <count>}``
(absent when none were saved; the format version stays 2). A load hands each segment its
compressed keys, so ``SoftTable.load(path, mmap=True).compress("int8")`` compresses nothing: the
int8 keys are read into memory, the fp32 keys stay memory-mapped for rescoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from softdb.engine._compressed import CompressedKeys

__all__ = ["FIELDS", "adopt_loaded", "compressed_part"]

FIELDS = ("codes", "scale", "rho", "hat_norm", "key_norm")


def compressed_part(precision: str, cks: Sequence[CompressedKeys]) -> tuple[dict, list[tuple[str, Any]]]:
    """The manifest field and the table-level arrays (stem, array) of compressed segments."""
    arrays: list[tuple[str, Any]] = []
    for i, ck in enumerate(cks):
        for f in FIELDS:
            a = getattr(ck, f)
            if a is not None:
                arrays.append((f"compressed.{precision}.{i}.{f}", a))
    return {"precision": precision, "segments": len(cks)}, arrays


def adopt_loaded(views: Sequence[Any], field: Any, arrays: dict, where: str) -> None:
    """Give each loaded segment view its compressed keys (``seg.compressed[precision]``)."""
    if field is None:
        return
    try:
        precision, count = str(field["precision"]), int(field["segments"])
        if count != len(views):
            raise ValueError(f"it lists compressed keys of {count} segments, but the table has {len(views)}")
        for i, v in enumerate(views):
            got = {f: arrays.get(f"compressed.{precision}.{i}.{f}") for f in FIELDS}
            codes = np.asarray(got["codes"])
            if codes.shape != tuple(v.keys.shape) or codes.dtype != (np.int8 if precision == "int8" else np.uint16):
                raise ValueError(f"the compressed keys of segment {i} are {codes.shape} {codes.dtype}")
            per_row = {f: None if got[f] is None else np.asarray(got[f], np.float32) for f in FIELDS[1:]}
            if any(a is not None and a.shape != (v.n,) for a in per_row.values()):
                raise ValueError(f"the compressed keys of segment {i} have per-row arrays of the wrong length")
            rho, hat, kn = (per_row[f] for f in ("rho", "hat_norm", "key_norm"))
            if rho is None or hat is None or kn is None:
                raise ValueError(f"segment {i} lacks its residual or key norms")
            ck = CompressedKeys(precision, codes, per_row["scale"], rho, hat, kn)
            cache = v.seg.__dict__.setdefault("compressed", {})
            cache[precision] = ck
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where}: compressed keys: {exc}") from None
