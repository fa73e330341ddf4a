"""The guard's costs: the hot path, copy throughput, the sampler, memory.

Run: ``python benchmarks/guard.py`` (about 2 minutes; no arguments needed).

1. Nanoseconds per ``s.throttle(n)`` when nothing limits (best of several rounds), next
   to a bare loop, wedguard's own ``TokenBucketThrottler.try_acquire`` and the peer
   token buckets ``token_bucket.Limiter.consume`` and ``pyrate_limiter``'s
   ``try_acquire``.
2. Copy throughput of 1 GiB in 1 MiB chunks, ``guard.copyfileobj`` at an unlimited
   rate (its own session each call, which starts the sampler thread), at a rate that
   never binds, and inside a session already open, against bare
   ``shutil.copyfileobj`` given the same objects, and against ``shutil.copyfileobj``
   a second time: that A/A row shows how far two identical runs differ here, the
   resolution of the whole table. Three copies: (a) a 1 GiB file to a new file, both on
   tmpfs (real file objects, what a backup does); (b) the file to ``/dev/null``; (c)
   ``/dev/zero`` to ``/dev/null`` through a source offering only ``read()``, the worst
   case: it moves memory at about 30 GiB/s, 35 µs per chunk, so every microsecond the
   guard adds per chunk shows as about 3 %. Interleaved rounds in a shuffled order, the
   mean of each one's best five; ``µs/chunk`` is the time added per chunk.
3. CPU used by the background sampler at 1 Hz with the default ``SystemSource``, while a
   session is open and idle (share of one core), with and without a stop file checked
   every 100 ms: the median of three measurements (a machine whose other tenants are
   idle makes each wake-up dearer, so single readings vary by 2-5x), and the same
   sample's cost in a warm loop.
4. Peak RSS of the process.

Peer libraries are imported lazily; a missing one is reported and skipped. The
machines are shared and noisy: read the ratios, not the absolute figures.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import random
import resource
import shutil
import statistics
import sys
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
FILE_ROUNDS = 10
SAMPLER_SECONDS = 8.0
SAMPLER_REPEATS = 3


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


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _scratch_dir() -> str:
    """tmpfs when there is room (steady: no disk), else the temporary directory."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and shutil.disk_usage(shm).free > 3 * TOTAL:
        return shm
    return tempfile.gettempdir()


def _race(
    title: str,
    runs: list[tuple[str, Callable[[], None]]],
    rounds: int,
    before: Callable[[], None] | None = None,
) -> dict[str, float]:
    """Interleaved rounds in a shuffled order; the mean of each one's best five.

    ``before`` runs untimed before each run.
    """
    times: dict[str, list[float]] = {}
    order = list(runs)
    shuffler = random.Random(1)
    for _ in range(rounds):
        # a new order each round: neither a place in the round nor the run before
        # (what it left in the page cache and the allocator) favours anyone
        shuffler.shuffle(order)
        for label, run in order:
            if before is not None:
                before()
            start = time.perf_counter()
            run()
            times.setdefault(label, []).append(time.perf_counter() - start)
    results = {label: sum(sorted(times[label])[:5]) / 5 for label, _ in runs}
    base = results[runs[0][0]]
    chunks = TOTAL / CHUNK
    print(f"  {title}")
    print(f"    {'what':46} {'GiB/s':>7} {'vs shutil':>10} {'µs/chunk':>9}")
    for label, elapsed in results.items():
        extra = (elapsed - base) / chunks * 1e6
        print(f"    {label:46} {TOTAL / elapsed / 2**30:7.2f} {base / elapsed:10.1%} {extra:+9.2f}")
    return results


def copy_throughput() -> None:
    print(
        f"2. copy {TOTAL >> 20} MiB in {CHUNK >> 10} KiB chunks, shutil.copyfileobj against "
        "guard.copyfileobj (mean of the best 5 rounds)"
    )
    unlimited = quiet_guard(rate="off")
    finite = quiet_guard(rate=1e15)
    held = quiet_guard(rate="off")
    scratch = _scratch_dir()
    src_path = os.path.join(scratch, f"wedguard-bench-src-{os.getpid()}")
    dst_path = os.path.join(scratch, f"wedguard-bench-dst-{os.getpid()}")
    block = os.urandom(CHUNK)
    with open(src_path, "wb") as f:
        for _ in range(TOTAL // CHUNK):
            f.write(block)

    def files(copy: Callable[[Any, Any], object], dst: str) -> Callable[[], None]:
        def run() -> None:
            with open(src_path, "rb") as a, open(dst, "wb") as b:
                copy(a, b)

        return run

    try:
        with held.session("open") as open_session:
            copies: list[tuple[str, Callable[[Any, Any], object]]] = [
                ("shutil.copyfileobj", lambda a, b: shutil.copyfileobj(a, b, CHUNK)),
                (
                    "shutil.copyfileobj again (A/A: the noise)",
                    lambda a, b: shutil.copyfileobj(a, b, CHUNK),
                ),
                ("guard.copyfileobj, unlimited", lambda a, b: unlimited.copyfileobj(a, b, CHUNK)),
                (
                    "guard.copyfileobj, a rate that never binds",
                    lambda a, b: finite.copyfileobj(a, b, CHUNK),
                ),
                (
                    "guard.copyfileobj, unlimited, in a session",
                    lambda a, b: held.copyfileobj(a, b, CHUNK, session=open_session),
                ),
            ]
            _race(
                f"a) a file to a new file, both on {scratch} (what a backup does)",
                [(label, files(copy, dst_path)) for label, copy in copies],
                FILE_ROUNDS,
                # the old copy's pages are freed here, not inside the next timed run
                before=lambda: _remove(dst_path),
            )
            _race(
                "b) a file to /dev/null",
                [(label, files(copy, os.devnull)) for label, copy in copies],
                FILE_ROUNDS,
            )
            with open(os.devnull, "wb", buffering=0) as sink:
                _race(
                    "c) /dev/zero to /dev/null through read() only: memory speed, the worst case",
                    [
                        (label, lambda copy=copy: copy(Zeros(TOTAL), sink))  # type: ignore[misc]
                        for label, copy in copies
                    ],
                    COPY_ROUNDS,
                )
    finally:
        _remove(src_path)
        _remove(dst_path)
        for guard in (unlimited, finite, held):
            guard.close()


def sampler_cpu() -> None:
    print(
        f"3. sampler CPU at 1 Hz, a session open and idle: median of {SAMPLER_REPEATS} "
        f"measurements of {SAMPLER_SECONDS:g} s"
    )
    src = _peer("wedguard.sources")
    if src is None:
        return
    with tempfile.TemporaryDirectory() as tmp:
        for label, stop_file in (
            ("SystemSource, no stop file", None),
            ("SystemSource + stop file every 100 ms", os.path.join(tmp, "stop")),
        ):
            shares = []
            for _ in range(SAMPLER_REPEATS):
                guard = wg.Guard(
                    calendar=None, sources=[src.SystemSource()], sinks=[], stop_file=stop_file
                )
                with guard.session("idle"):
                    time.sleep(0.5)  # let the first sample settle
                    cpu0, wall0 = time.process_time(), time.perf_counter()
                    time.sleep(SAMPLER_SECONDS)
                    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
                guard.close()
                shares.append(cpu / wall)
            each = " ".join(f"{x:.2%}" for x in shares)
            print(f"  {label:40} {statistics.median(shares):7.3%} of a core  ({each})")
        # the same work in a warm loop: what a sample costs without a second's sleep
        guard = wg.Guard(calendar=None, sources=[src.SystemSource()], sinks=[])
        with guard.session("warm"):
            guard.tick()
            n = 2000
            cpu0 = time.process_time()
            for _ in range(n):
                guard.tick()
            warm = (time.process_time() - cpu0) / n
        guard.close()
        print(f"  one sample (sources, analyser, decision) in a warm loop: {warm * 1e6:.0f} µs")


def main() -> None:
    print(f"wedguard guard benchmark, Python {sys.version.split()[0]}, {os.cpu_count()} cores")
    hot_path()
    copy_throughput()
    sampler_cpu()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"4. peak RSS {peak / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
