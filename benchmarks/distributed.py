"""Eight worker processes share one 40 MB/s budget through Redis.

Side by side in one run: wedguard's RedisTokenBucket, a wedguard Guard with a
RedisCoordinator (each chunk through ``session.throttle()``: the shared bucket plus the
guard's local policies), and the `limits` library's Redis storage (fixed window and
sliding window counter). For each it prints:

* the aggregate rate the workers achieved against the target, measured for 5 s after
  a 1 s warm-up (so neither a full bucket's first burst nor a first fresh window
  counts as rate);
* the round-trip cost of one non-waiting call, in one process: the median of 40
  rounds of 100 calls, the libraries taking turns round by round;
* fairness: the largest worker's bytes over the smallest's (1.00 is perfectly fair).

    python benchmarks/distributed.py                 # starts its own redis-server
    python benchmarks/distributed.py --url redis://host:6379/0 --seconds 5

Read the ratios, not the absolute figures: the machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import redis

from wedguard.distributed import RedisTokenBucket

RATE = 40_000_000  # bytes per second, shared by all workers
CHUNK = 64 * 1024
WORKERS = 8
WARMUP = 1.0  # seconds run before measuring: the first burst and window are not the rate


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    directory = tempfile.mkdtemp(prefix="wedguard-bench-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=directory,
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(500):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.01)
    return proc, f"redis://127.0.0.1:{port}/0"


# -- one worker per library: (acquire one chunk, blocking) and (one non-waiting call) ----


def wedguard_worker(url: str, key: str) -> tuple[Callable[[int], None], Callable[[], None]]:
    bucket = RedisTokenBucket(url, key, RATE)
    probe = RedisTokenBucket(url, key + ":probe", 1e15)  # finite: every call is a round trip
    return (lambda n: bucket.acquire(n)), (lambda: probe.try_acquire(1))


def guard_worker(url: str, key: str) -> tuple[Callable[[int], None], Callable[[], None]]:
    """A Guard on a RedisCoordinator: every chunk through a session's throttle()."""
    import wedguard as wg
    from wedguard.distributed import RedisCoordinator

    def guard(prefix: str, rate: float) -> Any:
        coord = RedisCoordinator(url, prefix=prefix)
        return wg.Guard(
            rate=rate,
            calendar=None,
            breaker=None,
            sources=[],
            sinks=[],
            max_concurrent=None,
            coordinator=coord,
        )

    session = guard(key, RATE).session("bench").__enter__()
    # finite: every call is a round trip (and the guard's slow path)
    probe = guard(key + ":probe", 1e15).session("probe").__enter__()
    return (lambda n: session.throttle(n)), (lambda: probe.throttle(1))


def limits_worker(
    strategy: str,
) -> Callable[[str, str], tuple[Callable[[int], None], Callable[[], None]]]:
    def make(url: str, key: str) -> tuple[Callable[[int], None], Callable[[], None]]:
        from limits import RateLimitItemPerSecond, storage, strategies

        store = storage.RedisStorage(url)
        limiter = getattr(strategies, strategy)(store)
        item = RateLimitItemPerSecond(RATE, 1)
        big = RateLimitItemPerSecond(10**15, 1)

        def acquire(n: int) -> None:
            while not limiter.hit(item, key, cost=n):
                reset = limiter.get_window_stats(item, key).reset_time
                time.sleep(min(max(reset - time.time(), 0.001), 0.05))

        return acquire, (lambda: limiter.hit(big, key + ":probe", cost=1))

    return make


MAKERS: dict[str, Callable[[str, str], tuple[Callable[[int], None], Callable[[], None]]]] = {
    "wedguard RedisTokenBucket": wedguard_worker,
    "wedguard Guard(coordinator=...) session": guard_worker,
    "limits FixedWindow (Redis)": limits_worker("FixedWindowRateLimiter"),
    "limits SlidingWindowCounter (Redis)": limits_worker("SlidingWindowCounterRateLimiter"),
}


def worker(name: str, url: str, key: str, start: float, end: float, out: Any) -> None:
    acquire, _ = MAKERS[name](url, key)
    while time.time() < start - WARMUP:
        time.sleep(0.001)
    total = 0
    while True:
        acquire(CHUNK)
        now = time.time()
        if now > end:
            break
        if now >= start:
            total += CHUNK
    out.put(total)


def round_trip(url: str) -> dict[str, float]:
    """Seconds per non-waiting call in one process: the median of 40 rounds of 100 calls,
    the libraries taking turns round by round so that load on the machine hits all alike.
    """
    probes = {
        name: make(url, f"bench:rtt:{name}:{time.time()}")[1] for name, make in MAKERS.items()
    }
    rounds: dict[str, list[float]] = {name: [] for name in probes}
    for _ in range(40):
        for name, probe in probes.items():
            t0 = time.perf_counter()
            for _ in range(100):
                probe()
            rounds[name].append((time.perf_counter() - t0) / 100)
    return {name: statistics.median(times) for name, times in rounds.items()}


def run(name: str, url: str, seconds: float) -> dict[str, float]:
    key = f"bench:{name}:{time.time()}"
    start = time.time() + 1.5 + WARMUP
    end = start + seconds
    out: Any = mp.Queue()
    procs = [
        mp.Process(target=worker, args=(name, url, key, start, end, out)) for _ in range(WORKERS)
    ]
    for p in procs:
        p.start()
    totals = [out.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join()
    return {
        "aggregate": sum(totals) / seconds,
        "fairness": max(totals) / max(min(totals), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a Redis URL (default: start a redis-server)")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    proc = None
    url = args.url
    if url is None:
        proc, url = start_redis()
    try:
        print(
            f"{WORKERS} processes, {RATE / 1e6:g} MB/s shared, {CHUNK // 1024} KiB chunks, "
            f"{args.seconds:g} s measured after {WARMUP:g} s warm-up, {os.cpu_count()} cores\n"
        )
        print("| limiter | aggregate MB/s | vs target | round trip µs/call | fairness max/min |")
        print("|---|---:|---:|---:|---:|")
        rtt = round_trip(url)
        for name in MAKERS:
            r = run(name, url, args.seconds)
            r["rtt"] = rtt[name]
            print(
                f"| {name} | {r['aggregate'] / 1e6:.2f} | {100 * (r['aggregate'] / RATE - 1):+.1f} % "
                f"| {r['rtt'] * 1e6:.0f} | {r['fairness']:.2f} |",
                flush=True,
            )
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
