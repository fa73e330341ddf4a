"""Cost of guarding a child process and of guard.pipe, beside the bare equivalents.

Run by hand (never by pytest)::

    PYTHONPATH=src python benchmarks/process.py

1. guard.pipe with nothing limiting, against shutil.copyfileobj on the same data
   (in memory): what the session and the chunk-by-chunk throttle cost.
2. guard.pipe at a set rate: the rate achieved against the rate asked for.
3. The monitor of a duty-cycled child: CPU seconds the guarding process spends per
   second of the child's life, against a bare loop reading the same psutil counters
   at the same cadence (the floor any cpulimit-style pacer pays); and the I/O rate the
   child achieved against the rate it was allowed.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
import time

import psutil

import wedguard as wg

WRITER = r"""
import sys, time
pad = "x" * 990
i = 0
while True:
    sys.stdout.write(f"{i:08d} {pad}\n"); sys.stdout.flush(); i += 1
    time.sleep(0.0005)
"""


def best_of(n: int, fn) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def pipe_overhead() -> list[tuple[str, float, str, float]]:
    data = os.urandom(64 * 1024 * 1024)
    guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[])

    def ours() -> None:
        guard.pipe(io.BytesIO(data), io.BytesIO(), flush=False)

    def peer() -> None:
        shutil.copyfileobj(io.BytesIO(data), io.BytesIO(), 64 * 1024)

    ours_s = best_of(5, ours)
    peer_s = best_of(5, peer)
    mb = len(data) / 1e6
    guard.close()
    return [("guard.pipe, rate off (MB/s)", mb / ours_s, "shutil.copyfileobj", mb / peer_s)]


def pipe_rate() -> tuple[float, float]:
    """Seconds taken, and the seconds the rate implies after the 0.2 s burst."""
    rate = 50e6
    data = os.urandom(100 * 1000 * 1000)
    guard = wg.Guard(rate=rate, calendar=None, sources=[], sinks=[])
    t0 = time.perf_counter()
    guard.pipe(io.BytesIO(data), io.BytesIO(), flush=False)
    took = time.perf_counter() - t0
    guard.close()
    return took, (len(data) - 0.2 * rate) / rate


def monitor_cost(seconds: float = 5.0) -> tuple[float, float, float, float]:
    rate = 200_000.0
    guard = wg.Guard(rate=rate, calendar=None, sources=[], sinks=[])
    me = psutil.Process()
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "out")
        with open(out, "wb") as f:
            child = guard.popen([sys.executable, "-c", WRITER], stdout=f)
            time.sleep(1.0)
            c0, s0, t0 = me.cpu_times(), os.path.getsize(out), time.perf_counter()
            time.sleep(seconds)
            c1, s1, t1 = me.cpu_times(), os.path.getsize(out), time.perf_counter()
            child.abort("benchmark done")
            child.wait(10)
            child.close()
            ticks = child.report().pauses
        ours = (c1.user + c1.system - c0.user - c0.system) / (t1 - t0)
        achieved = (s1 - s0) / (t1 - t0)
        # the floor: read the same counters at the same cadence, nothing else
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        p = psutil.Process(proc.pid)
        cadence = max(1, ticks) / (seconds + 1.0) * 2  # readings per second, about
        c0, t0 = me.cpu_times(), time.perf_counter()
        end = t0 + seconds
        while time.perf_counter() < end:
            with p.oneshot():
                p.io_counters()
                p.cpu_times()
            p.children(recursive=True)
            time.sleep(1.0 / cadence)
        c1, t1 = me.cpu_times(), time.perf_counter()
        proc.kill()
        proc.wait()
        floor = (c1.user + c1.system - c0.user - c0.system) / (t1 - t0)
    guard.close()
    return ours, floor, rate, achieved


def main() -> None:
    print("| operation | ours | peer | peer's | ratio |")
    print("|---|---:|---|---:|---:|")
    for name, ours, peer, theirs in pipe_overhead():
        print(f"| {name} | {ours:.0f} | {peer} | {theirs:.0f} | {ours / theirs:.2f}x |")
    took, implied = pipe_rate()
    print(
        f"| guard.pipe of 100 MB at 50 MB/s (s) | {took:.3f} | (bytes - burst) / rate | "
        f"{implied:.3f} | {took / implied:.3f}x |"
    )
    ours, floor, allowed, achieved = monitor_cost()
    print(
        f"| child monitor, duty-cycling at 200 kB/s (CPU % of one core) | {ours * 100:.2f} | "
        f"bare psutil readings, same cadence | {floor * 100:.2f} | {ours / floor:.2f}x |"
    )
    print(
        f"| child I/O while duty-cycled (kB/s) | {achieved / 1e3:.1f} | allowed | "
        f"{allowed / 1e3:.1f} | {achieved / allowed:.3f}x |"
    )


if __name__ == "__main__":
    main()
