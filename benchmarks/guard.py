"""The guard's costs: the hot path, copy throughput, the sampler, memory.

Run: ``python benchmarks/guard.py`` (about 35 s; no arguments needed).

1. Nanoseconds per ``s.throttle(n)`` when nothing limits (best of several rounds), next
   to a bare loop, wedguard's own ``TokenBucketThrottler.try_acquire`` and the peer
   token buckets ``token_bucket.Limiter.consume`` and ``pyrate_limiter``'s
   ``try_acquire``.
2. Copy throughput of 1 GiB in 1 MiB chunks read from ``/dev/zero`` and written to
   ``/dev/null``: ``guard.copyfileobj`` at an unlimited rate and at a rate that never
   binds (each call opens and closes its own session, starting the sampler thread),
   and inside a session that is already open, against bare ``shutil.copyfileobj``;
   interleaved rounds in rotating order, the mean of each one's best five. A 1 MiB chunk takes about 35 µs
   here, so every microsecond the guard adds per chunk shows as about 3 %.
3. CPU used by the background sampler at 1 Hz with the default ``SystemSource``, while a
   session is open and idle (share of one core), with and without a stop file checked
   every 100 ms.
4. Peak RSS of the process.

Peer libraries are imported lazily; a missing one is reported and skipped. The
machines are shared and noisy: read the ratios, not the absolute figures.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder comes first on sys.path, and benchmarks/calendar.py
# would shadow the standard library's calendar module: drop it.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import importlib
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

import wedguard as wg

CALLS = 200_000
ROUNDS = 7
CHUNK = 1 << 20
TOTAL = 1 << 30
COPY_ROUNDS = 30
SAMPLER_SECONDS = 10.0


def _peer(name: str) -> Any | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        print(f"  ({name} is not installed; skipped)")
        return None


def _best_ns(fn: Callable[[], None], calls: int = CALLS, rounds: int = ROUNDS) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter_ns()
        fn()
        best = min(best, (time.perf_counter_ns() - start) / calls)
    return best


def quiet_guard(**kw: Any) -> wg.Guard:
    kw.setdefault("calendar", None)
    kw.setdefault("sources", [])
    kw.setdefault("sinks", [])
    kw.setdefault("breaker", None)
    return wg.Guard(**kw)


def hot_path() -> None:
    print("1. ns per call when nothing limits (n = 64 KiB), best of", ROUNDS, "rounds")
    n = 65536
    loop = range(CALLS)
    rows: list[tuple[str, float]] = []

    def bare() -> None:
        f = int.__add__
        for _ in loop:
            f(n, 0)

    rows.append(("bare loop with one call", _best_ns(bare)))

    bucket = wg.TokenBucketThrottler(1e15)

    def wg_bucket() -> None:
        f = bucket.try_acquire
        for _ in loop:
            f(n)

    rows.append(("wedguard TokenBucketThrottler.try_acquire", _best_ns(wg_bucket)))

    for label, rate in (("unlimited rate", "off"), ("rate that never binds", 1e15)):
        guard = quiet_guard(rate=rate)
        with guard.session("bench") as s:

            def session_throttle(s: wg.Session = s) -> None:
                f = s.throttle
                for _ in loop:
                    f(n)

            rows.append((f"wedguard s.throttle(n), {label}", _best_ns(session_throttle)))
        guard.close()

    tb = _peer("token_bucket")
    if tb is not None:
        limiter = tb.Limiter(10**15, 10**15, tb.MemoryStorage())

        def peer_tb() -> None:
            f = limiter.consume
            for _ in loop:
                f(b"k", n)

        rows.append(("token_bucket Limiter.consume", _best_ns(peer_tb)))

    prl = _peer("pyrate_limiter")
    if prl is not None:
        try:
            limiter2 = prl.Limiter(prl.Rate(10**12, prl.Duration.SECOND))

            def peer_prl() -> None:
                f = limiter2.try_acquire
                for _ in range(CALLS // 10):
                    f("k")

            rows.append(("pyrate_limiter Limiter.try_acquire", _best_ns(peer_prl, CALLS // 10, 3)))
        except Exception as exc:  # API differences between versions
            print(f"  (pyrate_limiter skipped: {exc})")

    base = rows[0][1]
    print(f"  {'what':46} {'ns/call':>8} {'minus bare':>11}")
    for label, ns in rows:
        print(f"  {label:46} {ns:8.0f} {ns - base:11.0f}")


class Zeros:
    """``total`` bytes read from ``/dev/zero`` (a real kernel copy per chunk, no disk).

    It offers ``read`` only, so shutil and the guard do the same work per chunk.
    """

    def __init__(self, total: int) -> None:
        self.left = total
        self.raw = open("/dev/zero", "rb", buffering=0)  # noqa: SIM115

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            self.raw.close()
            return b""
        data: bytes = self.raw.read(min(n, self.left))
        self.left -= len(data)
        return data


def copy_throughput() -> None:
    print(
        f"2. copy {TOTAL >> 20} MiB in {CHUNK >> 10} KiB chunks to /dev/null, mean of the best 5 of {COPY_ROUNDS}"
    )
    unlimited = quiet_guard(rate="off")
    finite = quiet_guard(rate=1e15)
    held = quiet_guard(rate="off")
    times: dict[str, list[float]] = {}
    with open(os.devnull, "wb", buffering=0) as sink, held.session("open") as open_session:
        runs: list[tuple[str, Callable[[], None]]] = [
            ("shutil.copyfileobj", lambda: shutil.copyfileobj(Zeros(TOTAL), sink, CHUNK)),
            (
                "guard.copyfileobj, unlimited",
                lambda: unlimited.copyfileobj(Zeros(TOTAL), sink, CHUNK),
            ),
            (
                "guard.copyfileobj, rate never binds",
                lambda: finite.copyfileobj(Zeros(TOTAL), sink, CHUNK),
            ),
            (
                "guard.copyfileobj, unlimited, in a session",
                lambda: held.copyfileobj(Zeros(TOTAL), sink, CHUNK, session=open_session),
            ),
        ]
        for i in range(COPY_ROUNDS):
            k = i % len(runs)
            for label, run in runs[k:] + runs[:k]:  # rotate: no order bias
                start = time.perf_counter()
                run()
                times.setdefault(label, []).append(time.perf_counter() - start)
    # the mean of each one's best five rounds: steadier than the single best on a
    # shared machine
    results = {label: sum(sorted(t)[:5]) / 5 for label, t in times.items()}
    base = results["shutil.copyfileobj"]
    print(f"  {'what':44} {'GiB/s':>8} {'vs shutil':>10}")
    for label, elapsed in results.items():
        print(f"  {label:44} {TOTAL / elapsed / 2**30:8.2f} {base / elapsed:10.1%}")
    for guard in (unlimited, finite, held):
        guard.close()


def sampler_cpu() -> None:
    print(f"3. sampler CPU at 1 Hz over {SAMPLER_SECONDS:g} s, session open and idle")
    src = _peer("wedguard.sources")
    if src is None:
        return
    with tempfile.TemporaryDirectory() as tmp:
        for label, stop_file in (
            ("SystemSource, no stop file", None),
            ("SystemSource + stop file every 100 ms", os.path.join(tmp, "stop")),
        ):
            guard = wg.Guard(
                calendar=None, sources=[src.SystemSource()], sinks=[], stop_file=stop_file
            )
            with guard.session("idle"):
                time.sleep(0.5)  # let the first sample settle
                cpu0, wall0 = time.process_time(), time.perf_counter()
                time.sleep(SAMPLER_SECONDS)
                cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            guard.close()
            print(f"  {label:40} {cpu / wall:8.3%} of a core")


def main() -> None:
    print(f"wedguard guard benchmark, Python {sys.version.split()[0]}, {os.cpu_count()} cores")
    hot_path()
    copy_throughput()
    sampler_cpu()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"4. peak RSS {peak / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
