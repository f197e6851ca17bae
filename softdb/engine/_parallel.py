"""Split one kernel pass over the cores: threads over row ranges, each with a one-thread BLAS.

A lookup's time is one GEMM (multithreaded inside BLAS) plus numpy's work on each
chunk of scores (exp, comparisons, sums), which runs on one core. On a machine of c
cores the second part leaves c − 1 cores idle, and each multithreaded BLAS call ends
in a barrier. So a large pass is cut into row ranges instead, one per thread; each
thread runs the whole chunk loop over its range (GEMM and reductions, numpy and BLAS
release the GIL) with BLAS on one thread, and the per-range states merge exactly
(:func:`softdb.engine._states.merge`: ties still go to the lowest global row).

How many threads: as many as BLAS is set to use (``threadpoolctl`` reads and sets
it), so ``threadpool_limits(1)`` or ``OPENBLAS_NUM_THREADS=1`` (a Dask worker's
default) keeps softdb on one thread too, and never more than the rows justify.

While a split pass runs, the process's BLAS is set to one thread (BLAS has one
process-wide setting); nested and concurrent passes share one reference count, and
the last one out restores the setting it found.

Examples
--------
>>> threads_for(m=256, n=100, requested=None)  # too small to be worth a thread
1
>>> threads_for(m=1, n=100, requested=3)  # asked for: at most one per row
3
>>> split(10, 3)
[(0, 4), (4, 7), (7, 10)]
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = ["blas_threads", "map_ranges", "single_blas", "split", "threads_for"]

T = TypeVar("T")

#: A pass is split only from this many score cells (m × n) per thread: below it the
#: hand-off to a thread (~50 µs) is a visible part of the lookup.
MIN_CELLS_PER_THREAD = 1 << 15
#: ... and from this many rows per thread (each range runs a chunk loop of its own).
MIN_ROWS_PER_THREAD = 8192

_lock = threading.Lock()
_depth = 0  # split passes running now
_limiter: Any = None  # threadpoolctl's limiter while _depth > 0: restores the setting found
_found = 1  # BLAS threads found when the first pass started
_controller: Any = None
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def _blas_controllers() -> Any:
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController().select(user_api="blas")
    return _controller


def blas_threads() -> int:
    """Threads the BLAS that numpy calls is set to use (as found before any split pass)."""
    with _lock:
        if _depth:
            return _found
    return _set_threads()


def _set_threads() -> int:
    """BLAS's thread setting now (the largest over the BLAS libraries loaded; 1 if none)."""
    return max([lib.num_threads for lib in _blas_controllers().lib_controllers] or [1])


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def threads_for(m: int, n: int, requested: int | None) -> int:
    """Threads for a pass of m queries over n rows: ``requested`` (at most n), else automatic.

    Automatic: BLAS's thread count, at most the usable cores, and only as many as give
    each thread MIN_CELLS_PER_THREAD score cells and MIN_ROWS_PER_THREAD rows.
    """
    if requested is not None:
        if int(requested) < 1:
            raise ValueError(
                f"threads must be at least 1, got {requested}; hint: 1 runs the pass on the calling thread"
            )
        return max(1, min(int(requested), n))
    if m * n < 2 * MIN_CELLS_PER_THREAD or n < 2 * MIN_ROWS_PER_THREAD:
        return 1
    return max(1, min(blas_threads(), _cpus(), m * n // MIN_CELLS_PER_THREAD, n // MIN_ROWS_PER_THREAD))


def split(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous row ranges covering 0..n, sizes differing by at most one."""
    q, r = divmod(n, parts)
    edges = [i * q + min(i, r) for i in range(parts + 1)]
    return list(itertools.pairwise(edges))


@contextmanager
def single_blas() -> Iterator[None]:
    """BLAS on one thread for the duration (reference-counted across threads)."""
    global _depth, _limiter, _found
    with _lock:
        if _depth == 0:
            _found = _set_threads()
            _limiter = _blas_controllers().limit(limits=1)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _limiter.restore_original_limits()
                _limiter = None


def _executor(size: int) -> ThreadPoolExecutor:
    """A pool of at least ``size`` workers (threads start lazily, as ranges need them)."""
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < size:
            # never shut down the old pool: a concurrent pass may be submitting to it; its idle
            # threads exit once it is garbage-collected
            _pool_size = max(size, _cpus() - 1)
            _pool = ThreadPoolExecutor(_pool_size, thread_name_prefix="softdb")
        return _pool


def _after_fork_in_child() -> None:
    """A forked child has none of the parent's threads: start from a fresh pool and count."""
    global _lock, _depth, _limiter, _pool, _pool_size
    _lock, _depth, _limiter, _pool, _pool_size = threading.Lock(), 0, None, None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def map_ranges(fn: Callable[[int, int], T], ranges: Sequence[tuple[int, int]]) -> list[T]:
    """``[fn(a, b) for a, b in ranges]``, one range per thread (the first on the caller's), BLAS on one thread.

    With one range, just ``[fn(a, b)]`` on the calling thread.
    """
    if len(ranges) == 1:
        return [fn(*ranges[0])]
    with single_blas():
        futures = [_executor(len(ranges) - 1).submit(fn, a, b) for a, b in ranges[1:]]
        try:
            first = fn(*ranges[0])
        finally:
            rest = [f.result() for f in futures]  # wait for every range, even when the first raised
    return [first, *rest]
