"""Sparse (CSR) and block keys answer exactly as the same keys densified, in every mode."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from softdb import SoftTable


def _csr(rng, n, d, density, integer):
    a = sp.random(n, d, density=density, format="csr", random_state=rng, dtype=np.float64)
    if integer:  # small integers: many exactly tied scores
        a.data = np.ceil(a.data * 3)
    return a.astype(np.float32)


def _mask(rng, kind, m, n):
    if kind == "none":
        return None
    if kind == "rows":
        return rng.random(n) < 0.6
    mask = rng.random((m, n)) < 0.6
    mask[0] = False  # a query with every row masked: "no match"
    return mask


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    d=st.integers(1, 30),
    m=st.integers(1, 12),
    density=st.sampled_from([0.05, 0.3, 1.0]),
    integer=st.booleans(),
    sparse_q=st.booleans(),
    mask_kind=st.sampled_from(["none", "rows", "queries"]),
    tau=st.sampled_from([0.25, 1.0, 8.0]),
    seed=st.integers(0, 10**6),
)
def test_csr_keys_equal_dense_keys(n, d, m, density, integer, sparse_q, mask_kind, tau, seed):
    rng = np.random.default_rng(seed)
    keys = _csr(rng, n, d, density, integer)
    q = _csr(rng, m, d, 0.5, integer)
    qs = q if sparse_q else q.toarray()
    mask = _mask(rng, mask_kind, m, n)
    t, ref = SoftTable(keys, temperature=tau), SoftTable(keys.toarray(), temperature=tau)
    k = int(rng.integers(1, n + 1))
    # search ranks scores / τ: a power-of-two τ keeps integer ties exact in both paths
    a, b = t.search(qs, k=k, mask=mask), ref.search(q.toarray(), k=k, mask=mask)
    np.testing.assert_array_equal(a.rows, b.rows)  # ties too: lowest row first in both
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.weights, b.weights, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(t.weights(qs, mask=mask), ref.weights(q.toarray(), mask=mask), rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(t.lookup(qs, mode="hard", mask=mask), ref.lookup(q.toarray(), mode="hard", mask=mask))
    np.testing.assert_allclose(t.lookup(qs, mask=mask), ref.lookup(q.toarray(), mask=mask), rtol=1e-4, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 30),
    m=st.integers(1, 9),
    beta=st.sampled_from([0.0, 0.05, 1.0, 3.0]),
    mask_kind=st.sampled_from(["none", "rows", "queries"]),
    seed=st.integers(0, 10**6),
)
def test_block_keys_equal_their_weighted_concatenation(n, m, beta, mask_kind, seed):
    rng = np.random.default_rng(seed)
    dense, sparse = rng.standard_normal((n, 5)).astype(np.float32), _csr(rng, n, 11, 0.3, True)
    qd, qs = rng.standard_normal((m, 5)).astype(np.float32), _csr(rng, m, 11, 0.5, True)
    mask = _mask(rng, mask_kind, m, n)
    t = SoftTable([dense, sparse], np.arange(n, dtype=np.float32)[:, None], block_weights=[1.0, beta], temperature=0.5)
    ref = SoftTable(
        np.hstack([dense, beta * sparse.toarray()]), np.arange(n, dtype=np.float32)[:, None], temperature=0.5
    )
    qcat = np.hstack([qd, qs.toarray()])
    a, b = t.search([qd, qs], k=min(3, n), mask=mask), ref.search(qcat, k=min(3, n), mask=mask)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a.weights, b.weights, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(t.weights([qd, qs], mask=mask), ref.weights(qcat, mask=mask), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(t.lookup([qd, qs], mask=mask), ref.lookup(qcat, mask=mask), rtol=1e-4, atol=1e-5)


def test_add_and_remove_keep_sparse_and_block_keys_exact():
    rng = np.random.default_rng(0)
    keys = _csr(rng, 20, 9, 0.3, True)
    t = SoftTable(keys[:12], ids=list(range(12)), temperature=1.0)
    t.add(keys[12:], ids=list(range(12, 20)))
    t.remove([3, 15])
    keep = [i for i in range(20) if i not in (3, 15)]
    assert sp.issparse(t.keys) and t.ids == tuple(keep)
    np.testing.assert_array_equal(t.keys.toarray(), keys.toarray()[keep])
    blocks = SoftTable([keys.toarray()[:, :4], keys[:, 4:]], block_weights=[1.0, 0.5])
    blocks.add([keys.toarray()[:2, :4], keys[:2, 4:]])
    assert len(blocks) == 22 and blocks.keys[1].shape == (22, 5)


def test_saved_sparse_keys_are_plain_arrays_and_load_memory_mapped(tmp_path):
    rng = np.random.default_rng(1)
    dense, sparse = rng.standard_normal((30, 4)).astype(np.float32), _csr(rng, 30, 12, 0.3, False)
    t = SoftTable([dense, sparse], ids=[f"r{i}" for i in range(30)], block_weights=[1.0, 0.25], temperature=0.5)
    t.save(tmp_path / "t")
    m = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert m["keys"] == {
        "kind": "blocks",
        "blocks": [{"kind": "dense", "dim": 4}, {"kind": "csr", "dim": 12}],
        "weights": [1.0, 0.25],
    }
    # readable without softdb: numpy and scipy alone rebuild the keys
    parts = {
        f: np.load(tmp_path / "t" / f, allow_pickle=False) for f in os.listdir(tmp_path / "t") if f.endswith(".npy")
    }
    rebuilt = sp.csr_matrix(
        (parts["keys.1.data.npy"], parts["keys.1.indices.npy"], parts["keys.1.indptr.npy"]), shape=(30, 12)
    )
    np.testing.assert_array_equal(rebuilt.toarray(), sparse.toarray())
    np.testing.assert_array_equal(parts["keys.0.npy"], dense)
    back = SoftTable.load(tmp_path / "t", mmap=True)
    assert isinstance(back.keys[1].data, np.memmap) and back.block_weights == (1.0, 0.25)
    q = [dense[:3], sparse[:3]]
    np.testing.assert_array_equal(back.search(q, k=4).rows, t.search(q, k=4).rows)


def test_a_damaged_sparse_file_is_refused(tmp_path):
    t = SoftTable(_csr(np.random.default_rng(2), 10, 6, 0.5, False))
    t.save(tmp_path / "t")
    path = tmp_path / "t" / "keys.indices.npy"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x7F  # flip a column index
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=re.escape("keys.indices.npy is corrupted")):
        SoftTable.load(tmp_path / "t")


def test_errors_name_the_fix():
    keys = sp.csr_matrix(np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError, match=re.escape("metric='cosine' needs dense keys, but these keys are csr")):
        SoftTable(keys, metric="cosine")
    t = SoftTable([np.eye(3, dtype=np.float32), keys])
    with pytest.raises(ValueError, match=re.escape("so queries must be a list of 2 query matrices, one per block")):
        t.search(np.eye(3, dtype=np.float32), k=1)
    with pytest.raises(TypeError, match=re.escape("sparse queries need sparse keys")):
        SoftTable(np.eye(3, dtype=np.float32)).search(keys, k=1)
    with pytest.raises(ValueError, match=re.escape("block_weights must be 2 finite numbers, one per key block")):
        SoftTable([np.eye(3, dtype=np.float32), keys], block_weights=[1.0])
    with pytest.raises(ValueError, match=re.escape("new keys are dense of widths [3] but the table's are csr")):
        SoftTable(keys).add(np.eye(3, dtype=np.float32))
