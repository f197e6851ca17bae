"""Rebuilding an encoder from the name a saved table recorded.

Above both encoders (``_encoders`` and ``_sentence``), so neither imports the other's
module back.
"""

from __future__ import annotations

import re

from softdb.text._encoders import Encoder, HashEncoder
from softdb.text._models import DEFAULT_MODEL
from softdb.text._sentence import SentenceEncoder, default_encoder

__all__ = ["encoder_from_name"]


def encoder_from_name(name: str) -> Encoder:
    """Rebuild an encoder from the ``name`` a saved table recorded.

    ``"hash-<dim>"`` gives ``HashEncoder(dim)``; the default model's name gives
    :func:`default_encoder`; anything else ``SentenceEncoder(name)``.

    Examples
    --------
    >>> encoder_from_name("hash-32")
    HashEncoder(dim=32, name='hash-32')
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"encoder name must be a non-empty str but got {name!r}")
    m = re.fullmatch(r"hash-(\d+)", name)
    if m:
        return HashEncoder(int(m.group(1)))
    if name in (DEFAULT_MODEL, "all-MiniLM-L6-v2"):
        return default_encoder()
    return SentenceEncoder(name)
