"""Chunks fit the encoder's window, cover their document, and carry its title (softdb.text._chunk)."""

from __future__ import annotations

import itertools
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softdb.text import Chunker, HashEncoder, TokenCounter, chunk_texts, default_encoder, stdlib_corpus, token_counter

SLICE = Path(__file__).resolve().parent.parent / "data" / "scifact" / "corpus.jsonl"


@pytest.fixture(scope="module")
def minilm_counter():
    """MiniLM's own tokenizer (tokenizer.json of the bundled model; the model itself is not loaded)."""
    counter = token_counter(default_encoder())
    assert counter.exact and counter.window == 254  # 256 word pieces, [CLS] and [SEP] included
    return counter


@pytest.fixture(scope="module")
def scifact():
    recs = [json.loads(line) for line in SLICE.read_text(encoding="utf-8").splitlines()]
    return [r["title"] for r in recs], [r["text"] for r in recs]


def _check_cover(texts, chunks):
    """Every document's chunks are in order and cover it from 0 to its end (nothing but whitespace left out)."""
    for d, text in enumerate(texts):
        spans = chunks.spans[chunks.doc == d]  # (c, 2)
        assert len(spans) >= 1
        assert spans[0, 0] == 0 and spans[-1, 1] == len(text)
        assert np.all(spans[1:, 0] > spans[:-1, 0])
        for (_, e), (s, _) in itertools.pairwise(spans):  # they overlap, or only whitespace lies between
            assert s <= e or not text[e:s].strip()


@pytest.mark.parametrize("chunker", [Chunker(), Chunker(254, 32), Chunker(64, 16), Chunker(500, 0)])
def test_no_scifact_row_is_longer_than_minilm_reads(minilm_counter, scifact, chunker):
    titles, texts = scifact
    assert minilm_counter.count([f"{t}\n{x}" for t, x in zip(titles, texts)]).max() > 254  # the slice needs cutting
    chunks = chunk_texts(texts, minilm_counter, chunker, titles=titles)
    size = min(chunker.size, 254)
    assert minilm_counter.count(chunks.texts).max() <= size  # counted afresh, title included
    with_specials = [len(e.ids) for e in minilm_counter._tok.encode_batch(chunks.texts)]  # [CLS] … [SEP]
    assert max(with_specials) <= 256
    _check_cover(texts, chunks)
    for d, c in zip(chunks.doc, chunks.texts):  # the title (cut to half a chunk at most) travels with every chunk
        assert titles[d].startswith(c.split("\n")[0]) and len(c.split("\n")[0]) > 0


def test_no_stdlib_row_is_longer_than_minilm_reads(minilm_counter):
    corpus = stdlib_corpus()
    long = ["\n\n".join(corpus.texts[i : i + 8]) for i in range(0, len(corpus.texts), 8)]  # ~2,400 chars each
    chunks = chunk_texts(long, minilm_counter)
    assert len(chunks.texts) > len(long)
    assert minilm_counter.count(chunks.texts).max() <= Chunker().size
    _check_cover(long, chunks)


_word = st.sampled_from(["cat", "naïve", "x", "running", "fish,", "(q1)", "zebra.", "—", "über-long"])


@settings(max_examples=80, deadline=None)
@given(
    docs=st.lists(st.lists(_word, max_size=60).map(" ".join), min_size=1, max_size=5),
    size=st.integers(4, 40),
    overlap_frac=st.floats(0, 0.9),
    title=st.sampled_from([None, "T", "A longer title, with words"]),
)
def test_any_text_is_cut_within_size_and_covered(docs, size, overlap_frac, title):
    counter = TokenCounter()
    chunker = Chunker(size, int(overlap_frac * (size - 1)))
    chunks = chunk_texts(docs, counter, chunker, titles=[title] * len(docs))
    assert np.all(counter.count(chunks.texts) <= size)  # title included
    head = chunks.texts[0].split("\n")[0] + "\n" if title else ""
    assert title is None or title.startswith(head[:-1])  # cut to half a chunk at most
    assert all(c.startswith(head) for c in chunks.texts)
    _check_cover(docs, chunks)
    for (s, e), d, c in zip(chunks.spans, chunks.doc, chunks.texts):
        assert c[len(head) :] == docs[d][s:e]
    np.testing.assert_array_equal(chunks.n_tokens, counter.count(docs) + counter.count([head])[0])


def test_a_short_text_is_one_chunk_a_long_one_several():
    c = chunk_texts(["short text", " ".join(f"w{i}" for i in range(50))], TokenCounter(), Chunker(20, 5))
    assert c.doc.tolist() == [0] + [1] * 3  # 50 words in windows of 20 that move by 15
    assert c.texts[0] == "short text" and c.spans[0].tolist() == [0, 10]
    assert c.texts[1].split()[-5:] == c.texts[2].split()[:5]  # the overlap


def test_a_chunk_ends_at_a_word_when_one_fits(minilm_counter):
    text = "compression " * 3 + "unbelievably " * 40  # "unbelievably" is several word pieces
    for chunk in chunk_texts([text], minilm_counter, Chunker(16, 4)).texts:
        assert chunk.strip() == chunk.strip(" ") and not re.search(r"\bunbeliev$", chunk)
        assert all(w in ("compression", "unbelievably") for w in chunk.split())


def test_chunker_and_titles_errors():
    with pytest.raises(
        ValueError, match=re.escape("size must be at least 4 tokens, got size=2; hint: Chunker(size=128)")
    ):
        Chunker(2, 0)
    with pytest.raises(ValueError, match=re.escape("overlap must be at least 0 and less than size, got overlap=-1")):
        Chunker(8, -1)
    with pytest.raises(TypeError, match=re.escape("size must be an integer, got float")):
        Chunker(8.0, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=re.escape("titles must be one per text: got 1 titles for 2 texts")):
        chunk_texts(["a", "b"], TokenCounter(), titles=["t"])


def test_encoders_without_a_window_read_everything():
    assert token_counter(HashEncoder()).window is None
    assert token_counter("not an encoder").window is None


def test_chunk_false_warns_how_many_documents_are_truncated(minilm_counter, scifact):
    from softdb.table._documents import document_rows

    _, texts = scifact
    n_tok = minilm_counter.count(texts)
    over = int((n_tok > 254).sum())
    assert over > 0
    msg = (
        f"{over} of {len(texts)} documents are longer than the encoder reads (254 tokens) and will be truncated "
        f"(the longest has {int(n_tok.max())}); hint: leave chunk=None to cut them into chunks"
    )
    with pytest.warns(UserWarning, match=re.escape(msg)):
        rows, ids, pays, _ = document_rows(
            texts, ids=None, payloads=None, encoder=default_encoder(), chunk=False, titles=None
        )
    assert rows == texts and ids is None and pays is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # chunking on: no warning
        rows, ids, pays, _ = document_rows(
            texts, ids=None, payloads=None, encoder=default_encoder(), chunk=None, titles=None
        )
    assert len(rows) > len(texts) and minilm_counter.count(rows).max() <= 254
