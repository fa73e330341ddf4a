"""Fleet mode: what a chunk costs, how often a host calls Redis, whether 8 hosts hold 40 MB/s.

Side by side in one run, this tree and an older commit (``--previous REF``, checked
out with ``git archive`` into a scratch directory), each case in fresh interpreters
with that tree's ``src`` first on the path, against one redis-server started here:

* ``chunk_us``: ``s.throttle(1000)`` in a session of ``Guard(coordinator=...)`` whose
  budgets all have the units (1 TB/s), and the same in a guard without a coordinator;
  the median over ``--rounds`` fresh interpreters of the best of five timeit repeats.
  ``overhead`` is what the fleet adds to a chunk.
* ``round_trips``: one host copying for ``--trip-seconds`` at a high chunk rate, every
  command its client sends counted (a counting ``redis.Redis``): the shared bucket,
  the fleet's stop flag, the breaker. Two settings: 4 KiB chunks under a 40 MB/s
  budget (about 10,000 chunks per second) and 1 KiB chunks under 1 TB/s (as many
  chunks as the CPU allows).
* ``share``: 8 processes (real processes, each its own guard and connection) copy
  64 KiB chunks under one 40 MB/s budget for ``--seconds``; the aggregate rate over
  the run after a 1 s warm-up (the shared bucket starts full: its first burst of
  0.2 s is not the rate), the same over the whole run, the largest worker's bytes
  over the smallest's, and each host's Redis round trips per second.

    python benchmarks/fleet.py --previous main~1      # writes benchmarks/results/fleet.json

Read the ratios more than the absolute figures: the machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from _previous import checkout

TOP = Path(__file__).resolve().parent.parent
SRC = str(TOP / "src")
RATE = 40_000_000
WORKERS = 8
WARMUP = 1.0

COMMON = """
import json, sys, time, timeit
import redis
import wedguard as wg
from wedguard.distributed import RedisCoordinator

class Counting(redis.Redis):
    calls = 0
    def execute_command(self, *args, **kw):
        Counting.calls += 1
        return super().execute_command(*args, **kw)

def guard(url, prefix, rate, fleet=True):
    kw = dict(rate=rate, calendar=None, sources=[], sinks=[], max_concurrent=None)
    if fleet:
        client = Counting.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25)
        kw["coordinator"] = RedisCoordinator(client, prefix=prefix)
    return wg.Guard(**kw)
"""

CHUNK_COST = (
    COMMON
    + """
g = guard({url!r}, {prefix!r}, 1e12, fleet={fleet})
with g.session() as s:
    for _ in range(100):
        s.throttle(1000)
    best = min(timeit.repeat(lambda: s.throttle(1000), number={number}, repeat=5))
print(best / {number} * 1e6)
"""
)

TRIPS = (
    COMMON
    + """
g = guard({url!r}, {prefix!r}, {rate})
with g.session() as s:
    s.throttle({chunk})
    time.sleep(0.3)
    calls0, t0, bytes0 = Counting.calls, time.monotonic(), s.bytes
    chunks = 0
    while time.monotonic() - t0 < {seconds}:
        s.throttle({chunk})
        chunks += 1
    elapsed = time.monotonic() - t0
    calls = Counting.calls - calls0
    moved = s.bytes - bytes0
print(json.dumps({{"per_s": calls / elapsed, "chunks_per_s": chunks / elapsed,
                  "MBps": moved / elapsed / 1e6}}))
"""
)

SHARE = (
    COMMON
    + """
g = guard({url!r}, {prefix!r}, {rate})
seconds = {seconds}
samples = []
with g.session() as s:
    print("ready", flush=True)
    start = float(sys.stdin.readline())  # the same start for every worker
    while time.time() < start:
        time.sleep(0.001)
    calls0 = Counting.calls
    while True:
        now = time.time()
        if now >= start + seconds:
            break
        s.throttle({chunk})
        samples.append((time.time(), s.bytes))
    calls = Counting.calls - calls0
print(json.dumps({{"samples": samples, "calls": calls}}))
"""
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=directory,
        stdout=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.RedisError:
            time.sleep(0.02)
    return proc, f"redis://127.0.0.1:{port}/0"


def run(code: str, src: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": src},
    )  # fmt: skip
    return out.stdout.strip().splitlines()[-1]


def at(samples: list[list[float]], t: float) -> float:
    """Bytes a worker had moved by time ``t`` (its last sample at or before it)."""
    moved = 0.0
    for when, total in samples:
        if when > t:
            break
        moved = total
    return moved


def share(src: str, url: str, prefix: str, seconds: float) -> dict[str, Any]:
    code = SHARE.format(url=url, prefix=prefix, rate=RATE, chunk=64 * 1024, seconds=seconds)
    env = {**os.environ, "PYTHONPATH": src}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(WORKERS)
    ]
    for p in procs:  # every worker has its guard, its connection and its session
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "ready"
    start = time.time() + 0.5
    for p in procs:
        assert p.stdin is not None
        p.stdin.write(f"{start!r}\n")
        p.stdin.flush()
    outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    end = start + seconds
    measured = [at(o["samples"], end) - at(o["samples"], start + WARMUP) for o in outs]
    whole = [at(o["samples"], end) for o in outs]
    steady = sum(measured) / (seconds - WARMUP)
    return {
        "MBps": round(steady / 1e6, 3),
        "vs_target_pct": round((steady / RATE - 1) * 100, 2),
        "whole_run_MBps": round(sum(whole) / seconds / 1e6, 3),
        "whole_run_vs_target_pct": round((sum(whole) / seconds / RATE - 1) * 100, 2),
        "fairness": round(max(measured) / max(min(measured), 1.0), 3),
        "round_trips_per_host_s": round(statistics.mean(o["calls"] for o in outs) / seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--previous", metavar="REF")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--number", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--trip-seconds", type=float, default=3.0)
    parser.add_argument("--out", default=str(TOP / "benchmarks" / "results" / "fleet.json"))
    args = parser.parse_args()
    scratch = tempfile.TemporaryDirectory()
    trees = {"current": SRC}
    if args.previous:
        trees["previous"] = checkout(args.previous, scratch.name)
    proc, url = start_redis(scratch.name)
    try:
        cost: dict[str, dict[str, list[float]]] = {t: {"fleet": [], "local": []} for t in trees}
        for r in range(args.rounds):
            for tree, src in trees.items():
                for kind in ("fleet", "local"):
                    # the previous tree calls Redis on every chunk: fewer of them
                    number = args.number if tree == "current" or kind == "local" else 500
                    code = CHUNK_COST.format(
                        url=url, prefix=f"cost{r}{tree}", fleet=kind == "fleet", number=number
                    )
                    cost[tree][kind].append(float(run(code, src)))
        chunk_us: dict[str, dict[str, float]] = {}
        for tree, kinds in cost.items():
            med = {k: statistics.median(v) for k, v in kinds.items()}
            chunk_us[tree] = {
                "fleet": round(med["fleet"], 2),
                "local": round(med["local"], 2),
                "overhead": round(med["fleet"] - med["local"], 2),
                "fleet_best": round(min(kinds["fleet"]), 2),
                "local_best": round(min(kinds["local"]), 2),
            }
        trips: dict[str, dict[str, Any]] = {}
        for tree, src in trees.items():
            trips[tree] = {}
            for name, rate, chunk in (("limited", RATE, 4096), ("unlimited", 1e12, 1024)):
                code = TRIPS.format(
                    url=url, prefix=f"trips{tree}{name}", rate=rate, chunk=chunk,
                    seconds=args.trip_seconds,
                )  # fmt: skip
                got = json.loads(run(code, src))
                trips[tree][name] = {k: round(v, 1) for k, v in got.items()}
        shares = {
            tree: share(src, url, f"share{tree}", args.seconds) for tree, src in trees.items()
        }
    finally:
        proc.kill()
        proc.wait()
        scratch.cleanup()
    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": round(os.getloadavg()[0], 1),
        "previous": args.previous,
        "rounds": args.rounds,
        "chunk_us": chunk_us,
        "round_trips": trips,
        "share": shares,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
