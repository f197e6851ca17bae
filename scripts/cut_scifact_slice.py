"""Cut the small SciFact slice that the tests ship in ``tests/data/scifact/``.

Not run by the tests: run it by hand to reproduce (or re-cut) the slice from a full
BEIR SciFact folder, e.g. the one ``softdb data get scifact`` downloads::

    python scripts/cut_scifact_slice.py ~/.cache/softdb/beir/scifact tests/data/scifact

The cut is deterministic (no random generator: items are ordered by the sha256 of
``"<seed>:<id>"``), uses only the standard library, and copies every kept line of
the source byte for byte, so the slice is in exactly BEIR's layout (qrels keep their
header and CRLF line endings):

- test queries: ``--unseen`` whose relevant documents are relevant to no query of the
  *full* train split, and ``--seen`` that share a relevant document with train;
- train queries: for every kept "seen" test query, the first train query (in hash
  order) sharing one of its relevant documents, so those queries stay "seen" inside
  the slice; then more train queries up to ``--train``;
- documents: every document judged relevant to a kept query, then distractors (other
  documents, in hash order) up to ``--docs``;
- ``SHA256SUMS`` of the files written, in the format of the source's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path


def _order(ids: list[str] | set[str], seed: str) -> list[str]:
    return sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())


def _read_qrels(path: Path) -> tuple[bytes, list[tuple[str, str, bytes]]]:
    lines = path.read_bytes().splitlines(keepends=True)
    rows = []
    for line in lines[1:]:
        q, d, _ = line.decode().rstrip("\r\n").split("\t")
        rows.append((q, d, line))
    return lines[0], rows


def _relevant(rows: list[tuple[str, str, bytes]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for q, d, _ in rows:
        out.setdefault(q, set()).add(d)
    return out


def cut(src: Path, out: Path, *, unseen: int, seen: int, train: int, docs: int, seed: str) -> dict[str, int]:
    """Write the slice into ``out``; return its counts."""
    test_head, test_rows = _read_qrels(src / "qrels" / "test.tsv")
    train_head, train_rows = _read_qrels(src / "qrels" / "train.tsv")
    test_rel, train_rel = _relevant(test_rows), _relevant(train_rows)
    train_docs = set().union(*train_rel.values())
    is_unseen = {q: not (rel & train_docs) for q, rel in test_rel.items()}
    ordered_test = _order(test_rel.keys(), seed)
    keep_test = [q for q in ordered_test if is_unseen[q]][:unseen] + [q for q in ordered_test if not is_unseen[q]][
        :seen
    ]
    ordered_train = _order(train_rel.keys(), seed)
    keep_train: list[str] = []
    for q in keep_test:
        if not is_unseen[q]:
            partner = next(t for t in ordered_train if train_rel[t] & test_rel[q])
            if partner not in keep_train:
                keep_train.append(partner)
    keep_train += [t for t in ordered_train if t not in keep_train][: max(0, train - len(keep_train))]
    needed = set().union(*(test_rel[q] for q in keep_test), *(train_rel[t] for t in keep_train))

    corpus_lines = (src / "corpus.jsonl").read_bytes().splitlines(keepends=True)
    all_docs = [json.loads(line)["_id"] for line in corpus_lines]
    distractors = _order([d for d in all_docs if d not in needed], seed)[: max(0, docs - len(needed))]
    keep_docs = needed | set(distractors)

    out.mkdir(parents=True, exist_ok=True)
    (out / "qrels").mkdir(exist_ok=True)
    files = {
        "corpus.jsonl": b"".join(line for line, d in zip(corpus_lines, all_docs) if d in keep_docs),
        "queries.jsonl": b"".join(
            line
            for line in (src / "queries.jsonl").read_bytes().splitlines(keepends=True)
            if json.loads(line)["_id"] in set(keep_test) | set(keep_train)
        ),
        "qrels/test.tsv": test_head + b"".join(line for q, _, line in test_rows if q in set(keep_test)),
        "qrels/train.tsv": train_head + b"".join(line for q, _, line in train_rows if q in set(keep_train)),
    }
    for name, data in files.items():
        (out / name).write_bytes(data)
    sums = "".join(f"{hashlib.sha256(files[n]).hexdigest()}  ./{n}\n" for n in sorted(files))
    (out / "SHA256SUMS").write_text(sums)
    slice_train_docs = set().union(*(train_rel[t] for t in keep_train))
    return {
        "documents": len(keep_docs),
        "relevant documents": len(needed),
        "test queries": len(keep_test),
        "test queries unseen in the slice's train qrels": sum(not (test_rel[q] & slice_train_docs) for q in keep_test),
        "test judgments": sum(q in set(keep_test) for q, _, _ in test_rows),
        "train queries": len(keep_train),
        "train judgments": sum(q in set(keep_train) for q, _, _ in train_rows),
        "bytes": sum(map(len, files.values())),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", type=Path, help="a full BEIR SciFact folder")
    p.add_argument("out", type=Path, help="where to write the slice (e.g. tests/data/scifact)")
    p.add_argument("--unseen", type=int, default=20, help="test queries unseen in train (default 20)")
    p.add_argument("--seen", type=int, default=20, help="test queries that share documents with train (default 20)")
    p.add_argument("--train", type=int, default=80, help="train queries (default 80)")
    p.add_argument("--docs", type=int, default=300, help="documents in all (default 300)")
    p.add_argument("--seed", default="softdb-scifact-slice-1", help="the string hashed with each id")
    a = p.parse_args()
    counts = cut(a.src, a.out, unseen=a.unseen, seen=a.seen, train=a.train, docs=a.docs, seed=a.seed)
    for k, v in counts.items():
        print(f"{k}: {v}")


if __name__ == "__main__":
    main()
