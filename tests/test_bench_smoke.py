"""The benchmark script runs end to end (no timings are asserted: see benchmarks/)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_lookup.py"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_lookup_quick_runs_and_prints_the_table():
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    p = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--markdown"], capture_output=True, text=True, env=env, timeout=300
    )
    assert p.returncode == 0, p.stderr[-2000:]
    out = p.stdout
    header = next((line for line in out.splitlines() if line.split()[:4] == ["n", "m", "lookup", "method"]), None)
    assert header is not None, out[-2000:]
    assert "x limit" in header and "peak extra MB" in header
    for method in (
        "softdb lookup",
        "softdb lookup hard",
        "softdb kernel top-10",
        "GEMM Q@K.T (limit)",
        "softdb explain (1 query)",
        "softdb search --json (1 query)",
        "x search k=10)",
    ):
        assert method in out
    assert "| lookup | method |" in out  # the README table


@pytest.mark.timeout(300)
def test_bench_serve_runs_against_a_small_table(tmp_path):
    from softdb import SoftTable
    from softdb.text import HashEncoder

    table = tmp_path / "t"
    SoftTable.from_texts([f"note number {i} about topic {i % 5}" for i in range(30)], encoder=HashEncoder()).save(table)
    bench = BENCH.parent / "bench_serve.py"
    p = subprocess.run(
        [
            sys.executable,
            str(bench),
            "--table",
            str(table),
            "--clients",
            "2",
            "--requests",
            "5",
            "--pool",
            "6",
            "--cold",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    assert p.returncode == 0, p.stderr[-2000:]
    measured = next(line for line in p.stdout.splitlines() if line.startswith("measured:"))
    assert "n=   10" in measured and "errors 0" in measured
    assert "server RSS over the run" in p.stdout
