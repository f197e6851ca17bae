"""The :class:`Encoder` and :class:`StatefulEncoder` protocols, and :class:`HashEncoder`, a model-free fake.

The real encoder, :class:`~softdb.text.SentenceEncoder`, lives in ``_sentence``;
rebuilding either from a saved name, :func:`~softdb.text.encoder_from_name`, in ``_names``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Encoder", "HashEncoder", "StatefulEncoder"]


@runtime_checkable
class Encoder(Protocol):
    """What softdb needs from an encoder.

    Attributes
    ----------
    name : str
        Identifies the model; saved tables record it.
    dim : int
        Width of each embedding.
    """

    @property
    def name(self) -> str: ...  # read-only here: a plain attribute or a property both do

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool | None = None) -> np.ndarray:
        """Return L2-normalised float32 embeddings of shape (len(texts), dim)."""
        ...


@runtime_checkable
class StatefulEncoder(Protocol):
    """An encoder whose fitted state travels in a saved table (BM25's vocabulary and idf).

    A saved table asks the encoder for its state and never tests its class; loading
    rebuilds it with :func:`~softdb.text.encoder_from_state`, which picks the class by
    the ``"kind"`` the state records.

    Attributes
    ----------
    state_kind : str
        The ``"kind"`` of its state config (``"bm25"``, ``"hybrid"``).

    Examples
    --------
    >>> from softdb.text import BM25Encoder, HashEncoder
    >>> isinstance(BM25Encoder(), StatefulEncoder), isinstance(HashEncoder(), StatefulEncoder)
    (True, False)
    """

    state_kind: str

    def get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """JSON-able config (with ``"kind": state_kind``) and plain named arrays."""
        ...

    @classmethod
    def from_state(cls, config: dict, arrays: dict[str, np.ndarray]) -> StatefulEncoder:
        """Rebuild an encoder from what :meth:`get_state` returned."""
        ...


def _check_texts(texts: Sequence[str], batch_size: int) -> list[str]:
    if isinstance(texts, (str, bytes)):
        raise TypeError(
            f"texts must be a sequence of strings but got a single {type(texts).__name__} "
            f"{texts[:40]!r}; wrap one text in a list: encode([text])"
        )
    try:
        texts = list(texts)
    except TypeError:
        raise TypeError(
            f"texts must be a sequence of strings but got {type(texts).__name__}; pass a list of str"
        ) from None
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(
                f"texts must all be str but texts[{i}] is {type(t).__name__} ({t!r:.40}); "
                "convert it with str() or drop it"
            )
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer but got {batch_size!r}")
    return texts


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)  # (n, dim)
    norms = np.linalg.norm(x, axis=1, keepdims=True)  # (n, 1)
    return x / np.where(norms > 0, norms, 1.0)  # (n, dim)


# --- HashEncoder -----------------------------------------------------------------------


class HashEncoder:
    """Deterministic token-hashing encoder: no model, no cache, no randomness.

    Each lower-cased word token (regex ``\\w+``) is hashed with blake2b to a column
    and a sign; a text's embedding is the signed count vector, L2-normalised. Texts
    that share words are therefore closer than texts that share none. A text with no
    word tokens (empty, whitespace, punctuation) maps to the fixed unit vector
    ``ones(dim) / sqrt(dim)`` so that it never produces NaN.

    Parameters
    ----------
    dim : int, default 64
    name : str, optional
        Default ``f"hash-{dim}"`` (so :func:`encoder_from_name` can rebuild it).

    Examples
    --------
    >>> enc = HashEncoder(16)
    >>> x = enc.encode(["read a csv file", "write a csv file", "compress with gzip"])
    >>> x.shape, x.dtype
    ((3, 16), dtype('float32'))
    >>> bool(x[0] @ x[1] > x[0] @ x[2])
    True
    """

    def __init__(self, dim: int = 64, *, name: str | None = None) -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be a positive integer but got {dim!r}")
        self.dim = int(dim)
        self.name = name if name is not None else f"hash-{self.dim}"

    def __repr__(self) -> str:
        return f"HashEncoder(dim={self.dim}, name={self.name!r})"

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool | None = None) -> np.ndarray:
        """Encode texts; ``batch_size`` and ``progress`` are accepted and ignored.

        Returns
        -------
        ndarray of shape (len(texts), dim), float32, unit rows
        """
        texts = _check_texts(texts, batch_size)
        rows: list[int] = []
        cols: list[int] = []
        signs: list[float] = []
        for i, text in enumerate(texts):
            for tok in re.findall(r"\w+", text.lower()):
                h = int.from_bytes(hashlib.blake2b(tok.encode(), digest_size=8).digest(), "little")
                rows.append(i)
                cols.append((h >> 1) % self.dim)
                signs.append(1.0 if h & 1 else -1.0)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)  # (n, dim)
        np.add.at(out, (np.asarray(rows, dtype=np.intp), np.asarray(cols, dtype=np.intp)), signs)
        empty = ~out.any(axis=1)  # (n,) texts with no tokens (or cancelling ones)
        out[empty] = 1.0 / np.sqrt(self.dim)
        return _normalise(out)  # (n, dim)
