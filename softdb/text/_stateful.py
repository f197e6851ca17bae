"""Rebuilding a stateful encoder (:class:`~softdb.text.StatefulEncoder`) from a saved table.

Above every stateful encoder's module, so none imports another back.
"""

from __future__ import annotations

import numpy as np

from softdb.text._bm25 import BM25Encoder
from softdb.text._encoders import StatefulEncoder
from softdb.text._hybrid import HybridEncoder

__all__ = ["encoder_from_state"]

#: Each stateful encoder class by the ``kind`` its state records.
_KINDS: dict[str, type[StatefulEncoder]] = {cls.state_kind: cls for cls in (BM25Encoder, HybridEncoder)}


def encoder_from_state(config: dict, arrays: dict[str, np.ndarray]) -> StatefulEncoder:
    """Rebuild the encoder whose :meth:`~softdb.text.StatefulEncoder.get_state` gave ``config`` and ``arrays``.

    The class is the one registered for ``config["kind"]``. A kind this softdb does not
    know goes to BM25's reader (BM25 was the first encoder with a state), whose error says
    which kinds and versions it reads.

    Raises
    ------
    ValueError, KeyError, TypeError
        The state is of an unknown kind or version, or incomplete.

    Examples
    --------
    >>> from softdb.text import BM25Encoder
    >>> enc = BM25Encoder(); _ = enc.encode_corpus(["a red fox", "a red hen"])
    >>> encoder_from_state(*enc.get_state()).vocabulary
    ('fox', 'hen', 'red')
    """
    kind = config.get("kind")
    cls = _KINDS.get(kind, BM25Encoder) if isinstance(kind, str) else BM25Encoder
    return cls.from_state(config, arrays)
