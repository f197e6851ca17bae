"""A stand-in for :class:`softdb.heads.Heads` made of random projected tables (no model), for fast view tests."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from softdb import Projection, SoftTable

TOKENS = ["[CLS]", "the", "cat", "sat", "on", "the", "mat", "because", "it", "was", "warm", ".", "[SEP]"]


@dataclass(frozen=True)
class FakeHeads:
    tokens: list[str]
    tables: tuple[tuple[SoftTable, ...], ...]
    layers: int
    heads: int
    d_head: int
    model: str = "fake-bert"

    def table(self, layer: int, head: int) -> SoftTable:
        return self.tables[layer][head]


def fake_heads(tokens=TOKENS, *, layers=2, heads=3, d=12, d_head=4, seed=0):
    rng = np.random.default_rng(seed)
    n = len(tokens)
    ids = [f"{i}:{t}" for i, t in enumerate(tokens)]
    pays = [{"token": t, "position": i} for i, t in enumerate(tokens)]
    tables = []
    for li in range(layers):
        x = rng.standard_normal((n, d)).astype(np.float32)  # (n, d)  the states entering layer li
        row = []
        for h in range(heads):
            p = Projection(d, d_k=d_head, d_out=d_head, init="random", seed=100 * li + h)
            p.set_weights(W_Q=3 * np.asarray(p.W_Q), W_K=3 * np.asarray(p.W_K))  # sharper weights
            row.append(SoftTable(x, x, ids=ids, payloads=pays, temperature=math.sqrt(d_head), projection=p))
        tables.append(tuple(row))
    return FakeHeads(list(tokens), tuple(tables), layers, heads, d_head)
