"""Every attention head is a soft table: first a torch MultiheadAttention, then MiniLM's own heads.

1. Build a ``torch.nn.MultiheadAttention`` (biases, output projection, two heads), import it with
   ``Projection.from_torch`` and check that the SoftTable answers what torch answers.
2. Open all-MiniLM-L6-v2 (bundled, offline) on one sentence and query one head like a database:
   which tokens does "it" retrieve, with what weights, and how the soft answer (the head's context
   vector) compares with the hard one (the value of its best row).

Run:  python examples/attention_heads.py
"""

import numpy as np
import torch

from softdb import Projection, SoftTable
from softdb.heads import transformer_heads

# ------------------------------------------------------------------ 1. torch's attention as a table
torch.manual_seed(0)
mha = torch.nn.MultiheadAttention(embed_dim=16, num_heads=2, batch_first=True).eval()
x = torch.randn(1, 7, 16)  # (batch, tokens, embed_dim)
with torch.no_grad():
    out, attn = mha(x, x, x, average_attn_weights=False)  # (1, 7, 16), (1, 2, 7, 7)

table = SoftTable(x[0].numpy(), projection=Projection.from_torch(mha))  # keys = values = the 7 tokens
print(f"torch MultiheadAttention(16, 2) as a SoftTable: {table!r}")
print(f"  max |SoftTable.lookup - torch output|  = {np.abs(table.lookup(x[0].numpy()) - out[0].numpy()).max():.2e}")
w = table.weights(x[0].numpy(), heads="each")  # (heads, queries, rows)
print(f"  max |SoftTable.weights - torch weights| = {np.abs(w - attn[0].numpy()).max():.2e}  (each head)")

# ------------------------------------------------------------------ 2. a real model's head, queried
sentence = "The cat sat on the mat because it was warm."
layer, head = 5, 11  # a head where "it" looks back at what it refers to
heads = transformer_heads(sentence, layer)  # one table per head of that layer
t = heads[head]
tokens = [p["token"] for p in t.payloads]
i = tokens.index("it")
print(f'\nMiniLM layer {layer}, head {head} on "{sentence}"')
print(f"  rows (keys = values = the token states entering layer {layer}): {' '.join(tokens)}")
e = t.explain(t.keys[i], k=4)
print(f'  "it" retrieves (top 4 of {len(t)}; entropy {e.entropy:.2f} nats, ≈{e.effective_rows:.1f} effective rows):')
for rid, weight in zip(e.ids, e.weights):
    print(f"    {rid:>12}  weight {weight:.3f}")
soft = t.lookup(t.keys[i])  # (d_head,)  the head's context vector for "it"
hard = t.lookup(t.keys[i], mode="hard")  # (d_head,)  the value of the best row alone
cos = float(soft @ hard / np.linalg.norm(soft) / np.linalg.norm(hard))
print(
    f"  soft answer vs hard answer ({e.ids[0]}): cosine {cos:.3f}, ‖soft − hard‖ / ‖hard‖ = "
    f"{np.linalg.norm(soft - hard) / np.linalg.norm(hard):.3f}"
)
print('\nSee every head: softdb heads "The cat sat on the mat because it was warm." --html heads.html')
