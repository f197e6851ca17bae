"""The :class:`Corpus` type every loader returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Corpus"]


@dataclass(frozen=True)
class Corpus:
    """Texts to index, with one id and one payload per text.

    Attributes
    ----------
    ids : list, length n
        Unique row ids (str for every built-in loader).
    texts : list of str, length n
        What gets encoded.
    payloads : list, length n
        Anything to return with a hit (dicts for the built-in loaders).

    Examples
    --------
    >>> c = Corpus(["a", "b"], ["first text", "second text"], [None, None])
    >>> len(c)
    2
    """

    ids: list[Any]
    texts: list[str]
    payloads: list[Any]

    def __post_init__(self) -> None:
        n_ids, n_texts, n_payloads = len(self.ids), len(self.texts), len(self.payloads)
        if not n_ids == n_texts == n_payloads:
            raise ValueError(
                f"a Corpus needs as many ids, texts and payloads but got {n_ids} ids, "
                f"{n_texts} texts and {n_payloads} payloads; pass one of each per text"
            )

    def __len__(self) -> int:
        return len(self.texts)

    def __repr__(self) -> str:
        first = f", first id {self.ids[0]!r}" if self.ids else ""
        return f"<Corpus of {len(self)} texts{first}>"
