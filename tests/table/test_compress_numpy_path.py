"""tests/table/test_compress.py again with numpy's chunk passes (softdb.engine._certjit.ENABLED = False).

That module runs the compiled pass when numba is installed; here every one of its tests (the same
functions, so the same hypothesis examples) runs the numpy fallback.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_compress import *  # noqa: F403  (pytest collects the same tests here)

from softdb.engine import _certjit


@pytest.fixture(autouse=True, scope="module")
def _numpy_passes() -> Iterator[None]:
    old = _certjit.ENABLED
    _certjit.ENABLED = False
    yield
    _certjit.ENABLED = old
