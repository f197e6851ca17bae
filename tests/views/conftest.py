"""Fixtures of the head-view tests: a stand-in for :mod:`softdb.heads` made of random projected tables."""

from __future__ import annotations

import sys
import types

import pytest

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _fake_heads import TOKENS, fake_heads


@pytest.fixture
def fake_all_heads(monkeypatch):
    """``softdb.heads.all_heads`` answering random projected tables (no model); records its calls."""
    calls = []

    def all_heads(text, *, model=None, truncate=False):
        calls.append((text, model, truncate))
        if not text.strip():
            raise ValueError("the text is empty")
        return fake_heads(TOKENS)

    try:
        import softdb.heads as mod
    except ImportError:
        mod = types.ModuleType("softdb.heads")
        monkeypatch.setitem(sys.modules, "softdb.heads", mod)
    monkeypatch.setattr(mod, "all_heads", all_heads, raising=False)
    return calls
