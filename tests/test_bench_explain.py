"""benchmarks/bench_explain.py runs end to end and prints its rows (no timings are asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_explain.py"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_explain_small_runs_and_prints_both_cases():
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONPATH": str(BENCH.parents[1])}
    p = subprocess.run(
        [sys.executable, str(BENCH), "--n", "70000", "--d", "16", "--repeats", "1", "--breakdown"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    out = p.stdout
    assert "numba " in out.splitlines()[0]  # the machine line names numba's version
    for case in ("dot, ‖q‖ = 2.2, τ = 0.05", "cosine, default τ"):
        for method in ("GEMV keys @ q (limit)", "search(k=10)", "explain(k=10)", "explain, numpy loop"):
            assert f"| {case} | {method} |" in out, out
    assert "compiled loop (score + online softmax + blend)" in out
