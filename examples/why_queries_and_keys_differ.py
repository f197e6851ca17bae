"""Why attention needs separate W_Q and W_K: directed 3-cycles.

60 tokens with random unit embeddings (d = 32) form 20 directed cycles
a → b → c → a. Each token must attend most to its successor. We fit a projected
table twice: with separate query and key matrices, and tied (W_Q = W_K).

Run:  python examples/why_queries_and_keys_differ.py
"""

import numpy as np

from softdb import Projection, SoftTable

rng = np.random.default_rng(0)
X = rng.standard_normal((60, 32))
X /= np.linalg.norm(X, axis=1, keepdims=True)  # (60, 32)  random unit embeddings
successor = np.empty(60, np.int64)
for a, b, c in rng.permutation(60).reshape(20, 3):
    successor[a], successor[b], successor[c] = b, c, a

plain = SoftTable(X)
print(
    f"no projection:       successor found for {np.mean(plain.search(X, k=1).rows[:, 0] == successor):6.1%} "
    "(every token attends to itself)"
)
for tied in (False, True):
    table = SoftTable(X, projection=Projection(32, tied=tied))
    report = table.fit(X, successor.tolist(), loss="rows", max_iter=200)
    acc = np.mean(table.search(X, k=1).rows[:, 0] == successor)
    name = "tied W_Q = W_K:" if tied else "separate W_Q, W_K:"
    print(
        f"{name:20s} successor found for {acc:6.1%}  ({report.iterations} L-BFGS iterations, "
        f"loss {report.loss_history[0]:.3f} -> {report.loss_history[-1]:.3f})"
    )

print("""
Why tied must fail: W_Q = W_K makes the score symmetric, s(x, y) = s(y, x). Getting a whole cycle right needs
s(a,b) > s(a,c) = s(c,a) > s(c,b) = s(b,c) > s(b,a) = s(a,b), a contradiction: at most 2 of each 3 can be right.""")
