"""Bytes of a note → its text, or None when the file is not text.

The policy, in order:

1. A byte-order mark decides: UTF-8 (BOM dropped), UTF-16 or UTF-32 (LE or BE).
2. Otherwise a NUL byte means binary (text files never hold one; executables,
   images and archives nearly always do).
3. Strict UTF-8, if the bytes are valid UTF-8.
4. Otherwise cp1252 (Windows Western, a superset of latin-1's printable
   characters), and latin-1 for the five bytes cp1252 leaves undefined. So a
   latin-1 or cp1252 note reads "Café crème", not "Caf� cr�me".
5. Finally, a text with more than 5% control characters (other than tab, line
   feed, carriage return and form feed) is binary, whatever decoded it.
"""

from __future__ import annotations

import codecs

__all__ = ["MAX_CONTROL_RATIO", "decode_text"]

#: Above this share of control characters a decoded file is taken to be binary.
MAX_CONTROL_RATIO = 0.05

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_CONTROLS = dict.fromkeys([c for c in range(32) if chr(c) not in "\t\n\r\f"] + [0x7F, *range(0x80, 0xA0)])


def _bom_codec(raw: bytes) -> str | None:
    return next((codec for bom, codec in _BOMS if raw.startswith(bom)), None)


def _legacy_decode(raw: bytes) -> str:
    try:
        return raw.decode("cp1252")
    except UnicodeDecodeError:  # 0x81, 0x8D, 0x8F, 0x90, 0x9D: undefined in cp1252
        return "".join(
            raw[i : i + 1].decode("cp1252", errors="ignore") or raw[i : i + 1].decode("latin-1")
            for i in range(len(raw))
        )


def decode_text(raw: bytes) -> tuple[str, str] | None:
    """Decode a file's bytes under the module's policy.

    Parameters
    ----------
    raw : bytes

    Returns
    -------
    (text, encoding) or None
        None when the bytes are not text (see the module docstring).

    Examples
    --------
    >>> decode_text("Café crème".encode("latin-1"))
    ('Café crème', 'cp1252')
    >>> decode_text(b"\\x7fELF\\x02\\x01\\x01\\x00\\x00") is None
    True
    """
    encoding = _bom_codec(raw)
    if encoding is not None:
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            return None
    else:
        if b"\x00" in raw:
            return None
        try:
            text, encoding = raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = _legacy_decode(raw), "cp1252"
    if text:
        controls = len(text) - len(text.translate(_CONTROLS))  # _CONTROLS maps each to None: deleted
        if controls > MAX_CONTROL_RATIO * len(text):
            return None
    return text, encoding
