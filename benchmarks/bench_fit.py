"""Speed of SoftTable.fit: 5,000 rows of 384-d keys, 1,000 training queries.

The task is synthetic but shaped like real retrieval: unit keys (as from
all-MiniLM-L6-v2) in groups of near-duplicates, and queries that are distorted, noisy views of their target
row (q = unit(k_t M + noise), M = I + a random mixing), so plain cosine search
confuses the near-duplicate rows of a topic and a fitted W_Q, W_K recovers them. The fit is full-batch
L-BFGS (optimizer="auto" picks it at this size) in float64, whole-table softmax
per query, regularised by 0.03·‖W − I‖² (without it the 2 × 147k weights
overfit 1,000 queries: held-out recall falls). Prints the total time, time per iteration and per loss+gradient
evaluation, and recall@1 on 500 held-out queries before and after.

Run:  .venv/bin/python benchmarks/bench_fit.py [--max-iter 30] [--rows 5000]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from softdb import Projection, SoftTable
from softdb.learn._fit import as_targets
from softdb.projection import rows_loss


def unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--train", type=int, default=1000)
    ap.add_argument("--test", type=int, default=500)
    ap.add_argument("--max-iter", type=int, default=30)
    ap.add_argument("--reg", type=float, default=0.03, help="λ of λ‖W − I‖²")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mix", type=float, default=2.0, help="strength of the query distortion")
    ap.add_argument("--noise", type=float, default=2.0, help="query noise (relative to a unit key)")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    n, d = args.rows, args.dim
    centers = rng.standard_normal((n // 20, d))  # (n / 20, d)  topics: rows come in near-duplicate groups
    keys = unit(centers[rng.integers(0, len(centers), n)] + 0.6 * rng.standard_normal((n, d)))  # (n, d)
    keys = keys.astype(np.float32)
    mix = np.eye(d) + args.mix * rng.standard_normal((d, d)) / np.sqrt(d)  # (d, d)  hidden distortion
    m = args.train + args.test
    target = rng.integers(0, n, m)  # (m,)
    noise = rng.standard_normal((m, d)) / np.sqrt(d)  # (m, d)
    queries = unit(keys[target] @ mix + args.noise * noise).astype(np.float32)  # (m, d)
    q_tr, q_te = queries[: args.train], queries[args.train :]
    t_tr, t_te = target[: args.train].tolist(), target[args.train :]

    table = SoftTable(keys, metric="cosine", projection=Projection(d))

    def recall() -> float:
        return float((table.search(q_te, k=1).rows[:, 0] == t_te).mean())

    before = recall()
    # one loss + gradient evaluation, timed alone (warm-up first)
    X, K = q_tr.astype(np.float64), keys.astype(np.float64)
    csr = as_targets(t_tr, len(t_tr), {i: i for i in range(n)})
    rows_loss(X, K, csr, np.eye(d), np.eye(d), np.log(0.05))
    evals = []
    for _ in range(3):
        t0 = time.perf_counter()
        rows_loss(X, K, csr, np.eye(d), np.eye(d), np.log(0.05))
        evals.append(time.perf_counter() - t0)

    report = table.fit(q_tr, t_tr, loss="rows", max_iter=args.max_iter, reg=args.reg)
    after = recall()
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    print(
        f"fit: {n} rows x {d}-d keys, {args.train} training queries, {report.optimizer}, "
        f"{os.cpu_count()} CPUs (OPENBLAS_NUM_THREADS={threads})"
    )
    print(
        f"  total            {report.seconds:8.2f} s   ({report.iterations} iterations, converged={report.converged})"
    )
    print(f"  per iteration    {report.seconds / max(report.iterations, 1):8.3f} s")
    print(f"  per loss+grad    {np.median(evals):8.3f} s   (median of 3, float64)")
    print(f"  training loss    {report.loss_history[0]:.4f} -> {report.loss_history[-1]:.4f}")
    print(f"  held-out recall@1 ({args.test} queries): {before:.3f} plain -> {after:.3f} fitted")


if __name__ == "__main__":
    main()
