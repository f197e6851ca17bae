"""BM25Encoder: bm25s's Lucene BM25 as sparse keys and sparse queries.

BM25 is a dot product. A document's key is the CSR row of its per-term weights

    w(t, d) = idf(t) · tf(t, d) / (tf(t, d) + k1 · (1 − b + b · |d| / avgdl)),
    idf(t)  = log(1 + (N − df(t) + 0.5) / (df(t) + 0.5))           (Lucene)

and a query's vector counts its terms, so ``keys @ query`` is bm25s's
``BM25(method="lucene").get_scores``. Tokens come from bm25s's own tokenizer
(lower case, ``\\b\\w\\w+\\b``, its stopword list) and PyStemmer's Snowball
stemmer, so the vocabulary is exactly bm25s's. |d| counts a document's tokens
after stopword removal; a query term that no document holds is dropped.

The fitted state (k1, b, stopwords, stemmer, N, avgdl, the sorted vocabulary and
each term's idf) is plain JSON plus two arrays, and travels in a saved table.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from softdb.text._encoders import _check_texts

__all__ = ["INSTALL_HINT", "BM25Encoder"]

INSTALL_HINT = 'pip install "softdb[hybrid]"'
STATE_VERSION = 1


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
        self._vocab: tuple[str, ...] = ()
        self._index: dict[str, int] = {}
        self._idf = np.zeros(0)  # (V,) float64
        self.n_docs, self.avgdl = 0, 0.0

    def __repr__(self) -> str:
        return (
            f"BM25Encoder(k1={self.k1:g}, b={self.b:g}, stopwords={self.stopwords!r}, "
            f"stemmer={self.stemmer!r}, vocabulary={len(self._vocab)})"
        )

    @property
    def dim(self) -> int:
        return len(self._vocab)

    @property
    def vocabulary(self) -> tuple[str, ...]:
        """The sorted stems; column j of keys and queries is ``vocabulary[j]``."""
        return self._vocab

    @property
    def idf(self) -> np.ndarray:
        """(V,) float64 Lucene idf of each vocabulary term."""
        return self._idf

    @property
    def fitted(self) -> bool:
        return self.n_docs > 0

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
            self._vocab = tuple(sorted(vocab))
            self._index = {t: j for j, t in enumerate(self._vocab)}
        remap = np.full(len(vocab) + 1, -1, np.int64)  # (V_b + 1,)  bm25s id → ours, -1: unknown
        for t, j in vocab.items():
            remap[j] = self._index.get(t, -1)
        lengths = np.fromiter(map(len, ids), np.int64, len(ids))  # (n,)
        flat = np.fromiter(itertools.chain.from_iterable(ids), np.int64, int(lengths.sum()))  # (T,)
        cols = remap[flat]  # (T,)
        rows = np.repeat(np.arange(len(ids)), lengths)  # (T,)
        keep = cols >= 0
        counts = sp.csr_matrix(
            (np.ones(int(keep.sum())), (rows[keep], cols[keep])), shape=(len(ids), len(self._vocab))
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
        self.n_docs = tf.shape[0]
        self.avgdl = float(lengths.mean())
        self._idf = np.log1p((self.n_docs - df + 0.5) / (df + 0.5))  # (V,)
        return self._weigh(tf, lengths)

    def encode_documents(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Keys of more documents, weighed with the fitted statistics: (n, V) float32 CSR."""
        self._need_fit("encode_documents")
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
        vocab = np.array(self._vocab, dtype=str) if self._vocab else np.zeros(0, "<U1")
        return config, {"vocabulary": vocab, "idf": np.asarray(self._idf, np.float64)}

    @classmethod
    def from_state(cls, config: dict, arrays: dict[str, np.ndarray]) -> BM25Encoder:
        """Rebuild an encoder saved by :meth:`get_state`."""
        if config.get("version") != STATE_VERSION or config.get("kind") != "bm25":
            raise ValueError(
                f"BM25 encoder state {config.get('kind')!r} version {config.get('version')!r} "
                f"is not supported (this softdb reads bm25 version {STATE_VERSION}); "
                "hint: upgrade softdb"
            )
        enc = cls(k1=config["k1"], b=config["b"], stopwords=config["stopwords"], stemmer=config["stemmer"])
        vocab = tuple(str(t) for t in np.asarray(arrays["vocabulary"]).tolist())
        idf = np.asarray(arrays["idf"], np.float64)
        if len(vocab) != len(idf):
            raise ValueError(f"BM25 state has {len(vocab)} terms but {len(idf)} idf values; it is damaged")
        enc._vocab, enc._index, enc._idf = vocab, {t: j for j, t in enumerate(vocab)}, idf
        enc.n_docs, enc.avgdl = int(config["n_docs"]), float(config["avgdl"])
        return enc
