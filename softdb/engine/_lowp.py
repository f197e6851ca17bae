"""Low-precision dot products for compressed keys: int8 codes and bf16 numbers.

This module is the one seam between softdb's certified search (which needs only these
functions and their error contracts) and the SIMD libraries that make them fast. The
numpy references are exact by construction; faster backends (numkong, torch's oneDNN,
in :mod:`softdb.engine._lowp_simd`) sit behind the same signatures, chosen by measurement.

Backends
--------
``dot_int8`` and ``dot_bf16`` take ``backend="auto"`` (the default): the fastest backend
installed for the shape, as measured by ``benchmarks/bench_compressed.py`` (see
docs/performance.md, "Compressed keys"), and the numpy reference when no SIMD library is
installed, so the core runs on numpy + scipy alone with the same answers (int8: the same
integers; bf16: within the same bound). Naming a backend (``backend="numkong"``) that is
not installed raises an ImportError naming ``pip install "softdb[compressed]"``.

- int8, fewer than ``GEMM_MIN_QUERIES`` queries: numkong (its int8 dots read the codes
  once, threads over row ranges), then torch, then numpy;
- int8, from ``GEMM_MIN_QUERIES`` queries on: torch's ``_int_mm`` (oneDNN's int8 GEMM),
  then numkong, then numpy;
- bf16: numkong, then numpy (torch's bf16 matmul rounds its result to bf16: not admissible).

Quantising the query
--------------------
The fast kernels multiply int8 by int8, so a query q is quantised too (``quantize_int8``
on the queries: q̃ = s_q·c_q, r_q = ‖q − q̃‖). With k̃_j = s_j·c_j and ρ_j = ‖k_j − k̃_j‖,

    q·k_j − s_q·s_j·(c_q·c_j) = q·(k_j − k̃_j) + (q − q̃)·k̃_j,
    |q·k_j − s_q·s_j·(c_q·c_j)| ≤ ‖q‖·ρ_j + r_q·‖k̃_j‖,

where c_q·c_j is ``dot_int8``'s exact integer, so the only float rounding left is that
of the scale products (float32: a relative 2u + u² for fl(fl(s_q·s_j)·I)). Keeping the
query in float32 drops the r_q term (the bound is ‖q‖·ρ_j plus γ_d of the float sum), but
no int8 kernel takes a float query: the codes would be converted to float and multiplied
by a float GEMM, no faster than the fp32 keys. So the query is quantised and the bound
carries r_q·‖k̃_j‖, about as large as ‖q‖·ρ_j for unit vectors: more candidates to
rescore (the benchmark counts them), the same exact answer.

Contracts
---------
- ``dot_int8(a, b)`` is **exact**: the int32 dot products of int8 codes (|code| ≤ 127, so
  d ≤ 133,000 cannot overflow). Any backend must return the same integers.
- ``dot_bf16(a, b)`` takes bf16 numbers (as their uint16 bit patterns) and accumulates in
  float32 in some order: ``|out - exact| <= gamma(d) * (|a| @ |b|)`` with
  ``gamma(d) = d·u / (1 − d·u)``, u = 2**-24, whatever the order of the sums.

Examples
--------
>>> import numpy as np
>>> codes, scale = quantize_int8(np.array([[0.5, -1.0], [2.0, 0.0]], np.float32))
>>> codes.tolist(), scale.tolist()
([[64, -127], [127, 0]], [0.007874015718698502, 0.015748031437397003])
>>> dot_int8(codes, codes).tolist()
[[20225, 8128], [8128, 16129]]
>>> from_bf16(to_bf16(np.array([1.0, 3.14159], np.float32))).tolist()
[1.0, 3.140625]
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from softdb.engine import _lowp_simd

__all__ = ["BACKENDS", "backend_for", "dot_bf16", "dot_int8", "from_bf16", "gamma", "quantize_int8", "to_bf16"]

#: Backends by kind; "auto" picks among the installed ones (see ``backend_for``).
BACKENDS = {"int8": ("numpy", "numkong", "torch"), "bf16": ("numpy", "numkong")}
#: From this many queries on, int8 dot products are a GEMM and torch's oneDNN kernel leads.
GEMM_MIN_QUERIES = 16
#: quantize_int8 works through blocks of about this many values (1 MiB of float32).
QUANTIZE_BLOCK_CELLS = 1 << 18

#: float32's unit roundoff.
U32 = 2.0**-24


def gamma(d: int) -> float:
    """The classic bound γ_d = d·u / (1 − d·u) on the relative error of a float32 sum of d terms."""
    return d * U32 / (1.0 - d * U32)


def quantize_int8(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 codes, one scale per row: x ≈ scale[:, None] * codes.

    Parameters
    ----------
    x : ndarray of shape (n, d), float32, finite

    Returns
    -------
    codes : ndarray of shape (n, d), int8, in [-127, 127]
    scale : ndarray of shape (n,), float32; max|x_j| / 127 (1 for an all-zero row)
    """
    x = np.asarray(x, np.float32)
    n, d = x.shape
    codes = np.empty((n, d), np.int8)  # (n, d)
    scale = np.empty(n, np.float32)  # (n,)
    step = max(1, QUANTIZE_BLOCK_CELLS // max(d, 1))
    for a in range(0, n, step):  # blocks that stay in cache: each pass below reads the block once more
        xb = x[a : a + step]  # (b, d)
        amax = np.abs(xb).max(axis=1) if d else np.zeros(len(xb), np.float32)  # (b,)
        sb = np.where(amax > 0, amax / np.float32(127), np.float32(1)).astype(np.float32)  # (b,)
        t = xb / sb[:, None]  # (b, d)
        np.rint(t, out=t)
        np.clip(t, -127, 127, out=t)
        codes[a : a + len(xb)], scale[a : a + len(xb)] = t, sb
    return codes, scale


def backend_for(kind: str, m: int, backend: str = "auto") -> str:
    """The backend that runs ``kind`` ("int8" or "bf16") for m queries: ``backend``, checked, or the auto choice.

    Examples
    --------
    >>> backend_for("int8", 1, "numpy")
    'numpy'
    >>> backend_for("bf16", 256) in BACKENDS["bf16"]
    True
    """
    names = BACKENDS[kind]
    if backend == "auto":
        order: tuple[str, ...]
        if kind == "bf16":
            order = ("numkong",)
        else:
            order = ("numkong", "torch") if m < GEMM_MIN_QUERIES else ("torch", "numkong")
        return next((name for name in order if _lowp_simd.installed(name)), "numpy")
    if backend not in names:
        raise ValueError(
            f"backend must be 'auto' or one of {', '.join(map(repr, names))} for {kind} dot products, "
            f"got {backend!r}; hint: 'auto' picks the fastest one installed"
        )
    if backend != "numpy":
        _lowp_simd.library(backend)  # the ImportError that names the pip command
    return backend


def dot_int8(
    a: np.ndarray, b: np.ndarray, *, backend: str = "auto", threads: int | None = None, out: np.ndarray | None = None
) -> np.ndarray:
    """Exact int32 dot products of int8 codes: a @ b.T.

    Parameters
    ----------
    a : ndarray of shape (m, d), int8
    b : ndarray of shape (n, d), int8
    backend : {"auto", "numpy", "numkong", "torch"}
        "auto": the fastest installed for m (see the module's notes); every backend returns
        the same integers.
    threads : int, optional
        Threads over row ranges of ``b`` (numkong); default: as many as BLAS uses.
    out : ndarray of shape (m, n), int32, C-contiguous, optional
        Where to write the result (a buffer reused across calls: no fresh pages to fault in).

    Returns
    -------
    ndarray of shape (m, n), int32 (exact): ``out`` when given

    Examples
    --------
    >>> a = np.array([[1, -2, 3]], np.int8)
    >>> b = np.array([[4, 5, 6], [-127, 127, 127]], np.int8)
    >>> dot_int8(a, b).tolist() == dot_int8(a, b, backend="numpy").tolist() == [[12, 0]]
    True
    """
    name = backend_for("int8", a.shape[0], backend)
    if name == "torch":
        return _lowp_simd.int8_torch(a, b, threads, out)
    if name != "numpy":
        kernel: Callable[..., np.ndarray] = getattr(_lowp_simd, f"int8_{name}")
        got = kernel(a, b, threads)
    else:
        d = a.shape[1]
        # float32 sums of integer products stay exact while every partial sum is below 2**24.
        ft: type[np.floating] = np.float32 if d * 127 * 127 < 2**24 else np.float64
        fa, fb = a.astype(ft), b.astype(ft)
        got = np.matmul(fa, fb.T).astype(np.int32)
    if out is None:
        return got
    out[...] = got
    return out


def to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 → bf16 bit patterns (uint16), rounding to nearest even; finite inputs."""
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32)
    rounded = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    return (rounded >> np.uint32(16)).astype(np.uint16)


def from_bf16(bits: np.ndarray) -> np.ndarray:
    """bf16 bit patterns (uint16) → float32, exactly."""
    return (np.asarray(bits, np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def dot_bf16(a: np.ndarray, b: np.ndarray, *, backend: str = "auto", threads: int | None = None) -> np.ndarray:
    """float32-accumulated dot products of bf16 numbers: a @ b.T (see the module's bound).

    Parameters
    ----------
    a : ndarray of shape (m, d), uint16 (bf16 bits)
    b : ndarray of shape (n, d), uint16 (bf16 bits)
    backend : {"auto", "numpy", "numkong"}
        "auto": numkong when installed, else numpy; both hold the γ_d bound.
    threads : int, optional
        Threads over row ranges of ``b`` (numkong); default: as many as BLAS uses.

    Returns
    -------
    ndarray of shape (m, n), float32

    Examples
    --------
    >>> a = to_bf16(np.array([[1.0, 2.0]], np.float32))
    >>> dot_bf16(a, a).tolist()
    [[5.0]]
    """
    if backend_for("bf16", a.shape[0], backend) == "numkong":
        return _lowp_simd.bf16_numkong(a, b, threads)
    return from_bf16(a) @ from_bf16(b).T
