"""Text in: ``add_texts`` encodes with the table's own encoder; a growing BM25 block's statistics follow every write.

A table built by ``SoftTable.from_texts`` with a BM25 or hybrid encoder keeps term counts in
its sparse keys and the collection's statistics (N, Σ|d|, df) in its encoder version
(:class:`softdb.text.BM25Encoder`, "growing"). Every write swaps in a new encoder version with
the new rows: ``add_texts`` grows the vocabulary (new words are findable at once), ``add``
of term counts and ``remove`` update the statistics. The kernel weighs the counts at query
time (:attr:`TableState.score_keys <softdb.table._state.TableState.score_keys>`), so scores
equal bm25s's on an index built from scratch over the live documents.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np

from softdb.engine import _keys
from softdb.table._frontend import as_id_list, next_int_id
from softdb.table._state import TableState

__all__ = ["StaleEncoderError", "TextWrites", "text_after_add", "text_after_remove"]

#: Times ``add_texts`` re-encodes when another writer changed the vocabulary meanwhile.
RETRIES = 8


def text_list(texts: Any) -> list[str]:
    """``texts`` as a list, refusing one string or a non-sequence (both tables' ``add_texts``)."""
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(
            f"texts must be a sequence of strings, got {type(texts).__name__}; hint: wrap one text in a list"
        )
    return list(texts)


class StaleEncoderError(Exception):
    """The keys were grown from an encoder version that is no longer the table's (a writer raced)."""


def text_after_add(st: TableState, new_keys: Any, grown: tuple[Any, Any] | None) -> Any:
    """The encoder version after adding ``new_keys`` (segments of narrower keys are widened as they stack).

    ``grown`` = (encoder version the keys were grown from, the grown version), from ``add_texts``.
    Call it under the table's write lock, after every other check of the rows.
    """
    if grown is not None:
        base, new = grown
        if st.encoder is not base:
            raise StaleEncoderError
        return new
    if st.growing_text:  # term counts added as keys: the statistics must hold them
        return st.encoder.plus(new_keys)
    return st.encoder


def text_after_remove(st: TableState, hits: dict[int, list[int]]) -> Any:
    """The encoder version after removing rows ``hits`` ({segment: local rows}; their counts leave the statistics)."""
    if not st.growing_text:
        return st.encoder
    views = st.rows.views
    gone = None
    for seg, rows in hits.items():
        part = _keys.take(views[seg].keys, np.asarray(rows, np.int64))  # (r_s, V_s)
        gone = part if gone is None else _keys.stack(gone, part)
    return st.encoder if gone is None else st.encoder.shrink(gone)


class TextWrites:
    """``add_texts`` of :class:`softdb.SoftTable` (a mixin over its state, lock and ``_add``)."""

    _state: TableState
    _lock: threading.Lock
    encoder: Any

    def _add(self, keys: Any, values: Any, *, ids: Any, payloads: Any, grown: tuple[Any, Any] | None = None) -> tuple:
        raise NotImplementedError  # pragma: no cover - softdb.table._mutation.Mutation has it

    def add_texts(
        self,
        texts: Sequence[str],
        ids: Iterable[Hashable] | None = None,
        payloads: Sequence[Any] | None = None,
        *,
        values: Any = None,
        chunk: Any = None,
        titles: Sequence[str | None] | None = None,
    ) -> list:
        """Encode texts (documents) with the table's own encoder and append them; return their rows' ids.

        Parameters
        ----------
        texts : sequence of str
            One new row each. A BM25 or hybrid table counts their terms, and its statistics
            (N, df, average length) and vocabulary grow, so their new words are found at once.
        ids : sequence, optional
            Default: integers after the largest integer id in the table.
        payloads : sequence, optional
            Default: the texts (as ``from_texts`` stores them).
        values : array_like of shape (n_new, d_v), optional
            Needed when the table has values apart from its keys.
        chunk, titles : optional
            As in :meth:`SoftTable.from_texts <softdb.SoftTable.from_texts>`: a text longer than
            the encoder reads becomes chunk rows with ids ``f"{doc}#{i}"`` (default document ids:
            integers after the largest integer document id); :meth:`remove_documents` removes them.

        Returns
        -------
        list
            The new rows' ids (``table.remove`` takes them).

        Raises
        ------
        TypeError
            The table has no encoder, or ``texts`` is not a sequence of strings.
        ValueError
            A duplicate id; a BM25 table saved with frozen statistics; a term the index cannot hold.

        Examples
        --------
        >>> from softdb import SoftTable
        >>> t = SoftTable.from_texts(["cats purr", "dogs bark"], encoder="bm25")
        >>> t.add_texts(["zebras graze quietly"])
        [2]
        >>> t.search("zebra", k=1).payloads
        array(['zebras graze quietly'], dtype=object)
        >>> t.remove([2]); len(t)
        2
        """
        texts = text_list(texts)
        encoder = self.encoder  # a loaded table rebuilds it here
        if encoder is None:
            raise TypeError(
                "add_texts needs a table that knows its encoder (built by SoftTable.from_texts), "
                "but this table has none; hint: set table.encoder, or encode the texts and call add()"
            )
        from softdb.table._documents import doc_codes, document_rows

        docs = doc_codes(self._state.rows)[1]
        first = next_int_id([docs]) if ids is None else 0
        texts, ids, payloads, values = document_rows(
            texts,
            ids=ids,
            payloads=payloads,
            encoder=encoder,
            chunk=chunk,
            titles=titles,
            first_id=first,
            values=values,
        )
        if ids is None and texts and first:
            ids = list(range(first, first + len(texts)))
        payloads = texts if payloads is None else payloads
        if not getattr(encoder, "grows", False):
            if hasattr(encoder, "encode_corpus"):  # a frozen BM25 / hybrid encoder: its error says why
                encoder.grow(texts)
            return list(self._add(encoder.encode(texts), values, ids=ids, payloads=payloads))
        for _ in range(RETRIES):
            base = self._state.encoder
            grown, keys = base.grow(texts)
            try:
                return list(self._add(keys, values, ids=ids, payloads=payloads, grown=(base, grown)))
            except StaleEncoderError:
                continue  # another writer changed the vocabulary: count again against its version
        raise RuntimeError(f"add_texts lost the race to other writers {RETRIES} times; hint: retry")

    def remove(self, ids: Any) -> Any:
        raise NotImplementedError  # pragma: no cover - softdb.table._mutation.Mutation has it

    def remove_documents(self, doc_ids: Any) -> int:
        """Remove documents by their ids: every chunk row of each (a row that is a document by its row id).

        Returns
        -------
        int
            The rows removed.

        Examples
        --------
        >>> from softdb import SoftTable
        >>> from softdb.text import Chunker, HashEncoder
        >>> t = SoftTable.from_texts(["a b c d e f", "g h"], encoder=HashEncoder(), chunk=Chunker(4, 0))
        >>> t.ids
        ('0#0', '0#1', 1)
        >>> t.remove_documents([0]), t.ids
        (2, (1,))
        """
        from softdb.table._documents import doc_codes

        wanted = set(as_id_list(doc_ids))
        codes, docs = doc_codes(self._state.rows)
        hit = np.isin(np.arange(len(docs)), [i for i, d in enumerate(docs.tolist()) if d in wanted])  # (n_docs,)
        missing = wanted - set(docs[hit].tolist())
        if missing:
            raise KeyError(f"no document has id {sorted(map(repr, missing))[0]}; hint: table.ids shows the rows' ids")
        rows = np.flatnonzero(hit[codes])  # (r,)
        ids = self._state.rows.ids
        self.remove([ids[r] for r in rows.tolist()])
        return len(rows)
