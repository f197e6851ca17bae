"""softdb.engine._lowp: every backend of the low-precision dot products against the numpy references.

int8: every backend returns the exact integers (checked against int64 numpy). bf16: every
backend stays within γ_d·(|a| @ |b|) of the float64 product of the same bf16 numbers.
``make test`` installs the ``compressed`` extra (numkong, torch), so the SIMD kernels are
what run here; a subprocess with both imports blocked checks the numpy-only core.
"""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from softdb.engine import _lowp, _lowp_simd
from softdb.engine._lowp import backend_for, dot_bf16, dot_int8, from_bf16, gamma, to_bf16

SIMD = [name for name in ("numkong", "torch") if _lowp_simd.installed(name)]


def test_the_test_environment_has_the_simd_libraries():
    assert SIMD == ["numkong", "torch"], 'make test installs them: pip install -e ".[compressed]"'


def _int8(rng, shape, extreme):
    if extreme:  # the largest products: every partial sum at its largest magnitude
        return (rng.choice(np.array([-127, 127], np.int8), size=shape)).astype(np.int8)
    return rng.integers(-127, 128, size=shape, dtype=np.int8)


@settings(max_examples=40, deadline=None)
@example(m=1, n=3, d=1100, extreme=True, threads=2, seed=0)  # sums beyond 2**24: float32 would round
@example(m=17, n=40_000, d=3, extreme=False, threads=2, seed=1)  # torch's GEMM path, two row ranges
@given(
    m=st.integers(0, 20),
    n=st.integers(0, 300),
    d=st.sampled_from([0, 1, 7, 64, 384, 1100]),
    extreme=st.booleans(),
    threads=st.sampled_from([1, 2, 3]),
    seed=st.integers(0, 2**16),
)
def test_int8_backends_return_the_exact_integers(m, n, d, extreme, threads, seed):
    rng = np.random.default_rng(seed)
    a, b = _int8(rng, (m, d), extreme), _int8(rng, (n, d), extreme)
    exact = a.astype(np.int64) @ b.astype(np.int64).T  # (m, n)
    for backend in ["auto", "numpy", *SIMD]:
        out = dot_int8(a, b, backend=backend, threads=threads)
        assert out.dtype == np.int32 and out.shape == (m, n), backend
        np.testing.assert_array_equal(out, exact, err_msg=backend)
        buf = np.full((m, n), 7, np.int32)  # a reused buffer: written in place, every cell
        got = dot_int8(a, b, backend=backend, threads=threads, out=buf)
        assert got is buf, backend
        np.testing.assert_array_equal(buf, exact, err_msg=f"{backend}, out=")


@pytest.mark.parametrize("backend", ["auto", "numpy", *SIMD])
def test_int8_sums_beyond_2_to_the_24_stay_exact(backend):
    """d = 1100 codes of ±127: |sums| up to 17,741,900 > 2**24, where float32 accumulation rounds."""
    a = np.full((2, 1100), 127, np.int8)
    a[1, ::2] = -127
    b = np.full((3, 1100), 127, np.int8)
    b[1] = -127
    b[2, 1] = 126
    exact = a.astype(np.int64) @ b.astype(np.int64).T  # (2, 3)
    assert exact.max() > 2**24
    np.testing.assert_array_equal(dot_int8(a, b, backend=backend, threads=2), exact)


def _bf16(rng, shape, spread):
    x = rng.standard_normal(shape).astype(np.float32) * np.float32(2.0) ** rng.integers(
        -spread, spread + 1, size=shape
    ).astype(np.float32)
    return to_bf16(x)


@settings(max_examples=40, deadline=None)
@example(m=2, n=50, d=384, spread=0, threads=2, seed=3)
@example(m=1, n=5, d=2000, spread=20, threads=1, seed=4)  # cancellation across 2**±20
@given(
    m=st.integers(0, 12),
    n=st.integers(0, 200),
    d=st.sampled_from([0, 1, 5, 64, 384, 2000]),
    spread=st.sampled_from([0, 4, 20]),
    threads=st.sampled_from([1, 2]),
    seed=st.integers(0, 2**16),
)
def test_bf16_backends_hold_the_gamma_bound(m, n, d, spread, threads, seed):
    rng = np.random.default_rng(seed)
    a, b = _bf16(rng, (m, d), spread), _bf16(rng, (n, d), spread)
    fa, fb = from_bf16(a).astype(np.float64), from_bf16(b).astype(np.float64)
    exact, size = fa @ fb.T, np.abs(fa) @ np.abs(fb).T  # (m, n), (m, n)
    bound = gamma(d) * size
    for backend in ["auto", "numpy", *[s for s in SIMD if s in _lowp.BACKENDS["bf16"]]]:
        out = dot_bf16(a, b, backend=backend, threads=threads)
        assert out.dtype == np.float32 and out.shape == (m, n), backend
        err = np.abs(out.astype(np.float64) - exact)
        assert np.all(err <= bound), (backend, float((err - bound).max()))


def test_torch_bf16_matmul_is_outside_the_contract():
    """Why torch's bf16 matmul is not a backend: its bf16 result breaks the γ_d bound."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    a, b = _bf16(rng, (4, 384), 0), _bf16(rng, (64, 384), 0)
    fa, fb = from_bf16(a), from_bf16(b)
    out = (torch.from_numpy(fa).bfloat16() @ torch.from_numpy(fb).bfloat16().T).float().numpy()
    exact = fa.astype(np.float64) @ fb.astype(np.float64).T
    assert np.any(np.abs(out - exact) > gamma(384) * (np.abs(fa) @ np.abs(fb).T))


def test_read_only_codes_need_no_copy_and_raise_no_warning():
    import warnings

    rng = np.random.default_rng(5)
    a, b = _int8(rng, (20, 16), False), _int8(rng, (30, 16), False)
    a.flags.writeable = b.flags.writeable = False  # as a compressed table keeps its codes
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for backend in SIMD:
            np.testing.assert_array_equal(dot_int8(a, b, backend=backend), a.astype(np.int64) @ b.astype(np.int64).T)


@pytest.mark.parametrize("before", [1, 2])
def test_torch_int8_keeps_the_callers_thread_count(before: int) -> None:
    """int8_torch runs one torch thread per row range and gives torch's thread count back."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    a = rng.integers(-127, 128, (20, 33), dtype=np.int8)
    b = rng.integers(-127, 128, (301, 33), dtype=np.int8)
    old = torch.get_num_threads()
    torch.set_num_threads(before)
    try:
        got = dot_int8(a, b, backend="torch", threads=2)
        assert torch.get_num_threads() == before
    finally:
        torch.set_num_threads(old)
    np.testing.assert_array_equal(got, a.astype(np.int64) @ b.astype(np.int64).T)


def test_auto_picks_by_shape():
    assert backend_for("int8", 1) == "numkong"
    assert backend_for("int8", _lowp.GEMM_MIN_QUERIES) == "torch"
    assert backend_for("bf16", 300) == "numkong"


def test_an_unknown_backend_is_named():
    msg = (
        "backend must be 'auto' or one of 'numpy', 'numkong' for bf16 dot products, got 'torch'; "
        "hint: 'auto' picks the fastest one installed"
    )
    a = to_bf16(np.ones((1, 2), np.float32))
    with pytest.raises(ValueError, match=re.escape(msg)):
        dot_bf16(a, a, backend="torch")


BLOCKED = """
import sys
sys.modules["numkong"] = None  # an import of either now raises ImportError
sys.modules["torch"] = None
import numpy as np
from softdb.engine._lowp import backend_for, dot_bf16, dot_int8, to_bf16
a = np.array([[1, -2, 3], [127, 127, -127]], np.int8)
assert backend_for("int8", 1) == backend_for("int8", 99) == backend_for("bf16", 1) == "numpy"
assert dot_int8(a, a).tolist() == (a.astype(int) @ a.astype(int).T).tolist()
assert dot_bf16(to_bf16(np.ones((1, 2), np.float32)), to_bf16(np.ones((3, 2), np.float32))).tolist() == [[2.0] * 3]
for name in ("numkong", "torch"):
    try:
        dot_int8(a, a, backend=name)
    except ImportError as e:
        print(e)
import softdb  # the package's core imports without them
print("torch" in sys.modules and sys.modules["torch"] is not None)
"""


def test_without_the_extra_auto_uses_numpy_and_a_named_backend_names_the_pip_command():
    out = subprocess.run(
        [sys.executable, "-c", BLOCKED], capture_output=True, text=True, check=True, timeout=120
    ).stdout.splitlines()
    assert out == [
        f"the {name!r} backend for low-precision dot products needs the {name} package, which is not "
        f"installed; install it with: pip install \"softdb[compressed]\" (or pass backend='auto' to use "
        "the fastest backend installed, numpy at least)"
        for name in ("numkong", "torch")
    ] + ["False"]
