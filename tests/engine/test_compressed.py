"""Compressed keys: the per-row norms are rigorous and tight, and every score bound holds.

Oracles: exact rational arithmetic (fractions) for the norms and the compression error at the
edge of the bound; float64 and several fp32 summation orders for the full bound.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softdb.engine._compressed import (
    cell_bounds,
    chunk_bounds,
    chunk_max_bound,
    chunk_scores,
    compress_keys,
    compress_queries,
    gamma,
    norm_up,
    round_up32,
)

PRECISIONS = ["int8", "bf16"]


@pytest.fixture(autouse=True, scope="module", params=[True, False], ids=["compiled", "numpy"])
def _chunk_pass(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test with the compiled chunk pass (softdb.engine._certjit) and with numpy's passes."""
    from softdb.engine import _certjit

    old = _certjit.ENABLED
    _certjit.ENABLED = request.param
    yield
    _certjit.ENABLED = old


def _check_up_and_tight(f: np.ndarray, exact_sq: list[Fraction], d: int) -> None:
    """f_j ≥ the exact norm (rigour); for d = 1, f_j is the smallest such float32 (tightness)."""
    for fj, ex in zip(f.tolist(), exact_sq):
        assert Fraction(fj) ** 2 >= ex, (fj, float(ex) ** 0.5)
        below = float(np.nextafter(np.float32(fj), np.float32(0)))
        if d == 1 and fj > 0:
            assert Fraction(below) ** 2 < ex, "d = 1: the norm must be rounded up by less than one ulp"


def _exact_sq(values: list[Fraction]) -> Fraction:
    return sum((v * v for v in values), Fraction(0))


finite32 = st.floats(-1e6, 1e6, width=32, allow_subnormal=False)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    st.sampled_from(PRECISIONS),
    st.integers(1, 6),
    st.lists(finite32, min_size=6, max_size=6 * 5),
)
def test_row_norms_are_rounded_up_never_down(precision: str, d: int, flat: list[float]) -> None:
    """ρ_j, ‖k̂_j‖ and ‖k_j‖ are ≥ their exact values (rationals); a ρ one ulp too small fails here."""
    n = len(flat) // d
    keys = np.array(flat[: n * d], np.float32).reshape(n, d)
    ck = compress_keys(keys, precision)
    khat = ck.decoded(0, n)
    rho_sq = [_exact_sq([Fraction(float(a)) - Fraction(float(b)) for a, b in zip(k, h)]) for k, h in zip(keys, khat)]
    _check_up_and_tight(ck.rho, rho_sq, d)
    _check_up_and_tight(ck.hat_norm, [_exact_sq([Fraction(float(v)) for v in h]) for h in khat], d)
    _check_up_and_tight(ck.key_norm, [_exact_sq([Fraction(float(v)) for v in k]) for k in keys], d)


def _edge_rows(precision: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """d = 1 rows at the edge of the bound, and a query with no quantisation error.

    In one dimension Cauchy-Schwarz is an equality: |q·(k − k̂)| = |q|·|k − k̂|. The query
    127/128 is its own int8 code (scale 2⁻⁷) and its own bf16 number, so ‖q − q̂‖ = 0 and
    the compression error is exactly ‖q‖·ρ_j up to ρ_j's rounding up: a ρ_j one float32
    ulp too small is below the error.
    """
    rng = np.random.default_rng(seed)
    keys = (rng.uniform(-1, 1, (n, 1)) * 10.0 ** rng.integers(-20, 20, (n, 1))).astype(np.float32)
    return keys, np.array([[127 / 128]], np.float32)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("seed", range(5))
def test_compression_error_meets_its_bound_at_the_edge(precision: str, seed: int) -> None:
    """|q·k − q̂·k̂| ≤ ‖q‖·ρ + ‖q − q̂‖·‖k̂‖ in exact arithmetic, where the bound is attained."""
    keys, q = _edge_rows(precision, 200, seed)
    ck = compress_keys(keys, precision)
    qc = compress_queries(q, precision)
    assert float(qc.resid[0]) == 0.0 and float(qc.norm[0]) == 127 / 128
    khat = ck.decoded(0, ck.n)[:, 0]
    qf = Fraction(127, 128)
    attained = 0
    for j in range(ck.n):
        err = abs(qf * (Fraction(float(keys[j, 0])) - Fraction(float(khat[j]))))  # exact, = |q|·|r_j|
        bound = Fraction(float(qc.norm[0])) * Fraction(float(ck.rho[j])) + Fraction(float(qc.resid[0])) * Fraction(
            float(ck.hat_norm[j])
        )
        assert err <= bound
        if err > 0:
            attained += 1
            below = Fraction(float(qc.norm[0])) * Fraction(float(np.nextafter(ck.rho[j], np.float32(0))))
            assert below < err  # the bound is tight: one ulp less and it would not hold
    assert attained > ck.n // 2


@st.composite
def tables(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Random and adversarial keys and queries: near-ties, duplicates, huge / tiny norms, zero rows."""
    seed = draw(st.integers(0, 2**31 - 1))
    d = draw(st.sampled_from([1, 2, 7, 64, 385]))
    n = draw(st.integers(1, 60))
    kind = draw(st.sampled_from(["gauss", "dupes", "scales", "zeros", "near_ties", "spiky"]))
    rng = np.random.default_rng(seed)
    keys = rng.standard_normal((n, d))
    if kind == "dupes":
        keys = keys[rng.integers(0, max(1, n // 3), n)]
    elif kind == "scales":
        keys *= 10.0 ** rng.integers(-15, 15, (n, 1))
    elif kind == "zeros":
        keys[rng.random(n) < 0.5] = 0.0
    elif kind == "near_ties":
        keys = keys[:1] * (1 + rng.integers(-3, 4, (n, 1)) * 2.0**-22)
    elif kind == "spiky":
        keys[:, 0] *= 1e4
    q = rng.standard_normal((3, d)) * 10.0 ** rng.integers(-10, 10, (3, 1))
    return keys.astype(np.float32), q.astype(np.float32)


@given(tables(), st.sampled_from(PRECISIONS), st.sampled_from([1.0, 0.05, 7.3]))
def test_bound_covers_every_fp32_order_and_the_exact_score(table: tuple, precision: str, tau: float) -> None:
    """|fp32(q·k) − ŝ| ≤ B whichever order fp32 sums in (GEMM, GEMV, einsum, scaled by 1/τ and back)."""
    keys, q = table
    ck = compress_keys(keys, precision)
    s_hat, bound = chunk_bounds(ck, compress_queries(q, precision), 0, ck.n, tau)
    c32 = np.float32(1.0 / tau)
    refs = [
        (q @ keys.T).astype(np.float64),
        np.stack([np.einsum("cd,d->c", keys, qi) for qi in q]).astype(np.float64),
        ((keys @ (q * c32).T).T * np.float32(1.0 / (1.0 / tau))).astype(np.float64),
        q.astype(np.float64) @ keys.T.astype(np.float64),  # ≈ exact
    ]
    for ref in refs:
        assert np.all(np.abs(ref - s_hat) <= bound)
    qc = compress_queries(q, precision)
    exact = q.astype(np.float64) @ keys.T.astype(np.float64)  # exact for d = 1, else within 1e-16 relative
    part = qc.norm[:, None] * ck.rho.astype(np.float64) + qc.resid[:, None] * ck.hat_norm.astype(np.float64)
    if precision == "bf16":
        part += gamma(keys.shape[1]) * qc.hat_norm[:, None] * ck.hat_norm.astype(np.float64)
    slack = 4 * 2.0**-53 * np.abs(q).astype(np.float64) @ np.abs(keys.T).astype(np.float64) * keys.shape[1]
    assert np.all(np.abs(exact - s_hat) <= part * (1 + 2.0**-40) + 4 * 2.0**-53 * np.abs(s_hat) + slack)


def test_round_up32_is_the_next_float_up() -> None:
    x = np.array([1.0, 1.0 + 2.0**-30, 0.0, 3e-39])
    got = round_up32(x)
    assert got.tolist() == [1.0, float(np.nextafter(np.float32(1), np.float32(2))), 0.0, float(np.float32(3e-39))] or (
        got[3] >= 3e-39
    )
    assert np.all(got.astype(np.float64) >= x)


def test_norm_up_of_one_column_is_exact() -> None:
    x = np.array([[0.75], [-3.0], [0.0]], np.float32)
    assert norm_up(x).tolist() == [0.75, 3.0, 0.0]


@settings(max_examples=80, deadline=None, derandomize=True)
@given(
    st.integers(0, 2**31 - 1),
    st.sampled_from(["int8", "bf16"]),
    st.integers(1, 40),
    st.sampled_from([1, 2, 7, 384]),
    st.sampled_from(["normal", "eye", "scaled", "duplicates"]),
    st.sampled_from([0.05, 1.0, 20.0]),
)
def test_a_chunks_max_bound_is_at_least_each_cells_bound(
    seed: int, precision: str, n: int, d: int, kind: str, tau: float
) -> None:
    """B_max of a chunk (the pass's hit test, screen and sums) ≥ every cell's own B, to the bit.

    The γ·‖k‖ term once ran in float32 (a Python float times a float32 array stays float32 under
    numpy 2) and fell below the cells' float64 bound: a 2 × 2 identity table lost its top-1.
    """
    rng = np.random.default_rng(seed)
    if kind == "eye":
        keys = np.eye(max(n, d), d, dtype=np.float32)[:n]
    else:
        keys = rng.standard_normal((n, d)).astype(np.float32)
        if kind == "scaled":
            keys *= np.float32(10.0) ** rng.integers(-6, 6, (n, 1)).astype(np.float32)
        if kind == "duplicates":
            keys[n // 2 :] = keys[: n - n // 2]
    q = np.concatenate([keys[:2], rng.standard_normal((2, d)).astype(np.float32)])  # (m, d)
    m = q.shape[0]
    ck, qc = compress_keys(keys, precision), compress_queries(q, precision)
    s_hat = chunk_scores(ck, qc, 0, n)  # (m, n)
    qi, rows = np.repeat(np.arange(m), n), np.tile(np.arange(n), m)
    cells = cell_bounds(ck, qc, qi, rows, s_hat.ravel(), tau).reshape(m, n)
    bmax = chunk_max_bound(ck, qc, 0, n, tau)  # (m,)
    assert np.all(cells <= bmax[:, None]), (cells.max(axis=1), bmax)
