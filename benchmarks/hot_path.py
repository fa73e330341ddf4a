"""The hot path's cost in nanoseconds, this tree against an older commit, in one run.

Each case runs in a fresh interpreter per round (the rounds alternate the trees, so a
busy machine's drift falls on both); a case's figure is the median over rounds of the
best of five timeit repeats. Writes ``benchmarks/results/hot_path.json``.

    python benchmarks/hot_path.py [--rounds 7] [--previous REF]

Cases:
  bucket.try_acquire / bucket.acquire: a bucket that has the units (the issue's goal:
      acquire at most 1.2x try_acquire).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from _previous import checkout

SETUP = {
    "bucket": "import wedguard as wg; b = wg.TokenBucketThrottler(1e15, burst=1e14)",
}
CASES = {  # name: (setup, statement)
    "bucket_try_acquire": ("bucket", "b.try_acquire(1000)"),
    "bucket_acquire": ("bucket", "b.acquire(1000)"),
}
RUNNER = """
import timeit
{setup}
best = min(timeit.repeat(lambda: {stmt}, number={number}, repeat=5))
print(best / {number} * 1e9)
"""
SRC = str(Path(__file__).resolve().parent.parent / "src")


def once(case: str, src: str, number: int) -> float:
    setup, stmt = CASES[case]
    code = RUNNER.format(setup=SETUP[setup], stmt=stmt, number=number)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": src},
    )  # fmt: skip
    return float(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=100_000)
    parser.add_argument("--previous", metavar="REF")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "hot_path.json"))
    args = parser.parse_args()
    trees = {"current": SRC}
    scratch = tempfile.TemporaryDirectory()
    if args.previous:
        trees["previous"] = checkout(args.previous, scratch.name)
    times: dict[str, dict[str, list[float]]] = {t: {c: [] for c in CASES} for t in trees}
    for _ in range(args.rounds):
        for case in CASES:
            for tree, src in trees.items():
                times[tree][case].append(once(case, src, args.number))
    scratch.cleanup()
    ns = {
        t: {c: round(statistics.median(v), 1) for c, v in cases.items()}
        for t, cases in times.items()
    }
    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "rounds": args.rounds,
        "previous": args.previous,
        "ns": ns,
        "spread_ns": {
            t: {c: [round(min(v), 1), round(max(v), 1)] for c, v in cases.items()}
            for t, cases in times.items()
        },
        "acquire_over_try_acquire": {
            t: round(ns[t]["bucket_acquire"] / ns[t]["bucket_try_acquire"], 2) for t in ns
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for tree, cases in ns.items():
        for case, value in cases.items():
            print(f"{tree:<9} {case:<22} {value:8.1f} ns")
    print("acquire / try_acquire:", result["acquire_over_try_acquire"])


if __name__ == "__main__":
    main()
