"""The :class:`Corpus` type every loader returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: How many skipped file names a warning shows.
SHOW_SKIPPED = 5

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
    skipped : tuple of str
        Files a loader left out because they are not text (see
        :func:`~softdb.text.folder_corpus`); empty for the other loaders.
    titles : list of str or None, length n, optional
        A title per text, prefixed to each of its chunks (``SoftTable.from_texts(titles=...)``).

    Examples
    --------
    >>> c = Corpus(["a", "b"], ["first text", "second text"], [None, None])
    >>> len(c)
    2
    """

    ids: list[Any]
    texts: list[str]
    payloads: list[Any]
    skipped: tuple[str, ...] = ()
    titles: list[str | None] | None = None  # one per text (folder_corpus: each file's first line), or None

    def __post_init__(self) -> None:
        n_ids, n_texts, n_payloads = len(self.ids), len(self.texts), len(self.payloads)
        if not n_ids == n_texts == n_payloads:
            raise ValueError(
                f"a Corpus needs as many ids, texts and payloads but got {n_ids} ids, "
                f"{n_texts} texts and {n_payloads} payloads; pass one of each per text"
            )
        if self.titles is not None and len(self.titles) != n_texts:
            raise ValueError(f"a Corpus needs one title per text but got {len(self.titles)} titles for {n_texts} texts")

    def __len__(self) -> int:
        return len(self.texts)

    def __repr__(self) -> str:
        first = f", first id {self.ids[0]!r}" if self.ids else ""
        skipped = f", {len(self.skipped)} files skipped" if self.skipped else ""
        return f"<Corpus of {len(self)} texts{first}{skipped}>"

    def skipped_message(self) -> str | None:
        """One line saying which files were skipped, or None if none were.

        Examples
        --------
        >>> Corpus([], [], [], skipped=("a.bin.txt",)).skipped_message()
        'skipped 1 file that is not text: a.bin.txt'
        """
        n = len(self.skipped)
        if not n:
            return None
        names = ", ".join(self.skipped[:SHOW_SKIPPED]) + (f", … ({n - SHOW_SKIPPED} more)" if n > SHOW_SKIPPED else "")
        return f"skipped {n} file{'s' if n > 1 else ''} that {'are' if n > 1 else 'is'} not text: {names}"
