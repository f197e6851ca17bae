"""Speed of softdb.heads: all 72 head tables of all-MiniLM-L6-v2 on one 128-token sentence, built and queried.

Timed apart: (1) the model run (``model_attentions``: hidden states, attentions, contexts, one forward pass);
(2) building the 72 tables from that run (``heads_of_run``) and querying each: its weights for all its
tokens (128 × 128) and its lookup (128 × 32). The peer, in the same process: (3) the same 72 heads as bare
float32 numpy (per layer one GEMM for Q, K, V, then per head scores, softmax and context), and (4) the
model's forward pass itself. Warm-up, then ``--repeat`` timed runs; medians. The target: (2) under 2 s.
(2) and (3) are timed again under ``threadpool_limits(1)``: at 128 rows a second BLAS thread only waits,
and on shared cores it waits long.

Run:  .venv/bin/python benchmarks/bench_heads.py [--repeat 5] [--tokens 128]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from softdb.heads import heads_of_run, model_attentions
from softdb.heads._model import load

WORDS = [
    "attention",
    "is",
    "a",
    "soft",
    "database",
    "lookup",
    "where",
    "every",
    "query",
    "scores",
    "all",
    "the",
    "keys",
    "the",
    "scores",
    "become",
    "weights",
    "through",
    "a",
    "softmax",
    "and",
    "the",
    "answer",
    "is",
    "the",
    "weighted",
    "average",
    "of",
    "the",
    "values",
    "so",
    "a",
    "transformer",
    "head",
    "reads",
    "the",
    "tokens",
    "it",
    "finds",
    "relevant",
    "and",
    "blends",
    "what",
    "they",
    "hold",
    "into",
    "its",
    "own",
    "context",
    "vector",
]


def sentence(tokens: int) -> str:
    """A text of exactly ``tokens`` MiniLM tokens ([CLS] and [SEP] included)."""
    tok = load().tokenizer
    words: list[str] = []
    while True:
        words.append(WORDS[len(words) % len(WORDS)])
        n = len(tok(" ".join(words))["input_ids"])
        if n == tokens:
            return " ".join(words)
        if n > tokens:
            raise SystemExit(f"no text of exactly {tokens} tokens from the word list; try another --tokens")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def tables_and_queries(run):
    """Build the 72 tables and ask each for its weights and lookup over all its tokens."""
    heads = heads_of_run(run, 0)
    total = 0.0
    for layer in heads.tables:
        for t in layer:
            X = t.keys  # (n, 384): the tokens entering the layer are the queries too
            total += float(t.weights(X)[0, 0]) + float(t.lookup(X)[0, 0])
    return total


def bare_numpy(run):
    """The same 72 heads as plain float32 numpy: the floor a table's overhead is measured against."""
    n = int(run.lengths[0])
    total = 0.0
    for layer, w in enumerate(run.weights):
        X = run.hidden_states[layer, 0, :n]  # (n, 384)
        q, k, v = X @ w.W_Q + w.b_Q, X @ w.W_K + w.b_K, X @ w.W_V + w.b_V  # (n, 384) each
        for a in range(run.heads):
            s = slice(a * run.d_head, (a + 1) * run.d_head)
            sc = q[:, s] @ k[:, s].T / np.float32(np.sqrt(run.d_head))  # (n, n)
            sc -= sc.max(axis=1, keepdims=True)
            p = np.exp(sc)
            p /= p.sum(axis=1, keepdims=True)  # (n, n)
            total += float(p[0, 0]) + float((p @ v[:, s])[0, 0])  # (n, d_head)
    return total


def timed(fn, repeat):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=128)
    args = ap.parse_args()
    text = sentence(args.tokens)
    run = model_attentions([text])
    n = int(run.lengths[0])
    import torch

    m = load()
    enc = m.tokenizer([text], return_tensors="pt")

    def forward():
        with torch.inference_mode():
            m.model(**enc)

    t_run = timed(lambda: model_attentions([text]), args.repeat)
    t_fwd = timed(forward, args.repeat)
    t_tables = timed(lambda: tables_and_queries(run), args.repeat)
    t_bare = timed(lambda: bare_numpy(run), args.repeat)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):  # tiny GEMMs: a second BLAS thread costs more than it gives
        t_tables1 = timed(lambda: tables_and_queries(run), args.repeat)
        t_bare1 = timed(lambda: bare_numpy(run), args.repeat)
    print(f"CPU: {cpu_name()}; torch threads {torch.get_num_threads()}; {os.cpu_count()} cores visible")
    print(f"text: {n} tokens, {run.layers} layers x {run.heads} heads = {run.layers * run.heads} tables")
    print(f"model run (model_attentions: forward + attentions + contexts): {t_run * 1e3:8.1f} ms")
    print(f"  the model's plain forward pass (peer):                   {t_fwd * 1e3:8.1f} ms")
    print(f"72 tables built + queried (weights and lookup of all tokens): {t_tables * 1e3:8.1f} ms  (target < 2000)")
    print(f"  the same 72 heads in bare float32 numpy (floor):          {t_bare * 1e3:8.1f} ms")
    print(f"  ratio tables / bare numpy: {t_tables / t_bare:.1f}x; tables / model forward: {t_tables / t_fwd:.1f}x")
    print(
        f"with one BLAS thread: 72 tables {t_tables1 * 1e3:.1f} ms, bare numpy {t_bare1 * 1e3:.1f} ms "
        f"(ratio {t_tables1 / t_bare1:.1f}x)"
    )
    print(f"load average while timing: {os.getloadavg()[0]:.2f} (the cores are shared)")


if __name__ == "__main__":
    main()
