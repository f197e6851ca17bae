"""A benchmark-only exact top-k from int8 keys: int8 scores, a candidate bound, fp32 rescoring.

Used by bench_compressed.py and bench_beyond_memory_int8.py when ``SoftTable.compress``
(issue 24, another branch) is not there to time; it is built only from
``softdb.engine._lowp``'s functions, so it times the same SIMD kernels.

Keys k_j ≈ k̃_j = s_j·c_j (int8 codes c_j, one scale s_j per row), ρ_j = ‖k_j − k̃_j‖;
the query q ≈ q̃ = s_q·c_q with r_q = ‖q − q̃‖. Then

    q·k_j − s_q·s_j·(c_q·c_j) = q·(k_j − k̃_j) + (q − q̃)·k̃_j,   |…| ≤ ‖q‖ρ_j + r_q‖k̃_j‖,

and c_q·c_j is exact (int32). Ranking a query's rows needs only s_j·(c_q·c_j) (s_q > 0),
so the bound is divided by s_q; float32 rounding of s_j·(c_q·c_j) adds u per score. A row
can be in the exact top-k only if its upper bound reaches the k-th best lower bound; those
rows are rescored with the fp32 keys (in memory or memory-mapped).
"""

from __future__ import annotations

import numpy as np

from softdb.engine._lowp import dot_int8, quantize_int8
from softdb.engine._topk import _true_cells

U = 2.0**-24
GROUPS = 64


class Int8Keys:
    """int8 codes, scales, residual norms and code norms of fp32 keys, built block by block."""

    def __init__(self, keys: np.ndarray, block: int = 1 << 15) -> None:
        n, d = keys.shape
        self.keys, self.d = keys, d
        self.codes = np.empty((n, d), np.int8)  # (n, d)
        self.scale = np.empty(n, np.float32)  # (n,)
        self.rho = np.empty(n, np.float32)  # (n,)  ‖k_j − s_j·c_j‖, rounded up
        self.knorm = np.empty(n, np.float32)  # (n,)  ‖s_j·c_j‖, rounded up
        slack = np.float32(1 + (d + 4) * U)
        for a in range(0, n, block):
            x = np.asarray(keys[a : a + block], np.float32)  # (b, d)  read from disk if mmapped
            c, s = quantize_int8(x)
            self.codes[a : a + len(x)], self.scale[a : a + len(x)] = c, s
            approx = c * s[:, None]  # (b, d) float32: k̃ rounded, each entry within u of k̃
            # float32 norms, rounded up: relative (d + 4)·u for the sums, plus u·‖k̃‖ for the rounded k̃
            kn = np.sqrt(np.einsum("ij,ij->i", approx, approx)) * slack  # (b,)
            approx -= x
            rho = np.sqrt(np.einsum("ij,ij->i", approx, approx)) * slack + np.float32(2 * U) * kn  # (b,)
            self.rho[a : a + len(x)], self.knorm[a : a + len(x)] = rho, kn * np.float32(1 + 2 * U)
        self.rho_max = float(self.rho.max(initial=0.0))
        self.knorm_max = float(self.knorm.max(initial=0.0))

    @property
    def nbytes(self) -> int:
        return self.codes.nbytes + self.scale.nbytes + self.rho.nbytes + self.knorm.nbytes

    def search(
        self, q: np.ndarray, k: int = 10, block: int = 1 << 20, backend: str = "auto"
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Exact top-k by fp32 scores: (ids (m, k), scores (m, k), rows rescored per query (m,))."""
        q = np.atleast_2d(np.asarray(q, np.float32))
        m, n = q.shape[0], self.codes.shape[0]
        qc, qs = quantize_int8(q)  # (m, d), (m,)
        qf = q.astype(np.float64)
        rq = np.linalg.norm(qf - qc.astype(np.float64) * qs[:, None], axis=1) * (1 + 1e-6)  # (m,)
        qn = np.linalg.norm(qf, axis=1) * (1 + 1e-6)  # (m,)
        s_max = float(self.scale.max(initial=0.0))
        # one bound for every row, in units of s_j·(c_q·c_j): the error terms plus float32 rounding
        e_all = ((qn * self.rho_max + rq * self.knorm_max) / qs + 2 * U * s_max * 127 * 127 * self.d) * (1 + 1e-5)
        lb = np.full(m, -np.inf)  # (m,)  a lower bound of each query's k-th best score
        cand_q, cand_r, cand_s = [], [], []
        for a in range(0, n, block):
            b = min(n, a + block)
            c = b - a
            s = np.multiply(dot_int8(qc, self.codes[a:b], backend=backend), self.scale[None, a:b], dtype=np.float32)
            # (m, c)  s_j·(c_q·c_j)
            g = min(GROUPS, c)
            if c >= k * 4 and g >= k:  # the k-th best of group maxima: k rows reach it
                gm = s[:, : c - c % g].reshape(m, g, -1).max(axis=2)  # (m, g)
                lb = np.maximum(lb, np.partition(gm, g - k, axis=1)[:, g - k] - e_all)
            hit = np.zeros((m, -(-c // 8) * 8), bool)  # (m, c rounded up to 8)
            np.greater_equal(s, (lb - e_all).astype(np.float32)[:, None], out=hit[:, :c])
            qi, ri = _true_cells(hit)
            cand_q.append(qi)
            cand_r.append(ri + a)
            cand_s.append(s[qi, ri])
        qi, ri, si = np.concatenate(cand_q), np.concatenate(cand_r), np.concatenate(cand_s)
        # per-row bounds of the candidates; keep those whose upper bound reaches the k-th best lower bound
        e = ((qn[qi] * self.rho[ri] + rq[qi] * self.knorm[ri]) / qs[qi] + 2 * U * np.abs(si)) * (1 + 1e-5)
        lo, hi = si - e, si + e
        order = np.lexsort((-lo, qi))  # by query, lower bound descending
        qi, ri, lo, hi = qi[order], ri[order], lo[order], hi[order]
        starts = np.searchsorted(qi, np.arange(m))
        full = np.diff(np.append(starts, len(qi))) >= k  # (m,)  queries with k candidates at least
        kth = np.where(full, lo[np.minimum(starts + k - 1, max(len(lo) - 1, 0))] if len(lo) else 0, -np.inf)
        keep = hi >= kth[qi]
        qi, ri = qi[keep], ri[keep]
        rows_u, inv = np.unique(ri, return_inverse=True)
        kf = np.asarray(self.keys[rows_u], np.float32)  # (u, d)  fp32 keys of the rescored rows (random reads)
        exact = np.einsum("ij,ij->i", q[qi], kf[inv])  # (p,)
        order = np.lexsort((ri, -exact, qi))  # query, score descending, row ascending
        qi, ri, exact = qi[order], ri[order], exact[order]
        starts = np.searchsorted(qi, np.arange(m))
        counts = np.diff(np.append(starts, len(qi)))
        take = starts[:, None] + np.arange(k)[None, :]  # (m, k)
        ok = np.arange(k)[None, :] < counts[:, None]
        take = np.where(ok, take, 0)
        ids = np.where(ok, ri[take], -1)
        scores = np.where(ok, exact[take], -np.inf).astype(np.float32)
        return ids, scores, counts
