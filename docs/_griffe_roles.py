"""A griffe extension for the API reference: Sphinx roles in docstrings shown as code.

Some docstrings name other objects the Sphinx way (``:class:`softdb.SoftTable```,
``:func:`~softdb.text.cache_dir```). mkdocstrings' numpydoc parser leaves those roles as
text, so the reference would show ``:class:`` before each name; this extension rewrites them
as plain inline code (the ``~`` form keeps the last name only, as Sphinx does). It changes
what the site shows, never the docstrings. mkdocs.yml loads it (``extensions:``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|obj|exc|const):`(~?)([^`]+)`")


def _plain(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def without_roles(text: str) -> str:
    """The text with each Sphinx cross-reference role written as inline code.

    >>> without_roles("a :class:`softdb.SoftTable` and :func:`~softdb.text.cache_dir`")
    'a `softdb.SoftTable` and `cache_dir`'
    """
    return _ROLE.sub(_plain, text)


class SphinxRolesAsCode(griffe.Extension):
    """Rewrite Sphinx roles in every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = without_roles(obj.docstring.value)
