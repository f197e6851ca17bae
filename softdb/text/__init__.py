"""Text for softdb: encoders (real and fake), an embedding cache, corpus loaders.

Nothing heavy is imported here: sentence-transformers and torch load on the
first encode that misses the cache.
"""

from __future__ import annotations

from softdb.text._bm25 import BM25Encoder
from softdb.text._cache import EmbeddingCache, cache_dir
from softdb.text._chunk import Chunker, Chunks, TokenCounter, chunk_texts, token_counter
from softdb.text._corpora import (
    Queries,
    beir_corpus,
    beir_qrels,
    beir_queries,
    folder_corpus,
    load_corpus,
    table_file_corpus,
)
from softdb.text._corpus import Corpus
from softdb.text._encoders import Encoder, HashEncoder, StatefulEncoder
from softdb.text._hybrid import HybridEncoder, text_encoder
from softdb.text._models import DEFAULT_MODEL, verify_default_model
from softdb.text._names import encoder_from_name
from softdb.text._sentence import SentenceEncoder, default_encoder
from softdb.text._stateful import encoder_from_state
from softdb.text._stdlib import stdlib_corpus

__all__ = [
    "DEFAULT_MODEL",
    "BM25Encoder",
    "Chunker",
    "Chunks",
    "Corpus",
    "EmbeddingCache",
    "Encoder",
    "HashEncoder",
    "HybridEncoder",
    "Queries",
    "SentenceEncoder",
    "StatefulEncoder",
    "TokenCounter",
    "beir_corpus",
    "beir_qrels",
    "beir_queries",
    "cache_dir",
    "chunk_texts",
    "default_encoder",
    "encoder_from_name",
    "encoder_from_state",
    "folder_corpus",
    "load_corpus",
    "stdlib_corpus",
    "table_file_corpus",
    "text_encoder",
    "token_counter",
    "verify_default_model",
]
