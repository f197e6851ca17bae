"""Every scorer's capability flags tell the truth: the kernel calls what they promise."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from softdb.engine._kernel import run
from softdb.engine._plan import Head, _MeanHeads
from softdb.engine._protocols import BoundScorer, is_one_query, is_row_scorer
from softdb.engine._scorers import BlockScorer, CsrScorer, DenseScorer
from softdb.engine._states import finalize

rng = np.random.default_rng(3)
K = rng.standard_normal((40, 5)).astype(np.float32)
Q = rng.standard_normal((1, 5)).astype(np.float32)
S = sp.csr_matrix(np.where(rng.random((40, 7)) < 0.3, 1.0, 0.0).astype(np.float32))
QS = sp.csr_matrix(np.ones((1, 7), np.float32))


def _bounds() -> dict[str, BoundScorer]:
    heads = [Head(K), Head(2 * K)]
    return {
        "dense": DenseScorer(K).bind(Q),
        "csr": CsrScorer(S).bind(QS),
        "blocks": BlockScorer([DenseScorer(K), CsrScorer(S)], [1.0, 0.5]).bind([Q, QS]),
        "mean heads": _MeanHeads(heads, np.zeros((1, 2)), 1.0).bind([Q, Q]),
    }


@pytest.mark.parametrize("kind", ["dense", "csr", "blocks", "mean heads"])
def test_flags_promise_only_methods_that_exist_and_agree(kind):
    b = _bounds()[kind]
    assert isinstance(b.by_row, bool) and isinstance(b.one_query, bool)
    c = 40
    want = b.scores(0, c, np.empty((b.m, c), b.dtype)).copy()  # (m, c)
    if is_row_scorer(b):
        np.testing.assert_allclose(b.scores_by_row(0, c, np.empty((c, b.m), b.dtype)).T, want, rtol=1e-5, atol=1e-5)
    else:
        assert not hasattr(b, "scores_by_row") or kind == "blocks"
    if is_one_query(b):
        np.testing.assert_allclose(b.scores_one(0, c, np.empty((1, c), b.dtype)), want, rtol=1e-5, atol=1e-5)
        assert b.row_bytes() > 0
        rows = b.dense_rows()
        assert rows is None or (rows[0].shape[0] == c and rows[1].ndim == 1)
    else:
        assert not hasattr(b, "scores_one")


def test_the_flags_match_what_each_scorer_offers():
    flags = {kind: (b.by_row, b.one_query) for kind, b in _bounds().items()}
    assert flags == {
        "dense": (True, True),
        "csr": (True, False),
        "blocks": (True, False),
        "mean heads": (False, False),
    }


def test_blocks_lay_out_by_row_only_when_every_block_can():
    heads = [Head(K), Head(2 * K)]
    mean = _MeanHeads(heads, np.zeros((1, 2)), 1.0)
    assert BlockScorer([DenseScorer(K), mean]).bind([Q, [Q, Q]]).by_row is False


def test_a_scorer_that_turns_a_flag_off_is_not_asked_for_that_layout():
    """by_row False on a dense bound: the kernel's top-k of 8+ queries stays laid out by query."""

    class NoRows(DenseScorer):
        def bind(self, queries, scale=1.0):
            b = super().bind(queries, scale)
            b.by_row = False

            def refuse(start, stop, out):
                raise AssertionError("scores_by_row called although by_row is False")

            b.scores_by_row = refuse
            return b

    q8 = rng.standard_normal((8, 5)).astype(np.float32)
    got = finalize(run(NoRows(K), q8, k=3)).top_rows
    want = finalize(run(DenseScorer(K), q8, k=3)).top_rows
    np.testing.assert_array_equal(got, want)
