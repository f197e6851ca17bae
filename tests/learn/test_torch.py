"""Projection.from_torch / to_torch: a softdb table answers exactly as torch.nn.MultiheadAttention."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softdb import Projection, SoftTable

torch = pytest.importorskip("torch")


@st.composite
def mhas(draw):
    heads = draw(st.sampled_from([1, 2, 4]))
    E = heads * draw(st.integers(1, 4))
    kw = dict(
        bias=draw(st.booleans()),
        batch_first=draw(st.booleans()),
        vdim=draw(st.sampled_from([None, 3, 5])),
        kdim=draw(st.sampled_from([None, E])),  # an explicit kdim = E: torch's separate layout when vdim differs
    )
    torch.manual_seed(draw(st.integers(0, 2**16)))
    mha = torch.nn.MultiheadAttention(E, heads, **kw).eval()
    if kw["bias"]:
        with torch.no_grad():  # torch starts biases at 0: make them count
            mha.in_proj_bias.normal_()
            mha.out_proj.bias.normal_()
    n, m = draw(st.integers(1, 9)), draw(st.integers(1, 5))
    return mha, n, m


def torch_out(mha, q, k, v):
    """mha on one sequence of m queries over n keys: (m, E), float64 numpy."""
    Q, Kt, Vt = (torch.from_numpy(a.astype(np.float32)) for a in (q, k, v))
    if mha.batch_first:
        Q, Kt, Vt = Q[None], Kt[None], Vt[None]
    else:
        Q, Kt, Vt = Q[:, None], Kt[:, None], Vt[:, None]
    with torch.no_grad():
        out, w = mha(Q, Kt, Vt, need_weights=True, average_attn_weights=False)
    out = out[0] if mha.batch_first else out[:, 0]
    return out.double().numpy(), w[0].double().numpy()  # (m, E), (heads, m, n)


@settings(max_examples=40, deadline=None)
@given(mhas())
def test_torch_to_softdb_and_back(case):
    """torch → softdb: the table's answers and per-head weights equal torch's; softdb → torch: the same module."""
    mha, n, m = case
    rng = np.random.default_rng(n * 31 + m)
    E, vdim = mha.embed_dim, mha.vdim
    K = rng.standard_normal((n, E)).astype(np.float32)
    V = rng.standard_normal((n, vdim)).astype(np.float32)
    Q = rng.standard_normal((m, E)).astype(np.float32)
    p = Projection.from_torch(mha)
    assert p.batch_first == mha.batch_first and p.heads == mha.num_heads and p.d_v == vdim
    table = SoftTable(K, V, projection=p)
    ref, w = torch_out(mha, Q, K, V)
    np.testing.assert_allclose(table.lookup(Q), ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(table.weights(Q, heads="each"), w, atol=1e-5, rtol=0)
    back = p.to_torch()  # the round trip is exact: every parameter, and batch_first
    assert back.batch_first == mha.batch_first and back._qkv_same_embed_dim == mha._qkv_same_embed_dim
    a, b = mha.state_dict(), back.state_dict()
    assert list(a) == list(b)
    for name in a:
        assert torch.equal(a[name], b[name]), name


@settings(max_examples=40, deadline=None)
@given(
    heads=st.sampled_from([1, 2, 3]),
    width=st.integers(1, 3),
    d_v=st.integers(1, 6),
    parts=st.sets(st.sampled_from(["b_Q", "b_K", "b_V", "W_O", "b_O"])),
    tau=st.sampled_from([None, 0.5, 2.0]),
    batch_first=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_softdb_to_torch(heads, width, d_v, parts, tau, batch_first, seed):
    """softdb → torch: a random projection (any biases, W_O or not, its own τ or not) answers as its MHA."""
    rng = np.random.default_rng(seed)
    E = heads * width
    p = Projection(E, d_out=E, d_v=d_v, heads=heads, init="random", seed=seed, temperature=tau)
    ex = {
        "b_Q": rng.standard_normal(E),
        "b_K": rng.standard_normal(E),
        "b_V": rng.standard_normal(E),
        "W_O": rng.standard_normal((E, E)),
    }
    ex = {k: v for k, v in ex.items() if k in parts}
    if "b_O" in parts:
        ex.setdefault("W_O", rng.standard_normal((E, E)))
        ex["b_O"] = rng.standard_normal(E)
    p.set_weights(**ex)
    K = rng.standard_normal((7, E)).astype(np.float32)
    V = rng.standard_normal((7, d_v)).astype(np.float32)
    Q = rng.standard_normal((4, E)).astype(np.float32)
    mha = p.to_torch(batch_first=batch_first)
    ref, w = torch_out(mha, Q, K, V)
    table = SoftTable(K, V, projection=p)
    np.testing.assert_allclose(table.lookup(Q), ref, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(table.weights(Q, heads="each"), w, atol=1e-5)


def test_refuses_what_a_projection_cannot_hold():
    msg = (
        "this MultiheadAttention has add_bias_kv=True (an extra learned key and value row in every sequence), "
        "which a projection cannot hold; hint: add_bias_kv=False, or add that row to the table"
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        Projection.from_torch(torch.nn.MultiheadAttention(4, 2, add_bias_kv=True))
    with pytest.raises(ValueError, match=re.escape("this MultiheadAttention has add_zero_attn=True")):
        Projection.from_torch(torch.nn.MultiheadAttention(4, 2, add_zero_attn=True))
    msg = (
        "this MultiheadAttention takes keys of width kdim=3 but queries of width embed_dim=4; a softdb table's "
        "queries and keys share one width d, so a projection cannot hold it; hint: kdim=4 (vdim may differ)"
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        Projection.from_torch(torch.nn.MultiheadAttention(4, 2, kdim=3))
    msg = "from_torch takes a torch.nn.MultiheadAttention, got Linear; hint: for a BERT-family model's heads"
    with pytest.raises(TypeError, match=re.escape(msg)):
        Projection.from_torch(torch.nn.Linear(4, 4))
    msg = (
        "torch.nn.MultiheadAttention needs d = d_k = d_out (its embed_dim) and W_V set, but this projection has "
        "d=4, d_k=2, d_out=2; hint: Projection(d, d_k=d, d_out=d, d_v=...)"
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        Projection(4, d_k=2, d_out=2, d_v=3).to_torch()
    p = Projection(4, d_v=4)
    p.set_weights(W_O=np.ones((4, 2)))
    msg = "torch's out_proj maps embed_dim=4 to 4, but this projection's W_O has shape (4, 2); hint: W_O must be square"
    with pytest.raises(ValueError, match=re.escape(msg)):
        p.to_torch()


def test_imported_projection_saves_and_loads(tmp_path):
    torch.manual_seed(3)
    mha = torch.nn.MultiheadAttention(6, 3, batch_first=True, vdim=2).eval()
    t = SoftTable(np.eye(6, dtype=np.float32), np.ones((6, 2), np.float32), projection=Projection.from_torch(mha))
    t.save(tmp_path / "t")
    back = SoftTable.load(tmp_path / "t").projection.to_torch()
    assert back.batch_first
    for (na, a), (nb, b) in zip(mha.state_dict().items(), back.state_dict().items()):
        assert na == nb and torch.equal(a, b)
