"""Compressed keys and the rigorous bound on each compressed score.

A compressed copy of dense float32 keys K (n, d) is one of

- ``"int8"``: codes c_j ∈ [-127, 127]^d and one float32 scale s_j per row, k̂_j = s_j·c_j;
- ``"bf16"``: k̂_j = bf16(k_j), rounded to nearest even (stored as uint16 bit patterns);

and, for every row, three numbers rounded *up* to float32 from exact-enough float64:
ρ_j ≥ ‖k_j − k̂_j‖ (the residual norm), ‖k̂_j‖ and ‖k_j‖.

A query q is compressed the same way (q̂, its residual norm ‖q − q̂‖, ‖q‖, ‖q̂‖), and the
compressed score of row j is ŝ_j = q̂·k̂_j computed by :mod:`softdb.engine._lowp` (int8: exact
int32 dots, scaled in float64; bf16: float32 accumulation). :func:`chunk_bounds` returns, for
a chunk of rows, ŝ and a bound B with

    |fp32(q·k_j) − ŝ_j| ≤ B_j = ‖q‖·ρ_j + ‖q − q̂‖·‖k̂_j‖ + (compressed dot's rounding)
                               + γ_{d+8}·‖q‖·‖k_j‖ (the fp32 reference's own rounding) + tiny,

where fp32(q·k_j) is the score softdb's fp32 search reports, computed in *any* summation
order (and through its scaling by 1/τ and back). The proof, step by step, is in
``docs/guide/compressed.md``.

Examples
--------
>>> import numpy as np
>>> K = np.array([[0.5, -1.0], [2.0, 0.0]], np.float32)
>>> ck = compress_keys(K, "int8")
>>> ck.codes.tolist(), float(ck.rho[1])
([[64, -127], [127, 0]], 0.0)
>>> qc = compress_queries(np.array([[1.0, 1.0]], np.float32), "int8")
>>> s, b = chunk_bounds(ck, qc, 0, 2, tau=1.0)
>>> bool(np.all(np.abs(K @ np.ones(2, np.float32) - s[0]) <= b[0]))
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from softdb.engine._lowp import dot_bf16, dot_int8, from_bf16, gamma, quantize_int8, to_bf16

__all__ = [
    "PRECISIONS",
    "CompressedKeys",
    "QueryCode",
    "cell_bounds",
    "chunk_bounds",
    "chunk_max_bound",
    "chunk_scores",
    "compress_keys",
    "compress_queries",
    "norm_up",
    "round_up32",
]

PRECISIONS = ("int8", "bf16")
#: float64's unit roundoff.
U64 = 2.0**-53
#: Relative slack for the bound's own float64 arithmetic: a handful of roundings of U64 each.
SLACK = 1.0 + 2.0**-40
#: Extra roundings of the fp32 reference beyond its d-term dot product: q·(1/τ), the score·τ
#: back, and the float32 roundings of 1/τ and τ themselves (6 in all; 8 kept).
REF_EXTRA = 8
#: Rows compressed per step (float64 temporaries of ROWS_PER_STEP × d).
ROWS_PER_STEP = 8192


def round_up32(x: np.ndarray) -> np.ndarray:
    """float64 → the smallest float32 ≥ each value (finite, non-negative inputs)."""
    x = np.asarray(x, np.float64)
    f = x.astype(np.float32)  # nearest: may be below
    return np.where(f.astype(np.float64) < x, np.nextafter(f, np.float32(np.inf)), f).astype(np.float32)


def norm_up(x: np.ndarray) -> np.ndarray:
    """Upper bounds of the row norms of ``x`` (r, d), float32, from exact-enough float64.

    ``x`` holds float32 numbers or differences of two (exact in float64). Each square has at
    most one rounding and the sum of d of them γ_d (float64), so Σ x² ≤ ss·(1 + (d + 4)·2·U64)
    =: hi, and the result is the smallest float32 f with f² ≥ hi (f² is exact in float64). For
    d = 1 the norm is |x| itself, rounded up to float32: exactly the smallest float32 ≥ ‖x‖.
    """
    x = np.asarray(x, np.float64)
    if x.ndim == 2 and x.shape[1] == 1:
        return round_up32(np.abs(x[:, 0]))  # (r,)  exact: no sum, no square root
    d = x.shape[1] if x.ndim == 2 else 0
    hi = np.einsum("ij,ij->i", x, x) * (1.0 + (d + 4) * 2.0 * U64)  # (r,)  ≥ Σ x² (exact)
    f = round_up32(np.sqrt(hi))  # (r,)
    up = np.float32(np.inf)
    f = np.where(f.astype(np.float64) ** 2 < hi, np.nextafter(f, up), f)  # sqrt's own rounding
    lower = np.nextafter(f, np.float32(0))  # (r,)
    return np.where((lower.astype(np.float64) ** 2 >= hi) & (f > 0), lower, f).astype(np.float32)  # (r,)


@dataclass(frozen=True, eq=False)
class CompressedKeys:
    """Compressed dense keys (see the module docstring); the full keys stay with the caller.

    Attributes
    ----------
    precision : {"int8", "bf16"}
    codes : ndarray of shape (n, d), int8 codes or uint16 bf16 bit patterns
    scale : ndarray of shape (n,), float32, or None (bf16)
    rho : ndarray of shape (n,), float32
        ρ_j ≥ ‖k_j − k̂_j‖, rounded up.
    hat_norm : ndarray of shape (n,), float32
        ≥ ‖k̂_j‖, rounded up.
    key_norm : ndarray of shape (n,), float32
        ≥ ‖k_j‖, rounded up.
    """

    precision: str
    codes: np.ndarray
    scale: np.ndarray | None
    rho: np.ndarray
    hat_norm: np.ndarray
    key_norm: np.ndarray

    @property
    def n(self) -> int:
        return int(self.codes.shape[0])

    @property
    def dim(self) -> int:
        return int(self.codes.shape[1])

    @property
    def nbytes(self) -> int:
        """Bytes of the compressed keys and their per-row numbers."""
        extra = 0 if self.scale is None else self.scale.nbytes
        return int(self.codes.nbytes + extra + self.rho.nbytes + self.hat_norm.nbytes + self.key_norm.nbytes)

    def decoded(self, start: int, stop: int) -> np.ndarray:
        """k̂ of rows start..stop as float64 (exact): (c, d)."""
        if self.scale is None:
            return from_bf16(self.codes[start:stop]).astype(np.float64)  # (c, d)
        return self.codes[start:stop].astype(np.float64) * self.scale[start:stop, None].astype(np.float64)  # (c, d)


def _compress_rows(x: np.ndarray, precision: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(codes, scale or None, k̂ as float64) of float32 rows x (r, d)."""
    if precision == "int8":
        codes, scale = quantize_int8(x)  # (r, d), (r,)
        return codes, scale, codes.astype(np.float64) * scale[:, None].astype(np.float64)  # (r, d)
    bits = to_bf16(x)  # (r, d)
    return bits, None, from_bf16(bits).astype(np.float64)  # (r, d)


def compress_keys(keys: np.ndarray, precision: str) -> CompressedKeys:
    """Compress dense float32 keys (n, d): codes, scales and the per-row norms, rounded up.

    Parameters
    ----------
    keys : ndarray of shape (n, d), float32, finite (checked by the caller)
    precision : {"int8", "bf16"}

    Returns
    -------
    CompressedKeys

    Examples
    --------
    >>> import numpy as np
    >>> ck = compress_keys(np.array([[1.0, 3.0]], np.float32), "bf16")
    >>> float(ck.rho[0]), ck.codes.dtype.name
    (0.0, 'uint16')
    """
    n, d = keys.shape
    codes = np.empty((n, d), np.int8 if precision == "int8" else np.uint16)
    scale = np.empty(n, np.float32) if precision == "int8" else None
    rho, hat, kn = (np.empty(n, np.float32) for _ in range(3))
    with np.errstate(over="ignore", invalid="ignore"):  # non-finite rows get non-finite norms: the caller refuses
        _compress_steps(keys, precision, codes, scale, rho, hat, kn)
    for arr in (codes, rho, hat, kn) if scale is None else (codes, scale, rho, hat, kn):
        arr.flags.writeable = False
    return CompressedKeys(precision, codes, scale, rho, hat, kn)


def _compress_steps(
    keys: np.ndarray,
    precision: str,
    codes: np.ndarray,
    scale: np.ndarray | None,
    rho: np.ndarray,
    hat: np.ndarray,
    kn: np.ndarray,
) -> None:
    n = keys.shape[0]
    for a in range(0, n, ROWS_PER_STEP):  # steps of rows: float64 temporaries stay small
        b = min(a + ROWS_PER_STEP, n)
        x = np.asarray(keys[a:b], np.float32)  # (r, d)
        c, s, khat = _compress_rows(x, precision)
        codes[a:b] = c
        if scale is not None and s is not None:
            scale[a:b] = s
        rho[a:b] = norm_up(x.astype(np.float64) - khat)  # (r,)  ‖k − k̂‖ (differences of exact float64s)
        hat[a:b] = norm_up(khat)
        kn[a:b] = norm_up(x)


@dataclass(frozen=True, eq=False)
class QueryCode:
    """Compressed queries (m, d) and their norms (float64 copies of float32 values rounded up)."""

    precision: str
    codes: np.ndarray  # (m, d) int8 or uint16
    scale: np.ndarray | None  # (m,) float32 (int8)
    norm: np.ndarray  # (m,) ≥ ‖q‖
    resid: np.ndarray  # (m,) ≥ ‖q − q̂‖
    hat_norm: np.ndarray  # (m,) ≥ ‖q̂‖
    dim: int


def compress_queries(q: np.ndarray, precision: str) -> QueryCode:
    """Compress float32 queries (m, d) as the keys are (see :func:`compress_keys`)."""
    q = np.asarray(q, np.float32)
    codes, scale, qhat = _compress_rows(q, precision)  # (m, d), (m,) | None, (m, d)
    f64 = np.float64
    return QueryCode(
        precision,
        codes,
        scale,
        norm_up(q).astype(f64),
        norm_up(q.astype(f64) - qhat).astype(f64),
        norm_up(qhat).astype(f64),
        int(q.shape[1]),
    )


def chunk_scores(ck: CompressedKeys, qc: QueryCode, start: int, stop: int, threads: int | None = None) -> np.ndarray:
    """Compressed scores ŝ of rows start..stop: (m, c), float64 (a fresh array the caller may overwrite).

    ``threads``: of the dot products (default: automatic; 1 inside a threaded pass).
    """
    if ck.precision == "int8":
        ints = dot_int8(qc.codes, ck.codes[start:stop], threads=threads)  # (m, c) int32, exact
        assert qc.scale is not None and ck.scale is not None
        st = np.multiply.outer(qc.scale.astype(np.float64), ck.scale[start:stop].astype(np.float64))  # (m, c)  exact
        st *= ints  # (m, c)  ŝ = I·(t·s): one rounding
        return st
    return dot_bf16(qc.codes, ck.codes[start:stop], threads=threads).astype(np.float64)  # (m, c)


def cell_bounds(
    ck: CompressedKeys, qc: QueryCode, qi: np.ndarray, rows: np.ndarray, s_hat: np.ndarray, tau: float
) -> np.ndarray:
    """B of single cells (query ``qi``, row ``rows`` of ``ck``, their ŝ; all (p,)): (p,), float64.

    |fp32(q·k_j) − ŝ_j| ≤ B_j (the module docstring; the proof: ``docs/guide/compressed.md``).
    """
    d = qc.dim
    g, tiny_c = bound_constants(d, tau)
    rho = ck.rho[rows].astype(np.float64)  # (p,)
    hat = ck.hat_norm[rows].astype(np.float64)  # (p,)
    kn = ck.key_norm[rows].astype(np.float64)  # (p,)
    qn, qr = qc.norm[qi], qc.resid[qi]  # (p,)
    bound = qn * (rho + g * kn) + qr * hat  # (p,)
    if ck.precision == "bf16":
        bound += gamma(d) * qc.hat_norm[qi] * hat  # the float32-accumulated bf16 dot's rounding
    bound *= SLACK
    bound += np.abs(s_hat) * (4.0 * U64)  # ŝ's own rounding (int8) and that of ŝ ± B
    bound += tiny_c * (1.0 + kn)  # float32 underflow (subnormals)
    return bound


def bound_constants(d: int, tau: float) -> tuple[float, float]:
    """γ_{d+8} and the underflow term's factor 2⁻¹²⁰·(d + 8)·max(1, τ) of :func:`cell_bounds`."""
    return gamma(d + REF_EXTRA), 2.0**-120 * (d + REF_EXTRA) * max(1.0, tau)


def chunk_max_bound(ck: CompressedKeys, qc: QueryCode, start: int, stop: int, tau: float) -> np.ndarray:
    """Per query, a bound ≥ B_j of every row start..stop (:func:`cell_bounds`): (m,), float64.

    Each term of B_j grows with a per-row number (ρ_j, ‖k̂_j‖, ‖k_j‖; |ŝ_j| ≤ ‖q̂‖·‖k̂_j‖·(1 + γ_d)),
    so the sum of the terms at those numbers' maxima bounds every row's B_j.
    """
    d = qc.dim
    if stop <= start:
        return np.zeros(qc.norm.shape[0])
    kn_rows = ck.key_norm[start:stop].astype(np.float64)  # float64 first: γ · a float32 array stays float32
    rk = float((ck.rho[start:stop].astype(np.float64) + gamma(d + REF_EXTRA) * kn_rows).max())
    hat = float(ck.hat_norm[start:stop].max())
    kn = float(ck.key_norm[start:stop].max())
    bound = qc.norm * rk + qc.resid * hat  # (m,)
    if ck.precision == "bf16":
        bound += gamma(d) * qc.hat_norm * hat
    bound *= SLACK
    bound += qc.hat_norm * hat * (1.0 + gamma(d)) * (4.0 * U64) * SLACK  # ≥ 4·U64·|ŝ_j|
    bound += 2.0**-120 * (d + REF_EXTRA) * max(1.0, tau) * (1.0 + kn)
    return bound


def chunk_bounds(ck: CompressedKeys, qc: QueryCode, start: int, stop: int, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """Compressed scores ŝ and their bounds B of rows start..stop: both (m, c), float64.

    |fp32(q·k_j) − ŝ_j| ≤ B_j for every query and row (the module docstring; the proof:
    ``docs/guide/compressed.md``).
    """
    s_hat = chunk_scores(ck, qc, start, stop)  # (m, c)
    m, c = s_hat.shape
    qi = np.repeat(np.arange(m), c)  # (m·c,)
    rows = np.tile(np.arange(start, stop), m)  # (m·c,)
    return s_hat, cell_bounds(ck, qc, qi, rows, s_hat.ravel(), tau).reshape(m, c)
