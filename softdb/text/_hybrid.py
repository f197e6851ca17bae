"""HybridEncoder: a dense sentence encoder and BM25 side by side, as block keys.

A hybrid table's key is the block [dense | sparse] and its score one dot product,

    score(q, d) = cos(q, d) + β · BM25(q, d),

so "keyword + meaning" is one score, one softmax and one kernel pass.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np

from softdb.engine._keys import Blocks
from softdb.text._bm25 import BM25Encoder
from softdb.text._names import encoder_from_name

__all__ = ["DEFAULT_BM25_WEIGHT", "DEFAULT_HYBRID_TEMPERATURE", "HybridEncoder", "text_encoder"]

#: β of ``cos + β·BM25``: chosen by 5-fold cross-validation on SciFact's train queries
#: (nDCG@10), never on test; see the README ("Keyword and meaning").
DEFAULT_BM25_WEIGHT = 0.05
#: τ of the hybrid softmax: the dense block's (the sentence encoder's training scale).
DEFAULT_HYBRID_TEMPERATURE = 0.05


class HybridEncoder:
    """Encode texts with a dense encoder and a BM25 encoder: block keys [dense | sparse].

    Parameters
    ----------
    dense : Encoder, optional
        Any encoder with ``name``, ``dim`` and ``encode``; default all-MiniLM-L6-v2.
    sparse : BM25Encoder, optional
        Default ``BM25Encoder()`` (Lucene BM25, k1 1.2, b 0.75, English).
    weight : float
        β, the BM25 block's weight (the dense block's is 1).

    Attributes
    ----------
    name : str
        ``"hybrid:<dense name>+bm25"``.
    weights : tuple of float
        (1.0, β): the block weights a table built with it starts from.
    state_kind : str
        ``"hybrid"``: its state (:meth:`get_state`) travels in a saved table.

    Examples
    --------
    >>> from softdb.text import HashEncoder
    >>> enc = HybridEncoder(dense=HashEncoder(8))
    >>> dense, sparse = enc.encode_corpus(["red fox", "blue hen"])
    >>> dense.shape, sparse.shape, enc.weights
    ((2, 8), (2, 4), (1.0, 0.05))
    >>> [b.shape for b in enc.encode(["a red fox"])]
    [(1, 8), (1, 4)]
    """

    state_kind = "hybrid"

    def __init__(
        self, dense: Any = None, sparse: BM25Encoder | None = None, *, weight: float = DEFAULT_BM25_WEIGHT
    ) -> None:
        if dense is None:
            from softdb.text._sentence import default_encoder

            dense = default_encoder()
        self.dense = dense
        self.sparse = BM25Encoder() if sparse is None else sparse
        if not isinstance(self.sparse, BM25Encoder):
            raise TypeError(f"sparse must be a softdb.text.BM25Encoder, got {type(self.sparse).__name__}")
        w = float(weight)
        if not np.isfinite(w) or w < 0:
            raise ValueError(f"weight (β of the BM25 block) must be a finite number >= 0, got {weight!r}")
        self.weight = w

    def __repr__(self) -> str:
        return f"HybridEncoder(dense={self.dense!r}, sparse={self.sparse!r}, weight={self.weight:g})"

    @property
    def temperature(self) -> float:
        """τ of a table built with it (:data:`DEFAULT_HYBRID_TEMPERATURE`)."""
        return DEFAULT_HYBRID_TEMPERATURE

    @property
    def name(self) -> str:
        return f"hybrid:{self.dense.name}+bm25"

    @property
    def weights(self) -> tuple[float, float]:
        return (1.0, self.weight)

    @property
    def dims(self) -> tuple[int, int]:
        """(dense width, vocabulary size)."""
        return (self.dense.dim, self.sparse.dim)

    def encode_corpus(self, texts: Sequence[str]) -> list:
        """Document keys: [(n, d) float32 unit rows, (n, V) float32 CSR of BM25 weights].

        The BM25 block fits its vocabulary and statistics on ``texts`` (first call only).
        """
        texts = list(texts) if not isinstance(texts, str) else texts
        sparse = self.sparse.encode_corpus(texts)
        return [self.dense.encode(texts), sparse]

    def encode_documents(self, texts: Sequence[str]) -> list:
        """Keys of more documents with the fitted BM25 statistics (e.g. for ``add``)."""
        return [self.dense.encode(texts), self.sparse.encode_documents(texts)]

    # ------------------------------------------------------------- growing
    @property
    def growing(self) -> bool:
        """True if the BM25 block's keys are term counts and its statistics grow."""
        return self.sparse.growing

    @property
    def grows(self) -> bool:
        """True if :meth:`grow` may be called (see :attr:`BM25Encoder.grows`)."""
        return self.sparse.grows

    def _with_sparse(self, sparse: BM25Encoder) -> HybridEncoder:
        new = copy.copy(self)
        new.sparse = sparse
        return new

    def grow(self, texts: Sequence[str]) -> tuple[HybridEncoder, list]:
        """Keys of new documents [(n, d) dense, (n, V') term counts] and the version that holds them.

        See :meth:`BM25Encoder.grow`; the dense block is encoded as for queries.
        """
        texts = list(texts) if not isinstance(texts, str) else texts
        sparse, counts = self.sparse.grow(texts)
        return self._with_sparse(sparse), [self.dense.encode(texts), counts]

    def plus(self, keys: Sequence[Any]) -> HybridEncoder:
        """The version whose BM25 statistics also hold the term counts of block keys added as rows."""
        return self._with_sparse(self.sparse.plus(keys[1]))

    def shrink(self, keys: Sequence[Any]) -> HybridEncoder:
        """The version whose BM25 statistics no longer hold the removed rows' block keys."""
        return self._with_sparse(self.sparse.shrink(keys[1]))

    def key_scorer(self, keys: Sequence[Any]) -> Blocks:
        """Block keys as the kernel scores them: the dense block, and BM25 weighed at query time."""
        return Blocks([keys[0], self.sparse.key_scorer(keys[1])])

    def weigh(self, keys: Sequence[Any]) -> Blocks:
        """Block keys with the BM25 block's weights under the current statistics (for fit, explain)."""
        return Blocks([keys[0], self.sparse.weigh(keys[1])])

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool | None = None) -> list:
        """Query blocks: [(m, d) float32 unit rows, (m, V) float32 CSR term counts]."""
        return [self.dense.encode(texts, batch_size=batch_size, progress=progress), self.sparse.encode(texts)]

    # ----------------------------------------------------------- persistence
    def get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """JSON-able config (the dense encoder's name, β, the BM25 config) and BM25's arrays.

        Examples
        --------
        >>> from softdb.text import HashEncoder
        >>> enc = HybridEncoder(dense=HashEncoder(8)); _ = enc.encode_corpus(["red fox", "blue hen"])
        >>> config, arrays = enc.get_state()
        >>> config["kind"], config["dense"], sorted(arrays)
        ('hybrid', 'hash-8', ['idf', 'vocabulary'])
        >>> HybridEncoder.from_state(config, arrays).name
        'hybrid:hash-8+bm25'
        """
        config, arrays = self.sparse.get_state()
        return {"kind": self.state_kind, "dense": self.dense.name, "weight": self.weight, "sparse": config}, arrays

    @classmethod
    def from_state(cls, config: dict, arrays: dict[str, np.ndarray]) -> HybridEncoder:
        """Rebuild an encoder saved by :meth:`get_state` (the dense one from its name)."""
        return cls(
            encoder_from_name(config["dense"]),
            BM25Encoder.from_state(config["sparse"], arrays),
            weight=config["weight"],
        )


def text_encoder(name: str) -> Any:
    """The encoder a model name stands for: "dense" (MiniLM), "bm25" or "hybrid".

    Examples
    --------
    >>> text_encoder("bm25")
    BM25Encoder(k1=1.2, b=0.75, stopwords='en', stemmer='english', vocabulary=0)
    """
    if name == "bm25":
        return BM25Encoder()
    if name == "hybrid":
        return HybridEncoder()
    if name == "dense":
        from softdb.text._sentence import default_encoder

        return default_encoder()
    raise ValueError(f"model must be 'dense', 'bm25' or 'hybrid', got {name!r}; hint: 'hybrid' is MiniLM + BM25")
