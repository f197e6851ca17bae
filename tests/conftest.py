"""Session-wide test setup: no network, and the real model loaded once.

Embeddings go to the normal softdb cache (``$SOFTDB_CACHE_DIR`` or the platform's
cache folder): it is keyed by model and text hash, so sharing it is safe, and a
second `make test` does not re-encode the stdlib corpus. Tests of the cache itself
use their own temporary folders.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# CI (which sets CI=true) runs the property tests on a fixed seed, so a green main stays green and a
# failure there reproduces; a developer's run draws new examples every time and finds new cases.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session", autouse=True)
def _offline_and_private_cache():
    """HF_HUB_OFFLINE=1 for the whole session: nothing may touch the network."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(scope="session")
def minilm(_offline_and_private_cache):
    """The real default SentenceEncoder (all-MiniLM-L6-v2), loaded once per session."""
    from softdb.text import default_encoder

    encoder = default_encoder()
    encoder.encode(["warm up"])  # load now, so the first test pays no surprise
    return encoder
