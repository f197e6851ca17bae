"""``torch.nn.MultiheadAttention`` ↔ :class:`~softdb.learn._projection.Projection`, exactly.

torch's MHA computes, per head a of width h_d = E / heads::

    q' = x Wq^T + bq,  k' = k Wk^T + bk,  v' = v Wv^T + bv
    ctx_a = softmax(q'_a k'_a^T / sqrt(h_d)) v'_a
    out = concat_a(ctx_a) Wo^T + bo

which is a projected table with W_Q = Wq^T, W_K = Wk^T, W_V = Wv^T, the biases as
they are, W_O = Wo^T, b_O = bo and τ = sqrt(h_d). torch is imported lazily (the
extras ``text`` and ``bench`` bring it).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from softdb.learn._projection import Projection

__all__ = ["from_torch", "import_torch", "to_torch"]

TORCH_HINT = 'pip install "softdb[text]"'


def import_torch() -> Any:
    """torch, or an ImportError that names the command to run."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is installed wherever the tests run
        raise ImportError(f"this needs PyTorch, which could not be imported ({exc}); run: {TORCH_HINT}") from exc
    return torch


def _np(t: Any) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().double().numpy()


def from_torch(cls: type[Projection], mha: Any) -> Projection:
    """The projection of ``mha``: its outputs are ``SoftTable(keys, values, projection=p).lookup(queries)``.

    Parameters
    ----------
    cls : type
        :class:`softdb.Projection` (this is :meth:`Projection.from_torch`).
    mha : torch.nn.MultiheadAttention
        Without ``add_bias_kv`` or ``add_zero_attn`` (a table has no extra key row), and with
        ``kdim == embed_dim`` (a table's queries and keys share one width d); ``vdim`` may differ.

    Returns
    -------
    Projection
        d = d_k = d_out = embed_dim, d_v = vdim, heads = num_heads, τ = sqrt(head_dim) (its own),
        W_Q = Wq^T, W_K = Wk^T, W_V = Wv^T (d_v, E), the biases, W_O = out_proj.weight^T and
        b_O = out_proj.bias; ``batch_first`` is recorded so that :func:`to_torch` restores it.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from softdb import Projection, SoftTable
    >>> _ = torch.manual_seed(0)
    >>> mha = torch.nn.MultiheadAttention(8, 2, batch_first=True).eval()
    >>> x = torch.randn(1, 5, 8)
    >>> table = SoftTable(x[0].numpy(), projection=Projection.from_torch(mha))
    >>> torch_out = mha(x, x, x, need_weights=False)[0][0].detach().numpy()
    >>> bool(np.abs(table.lookup(x[0].numpy()) - torch_out).max() < 1e-5)
    True
    """
    torch = import_torch()
    if not isinstance(mha, torch.nn.MultiheadAttention):
        raise TypeError(
            f"from_torch takes a torch.nn.MultiheadAttention, got {type(mha).__name__}; "
            "hint: for a BERT-family model's heads, see softdb.heads.transformer_heads"
        )
    if mha.bias_k is not None or mha.bias_v is not None:
        raise ValueError(
            "this MultiheadAttention has add_bias_kv=True (an extra learned key and value row in every "
            "sequence), which a projection cannot hold; hint: add_bias_kv=False, or add that row to the table"
        )
    if mha.add_zero_attn:
        raise ValueError(
            "this MultiheadAttention has add_zero_attn=True (an extra all-zero key and value row), which a "
            "projection cannot hold; hint: add_zero_attn=False, or add a zero row to the table"
        )
    E, h, kdim, vdim = int(mha.embed_dim), int(mha.num_heads), int(mha.kdim), int(mha.vdim)
    if kdim != E:
        raise ValueError(
            f"this MultiheadAttention takes keys of width kdim={kdim} but queries of width embed_dim={E}; a "
            "softdb table's queries and keys share one width d, so a projection cannot hold it; "
            f"hint: kdim={E} (vdim may differ)"
        )
    if mha._qkv_same_embed_dim:
        w_q, w_k, w_v = (_np(w) for w in mha.in_proj_weight.chunk(3))  # 3 × (E, E)
    else:
        w_q, w_k, w_v = _np(mha.q_proj_weight), _np(mha.k_proj_weight), _np(mha.v_proj_weight)  # (E, E|kdim|vdim)
    b_q = b_k = b_v = None
    if mha.in_proj_bias is not None:
        b_q, b_k, b_v = (_np(b) for b in mha.in_proj_bias.chunk(3))  # 3 × (E,)
    p = cls(E, E, E, d_v=vdim, heads=h, temperature=math.sqrt(E // h))
    p.set_weights(
        W_Q=np.asarray(w_q).T,  # (E, E)
        W_K=np.asarray(w_k).T,  # (E, E)
        W_V=np.asarray(w_v).T,  # (vdim, E)
        b_Q=b_q,
        b_K=b_k,
        b_V=b_v,
        W_O=np.asarray(_np(mha.out_proj.weight)).T,  # (E, E)
        b_O=_np(mha.out_proj.bias),
    )
    p._batch_first = bool(mha.batch_first)
    return p


def to_torch(p: Projection, *, batch_first: bool | None = None) -> Any:
    """``p`` as a ``torch.nn.MultiheadAttention`` in eval mode (float32), with the same outputs.

    Parameters
    ----------
    p : Projection
        With d = d_k = d_out (torch's embed_dim) and W_V set; W_O, if set, (d_out, d_out).
        Biases that are not set become zeros (torch has all of them or none).
    batch_first : bool, optional
        Default: what :func:`from_torch` recorded, else False (torch's default).

    Returns
    -------
    torch.nn.MultiheadAttention
        in_proj (or q/k/v_proj when d_v ≠ d) = the transposed W_Q, W_K, W_V; out_proj = W_O^T
        (the identity without W_O). torch scales scores by 1/sqrt(head_dim); a projection with its
        own τ ≠ sqrt(head_dim) has W_Q and b_Q scaled by sqrt(head_dim) / τ, which gives the same
        weights. (A table's τ is not the projection's: give the projection its own temperature.)

    Examples
    --------
    >>> import torch
    >>> from softdb import Projection
    >>> p = Projection(4, d_out=4, heads=2, d_v=3, init="random")
    >>> mha = p.to_torch()
    >>> mha.embed_dim, mha.num_heads, mha.vdim, mha.batch_first
    (4, 2, 3, False)
    """
    torch = import_torch()
    prm = p.params
    E, h = p.d, p.heads
    if p.d_k != E or p.d_out not in (None, E) or prm.W_V is None:
        raise ValueError(
            f"torch.nn.MultiheadAttention needs d = d_k = d_out (its embed_dim) and W_V set, but this "
            f"projection has d={p.d}, d_k={p.d_k}, d_out={p.d_out}; hint: Projection(d, d_k=d, d_out=d, d_v=...)"
        )
    if prm.W_O is not None and prm.W_O.shape != (E, E):
        raise ValueError(
            f"torch's out_proj maps embed_dim={E} to {E}, but this projection's W_O has shape {prm.W_O.shape}; "
            "hint: W_O must be square (d_out, d_out)"
        )
    d_v = int(prm.W_V.shape[0])
    hd = E // h
    scale = 1.0 if p.temperature is None else math.sqrt(hd) / p.temperature  # torch's τ is sqrt(head_dim)
    extras = (prm.b_Q, prm.b_K, prm.b_V, prm.b_O)
    bias = any(b is not None for b in extras)
    bf = p.batch_first if batch_first is None else bool(batch_first)
    mha = torch.nn.MultiheadAttention(E, h, bias=bias, kdim=E, vdim=d_v, batch_first=bool(bf))
    zero = np.zeros(E)
    w_o = np.eye(E) if prm.W_O is None else prm.W_O  # (E, E)

    def t(a: np.ndarray) -> Any:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    with torch.no_grad():
        w_q = prm.W_Q * scale  # (E, E)
        if mha._qkv_same_embed_dim:
            mha.in_proj_weight.copy_(t(np.concatenate([w_q.T, prm.W_K.T, prm.W_V.T])))  # (3E, E)
        else:
            mha.q_proj_weight.copy_(t(w_q.T))  # (E, E)
            mha.k_proj_weight.copy_(t(prm.W_K.T))  # (E, E)
            mha.v_proj_weight.copy_(t(prm.W_V.T))  # (E, d_v)
        mha.out_proj.weight.copy_(t(w_o.T))  # (E, E)
        if bias:
            b_q, b_k, b_v, b_o = (zero if b is None else b for b in extras)
            mha.in_proj_bias.copy_(t(np.concatenate([b_q * scale, b_k, b_v])))  # (3E,)
            mha.out_proj.bias.copy_(t(b_o))  # (E,)
    return mha.eval()
