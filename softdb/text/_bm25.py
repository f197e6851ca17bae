"""BM25Encoder: bm25s's Lucene BM25 as sparse keys and sparse queries.

BM25 is a dot product. A document's key is the CSR row of its per-term weights

    w(t, d) = idf(t) · tf(t, d) / (tf(t, d) + k1 · (1 − b + b · |d| / avgdl)),
    idf(t)  = log(1 + (N − df(t) + 0.5) / (df(t) + 0.5))           (Lucene)

and a query's vector counts its terms, so ``keys @ query`` is bm25s's
``BM25(method="lucene").get_scores``. Tokens come from bm25s's own tokenizer
(lower case, ``\\b\\w\\w+\\b``, its stopword list) and PyStemmer's Snowball
stemmer, so the vocabulary is exactly bm25s's. |d| counts a document's tokens
after stopword removal; a query term that no document holds is dropped.

Two ways to hold a corpus:

- **growing** (what ``SoftTable.from_texts`` builds): :meth:`BM25Encoder.grow` returns each
  document's term *counts* and a new encoder version whose statistics (N, Σ|d|, df:
  :class:`softdb.engine._bm25.Bm25Stats`) include them; new words join the vocabulary (at
  its end). Weights are computed at query time from the current statistics
  (:meth:`key_scorer`), so after any adds and removes (:meth:`shrink`) the scores equal
  bm25s's on an index built from scratch over the live documents. State version 2.
- **frozen** (:meth:`encode_corpus`, and tables saved by softdb before growing BM25): the
  keys are BM25 weights under statistics fitted once; later documents' new words are
  dropped. State version 1, read and written as before.

The state (k1, b, stopwords, stemmer, the statistics, the vocabulary and each term's idf
or df) is plain JSON plus two arrays, and travels in a saved table.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from softdb.engine._bm25 import Bm25Scorer, Bm25Stats
from softdb.text._encoders import _check_texts

__all__ = ["INSTALL_HINT", "MAX_COUNT", "MAX_TERMS", "BM25Encoder"]

INSTALL_HINT = 'pip install "softdb[hybrid]"'
STATE_VERSION = 1  # frozen: keys are weights, the state holds idf
GROWING_VERSION = 2  # growing: keys are term counts, the state holds df, N and Σ|d|
#: Most terms a vocabulary can hold: sparse keys index columns with int32.
MAX_TERMS = 2**31 - 1
#: Largest count of one term in one document that float32 keys hold exactly.
MAX_COUNT = 2**24


def check_counts(counts: Any, vocabulary: Sequence[str]) -> None:
    """Term counts a BM25 index holds exactly: whole numbers in [0, :data:`MAX_COUNT`]."""
    data = np.asarray(counts.data)
    bad = np.flatnonzero((data < 0) | (data != np.round(data)))
    if bad.size:
        raise ValueError(
            f"a growing BM25 table's sparse keys are term counts (whole numbers >= 0), but entry {int(bad[0])} "
            f"is {data[bad[0]]!r}; hint: add texts with table.add_texts(texts), not weights"
        )
    over = np.flatnonzero(data > MAX_COUNT)
    if over.size:
        row = int(np.searchsorted(counts.indptr, over[0], side="right") - 1)
        term = vocabulary[int(counts.indices[over[0]])]
        raise ValueError(
            f"document {row} holds the term {term!r} {int(data[over[0]])} times, more than the {MAX_COUNT} "
            "a BM25 index counts exactly (float32 term counts); hint: split the document into chunks"
        )


def _bm25s() -> Any:
    try:
        import bm25s
        import Stemmer  # noqa: F401 - PyStemmer: imported only to check that it is installed
    except ImportError:
        raise ImportError(f"BM25Encoder needs bm25s and PyStemmer; install them with: {INSTALL_HINT}") from None
    return bm25s


class BM25Encoder:
    """Lucene BM25 (as bm25s computes it) as sparse document keys and query vectors.

    Parameters
    ----------
    k1 : float, default 1.2
    b : float, default 0.75
    stopwords : str, default "en"
        A bm25s stopword list name ("en", "de", …) or "none".
    stemmer : str, default "english"
        A PyStemmer (Snowball) algorithm name, or "none".

    Attributes
    ----------
    name : str
        ``"bm25"``; a saved table records it with :meth:`get_state`.
    state_kind : str
        ``"bm25"``: the ``kind`` of that state (see :class:`softdb.text.StatefulEncoder`).
    dim : int
        Vocabulary size once fitted (0 before).

    Notes
    -----
    :meth:`encode_corpus` fits the vocabulary, document frequencies and the
    average length on its texts (once) and returns their keys; later
    :meth:`encode_documents` calls (e.g. ``table.add``) weight new documents
    with those frozen statistics, and their new terms are dropped.

    Examples
    --------
    >>> enc = BM25Encoder()
    >>> keys = enc.encode_corpus(["cats purr", "dogs bark at cats", "fish swim"])
    >>> keys.shape, enc.vocabulary
    ((3, 6), ('bark', 'cat', 'dog', 'fish', 'purr', 'swim'))
    >>> (keys @ enc.encode(["cat"]).T).toarray().ravel().round(4)
    array([0.2269, 0.1913, 0.    ], dtype=float32)
    """

    name = "bm25"
    state_kind = "bm25"

    def __init__(self, *, k1: float = 1.2, b: float = 0.75, stopwords: str = "en", stemmer: str = "english") -> None:
        if not (isinstance(k1, int | float) and math.isfinite(k1) and k1 > 0):
            raise ValueError(f"k1 must be a finite number > 0, got {k1!r}")
        if not (isinstance(b, int | float) and 0 <= b <= 1):
            raise ValueError(f"b must be a number in [0, 1], got {b!r}")
        self.k1, self.b = float(k1), float(b)
        self.stopwords, self.stemmer = str(stopwords), str(stemmer)
        self._stem: Any = None
        self._terms: list[str] = []  # column j is term j; shared, append-only, by a growing encoder's versions
        self._index: dict[str, int] = {}  # term -> column (shared like _terms)
        self._n = 0  # this version's vocabulary: _terms[:_n]
        self._idf = np.zeros(0)  # (V,) float64, frozen encoders only
        self._n_docs, self._avgdl = 0, 0.0  # frozen encoders only
        self.stats: Bm25Stats | None = None  # growing encoders only

    def __repr__(self) -> str:
        return (
            f"BM25Encoder(k1={self.k1:g}, b={self.b:g}, stopwords={self.stopwords!r}, "
            f"stemmer={self.stemmer!r}, vocabulary={self._n})"
        )

    @property
    def dim(self) -> int:
        return self._n

    @property
    def dims(self) -> tuple[int]:
        """(V,): the width of its keys and queries."""
        return (self._n,)

    @property
    def vocabulary(self) -> tuple[str, ...]:
        """The stems; column j of keys and queries is ``vocabulary[j]`` (sorted, then added ones)."""
        return tuple(self._terms[: self._n])

    @property
    def idf(self) -> np.ndarray:
        """(V,) float64 Lucene idf of each vocabulary term (current statistics when growing)."""
        return self._idf if self.stats is None else self.stats.idf

    @property
    def n_docs(self) -> int:
        """N: documents in the statistics."""
        return self._n_docs if self.stats is None else self.stats.n_docs

    @property
    def avgdl(self) -> float:
        """Average document length (tokens after stopwords) in the statistics."""
        return self._avgdl if self.stats is None else self.stats.avgdl

    @property
    def fitted(self) -> bool:
        return self._n_docs > 0 or self.stats is not None

    @property
    def growing(self) -> bool:
        """True if the keys are term counts and the statistics grow (see the module docstring)."""
        return self.stats is not None

    @property
    def grows(self) -> bool:
        """True if :meth:`grow` may be called: a growing encoder, or an unfitted one."""
        return not self.fitted or self.growing

    # ---------------------------------------------------------------- tokens
    def tokenize(self, texts: Sequence[str]) -> tuple[list[list[int]], dict[str, int]]:
        """bm25s token ids of each text and bm25s's stem → id map (its own numbering)."""
        bm25s = _bm25s()
        texts = _check_texts(texts, 1)
        if self._stem is None and self.stemmer != "none":
            import Stemmer

            try:
                self._stem = Stemmer.Stemmer(self.stemmer)
            except KeyError:
                raise ValueError(
                    f"stemmer {self.stemmer!r} is not a PyStemmer algorithm; hint: "
                    f"one of {Stemmer.algorithms()} or 'none'"
                ) from None
        stop = [] if self.stopwords == "none" else self.stopwords
        tok = bm25s.tokenize(
            texts, lower=True, stopwords=stop, stemmer=self._stem, return_ids=True, show_progress=False
        )
        return tok.ids, tok.vocab

    def _term_counts(self, texts: Sequence[str], *, grow: bool) -> tuple[sp.csr_matrix, np.ndarray]:
        """(n, V) float64 CSR of term counts over this vocabulary (new terms dropped), and
        each text's token count (n,), unknown terms included."""
        ids, vocab = self.tokenize(texts)
        if grow:
            self._terms = sorted(vocab)
            self._index = {t: j for j, t in enumerate(self._terms)}
            self._n = len(self._terms)
        return self._counts(ids, vocab)

    def _counts(self, ids: list[list[int]], vocab: dict[str, int]) -> tuple[sp.csr_matrix, np.ndarray]:
        n_terms = self._n
        remap = np.full(len(vocab) + 1, -1, np.int64)  # (V_b + 1,)  bm25s id → ours, -1: unknown
        for t, j in vocab.items():
            ours = self._index.get(t, -1)
            remap[j] = ours if ours < n_terms else -1  # a term added by a later version: unknown here
        lengths = np.fromiter(map(len, ids), np.int64, len(ids))  # (n,)
        flat = np.fromiter(itertools.chain.from_iterable(ids), np.int64, int(lengths.sum()))  # (T,)
        cols = remap[flat]  # (T,)
        rows = np.repeat(np.arange(len(ids)), lengths)  # (T,)
        keep = cols >= 0
        counts = sp.csr_matrix(
            (np.ones(int(keep.sum())), (rows[keep], cols[keep])), shape=(len(ids), n_terms)
        )  # duplicates summed
        counts.sum_duplicates()
        counts.sort_indices()
        return counts, lengths

    # ------------------------------------------------------------ documents
    def encode_corpus(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Fit the vocabulary and statistics on ``texts`` (first call only); return their keys.

        Returns
        -------
        scipy.sparse.csr_matrix of shape (n, V), float32
            Row i holds text i's BM25 weight of each of its terms.
        """
        if self.fitted:
            return self.encode_documents(texts)
        tf, lengths = self._term_counts(texts, grow=True)
        if tf.shape[0] == 0:
            raise ValueError("encode_corpus needs at least one text, got none")
        df = np.bincount(tf.indices, minlength=tf.shape[1])  # (V,)
        self._n_docs = tf.shape[0]
        self._avgdl = float(lengths.mean())
        self._idf = np.log1p((self.n_docs - df + 0.5) / (df + 0.5))  # (V,)
        return self._weigh(tf, lengths)

    def encode_documents(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Keys of more documents, weighed with the fitted statistics: (n, V) float32 CSR.

        A growing encoder has no such keys: use :meth:`grow` (``table.add_texts`` does).
        """
        self._need_fit("encode_documents")
        if self.growing:
            raise ValueError(
                "encode_documents gives BM25 weights under frozen statistics, but this encoder grows "
                "(its keys are term counts weighed at query time); hint: table.add_texts(texts), "
                "or encoder.grow(texts)"
            )
        return self._weigh(*self._term_counts(texts, grow=False))

    def _weigh(self, tf: sp.csr_matrix, lengths: np.ndarray) -> sp.csr_matrix:
        dl = np.repeat(lengths, np.diff(tf.indptr))  # (nnz,)  length of each entry's doc
        norm = self.k1 * (1 - self.b + self.b * dl / max(self.avgdl, 1e-300))  # (nnz,)
        data = self._idf[tf.indices] * tf.data / (tf.data + norm)  # (nnz,)
        return sp.csr_matrix(
            (data.astype(np.float32), tf.indices.astype(np.int32), tf.indptr.astype(np.int32)), shape=tf.shape
        )

    # -------------------------------------------------------------- queries
    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool | None = None) -> sp.csr_matrix:
        """Query vectors: (m, V) float32 CSR of term counts (terms no document holds dropped).

        ``batch_size`` and ``progress`` are accepted for the Encoder protocol and ignored.
        """
        self._need_fit("encode")
        q, _ = self._term_counts(texts, grow=False)
        return sp.csr_matrix(
            (q.data.astype(np.float32), q.indices.astype(np.int32), q.indptr.astype(np.int32)), shape=q.shape
        )

    def _need_fit(self, what: str) -> None:
        if not self.fitted:
            raise ValueError(
                f"BM25Encoder.{what} needs a fitted encoder (vocabulary and idf), but it has "
                "seen no corpus; hint: call encode_corpus(texts) first, or build the table "
                "with SoftTable.from_texts"
            )

    # ------------------------------------------------------------- growing
    def grow(self, texts: Sequence[str]) -> tuple[BM25Encoder, sp.csr_matrix]:
        """Term counts of new documents, and the encoder version whose statistics include them.

        New words join the vocabulary at its end (the first call sorts it, as bm25s does), so
        they are findable at once. ``self`` is not changed: its vocabulary, statistics and
        query encoding stay those of its version.

        Returns
        -------
        encoder : BM25Encoder
            The new version (vocabulary V' ≥ V, statistics with these documents).
        counts : scipy.sparse.csr_matrix of shape (n, V'), float32
            tf(t, d) of each new document.

        Raises
        ------
        ValueError
            A frozen encoder (it cannot grow exactly); a vocabulary past :data:`MAX_TERMS`;
            a term counted past :data:`MAX_COUNT` in one document.

        Examples
        --------
        >>> v1, counts = BM25Encoder().grow(["cats purr", "dogs bark at cats"])
        >>> v2, more = v1.grow(["zebras purr"])
        >>> v1.vocabulary, v2.vocabulary, v2.n_docs, more.toarray().tolist()
        (('bark', 'cat', 'dog', 'purr'), ('bark', 'cat', 'dog', 'purr', 'zebra'), 3, [[0.0, 0.0, 0.0, 1.0, 1.0]])
        """
        if not self.grows:
            raise ValueError(
                "this BM25 encoder's statistics are frozen (fitted by encode_corpus, or saved by a softdb "
                "before BM25 grew), so new documents cannot be weighed exactly and their new words would "
                "be dropped; hint: rebuild the table from its texts: SoftTable.from_texts(texts, encoder='bm25')"
            )
        ids, vocab = self.tokenize(texts)
        new = copy.copy(self)
        if len(self._terms) != self._n:  # a sibling version grew the shared vocabulary: branch off
            new._terms, new._index = self._terms[: self._n], {t: j for j, t in enumerate(self._terms[: self._n])}
        fresh = sorted(t for t in vocab if new._index.get(t, self._n) >= self._n)
        if self._n + len(fresh) > MAX_TERMS:
            raise ValueError(
                f"these texts bring {len(fresh)} new terms to a vocabulary of {self._n}, more than the "
                f"{MAX_TERMS} terms a BM25 index holds (sparse keys index columns with int32); "
                "hint: split the corpus across tables"
            )
        new._index.update((t, self._n + i) for i, t in enumerate(fresh))
        new._terms.extend(fresh)
        new._n = self._n + len(fresh)
        counts, _ = new._counts(ids, vocab)
        check_counts(counts, new.vocabulary)
        counts = sp.csr_matrix(
            (counts.data.astype(np.float32), counts.indices.astype(np.int32), counts.indptr.astype(np.int32)),
            shape=counts.shape,
        )  # (n, V')
        base = self.stats or Bm25Stats(self.k1, self.b, 0, 0.0, np.zeros(0, np.int64))
        new.stats = base.plus(counts)
        return new, counts

    def plus(self, counts: Any) -> BM25Encoder:
        """The version whose statistics also hold ``counts`` (n, V) rows added as keys (``table.add``)."""
        self._need_growing("add term counts")
        check_counts(counts, self.vocabulary)
        new = copy.copy(self)
        new.stats = self._stats().plus(counts)
        return new

    def shrink(self, counts: Any) -> BM25Encoder:
        """The version whose statistics no longer hold the removed rows' ``counts`` (n, V_k ≤ V)."""
        self._need_growing("remove documents")
        new = copy.copy(self)
        new.stats = self._stats().minus(counts)
        return new

    def key_scorer(self, counts: Any) -> Bm25Scorer:
        """The kernel's scorer of term-count keys under this version's statistics."""
        return Bm25Scorer(counts, self._stats())

    def weigh(self, counts: Any) -> sp.csr_matrix:
        """BM25 weights of term-count keys under this version's statistics: (n, V_k) float32 CSR."""
        return self.key_scorer(counts).weighted()

    def _stats(self) -> Bm25Stats:
        self._need_growing("score term counts")
        return self.stats  # type: ignore[return-value]  # checked just above

    def _need_growing(self, what: str) -> None:
        if self.stats is None:
            raise ValueError(f"BM25Encoder cannot {what}: its statistics are frozen or not fitted; hint: grow(texts)")

    # ----------------------------------------------------------- persistence
    def get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """JSON-able config and plain arrays (``vocabulary`` as unicode, ``idf`` float64).

        Examples
        --------
        >>> enc = BM25Encoder(); _ = enc.encode_corpus(["a red fox", "a red hen"])
        >>> config, arrays = enc.get_state()
        >>> arrays["vocabulary"].dtype.kind, BM25Encoder.from_state(config, arrays).vocabulary
        ('U', ('fox', 'hen', 'red'))
        """
        if self.stats is not None:
            return self._growing_state()
        config = {
            "version": STATE_VERSION,
            "kind": "bm25",
            "k1": self.k1,
            "b": self.b,
            "stopwords": self.stopwords,
            "stemmer": self.stemmer,
            "n_docs": self.n_docs,
            "avgdl": self.avgdl,
            "method": "lucene",
        }
        return config, {"vocabulary": self._vocab_array(), "idf": np.asarray(self._idf, np.float64)}

    def _vocab_array(self) -> np.ndarray:
        return np.array(self.vocabulary, dtype=str) if self._n else np.zeros(0, "<U1")

    def _growing_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        st = self._stats()
        config = {
            "version": GROWING_VERSION,
            "kind": "bm25",
            "k1": self.k1,
            "b": self.b,
            "stopwords": self.stopwords,
            "stemmer": self.stemmer,
            "n_docs": st.n_docs,
            "total_len": st.total_len,
            "method": "lucene",
        }
        return config, {"vocabulary": self._vocab_array(), "df": np.asarray(st.df[: self._n], np.int64)}

    @classmethod
    def from_state(cls, config: dict, arrays: dict[str, np.ndarray]) -> BM25Encoder:
        """Rebuild an encoder saved by :meth:`get_state`."""
        version = config.get("version")
        if version not in (STATE_VERSION, GROWING_VERSION) or config.get("kind") != "bm25":
            raise ValueError(
                f"BM25 encoder state {config.get('kind')!r} version {version!r} "
                f"is not supported (this softdb reads bm25 versions {STATE_VERSION} and {GROWING_VERSION}); "
                "hint: upgrade softdb"
            )
        enc = cls(k1=config["k1"], b=config["b"], stopwords=config["stopwords"], stemmer=config["stemmer"])
        vocab = [str(t) for t in np.asarray(arrays["vocabulary"]).tolist()]
        per_term = np.asarray(arrays["idf" if version == STATE_VERSION else "df"])
        if len(vocab) != len(per_term):
            what = "idf" if version == STATE_VERSION else "df"
            raise ValueError(f"BM25 state has {len(vocab)} terms but {len(per_term)} {what} values; it is damaged")
        enc._terms, enc._index, enc._n = vocab, {t: j for j, t in enumerate(vocab)}, len(vocab)
        if version == STATE_VERSION:
            enc._idf = per_term.astype(np.float64)
            enc._n_docs, enc._avgdl = int(config["n_docs"]), float(config["avgdl"])
        else:
            df = per_term.astype(np.int64)
            df.flags.writeable = False
            enc.stats = Bm25Stats(enc.k1, enc.b, int(config["n_docs"]), float(config["total_len"]), df)
        return enc
