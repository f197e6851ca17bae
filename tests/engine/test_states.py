"""Mergeable kernel state: a table cut into parts, each run alone and merged, is the whole.

Integer-valued data make the scores exact, so ties are real: top-k and hard rows
must be identical to one run over the whole table (ties to the lowest global row),
whatever the cut and whatever order and grouping the parts are merged in.
"""

from __future__ import annotations

import itertools
import pickle

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from softdb.engine._kernel import run
from softdb.engine._scorers import DenseScorer, row_norm_max
from softdb.engine._states import KernelState, finalize, merge


@st.composite
def cut_tables(draw):
    n = draw(st.integers(1, 80))
    m = draw(st.sampled_from([1, 2, 8, 11]))
    d = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    Q = rng.integers(-2, 3, (m, d)).astype(np.float32)
    K = rng.integers(-2, 3, (n, d)).astype(np.float32)  # few distinct scores: many ties across parts
    V = rng.integers(0, 5, (n, 3)).astype(np.float32)
    kind = draw(st.sampled_from(["none", "rows", "pairs"]))
    mask = None if kind == "none" else rng.random(n if kind == "rows" else (m, n)) < 0.5
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=5)))  # empty parts allowed
    bounds = [0, *cuts, n]
    k = draw(st.integers(1, n))
    order_seed = draw(st.integers(0, 2**32 - 1))
    chunk = draw(st.sampled_from([None, 3]))
    return Q, K, V, mask, bounds, k, order_seed, chunk


OPTIONS = [
    dict(hard=True, k=True),
    dict(k=True),  # by row from 8 queries on
    dict(soft=True, k=True),  # search: top-k and its log-sum-exp
    dict(soft=True, values=True, hard=True, k=True, stats=True, grid=(0.25, 2.0)),
]


def _run_part(Q, K, V, mask, a, b, opts, k, chunk, scale=0.5):  # 0.5: exact scores, ties stay ties
    part_mask = None if mask is None else mask[..., a:b]
    return run(
        DenseScorer(K[a:b], row_norm_max(K[a:b])),
        Q,
        V[a:b] if opts.get("values") else None,
        scale=scale,
        soft=opts.get("soft", False),
        hard=opts.get("hard", False),
        k=k if opts.get("k") else 0,
        mask=part_mask,
        chunk=chunk,
        offset=a,
        stats=opts.get("stats", False),
        grid=opts.get("grid", ()),
    )


def _merge_randomly(states, seed):
    """Merge in a random order and a random grouping (a random binary tree)."""
    rng = np.random.default_rng(seed)
    states = [states[i] for i in rng.permutation(len(states))]
    while len(states) > 1:
        i = int(rng.integers(0, len(states) - 1))
        a, b = states[i], states[i + 1]
        states[i : i + 2] = [a.merge(b) if rng.random() < 0.5 else b.merge(a)]
    return states[0]


@settings(deadline=None, max_examples=150, derandomize=True)
@given(case=cut_tables(), opts=st.sampled_from(OPTIONS))
def test_parts_merged_in_any_grouping_equal_the_whole(case, opts):
    Q, K, V, mask, bounds, k, seed, chunk = case
    whole = finalize(_run_part(Q, K, V, mask, 0, len(K), opts, k, chunk))
    parts = [_run_part(Q, K, V, mask, a, b, opts, k, chunk) for a, b in itertools.pairwise(bounds)]
    got = finalize(_merge_randomly(parts, seed))
    for f in ("top_rows", "top_scores", "best_row", "best_score"):
        if getattr(whole, f) is not None:
            np.testing.assert_array_equal(getattr(got, f), getattr(whole, f), err_msg=f)
    for f in ("out", "lse", "lse_grid", "entropy", "effective_rows"):
        if getattr(whole, f) is not None:
            np.testing.assert_allclose(getattr(got, f), getattr(whole, f), rtol=1e-5, atol=1e-5, err_msg=f)


def test_ties_across_parts_go_to_the_lowest_global_row():
    K = np.ones((6, 1), np.float32)  # every row scores the same
    Q = np.ones((1, 1), np.float32)
    parts = [run(DenseScorer(K[a:b]), Q, hard=True, k=3, offset=a) for a, b in ((4, 6), (0, 2), (2, 4))]
    r = finalize(merge(*parts))
    assert r.top_rows.tolist() == [[0, 1, 2]] and r.best_row.tolist() == [0]


def test_states_pickle_and_stay_small():
    rng = np.random.default_rng(0)
    K = rng.standard_normal((1000, 8)).astype(np.float32)
    Q = rng.standard_normal((4, 8)).astype(np.float32)
    st_ = run(DenseScorer(K), Q, K, scale=2.0, soft=True, hard=True, k=5, stats=True, grid=(1.0,))
    back = pickle.loads(pickle.dumps(st_))
    assert isinstance(back, KernelState)
    a, b = finalize(st_), finalize(back)
    np.testing.assert_array_equal(a.top_rows, b.top_rows)
    np.testing.assert_array_equal(a.out, b.out)
    assert len(pickle.dumps(st_)) < 4096  # O(m · (k + d_v)), not O(n)


def test_a_fully_masked_part_merges_as_nothing():
    rng = np.random.default_rng(1)
    K = rng.standard_normal((10, 3)).astype(np.float32)
    Q = rng.standard_normal((2, 3)).astype(np.float32)
    mask = np.ones(10, bool)
    mask[5:] = False
    a = run(DenseScorer(K[:5]), Q, K[:5], scale=1.0, soft=True, hard=True, k=3, mask=mask[:5])
    b = run(DenseScorer(K[5:]), Q, K[5:], scale=1.0, soft=True, hard=True, k=3, mask=mask[5:], offset=5)
    whole = finalize(run(DenseScorer(K), Q, K, scale=1.0, soft=True, hard=True, k=3, mask=mask))
    got = finalize(merge(b, a))
    np.testing.assert_array_equal(got.top_rows, whole.top_rows)
    np.testing.assert_allclose(got.out, whole.out, rtol=1e-6)
