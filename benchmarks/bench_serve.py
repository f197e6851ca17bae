"""Load benchmark of `softdb serve`: concurrent clients against a stdlib-corpus server on 127.0.0.1.

The server runs in its own process (``softdb serve --corpus stdlib --port 0``, the real
all-MiniLM-L6-v2), so its memory can be sampled alone (VmRSS from /proc every 0.05 s).
Each client is a process of its own (so no client waits on another's GIL) with one
keep-alive connection; it times each request from send to the last byte of the answer.

Phases (all k = 10, soft mode, temperature drawn from the slider's grid):

1. warm-up: every query of the pool once (the encoder runs; the server keeps the
   embedding in its in-memory cache);
2. **the measured run**: CLIENTS clients × REQUESTS requests, each a random pool query
   at a random grid temperature (what the page sends as people type and move the
   slider): p50 / p99 / max latency, error count, throughput, server RSS over the run;
3. cold queries: queries never seen before, so every request runs the model (the
   cost of a new query under the same concurrency).

Usage::

    python benchmarks/bench_serve.py [--clients 8] [--requests 250] [--pool 200]

Prints the load average of the machine before and after: on a shared machine the
latencies move with it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
import urllib.parse

import numpy as np

TOPICS = [
    "read a csv file",
    "parse command line arguments",
    "compress data with gzip",
    "send an email",
    "regular expression matching",
    "serialize objects to bytes",
    "current date and time",
    "walk a directory tree",
    "run a shell command",
    "hash a password",
    "open a zip archive",
    "parse json text",
    "format a string",
    "sort a list",
    "random numbers",
    "thread pool",
    "read a config file",
    "http request",
    "unit testing",
    "logging messages",
    "temporary files",
    "copy a file",
    "decode base64",
    "measure elapsed time",
    "sqlite database",
]
STYLES = [
    "how do I {}",
    "{}",
    "{} in python",
    "best way to {}",
    "{} quickly",
    "help me {}",
    "{} example",
    "i want to {}",
]


def pool_of_queries(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = sorted({s.format(t) for t in TOPICS for s in STYLES})
    rng.shuffle(out)
    return out[:n]


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def start_server(table: str | None = None) -> tuple[subprocess.Popen, str, int]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    source = ["--table", table] if table else ["--corpus", "stdlib"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "softdb.cli", "serve", *source, "--port", "0", "--quiet"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            raise RuntimeError(f"server exited with {proc.wait()}")
        m = re.search(r"serving \d+ rows at http://127\.0\.0\.1:(\d+)/", line)
        if m:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # drain
            return proc, "127.0.0.1", int(m.group(1))
    proc.kill()
    raise RuntimeError("server did not start in 900 s")


def _client(args: tuple[str, int, list[str]]) -> tuple[list[float], list[str]]:
    """One client: its requests in order on one keep-alive connection; latencies (s) and errors."""
    host, port, paths = args
    conn = http.client.HTTPConnection(host, port, timeout=60)
    lat, bad = [], []
    for p in paths:
        t0 = time.perf_counter()
        try:
            conn.request("GET", p)
            resp = conn.getresponse()
            body = resp.read()
            ok = resp.status == 200 and len(json.loads(body)["hits"]) == 10
        except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
            ok, body = False, repr(exc).encode()
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=60)
        lat.append(time.perf_counter() - t0)
        if not ok:
            bad.append(body[:200].decode("utf-8", "replace"))
    conn.close()
    return lat, bad


def run_clients(host: str, port: int, jobs: list[list[str]]) -> tuple[list[float], int, list[str]]:
    """Each job list runs in its own client process, all at once; latencies (s), error count, first errors."""
    import multiprocessing as mp

    with mp.get_context("fork").Pool(len(jobs)) as pool:
        results = pool.map(_client, [(host, port, j) for j in jobs])
    lat = [x for r in results for x in r[0]]
    errors = [e for r in results for e in r[1]]
    return lat, len(errors), errors[:3]


def path(q: str, tau: float) -> str:
    return "/api/search?" + urllib.parse.urlencode({"q": q, "k": 10, "temperature": repr(tau), "mode": "soft"})


def summary(name: str, lat: list[float], errors: int, wall: float) -> None:
    ms = np.array(lat) * 1e3
    print(
        f"{name:<34} n={len(ms):>5}  p50 {np.percentile(ms, 50):7.1f} ms  p99 {np.percentile(ms, 99):7.1f} ms  "
        f"max {ms.max():7.1f} ms  errors {errors}  {len(ms) / wall:6.1f} req/s"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=250, help="requests per client in the measured run")
    ap.add_argument("--pool", type=int, default=200, help="distinct queries in the measured run")
    ap.add_argument("--cold", type=int, default=10, help="never-seen queries per client in the cold phase")
    ap.add_argument("--table", help="serve this saved table instead of the stdlib corpus (a smoke test)")
    ap.add_argument("--repeat", type=int, default=1, help="run the measured phase this many times (fresh draws)")
    args = ap.parse_args()

    print(f"machine: {os.cpu_count()} cores, load average before {os.getloadavg()}")
    t0 = time.perf_counter()
    proc, host, port = start_server(args.table)
    print(
        f"server pid {proc.pid} on {host}:{port}, up in {time.perf_counter() - t0:.1f} s "
        f"({args.table or 'stdlib corpus, all-MiniLM-L6-v2'}), RSS {rss_kb(proc.pid) / 1024:.0f} MiB"
    )
    try:
        conn = http.client.HTTPConnection(host, port, timeout=60)
        conn.request("GET", "/api/health")
        health = json.loads(conn.getresponse().read())
        conn.close()
        tau0 = health["temperature"]
        grid = tau0 * np.exp2(np.arange(-40, 41) / 8)
        print(f"table: {health['rows']} rows x {health['dim']}, τ0 = {tau0}")
        queries = pool_of_queries(args.pool)
        rng = random.Random(1)

        t = time.perf_counter()
        lat, err, first = run_clients(
            host, port, [[path(q, tau0) for q in queries[i :: args.clients]] for i in range(args.clients)]
        )
        summary("warm-up (each pool query once)", lat, err, time.perf_counter() - t)

        # one never-seen query loads the model (the on-disk embedding cache may hold the pool's queries)
        tag = f"{os.getpid()}-{time.time_ns()}"
        t = time.perf_counter()
        lat, err, _ = run_clients(host, port, [[path(f"load the model {tag}", tau0)]])
        print(
            f"first never-seen query (model load if not yet loaded): {lat[0] * 1e3:.0f} ms, errors {err}, "
            f"server RSS now {rss_kb(proc.pid) / 1024:.0f} MiB"
        )

        p99s = []
        for rep in range(args.repeat):
            jobs = [
                [path(rng.choice(queries), float(rng.choice(grid))) for _ in range(args.requests)]
                for _ in range(args.clients)
            ]
            samples: list[tuple[float, int]] = []
            stop = threading.Event()

            def sample(stop: threading.Event = stop, samples: list[tuple[float, int]] = samples) -> None:
                t_start = time.perf_counter()
                while not stop.is_set():
                    samples.append((time.perf_counter() - t_start, rss_kb(proc.pid)))
                    stop.wait(0.05)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            t = time.perf_counter()
            lat, err, first = run_clients(host, port, jobs)
            wall = time.perf_counter() - t
            stop.set()
            sampler.join()
            p99s.append(float(np.percentile(np.array(lat) * 1e3, 99)))
            summary(
                f"measured: {args.clients} clients x {args.requests}" + (f" #{rep + 1}" if args.repeat > 1 else ""),
                lat,
                err,
                wall,
            )
            if first:
                print("  first errors:", first)
            rss = np.array([s[1] for s in samples]) / 1024  # MiB
            q = max(1, len(rss) // 4)
            print(
                f"server RSS over the run ({len(rss)} samples every 0.05 s): start {rss[0]:.1f} MiB, end "
                f"{rss[-1]:.1f} MiB, min {rss.min():.1f}, max {rss.max():.1f}; mean of first quarter "
                f"{rss[:q].mean():.1f} vs last quarter {rss[-q:].mean():.1f} MiB"
            )
            print("  RSS samples (MiB):", " ".join(f"{x:.0f}" for x in rss[:: max(1, len(rss) // 16)]))
            print(f"  load average now {os.getloadavg()}")
        if args.repeat > 1:
            print(
                f"p99 of the {args.repeat} measured runs: {', '.join(f'{x:.1f}' for x in p99s)} ms; "
                f"median {float(np.median(p99s)):.1f} ms"
            )

        cold = [
            [path(f"{rng.choice(STYLES).format(rng.choice(TOPICS))} #{tag}-{c}-{i}", tau0) for i in range(args.cold)]
            for c in range(args.clients)
        ]
        t = time.perf_counter()
        lat, err, _ = run_clients(host, port, cold)
        summary(f"cold: {args.clients} clients x {args.cold} new", lat, err, time.perf_counter() - t)
        print(f"server RSS after the cold phase {rss_kb(proc.pid) / 1024:.1f} MiB")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    print(f"load average after {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
