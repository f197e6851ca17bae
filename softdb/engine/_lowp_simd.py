"""The SIMD kernels behind :mod:`softdb.engine._lowp`: numkong and torch, imported lazily.

Neither library is a dependency of softdb's core (numpy + scipy). Both come with the
``compressed`` extra (``pip install "softdb[compressed]"``); each kernel imports its
library on first use, and :func:`installed` says which import.

Kernels, each honouring ``_lowp``'s contracts (tests/engine/test_lowp.py checks them
against the numpy references):

- ``int8_numkong``: numkong's ``cdist(metric="dot")`` on int8 codes, exact integer sums
  returned as float32 (float64 from d·127² ≥ 2**24 on), cast to int32; the rows of ``b``
  are cut into one range per thread (numkong's calls release the GIL), the answers laid
  side by side.
- ``int8_torch``: ``torch._int_mm``, oneDNN's int8 × int8 → int32 GEMM (VNNI, AMX where
  the CPU has it), exact; the rows of ``b`` cut into one range per thread as for numkong,
  each call on one torch thread.
- ``bf16_numkong``: numkong's bf16 dot products, returned as float64 and rounded once to
  float32 (inside the γ_d bound).

torch's bf16 ``matmul`` is not one of them: on the CPU it rounds its float32
accumulators to a bf16 result (a relative error up to 2**-9 per score), outside the
γ_d contract of ``dot_bf16``. The benchmark times it as a peer.

Examples
--------
>>> import numpy as np
>>> a = np.array([[1, -2, 3]], np.int8)
>>> b = np.array([[4, 5, 6], [-7, 8, 9]], np.int8)
>>> [name for name in ("numkong", "torch") if installed(name)] == [n for n in ("numkong", "torch") if installed(n)]
True
>>> int8_numkong(a, b).tolist() if installed("numkong") else [[12, 4]]
[[12, 4]]
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import numpy as np

from softdb.engine._parallel import map_ranges, split, threads_for

__all__ = ["INSTALL_HINT", "bf16_numkong", "installed", "int8_numkong", "int8_torch", "library", "one_torch_thread"]

INSTALL_HINT = 'pip install "softdb[compressed]"'
#: The import name of each backend's library.
LIBRARIES = {"numkong": "numkong", "torch": "torch"}


def installed(name: str) -> bool:
    """Whether backend ``name``'s library can be imported (without importing it)."""
    module = LIBRARIES[name]
    if module in sys.modules:  # imported already, or blocked (None)
        return sys.modules[module] is not None
    return _findable(module)


@cache
def _findable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def library(name: str) -> Any:
    """Import backend ``name``'s library, or an ImportError that names the pip command."""
    try:
        return importlib.import_module(LIBRARIES[name])
    except ImportError as e:
        raise ImportError(
            f"the {name!r} backend for low-precision dot products needs the {LIBRARIES[name]} package, "
            f"which is not installed; install it with: {INSTALL_HINT} (or pass backend='auto' to use "
            f"the fastest backend installed, numpy at least)"
        ) from e


#: Set torch's thread count on every thread that enters :func:`one_torch_thread` (not only the first).
PER_THREAD = True
_torch_lock = threading.Lock()
_torch_depth = 0
_torch_before = 1


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch's intra-op pool on one thread for the duration (reference-counted across threads).

    A no-op when torch is not imported: nothing here imports it.
    """
    global _torch_depth, _torch_before
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    with _torch_lock:
        if _torch_depth == 0:
            _torch_before = torch.get_num_threads()
            if _torch_before != 1:
                torch.set_num_threads(1)
        _torch_depth += 1
        if PER_THREAD and torch.get_num_threads() != 1:
            # OpenMP keeps its thread count per thread: a pool thread's own calls would still run
            # a team of all cores (whose spinning helpers slow the other thread's work) — set it
            # on this thread too (left so: softdb's pool threads run one-thread work).
            torch.set_num_threads(1)
    try:
        yield
    finally:
        with _torch_lock:
            _torch_depth -= 1
            if _torch_depth == 0 and _torch_before != 1:
                torch.set_num_threads(_torch_before)


def _by_ranges(fn: Any, a: np.ndarray, b: np.ndarray, out: np.ndarray, threads: int | None) -> np.ndarray:
    """out[:, r0:r1] = fn(a, b[r0:r1]) over one row range of ``b`` per thread."""
    m, n = a.shape[0], b.shape[0]
    parts = threads_for(m, n, threads)
    if parts == 1:
        got = fn(a, b)  # (m, n)
        if got.dtype == out.dtype:
            return got  # one range: the kernel's own array, no copy
        out[:] = got
        return out

    def one(r0: int, r1: int) -> None:
        out[:, r0:r1] = fn(a, b[r0:r1])  # (m, r1 - r0)

    map_ranges(one, split(n, parts))
    return out


def int8_numkong(a: np.ndarray, b: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Exact int32 a @ b.T of int8 codes (m, d) × (n, d) → (m, n) with numkong, threads over b's rows."""
    nk = library("numkong")
    a, b = np.ascontiguousarray(a, np.int8), np.ascontiguousarray(b, np.int8)
    out = np.empty((a.shape[0], b.shape[0]), np.int32)  # (m, n)
    if out.size == 0 or a.shape[1] == 0:
        out[:] = 0
        return out

    # numkong's int32 output runs a slow path (1,863 ms against 17 ms for 1 × 1M × 384); its float
    # outputs hold the exact integer sums while they fit the significand: float32 below 2**24
    out_dtype = "float32" if a.shape[1] * 127 * 127 < 2**24 else "float64"

    def fn(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.asarray(nk.cdist(x, y, metric="dot", out_dtype=out_dtype))  # (m, c) exact integers

    return _by_ranges(fn, a, b, out, threads)


def int8_torch(a: np.ndarray, b: np.ndarray, threads: int | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Exact int32 a @ b.T of int8 codes with ``torch._int_mm`` (oneDNN), threads over b's rows.

    Each thread runs one ``_int_mm`` over its own row range of ``b`` with torch's intra-op pool
    set to one thread for the call (and restored after): torch's own two-thread ``_int_mm`` ran
    these chunk shapes at best no faster than one thread, and up to 16x slower on a loaded machine
    (its threads wait for each other at every call), while independent row ranges never wait. With
    d = 1, torch 2.13's ``_int_mm`` returns wrong integers (tests/engine/test_lowp.py found it), so
    one column is multiplied in int32 by numpy.
    """
    torch = library("torch")
    a, b = np.ascontiguousarray(a, np.int8), np.ascontiguousarray(b, np.int8)
    if a.shape[0] == 0 or b.shape[0] == 0 or a.shape[1] == 0:
        if out is None:
            return np.zeros((a.shape[0], b.shape[0]), np.int32)
        out[...] = 0
        return out
    if a.shape[1] == 1:
        got = a.astype(np.int32) * b.astype(np.int32).T  # (m, 1) * (1, n)
        if out is None:
            return got
        out[...] = got
        return out
    given = out is not None
    if out is None:
        out = np.empty((a.shape[0], b.shape[0]), np.int32)  # (m, n)
    with warnings.catch_warnings():  # in the calling thread only: the workers never touch the filters
        # read-only codes (a compressed table's) are only read: torch's warning does not apply
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        ta = torch.from_numpy(a)  # (m, d)

        def fn(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            return np.asarray(torch._int_mm(ta, torch.from_numpy(y).T).numpy())  # (m, c) int32

        with one_torch_thread():
            if given and threads_for(a.shape[0], b.shape[0], threads) == 1:
                torch._int_mm(ta, torch.from_numpy(b).T, out=torch.from_numpy(out))  # into the caller's buffer
                return out
            got = _by_ranges(fn, a, b, out, threads)
            if given and got is not out:
                out[...] = got
            return out if given else got


def bf16_numkong(a: np.ndarray, b: np.ndarray, threads: int | None = None) -> np.ndarray:
    """float32-accumulated a @ b.T of bf16 numbers (uint16 bit patterns) with numkong, threads over b's rows."""
    nk = library("numkong")
    a, b = np.ascontiguousarray(a, np.uint16), np.ascontiguousarray(b, np.uint16)
    out = np.empty((a.shape[0], b.shape[0]), np.float32)  # (m, n)
    if out.size == 0 or a.shape[1] == 0:
        out[:] = 0
        return out

    def fn(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        # float64 output: numkong's float32 output runs a slow path (841 ms against 41 ms for
        # 1 × 1M × 384); the one rounding to float32 stays inside the γ_d bound
        return np.asarray(nk.cdist(x, y, metric="dot", dtype="bf16", out_dtype="float64"))  # (m, c)

    return _by_ranges(fn, a, b, out, threads)


@cache
def capabilities() -> dict[str, Any]:
    """The SIMD paths each installed library reports (numkong's capabilities, torch's CPU capability)."""
    caps: dict[str, Any] = {}
    if installed("numkong"):
        nk = library("numkong")
        caps["numkong"] = sorted(k for k, v in nk.get_capabilities().items() if v)
    if installed("torch"):
        torch = library("torch")
        caps["torch"] = str(torch.backends.cpu.get_cpu_capability())
    return caps
