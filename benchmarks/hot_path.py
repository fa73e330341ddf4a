"""The hot path's cost in nanoseconds, this tree against an older commit, in one run.

Each case runs in a fresh interpreter per round (the rounds alternate the trees, so a
busy machine's drift falls on both); a case's figure is the median over rounds of the
best of five timeit repeats (``ns``), and the best over rounds too (``best_ns``: on a busy
machine the steadier figure). Writes ``benchmarks/results/hot_path.json``.

    python benchmarks/hot_path.py [--rounds 7] [--previous REF]

Cases:
  bucket.try_acquire / bucket.acquire: a bucket that has the units (the goal: acquire
      at most 1.2x try_acquire).
  session_*: ``s.throttle(100)`` when nothing binds, in a session with nothing of its
      own (also counting one operation, ``s.throttle(100, 1)``), with a cap
      (``rate``), with ``max_bytes``, with ``max_duration`` (a cutoff), with an
      ``ops_rate`` (the goal: at most 0.6 us with a cap or ``max_bytes``).
  call / protect_light / protect_watched: a plain function, the same under
      ``@guard.protect(cost=100)`` outside a session on a guard that keeps no slots,
      sinks or sources (nothing to take or count), and on a guard with its default
      slots and logging sink (a slot per call and the function's account; before, a
      session and a report per call). The goal: at most 2 us added per call.
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

GUARD = "import wedguard as wg; g = wg.Guard(rate=1e15, calendar=None, sources=[], sinks=[]"
SESSION = GUARD + ", max_concurrent=None); s = g.session('bench'{}).__enter__()"
LIGHT = ", log_events=False, max_concurrent=None, breaker=None)"
PROTECT = "; p = g.protect(cost=100)(lambda x: x)"
SETUP = {
    "bucket": "import wedguard as wg; b = wg.TokenBucketThrottler(1e15, burst=1e14)",
    "session": SESSION.format(""),
    "session_cap": SESSION.format(", rate=1e14"),
    "session_max_bytes": SESSION.format(", max_bytes=1e18"),
    "session_max_duration": SESSION.format(", max_duration=1e9"),
    "session_ops_rate": SESSION.format(", ops_rate=1e9"),
    "call": "f = lambda x: x",
    "protect_light": GUARD + LIGHT + PROTECT,
    "protect_watched": GUARD + ", breaker=None)" + PROTECT,
}
CASES = {  # name: (setup, statement, calls per repeat)
    "bucket_try_acquire": ("bucket", "b.try_acquire(1000)", 100_000),
    "bucket_acquire": ("bucket", "b.acquire(1000)", 100_000),
    "session_plain": ("session", "s.throttle(100)", 100_000),
    "session_one_op": ("session", "s.throttle(100, 1)", 100_000),
    "session_cap": ("session_cap", "s.throttle(100)", 100_000),
    "session_max_bytes": ("session_max_bytes", "s.throttle(100)", 100_000),
    "session_max_duration": ("session_max_duration", "s.throttle(100)", 100_000),
    "session_ops_rate": ("session_ops_rate", "s.throttle(100)", 100_000),
    "call": ("call", "f(1)", 100_000),
    "protect_light": ("protect_light", "p(1)", 20_000),
    "protect_watched": ("protect_watched", "p(1)", 20_000),
}
RUNNER = """
import timeit
{setup}
best = min(timeit.repeat(lambda: {stmt}, number={number}, repeat=5))
print(best / {number} * 1e9)
"""
SRC = str(Path(__file__).resolve().parent.parent / "src")


def once(case: str, src: str, scale: float) -> float:
    setup, stmt, number = CASES[case]
    number = max(1, int(number * scale))
    code = RUNNER.format(setup=SETUP[setup], stmt=stmt, number=number)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": src},
    )  # fmt: skip
    return float(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--scale", type=float, default=1.0, help="calls per repeat, scaled")
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
                times[tree][case].append(once(case, src, args.scale))
    scratch.cleanup()
    ns = {
        t: {c: round(statistics.median(v), 1) for c, v in cases.items()}
        for t, cases in times.items()
    }
    best = {t: {c: round(min(v), 1) for c, v in cases.items()} for t, cases in times.items()}
    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "rounds": args.rounds,
        "previous": args.previous,
        "ns": ns,
        "best_ns": best,
        "spread_ns": {
            t: {c: [round(min(v), 1), round(max(v), 1)] for c, v in cases.items()}
            for t, cases in times.items()
        },
        "acquire_over_try_acquire": {
            t: round(ns[t]["bucket_acquire"] / ns[t]["bucket_try_acquire"], 2) for t in ns
        },
        "best_acquire_over_try_acquire": {
            t: round(best[t]["bucket_acquire"] / best[t]["bucket_try_acquire"], 2) for t in best
        },
        "protect_added_ns": {
            t: {
                "light": round(ns[t]["protect_light"] - ns[t]["call"], 1),
                "watched": round(ns[t]["protect_watched"] - ns[t]["call"], 1),
            }
            for t in ns
        },
        "best_protect_added_ns": {
            t: {
                "light": round(best[t]["protect_light"] - best[t]["call"], 1),
                "watched": round(best[t]["protect_watched"] - best[t]["call"], 1),
            }
            for t in best
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for tree, cases in ns.items():
        for case, value in cases.items():
            print(f"{tree:<9} {case:<22} {value:10.1f} ns")
    print("acquire / try_acquire:", result["acquire_over_try_acquire"])
    print("protect, added per call (ns):", result["protect_added_ns"])


if __name__ == "__main__":
    main()
