"""Documents → chunks that fit an encoder's window, each with its span and its document's title.

MiniLM (all-MiniLM-L6-v2) reads 256 word pieces, [CLS] and [SEP] included, and cuts the rest
silently, as sentence-transformers does for every model. A document longer than that is cut here
into chunks of at most ``size`` word pieces that overlap by ``overlap``, counted with the encoder's
own tokenizer when it has one (:func:`token_counter`) and estimated from words and punctuation
otherwise. A chunk ends at a word boundary when it can; a title or heading is prefixed to every
chunk of its document (it counts against ``size``), so it never stands as a row alone.

The defaults (``size`` and ``overlap`` of :class:`Chunker`) were chosen by nDCG@10 on SciFact's
train queries (``benchmarks/bench_documents.py``; ``docs/guide/documents.md``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Chunker", "Chunks", "TokenCounter", "chunk_texts", "token_counter"]

_WORDS = re.compile(r"\w+|[^\w\s]")  # the estimate: a word or a punctuation mark is one piece


class TokenCounter:
    """Where the tokens of a text are: char spans (t, 2) and which of them start a word.

    ``window`` is how many tokens the encoder reads (its special tokens taken off), or None
    when it reads everything (a hash or BM25 encoder). ``exact`` says whether the counts are
    the encoder's own tokenizer's (True) or the words-and-punctuation estimate (False).

    Examples
    --------
    >>> c = TokenCounter()
    >>> c.spans("Hello, world").tolist(), c.window, c.exact
    ([[0, 5], [5, 6], [7, 12]], None, False)
    """

    def __init__(self, tokenizer: Any = None, window: int | None = None) -> None:
        self._tok = tokenizer
        self.window = window
        self.exact = tokenizer is not None

    def __repr__(self) -> str:
        return f"TokenCounter(window={self.window}, exact={self.exact})"

    def spans(self, text: str) -> np.ndarray:
        """Char spans of the text's tokens: int64 array of shape (t, 2)."""
        if self._tok is None:
            return np.array([m.span() for m in _WORDS.finditer(text)], np.int64).reshape(-1, 2)
        return np.array(self._tok.encode(text, add_special_tokens=False).offsets, np.int64).reshape(-1, 2)

    def count(self, texts: Sequence[str]) -> np.ndarray:
        """Tokens in each text: int64 array of shape (n,)."""
        if self._tok is None:
            return np.array([sum(1 for _ in _WORDS.finditer(t)) for t in texts], np.int64)
        encs = self._tok.encode_batch(list(texts), add_special_tokens=False)
        return np.array([len(e.ids) for e in encs], np.int64)


def _folder_counter(folder: Path) -> TokenCounter | None:
    """The tokenizer of a sentence-transformers folder (tokenizer.json) and its max_seq_length."""
    tok_file, cfg_file = folder / "tokenizer.json", folder / "sentence_bert_config.json"
    if not tok_file.is_file():
        return None
    try:
        from tokenizers import Tokenizer
    except ImportError:
        return None
    tok = Tokenizer.from_file(str(tok_file))
    tok.no_truncation()
    tok.no_padding()
    window = 512
    if cfg_file.is_file():
        window = int(json.loads(cfg_file.read_text(encoding="utf-8")).get("max_seq_length", window))
    return TokenCounter(tok, window - 2)  # [CLS] and [SEP] take two


def token_counter(encoder: Any) -> TokenCounter:
    """How ``encoder`` counts tokens, and how many it reads.

    A :class:`~softdb.text.SentenceEncoder` with a local folder (the bundled MiniLM) counts with
    its own tokenizer, reading ``max_seq_length`` − 2 word pieces (254 for MiniLM); a hybrid
    encoder counts as its dense part; an encoder with a ``max_tokens`` attribute reads that many
    (estimated); any other encoder reads everything (``window`` None, estimated counts).

    Examples
    --------
    >>> from softdb.text import HashEncoder
    >>> token_counter(HashEncoder())
    TokenCounter(window=None, exact=False)
    """
    dense = getattr(encoder, "dense", None)
    if dense is not None:
        return token_counter(dense)
    resolve = getattr(encoder, "_resolve_folder", None)
    if callable(resolve):
        try:
            folder = resolve()
        except ImportError:
            folder = None
        counter = None if folder is None else _folder_counter(Path(folder))
        if counter is not None:
            return counter
        return TokenCounter(None, 254)  # a sentence-transformers model whose tokenizer we cannot see
    window = getattr(encoder, "max_tokens", None)
    return TokenCounter(None, None if window is None else int(window))


@dataclass(frozen=True)
class Chunker:
    """How documents are cut: at most ``size`` tokens a chunk (title included), ``overlap`` shared.

    Parameters
    ----------
    size : int, default 128
        Tokens per chunk, its title's included; at most the encoder's window (a larger size is
        cut down to it). On SciFact's train queries 64 / 16 ranked 0.0126 nDCG@10 above 128 / 32
        (1.3 standard errors over 80 queries) at three times the rows; docs/guide/documents.md.
    overlap : int, default 32
        Tokens a chunk shares with the one before; 0 <= overlap < size.

    Examples
    --------
    >>> Chunker(size=64, overlap=8)
    Chunker(size=64, overlap=8)
    >>> Chunker(size=8, overlap=8)
    Traceback (most recent call last):
    ...
    ValueError: overlap must be at least 0 and less than size, got overlap=8 with size=8; hint: overlap=size // 4
    """

    size: int = 128
    overlap: int = 32

    def __post_init__(self) -> None:
        for name in ("size", "overlap"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer):
                raise TypeError(f"{name} must be an integer, got {type(v).__name__}")
        if self.size < 4:
            raise ValueError(f"size must be at least 4 tokens, got size={self.size}; hint: Chunker(size=128)")
        if not 0 <= self.overlap < self.size:
            raise ValueError(
                f"overlap must be at least 0 and less than size, got overlap={self.overlap} with "
                f"size={self.size}; hint: overlap=size // 4"
            )


@dataclass(frozen=True)
class Chunks:
    """Documents cut into chunks (r chunks of n documents).

    Attributes
    ----------
    doc : ndarray of int64, shape (r,)
        The document (its index in the input) of each chunk; non-decreasing.
    spans : ndarray of int64, shape (r, 2)
        [start, end) of each chunk in its document's text (the title not included).
    texts : list of str, length r
        What is encoded: ``title + "\\n" + text[start:end]``, or the slice alone.
    n_tokens : ndarray of int64, shape (n,)
        Tokens of each whole document (title included), as the counter counts them.
    """

    doc: np.ndarray
    spans: np.ndarray
    texts: list
    n_tokens: np.ndarray


def _word_starts(spans: np.ndarray) -> np.ndarray:
    """Token indices (and t) where a word starts: after whitespace, i.e. not glued to the token before."""
    t = len(spans)
    glued = np.zeros(t, bool)
    glued[1:] = spans[1:, 0] == spans[:-1, 1]  # "##ing", or "," right after a word
    return np.append(np.flatnonzero(~glued), t)


def _cuts(spans: np.ndarray, budget: int, overlap: int) -> list[tuple[int, int]]:
    """Token windows [a, b) of one document: b - a <= budget, b at a word start when one fits."""
    t = len(spans)
    if t <= budget:
        return [(0, t)]
    starts = _word_starts(spans)  # (w + 1,)
    out: list[tuple[int, int]] = []
    a = 0
    while True:
        b = min(a + budget, t)
        if b < t:
            j = int(np.searchsorted(starts, b, side="right")) - 1
            if starts[j] > a + overlap:  # end before the word the window would cut
                b = int(starts[j])
        out.append((a, b))
        if b >= t:
            return out
        nxt = b - overlap
        j = int(np.searchsorted(starts, nxt, side="right")) - 1  # start on a word (a piece alone counts anew)
        if starts[j] <= a:  # never go back: the next word, or mid-word when a word outlasts the window
            j += 1
        a = int(starts[j]) if starts[j] < b else nxt
        a = max(a, out[-1][0] + 1)


def _cut_title(title: str, counter: TokenCounter, most: int) -> str:
    """The title, cut after its first ``most`` tokens (so that it leaves room for text)."""
    spans = counter.spans(title)  # (t, 2)
    return title if len(spans) <= most else title[: int(spans[max(most, 1) - 1, 1])]


def chunk_texts(
    texts: Sequence[str],
    counter: TokenCounter,
    chunker: Chunker | None = None,
    *,
    titles: Sequence[str | None] | None = None,
) -> Chunks:
    """Cut each text into chunks of at most ``chunker.size`` tokens (the counter's window at most).

    Parameters
    ----------
    texts : sequence of str, length n
    counter : TokenCounter
        :func:`token_counter` of the encoder.
    chunker : Chunker, optional
        Default ``Chunker()``.
    titles : sequence of str or None, length n, optional
        Prefixed to every chunk of its document (``title + "\\n" + chunk``), counted in its size;
        a title longer than half a chunk is cut there.

    Returns
    -------
    Chunks
        A document that fits is one chunk, its whole text (span [0, len(text)]).

    Examples
    --------
    >>> c = chunk_texts(["one two three four five six seven", "short"], TokenCounter(), Chunker(size=4, overlap=1))
    >>> c.doc.tolist(), c.texts
    ([0, 0, 1], ['one two three four', 'four five six seven', 'short'])
    >>> chunk_texts(["a b c d e"], TokenCounter(), Chunker(4, 0), titles=["T"]).texts
    ['T\\na b c', 'T\\nd e']
    """
    chunker = Chunker() if chunker is None else chunker
    size = chunker.size if counter.window is None else min(chunker.size, counter.window)
    overlap = min(chunker.overlap, size - 1)
    texts = list(texts)
    titles = [None] * len(texts) if titles is None else list(titles)
    if len(titles) != len(texts):
        raise ValueError(f"titles must be one per text: got {len(titles)} titles for {len(texts)} texts")
    heads = [f"{_cut_title(t, counter, size // 2)}\n" if t else "" for t in titles]  # a title takes ≤ half a chunk
    head_tokens = counter.count(heads) if any(heads) else np.zeros(len(texts), np.int64)  # (n,)
    docs: list[int] = []
    spans: list[tuple[int, int]] = []
    out: list[str] = []
    n_tokens = np.zeros(len(texts), np.int64)
    for i, (text, head) in enumerate(zip(texts, heads)):
        tok = counter.spans(text)  # (t, 2)
        n_tokens[i] = len(tok) + head_tokens[i]
        budget = max(size - int(head_tokens[i]), 1)
        cuts = _cuts(tok, budget, min(overlap, budget - 1))
        last = len(cuts) - 1
        for c, (a, b) in enumerate(cuts):
            start = 0 if c == 0 else int(tok[a, 0])
            end = len(text) if c == last else int(tok[b - 1, 1])
            docs.append(i)
            spans.append((start, end))
            out.append(head + text[start:end])
    return Chunks(np.array(docs, np.int64), np.array(spans, np.int64).reshape(-1, 2), out, n_tokens)
