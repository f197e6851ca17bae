"""benchmarks/bench_compressed.py runs end to end and its int8 top-10 is the fp32 top-10 (no timings asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_compressed.py"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_bench_compressed_quick_runs_and_its_int8_top10_is_exact():
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "HF_HUB_OFFLINE": "1"}
    p = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--no-real"], capture_output=True, text=True, env=env, timeout=600
    )
    assert p.returncode == 0, p.stderr[-2000:]
    rows = [line.split("|") for line in p.stdout.splitlines() if "int8 exact top-10" in line]
    assert len(rows) == 2, p.stdout[-3000:]
    for cells in rows:
        assert cells[5].strip() == "1.000", cells  # recall@10 against softdb's fp32 search
    for method in ("FAISS SQ8 + IndexRefineFlat", "torch bf16 mm + topk", "numkong int8", "usearch exact int8"):
        assert method in p.stdout
    assert "SIMD paths:" in p.stdout and "memory: fp32 keys" in p.stdout
