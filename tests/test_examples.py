"""Every program in examples/ runs to completion (CI runs them here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each example is a subprocess (some load the real model)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(p for p in EXAMPLES.glob("*.py") if not p.name.startswith("test_"))
TEST_FILES = sorted(EXAMPLES.glob("test_*.py"))


def _env() -> dict:
    return dict(os.environ, HF_HUB_OFFLINE="1", MPLBACKEND="Agg")  # the normal embedding cache


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_example_runs(script, tmp_path):
    tmp = tmp_path / "tmp"  # the example's temporary folder: it must clean up after itself
    tmp.mkdir()
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=dict(_env(), TMPDIR=str(tmp)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip(), f"{script.name} printed nothing"
    left = sorted(p.name for p in tmp.glob("softdb*"))
    assert not left, f"{script.name} left {left} behind in {tmp}"


@pytest.mark.parametrize("test_file", TEST_FILES, ids=[p.name for p in TEST_FILES])
def test_example_test_files_pass(test_file, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
