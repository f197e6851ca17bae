"""Documents in a table: texts cut into chunk rows, and search that answers with documents.

A row built from a cut document is one chunk, and its payload says where it came from::

    {"text": "Title\\nthe chunk's text", "doc": <document id>, "span": [start, end],
     "title": "Title", ...the document's own payload fields}

``span`` is [start, end) in the document's text (its title not included); ``title`` is there
when the document had one; a document's payload that is a dict adds its fields (a payload that
is not a dict is kept under ``"payload"``). The chunk rows' ids are ``f"{doc}#{i}"``, and a
document that is one chunk keeps its own id as its row's. A row whose
payload is not such a dict is a document of its own, whose id is its row id.

``search(q, k, by="document")`` (:func:`search_documents`) returns documents: a document's
weight is the exact sum of its chunks' full-table weights, its score its best chunk's score, and
the hit's row and payload are that chunk's. ``rank="score"`` orders documents by that score,
``rank="weight"`` by their summed weight. Queries go in blocks of at most ``block_rows`` weights
((queries in a block) × rows ≤ 2²¹), so memory is never O(queries × rows).
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from softdb.engine._plan import Ask
from softdb.table._state import SearchResult, asked

__all__ = ["doc_codes", "document_ids", "document_rows", "documents_and_stats", "search_documents"]

#: Weights held at once per block of queries: (queries in the block) × rows.
BLOCK_WEIGHTS = 1 << 21
_RESERVED = ("text", "doc", "span", "title")


def _is_chunk(p: Any) -> bool:
    return isinstance(p, dict) and "doc" in p and "span" in p


def document_rows(
    texts: Sequence[str],
    *,
    ids: Iterable[Hashable] | None,
    payloads: Sequence[Any] | None,
    encoder: Any,
    chunk: Any,
    titles: Sequence[str | None] | None,
    first_id: int = 0,
    values: Any = None,
) -> tuple[list[str], Any, Any, Any]:
    """The rows of documents ``texts``: (row texts, row ids, row payloads, row values), chunked or not.

    ``values`` (one row per document, or None) are repeated for each chunk of their document.

    ``chunk``: None (cut when a text is longer than the encoder reads, or titles are given),
    True / a :class:`~softdb.text.Chunker` (always cut), False (never; a warning names the
    documents the encoder will truncate). Rows that are not cut are returned as given.
    """
    from softdb.text._chunk import Chunker, chunk_texts, token_counter

    if chunk is not None and not isinstance(chunk, bool | Chunker):
        raise TypeError(
            f"chunk must be None, True, False or a softdb.text.Chunker, got {type(chunk).__name__}; "
            "hint: chunk=Chunker(size=128, overlap=32)"
        )
    if titles is not None and len(titles) != len(texts):
        raise ValueError(f"titles must be one per text: got {len(titles)} titles for {len(texts)} texts")
    counter = token_counter(encoder)
    if chunk is False or (chunk is None and titles is None and counter.window is None):
        if chunk is False and counter.window is not None:
            _warn_truncated(counter.count(texts), counter.window)
        return list(texts), ids, payloads, values
    chunks = chunk_texts(texts, counter, chunk if isinstance(chunk, Chunker) else None, titles=titles)
    if chunk is None and titles is None and len(chunks.texts) == len(texts):
        return list(texts), ids, payloads, values  # nothing was cut: one row per text, as before
    doc_ids = list(range(first_id, first_id + len(texts))) if ids is None else list(ids)
    if len(doc_ids) != len(texts) or (payloads is not None and len(payloads) != len(texts)):
        raise ValueError(
            f"ids and payloads must be one per text: got {len(doc_ids)} ids and "
            f"{'no' if payloads is None else len(payloads)} payloads for {len(texts)} texts"
        )
    if len(set(doc_ids)) != len(doc_ids):
        raise ValueError("document ids must be unique; hint: leave ids=None for 0, 1, 2, …")
    starts = np.searchsorted(chunks.doc, np.arange(len(texts)))  # (n,) first chunk of each document
    row_ids: list[str] = []
    row_pays: list[dict] = []
    for r, (d, (s, e), text) in enumerate(zip(chunks.doc.tolist(), chunks.spans.tolist(), chunks.texts)):
        pay: dict[str, Any] = {"text": text, "doc": doc_ids[d], "span": [s, e]}
        if titles is not None and titles[d]:
            pay["title"] = titles[d]
        if payloads is not None:
            user = payloads[d]
            if isinstance(user, dict):
                pay.update({f: v for f, v in user.items() if f not in _RESERVED})
            elif user is not None:
                pay["payload"] = user
        one = (d + 1 == len(texts) and r + 1 == len(chunks.texts)) or (d + 1 < len(texts) and starts[d + 1] == r + 1)
        row_ids.append(doc_ids[d] if one and r == int(starts[d]) else f"{doc_ids[d]}#{r - int(starts[d])}")
        row_pays.append(pay)
    if values is not None:
        values = np.asarray(values)
        if values.ndim != 2 or len(values) != len(texts):
            raise ValueError(
                f"values must have one row per text: got shape {values.shape} for {len(texts)} texts; "
                "hint: values of shape (n_texts, d_v)"
            )
        values = values[chunks.doc]  # (r, d_v) each chunk answers its document's value
    return chunks.texts, row_ids, row_pays, values


def _warn_truncated(n_tokens: np.ndarray, window: int) -> None:
    over = n_tokens > window
    if over.any():
        warnings.warn(
            f"{int(over.sum())} of {len(n_tokens)} documents are longer than the encoder reads "
            f"({window} tokens) and will be truncated (the longest has {int(n_tokens.max())}); "
            "hint: leave chunk=None to cut them into chunks",
            UserWarning,
            stacklevel=4,
        )


_CODES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def doc_codes(rows: Any) -> tuple[np.ndarray, np.ndarray]:
    """Each live row's document: (codes (n,) int64 into ``docs``, docs (n_docs,) object), cached per version."""
    got = _CODES.get(rows)
    if got is None:
        pays = rows.payloads or (None,) * rows.n
        keys = [p["doc"] if _is_chunk(p) else i for i, p in zip(rows.ids, pays)]
        index: dict[Any, int] = {}
        codes = np.fromiter((index.setdefault(d, len(index)) for d in keys), np.int64, len(keys))  # (n,)
        docs = np.empty(len(index), object)
        docs[:] = list(index)
        got = (codes, docs)
        _CODES[rows] = got
    return got


def document_ids(table: Any) -> np.ndarray:
    """The table's documents, in order of their first row (object array)."""
    return doc_codes(table._state.rows)[1]


def _blocks(queries: Any, mask: Any, per_block: int) -> list[tuple[Any, Any]]:
    """Split raw queries (and a per-query mask) into blocks of at most ``per_block`` queries."""
    if isinstance(queries, str):
        return [(queries, mask)]
    if isinstance(queries, list | tuple) and queries and all(isinstance(q, str) for q in queries):
        m = len(queries)
    elif sp.issparse(queries):
        m = int(queries.shape[0])  # type: ignore[attr-defined]
    else:
        try:
            arr = np.asarray(queries)
        except (ValueError, TypeError):  # ragged: block keys' queries (one matrix per block) go as they are
            return [(queries, mask)]
        if arr.dtype == object or arr.ndim != 2:
            return [(queries, mask)]
        queries, m = arr, arr.shape[0]
    mk = None if mask is None else np.asarray(mask)
    per_query = mk is not None and mk.ndim == 2
    return [
        (queries[a : a + per_block], mk[a : a + per_block] if per_query else mk)  # type: ignore[index]
        for a in range(0, m, per_block)
    ]


def search_documents(
    table: Any,
    queries: Any,
    k: int,
    *,
    temperature: float | None = None,
    mask: Any = None,
    where: Any = None,
    rank: str = "score",
) -> SearchResult:
    """The k best documents of each query (see the module docstring); a SearchResult of documents.

    Parameters
    ----------
    table : SoftTable
    queries : as ``table.search`` takes them
    k : int
        1 <= k <= the number of documents. Exactly k documents come back whenever k have an
        allowed row; the slots past them hold id None, score -inf, weight 0 and row -1.
    temperature, mask, where
        As in ``table.search`` (a document's weight sums its allowed chunks).
    rank : {"score", "weight"}
        Order by the best chunk's score, or by the document's summed weight.

    Returns
    -------
    SearchResult
        ids: document ids; scores: the best chunk's score; weights: Σ of the document's chunks'
        full-table weights; payloads and rows: the best chunk's.

    Examples
    --------
    >>> import numpy as np
    >>> from softdb import SoftTable
    >>> t = SoftTable(np.eye(3, dtype=np.float32), temperature=1.0,
    ...               payloads=[{"text": "a", "doc": "A", "span": [0, 1]}, {"text": "b", "doc": "A", "span": [1, 2]},
    ...                         {"text": "c", "doc": "C", "span": [0, 1]}])
    >>> hits = search_documents(t, [1.0, 0.9, 1.2], k=2)
    >>> hits.ids.tolist(), hits.scores.tolist(), [round(float(w), 3) for w in hits.weights]
    (['C', 'A'], [1.2000000476837158, 1.0], [0.391, 0.609])
    """
    if rank not in ("score", "weight"):
        raise ValueError(
            f"rank must be 'score' or 'weight', got {rank!r}; hint: 'score' ranks documents by their best "
            "chunk, 'weight' by the sum of their chunks' weights"
        )
    if getattr(table, "_state", None) is None or not hasattr(table._state, "rows"):
        raise NotImplementedError(
            f'search(by="document") needs a SoftTable, got {type(table).__name__}; '
            "hint: search by chunk and group the hits by their payload's 'doc'"
        )
    codes, docs = doc_codes(table._state.rows)
    n_docs = len(docs)
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise TypeError(f"k must be an int, got {type(k).__name__} {k!r}")
    if not 1 <= k <= n_docs:
        raise ValueError(
            f"k={k} but the table has {n_docs} documents (in {len(codes)} rows); "
            "hint: use 1 <= k <= the number of documents"
        )
    out, single, _ = _search(table, queries, int(k), temperature, mask, rank, stats=False, where=where)
    return SearchResult._make(None if x is None else x[0] for x in out) if single else out


def documents_and_stats(
    table: Any, queries: Any, k: int, *, temperature: float | None = None, rank: str = "score", where: Any = None
) -> tuple[SearchResult, float, np.ndarray, np.ndarray]:
    """:func:`search_documents` (2-D) with τ, the entropy and the effective rows of the rows' weights: one pass.

    The views answer ``by="document"`` through it (one table of one head).
    """
    out, _, (tau, entropy, effective) = _search(table, queries, k, temperature, None, rank, stats=True, where=where)
    return out, tau, entropy, effective


def _search(
    table: Any, queries: Any, k: int, temperature: float | None, mask: Any, rank: str, *, stats: bool, where: Any = None
) -> tuple[SearchResult, bool, tuple]:
    codes, _ = doc_codes(table._state.rows)
    per_block = max(1, BLOCK_WEIGHTS // max(len(codes), 1))
    parts = [_block(table, qb, mb, k, temperature, rank, stats, where) for qb, mb in _blocks(queries, mask, per_block)]
    res = [np.concatenate([p[0][i] for p in parts]) for i in range(5)]
    out = SearchResult(res[0], res[1], res[2], res[3], res[4])
    tau = parts[0][2].tau
    if not stats:
        return out, parts[0][1], (tau, None, None)
    entropy = np.concatenate([asked(p[2].answers.entropy) for p in parts])  # (m,)
    effective = np.concatenate([asked(p[2].answers.effective_rows) for p in parts])  # (m,)
    return out, parts[0][1], (tau, entropy, effective)


def _block(
    table: Any, queries: Any, mask: Any, k: int, temperature: float | None, rank: str, stats: bool, where: Any
) -> tuple:
    """One block of queries: one pass for dense weights and enough top chunks (two when rows change)."""
    for attempt in range(2):
        codes, _ = doc_codes(table._state.rows)
        most = int(np.bincount(codes).max()) if len(codes) else 1
        n = len(codes)
        kk = n if attempt or rank == "weight" else min(n, k * most)  # k·(most chunks a document has) ≥ k documents
        ask = Ask(lse=True, weights=True, k=kk, stats=stats)
        p = table._answer(queries, ask, temperature=temperature, mask=mask, where=where)
        codes, docs = doc_codes(p.state.rows)
        if len(codes) != n:
            continue  # a write landed between: once more, with every row
        out = _documents_of(p, codes, docs, k, rank)
        if out is not None:
            return out, p.single, p
    raise RuntimeError("search by document lost the race to writers twice; hint: retry")  # pragma: no cover


def _documents_of(p: Any, codes: np.ndarray, docs: np.ndarray, k: int, rank: str) -> tuple | None:
    a = p.answers
    w = asked(a.weights)  # (m, n)
    m, n = w.shape
    perm = np.argsort(codes, kind="stable")  # (n,) rows grouped by document
    bounds = np.searchsorted(codes[perm], np.arange(len(docs)))  # (n_docs,)
    doc_w = np.minimum(np.add.reduceat(w[:, perm].astype(np.float64), bounds, axis=1), 1.0)  # (m, n_docs)
    hit_rows = asked(a.rows)  # (m, kk) best chunks first; -1 past the allowed rows
    hit_scores = asked(a.scores)  # (m, kk)
    rows = np.full((m, k), -1, np.int64)
    scores = np.full((m, k), -np.inf, hit_scores.dtype)
    weights = np.zeros((m, k), w.dtype)
    for i in range(m):  # per query: the documents of its best chunks, first hit first
        ok = hit_rows[i] >= 0
        hr = hit_rows[i][ok]
        d_of = codes[hr]  # (kk',)
        uniq, first = np.unique(d_of, return_index=True)
        if rank == "score":
            order = np.sort(first)[:k]  # the first chunk of each document is its best
            if len(order) < k and ok.all() and hit_rows.shape[1] < n:
                return None  # too few documents among the chunks asked for (rows changed meanwhile)
        else:
            dw = doc_w[i, uniq]  # (u,) each allowed document's summed weight
            order = first[np.lexsort((first, -dw))[:k]]  # heaviest first; ties: the better best chunk
        got = len(order)
        rows[i, :got] = hr[order]
        scores[i, :got] = hit_scores[i][ok][order]
        weights[i, :got] = doc_w[i, codes[hr[order]]]
    hits = p.hits_of(rows, scores, weights)
    ids = np.full((m, k), None, object)
    ids[rows >= 0] = docs[codes[rows[rows >= 0]]]
    return (ids, hits.scores, hits.weights, hits.payloads, hits.rows)
