"""Soft vs hard lookup on a tiny table of fruit prices.

A soft lookup is attention: every row gets a weight softmax(q·k / τ) and the
answer is the weighted average of the values. A hard lookup returns the value of
the single best row. As τ shrinks the soft answer becomes the hard one; as τ grows
it becomes the plain mean of all values.

Run:  python examples/soft_vs_hard.py
"""

import numpy as np

from softdb import SoftTable

# Keys: 2-d "flavour" features (sweet, sour); values: price per kg.
names = ["apple", "lemon", "banana", "lime", "mango"]
keys = np.array([[0.8, 0.3], [0.1, 0.9], [0.9, 0.1], [0.2, 1.0], [1.0, 0.2]], np.float32)
prices = np.array([[2.0], [3.0], [1.5], [3.5], [4.0]], np.float32)
table = SoftTable(keys, prices, ids=names, payloads=names, metric="cosine")

query = np.array([0.95, 0.15], np.float32)  # "something sweet"
print(f"query (sweet, sour) = {query.tolist()}\n")
print(f"{'temperature':>12}  {'soft price':>10}  {'hard price':>10}  top weights")
for tau in [1e-4, 0.01, 0.05, 0.2, 1.0, 100.0]:
    soft = table.lookup(query, temperature=tau)[0]
    hard = table.lookup(query, mode="hard")[0]
    hits = table.search(query, k=3, temperature=tau)
    tops = ", ".join(f"{i} {w:.2f}" for i, w in zip(hits.ids, hits.weights))
    print(f"{tau:>12g}  {soft:>10.3f}  {hard:>10.3f}  {tops}")

print(f"\nmean of all prices: {prices.mean():.3f}  (the τ → ∞ limit)")
best = table.search(query, k=1).ids[0]
print(f"hard lookup picks {best!r}: the τ → 0 limit of the soft lookup")
