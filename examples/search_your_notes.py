"""Search a folder of your own notes (.txt and .md files: one document per file, cut into chunks).

Build the table once and save it, then answer queries from the saved table: the
same "build once, query many times" as `softdb index` and `softdb search --table`.

Run:  python examples/search_your_notes.py [NOTES_FOLDER] ["query" ...]
Without a folder it writes a few sample notes to a temporary folder first; the
temporary folder (sample notes and saved table) is removed at the end.
"""

import sys
import tempfile
from pathlib import Path

from softdb import SoftTable
from softdb.text import folder_corpus

SAMPLE = {
    "garden.md": "Tomatoes need six hours of sun a day.\n\nWater the basil in the morning, not at night.",
    "work/meetings.md": "The budget review moved to Thursday.\n\nAsk Priya about the hiring plan for Q3.",
    "recipes.txt": "Bread: 500 g flour, 350 g water, 10 g salt, 5 g yeast.\n\nSoak chickpeas overnight.",
}

with tempfile.TemporaryDirectory(prefix="softdb-notes-") as tmp:
    work = Path(tmp)
    if len(sys.argv) > 1:
        notes, queries = Path(sys.argv[1]), sys.argv[2:]
    else:
        notes, queries = work / "notes", []
        for name, text in SAMPLE.items():
            (notes / name).parent.mkdir(parents=True, exist_ok=True)
            (notes / name).write_text(text)
    queries = queries or ["when is the budget meeting", "how much salt in bread", "how much sun for tomatoes"]

    corpus = folder_corpus(notes)  # one document per file, ids like "work/meetings.md"; first line = title
    # a long note is cut into chunks that fit the encoder; each chunk's payload keeps its text and title
    table = SoftTable.from_texts(corpus.texts, ids=corpus.ids, payloads=corpus.payloads, titles=corpus.titles)
    table.save(work / "notes.table")  # atomic; records the encoder's name
    print(f"indexed {len(corpus.ids)} notes ({len(table)} chunks) from {notes} into {work / 'notes.table'}\n")

    saved = SoftTable.load(work / "notes.table")  # checksums verified; string queries work
    for query in queries:
        hits = saved.search(query, k=2, by="document")  # a note's weight sums its chunks'
        print(f"{query!r}")
        for i, score, weight, payload in zip(hits.ids, hits.scores, hits.weights, hits.payloads):
            print(f"   {weight:5.2f}  {score:5.2f}  {i}: {' '.join(payload['text'].split())[:60]}")
