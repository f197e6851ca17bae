"""Chunks against documents on SciFact: nDCG@10 of chunk sizes and of three rankings (docs/guide/documents.md).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_documents.py [BEIR_DIR] [--json out.json]

Each document (title + abstract) is cut by ``SoftTable.from_texts(..., titles=..., chunk=...)``
with MiniLM (all-MiniLM-L6-v2, its own tokenizer counting word pieces), for a few chunk sizes
and overlaps, and once whole (``chunk=False``: MiniLM truncates at 256 word pieces). Three
rankings of each table, k = 10:

- chunks: the 10 best chunk rows, each standing for its document (a document's repeated chunks
  count once, so fewer than 10 documents may come back);
- documents by best chunk: ``search(q, 10, by="document")`` (``rank="score"``);
- documents by summed weight: ``search(q, 10, by="document", rank="weight")``, at τ chosen on train.

Every choice (size, overlap, ranking, τ) is made on the train queries; test and "unseen" test
(queries none of whose relevant documents is relevant in train) are reported beside them.
Embeddings are cached (softdb's encoder cache), so only the first run encodes (minutes).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from softdb import SoftTable
from softdb.eval._metrics import summarize, trec_eval
from softdb.evaluate import unseen_queries
from softdb.text import Chunker, beir_qrels, beir_queries, default_encoder

#: (name, chunk=) of each table measured; "whole" encodes title + " " + text as bench_beir.py does.
CONFIGS = [
    ("whole (truncated)", False),
    ("128 / 32", Chunker(128, 32)),
    ("254 / 32", Chunker(254, 32)),
    ("64 / 16", Chunker(64, 16)),
]
TAUS = (0.02, 0.05, 0.1)


def _corpus(root: Path) -> tuple[list[str], list[str], list[str]]:
    ids, titles, texts = [], [], []
    with open(root / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            ids.append(str(rec["_id"]))
            titles.append(str(rec.get("title") or ""))
            texts.append(str(rec.get("text") or ""))
    return ids, titles, texts


def _run(hits, qids) -> dict:
    run: dict = {}
    for qid, ids, scores in zip(qids, hits.ids, hits.scores):
        docs: dict = {}
        for d, s in zip(ids, scores):
            if d is not None:
                docs.setdefault(d, float(s))
        run[qid] = docs
    return run


def _doc_of(hits):
    """Chunk hits with their ids replaced by their documents' ids."""
    ids = hits.ids.copy()
    for idx, p in zip(zip(*ids.nonzero()), hits.payloads.ravel()):
        ids[idx] = p["doc"] if isinstance(p, dict) else ids[idx]
    return hits._replace(ids=ids)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("beir_dir", nargs="?", default="/work/shared/data/beir/scifact")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--configs", type=int, default=len(CONFIGS), help="measure only the first N configs")
    args = ap.parse_args()
    root = Path(args.beir_dir)
    doc_ids, titles, texts = _corpus(root)
    qrels = {s: beir_qrels(root, s) for s in ("train", "test")}
    queries = {s: beir_queries(root, s) for s in ("train", "test")}
    unseen = unseen_queries(qrels["test"], qrels["train"])
    enc = default_encoder()
    print(
        f"# {root.name}: {len(doc_ids)} documents, {len(queries['train'].ids)} train and "
        f"{len(queries['test'].ids)} test queries ({len(unseen)} unseen); {platform.processor() or platform.machine()}"
    )
    out = []
    for name, chunk in CONFIGS[: args.configs]:
        t0 = time.perf_counter()
        table = (
            SoftTable.from_texts(
                texts, ids=doc_ids, titles=titles if chunk is not False else None, encoder=enc, chunk=chunk
            )
            if chunk is not False
            else SoftTable.from_texts(
                [f"{a} {b}".strip() for a, b in zip(titles, texts)], ids=doc_ids, encoder=enc, chunk=False
            )
        )
        built = time.perf_counter() - t0
        for split in ("train", "test"):
            q = enc.encode(queries[split].texts)
            qids = queries[split].ids
            rankings = {
                "chunks": _doc_of(table.search(q, 10))
                if table.payloads and isinstance(table.payloads[0], dict)
                else table.search(q, 10),
                "documents by best chunk": table.search(q, 10, by="document"),
            }
            for tau in TAUS:
                rankings[f"documents by summed weight, τ {tau}"] = table.search(
                    q, 10, by="document", rank="weight", temperature=tau
                )
            for rname, hits in rankings.items():
                per_q = trec_eval(qrels[split], _run(hits, qids))
                rec = {
                    "config": name,
                    "rows": len(table),
                    "ranking": rname,
                    "split": split,
                    "ndcg@10": summarize(per_q).ndcg_at_10,
                }
                if split == "test":
                    rec["unseen ndcg@10"] = summarize(per_q, unseen).ndcg_at_10
                out.append(rec)
        print(f"{name}: {len(table)} rows, built in {built:.0f} s", flush=True)
        for r in out[-2 * (2 + len(TAUS)) :]:
            extra = f"  unseen {r['unseen ndcg@10']:.4f}" if "unseen ndcg@10" in r else ""
            print(f"  {r['split']:5s} {r['ranking']:40s} {r['ndcg@10']:.4f}{extra}", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=1))
    train = [r for r in out if r["split"] == "train"]
    best = max(train, key=lambda r: r["ndcg@10"])
    print(f"chosen on train: {best['config']}, {best['ranking']} ({best['ndcg@10']:.4f})")
    print("\n| chunks (size / overlap) | ranking | train | test | unseen test |\n|---|---|---|---|---|")
    for r in train:
        t = next(x for x in out if x["split"] == "test" and x["config"] == r["config"] and x["ranking"] == r["ranking"])
        print(
            f"| {r['config']} ({r['rows']} rows) | {r['ranking']} | {r['ndcg@10']:.4f} | {t['ndcg@10']:.4f} "
            f"| {t['unseen ndcg@10']:.4f} |"
        )


if __name__ == "__main__":
    main()
