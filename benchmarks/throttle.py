"""Token bucket benchmark: wedguard's TokenBucketThrottler side by side with its peers.

Run it with ``python benchmarks/throttle.py`` (or ``nox -s bench -- throttle``). It
prints four tables, with ratios to a 20-line lock-protected bucket (the floor):

1. the cost of a successful non-blocking acquire on one thread (weight 1 and
   65,536) and the acquires per second of 8 threads sharing one bucket;
2. accuracy on the real clock: blocking acquires of 64 units at 2,000 units/s and of
   64 KiB at 8 MB/s for a few seconds, after the bucket is drained: achieved/target
   over the whole run and over its second half, and the most granted in any 100 ms
   window, in units of (0.2 s burst + one chunk);
3. the overhead of throttling a memory copy loop at an unlimited rate;
4. contention: 8 threads racing for a bucket that does not refill (exact admission,
   also with ``sys.setswitchinterval(1e-6)``), and false denials: non-blocking calls
   refused while the bucket has plenty.

Peers are imported lazily and reported as "not installed" when missing:
pyrate-limiter, limits (moving and fixed window, in memory), aiolimiter and
token-bucket. Single-thread costs are CPU time of the calling thread (robust on a
shared machine); everything else is wall time. This is a script, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import inspect
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Measure the source tree this script sits in, even if another copy is installed.
_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "src")
if os.path.isdir(os.path.join(_SRC, "wedguard")):
    sys.path.insert(0, os.path.abspath(_SRC))
import wedguard  # noqa: E402

BIG = 10**12  # a rate and burst that never run out during a measurement


class NotInstalled(Exception):
    pass


@dataclass
class Limiter:
    """One library's bucket seen through a common face."""

    try_acquire: Callable[[int], bool] | None  # non-blocking; None: not offered
    acquire: Callable[[int], object] | None  # blocking (sync)
    acquire_async: Callable[[int], Any] | None = None  # blocking (async)
    threads: bool = True  # may be shared by threads
    close: Callable[[], object] = lambda: None
    notes: list[str] = field(default_factory=list)


# -- the floor: a 20-line lock-protected bucket -------------------------------------------


class FloorBucket:
    """The simplest correct thread-safe token bucket (no FIFO, no debt, no async)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tokens = rate, burst, burst
        self.t = time.monotonic()
        self.lock = threading.Lock()

    def try_acquire(self, n: float = 1) -> bool:
        with self.lock:
            now = time.monotonic()
            tokens = self.tokens + (now - self.t) * self.rate
            if tokens > self.burst:
                tokens = self.burst
            self.t = now
            if tokens >= n:
                self.tokens = tokens - n
                return True
            self.tokens = tokens
            return False

    def acquire(self, n: float = 1) -> None:
        while not self.try_acquire(n):
            with self.lock:
                short = n - self.tokens - (time.monotonic() - self.t) * self.rate
            time.sleep(max(short / self.rate, 0.0))


# -- adapters -------------------------------------------------------------------------------


def make_wedguard(rate: float, burst: float) -> Limiter:
    bucket = wedguard.TokenBucketThrottler(rate, burst=burst)
    return Limiter(bucket.try_acquire, bucket.acquire, bucket.acquire_async)


def make_floor(rate: float, burst: float) -> Limiter:
    bucket = FloorBucket(rate, burst)
    return Limiter(bucket.try_acquire, bucket.acquire)


def _poll(try_acquire: Callable[[int], bool]) -> Callable[[int], None]:
    """Blocking acquire for a library that has none: retry every millisecond."""

    def acquire(n: int) -> None:
        while not try_acquire(n):
            time.sleep(0.001)

    return acquire


def make_pyrate(rate: float, burst: float) -> Limiter:
    try:
        import pyrate_limiter as pl
    except ImportError:
        raise NotInstalled from None
    # limit `burst` per (burst / rate) seconds: the same long-run rate and burst
    interval_ms = max(1, round(1000 * burst / rate)) if rate > 0 else 86_400_000
    limit = max(1, round(burst))
    limiter: Any
    params = inspect.signature(pl.Limiter.try_acquire).parameters
    if "blocking" in params:  # v4: try_acquire(name, weight, blocking=, timeout=)
        limiter = pl.Limiter(pl.Rate(limit, interval_ms))
        try_acquire = functools.partial(limiter.try_acquire, "k", blocking=False)
        acquire = functools.partial(limiter.try_acquire, "k")
    else:  # v3: Limiter(rate, raise_when_fail=False, max_delay=ms)
        limiter = pl.Limiter(pl.Rate(limit, interval_ms), raise_when_fail=False)
        blocking = pl.Limiter(pl.Rate(limit, interval_ms), raise_when_fail=False, max_delay=10_000)
        try_acquire = functools.partial(limiter.try_acquire, "k")
        acquire = functools.partial(blocking.try_acquire, "k")
    return Limiter(try_acquire, acquire, close=getattr(limiter, "close", lambda: None))


def _make_limits(strategy: str, rate: float, burst: float) -> Limiter:
    try:
        from limits import RateLimitItemPerDay, RateLimitItemPerSecond, storage, strategies
    except ImportError:
        raise NotInstalled from None
    # limits counts per whole seconds: the nearest is `rate` per second
    item = RateLimitItemPerSecond(round(rate)) if rate > 0 else RateLimitItemPerDay(round(burst))
    cls = (
        strategies.MovingWindowRateLimiter
        if strategy == "moving"
        else strategies.FixedWindowRateLimiter
    )
    hit = cls(storage.MemoryStorage()).hit

    def try_acquire(n: int) -> bool:
        return hit(item, "k", cost=n)

    return Limiter(try_acquire, _poll(try_acquire))


def make_limits_moving(rate: float, burst: float) -> Limiter:
    return _make_limits("moving", rate, burst)


def make_limits_fixed(rate: float, burst: float) -> Limiter:
    return _make_limits("fixed", rate, burst)


def make_aiolimiter(rate: float, burst: float) -> Limiter:
    try:
        from aiolimiter import AsyncLimiter
    except ImportError:
        raise NotInstalled from None
    limiter = AsyncLimiter(burst, burst / rate if rate > 0 else 1e9)
    return Limiter(None, None, limiter.acquire, threads=False)


def make_token_bucket(rate: float, burst: float) -> Limiter:
    try:
        import token_bucket
    except ImportError:
        raise NotInstalled from None
    limiter = token_bucket.Limiter(
        rate if rate > 0 else 1e-9, int(burst), token_bucket.MemoryStorage()
    )
    try_acquire = functools.partial(limiter.consume, "k")
    return Limiter(try_acquire, _poll(try_acquire))


LIBRARIES: dict[str, Callable[[float, float], Limiter]] = {
    "floor (20 lines)": make_floor,
    "wedguard": make_wedguard,
    "pyrate-limiter": make_pyrate,
    "limits moving": make_limits_moving,
    "limits fixed": make_limits_fixed,
    "aiolimiter": make_aiolimiter,
    "token-bucket": make_token_bucket,
}
HEAVY = {"pyrate-limiter", "limits moving"}  # keep one record per unit: cap the units


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in ("wedguard", "pyrate-limiter", "limits", "aiolimiter", "token-bucket"):
        try:
            out.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            out.append(f"{dist} not installed")
    return ", ".join(out)


def make(name: str, rate: float, burst: float) -> Limiter | None:
    try:
        return LIBRARIES[name](rate, burst)
    except NotInstalled:
        return None


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    sys.stdout.flush()


def ratio(x: float, floor: float) -> str:
    return f"{x / floor:.2f}x" if floor > 0 and math.isfinite(x) else "-"


# -- 1. cost of a successful acquire ----------------------------------------------------------


def _batch_ns(f: Callable[[int], bool], weight: int, batch: int) -> float:
    """CPU ns of the calling thread per call, over one batch of successful calls."""
    t = time.thread_time()
    for _ in range(batch):
        if not f(weight):
            raise RuntimeError("a success was expected")
    return (time.thread_time() - t) / batch * 1e9


async def _batch_ns_async(f: Callable[[int], Any], weight: int, batch: int) -> float:
    t = time.thread_time()
    for _ in range(batch):
        await f(weight)
    return (time.thread_time() - t) / batch * 1e9


def run_threads(n: int, target: Callable[[int], object]) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def threaded_rate(lim: Limiter, seconds: float) -> tuple[float, int]:
    """Successful acquires per second with 8 threads, and how many calls said no."""
    f = lim.try_acquire
    assert f is not None
    ok = [0] * 8
    denied = [0] * 8
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        barrier.wait()
        end = time.monotonic() + seconds
        good = bad = 0
        while time.monotonic() < end:
            for _ in range(100):
                if f(1):
                    good += 1
                else:
                    bad += 1
        ok[i], denied[i] = good, bad

    t = time.perf_counter()
    run_threads(8, worker)
    return sum(ok) / (time.perf_counter() - t), sum(denied)


def section_cost(rounds: int, seconds: float) -> None:
    """Interleaved rounds (every library in turn), best batch of each: noise on a shared
    machine hits all alike. Libraries that keep a record per unit stop at 10**7 units."""
    weights = (1, 65536)
    batches = {1: 1000, 65536: 20}
    sync: dict[tuple[str, int], Limiter] = {}
    asynchronous: dict[tuple[str, int], Limiter] = {}
    rows = []
    for name in LIBRARIES:
        for w in weights:
            lim = make(name, BIG, BIG)
            if lim is None:
                break
            (sync if lim.try_acquire is not None else asynchronous)[name, w] = lim
        else:
            continue
        rows.append([name, "not installed", "", "", "", ""])
    best = dict.fromkeys([*sync, *asynchronous], math.inf)
    units = dict.fromkeys(best, 0)
    for _ in range(rounds):
        for (name, w), lim in sync.items():
            if units[name, w] < (1e7 if name in HEAVY else math.inf):
                assert lim.try_acquire is not None
                best[name, w] = min(best[name, w], _batch_ns(lim.try_acquire, w, batches[w]))
                units[name, w] += w * batches[w]

    async def run_async() -> None:
        for _ in range(rounds):
            for (name, w), lim in asynchronous.items():
                assert lim.acquire_async is not None
                ns = await _batch_ns_async(lim.acquire_async, w, batches[w])
                best[name, w] = min(best[name, w], ns)

    asyncio.run(run_async())
    for lim in sync.values():
        lim.close()
    per_s: dict[str, float] = {}
    for name, _ in sync:
        if name not in per_s:
            lim = make(name, BIG, BIG)
            assert lim is not None
            per_s[name], _ = threaded_rate(lim, seconds)
            lim.close()
    floor = "floor (20 lines)"
    for name in LIBRARIES:
        if (name, 1) not in best:
            continue
        threaded = per_s.get(name, math.nan)
        rows.append(
            [
                name + (" (async)" if (name, 1) in asynchronous else ""),
                f"{best[name, 1]:,.0f}",
                ratio(best[name, 1], best[floor, 1]),
                f"{best[name, 65536]:,.0f}",
                ratio(best[name, 65536], best[floor, 65536]),
                f"{threaded:,.0f} ({ratio(threaded, per_s[floor])})"
                if math.isfinite(threaded)
                else "n/a (asyncio only)",
            ]
        )
    table(
        "1. Successful non-blocking acquire: CPU ns per call on one thread, and 8 threads",
        ["library", "ns, w=1", "vs floor", "ns, w=65,536", "vs floor", "acquires/s, 8 threads"],
        rows,
    )


# -- 2. accuracy on the real clock ----------------------------------------------------------


def _drain_and_run(lim: Limiter, chunk: int, seconds: float) -> list[tuple[float, int]]:
    """Drain the bucket, then acquire ``chunk`` for ``seconds``; grants as (t, n)."""
    acquire = lim.acquire
    assert acquire is not None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # drain: until an acquire has to wait
        t = time.monotonic()
        acquire(chunk)
        if time.monotonic() - t > 0.002:
            break
    t0 = time.monotonic()
    grants = [(t0, 0)]
    while True:
        acquire(chunk)
        now = time.monotonic()
        grants.append((now, chunk))
        if now - t0 >= seconds:
            return grants


async def _drain_and_run_async(lim: Limiter, chunk: int, seconds: float) -> list[tuple[float, int]]:
    acquire = lim.acquire_async
    assert acquire is not None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        t = time.monotonic()
        await acquire(chunk)
        if time.monotonic() - t > 0.002:
            break
    t0 = time.monotonic()
    grants = [(t0, 0)]
    while True:
        await acquire(chunk)
        now = time.monotonic()
        grants.append((now, chunk))
        if now - t0 >= seconds:
            return grants


def accuracy(grants: list[tuple[float, int]], rate: float) -> tuple[float, float, float]:
    """(achieved/target whole run, second half, most units in any 100 ms window)."""
    t0, t_end = grants[0][0], grants[-1][0]
    total = sum(n for _, n in grants)
    whole = total / (t_end - t0) / rate
    # grant to grant: from the first grant after the middle to the last one
    half = t0 + (t_end - t0) / 2
    i = next(k for k, (t, _) in enumerate(grants) if t >= half)
    span = t_end - grants[i][0]
    after = sum(n for _, n in grants[i + 1 :])
    second = after / span / rate if span > 0 else math.inf
    best = 0
    j = 0
    window = 0
    for t, n in grants:  # every window [t - 0.1, t], by two pointers
        window += n
        while grants[j][0] < t - 0.1:
            window -= grants[j][1]
            j += 1
        best = max(best, window)
    return whole, second, best


CASES = [("64 units at 2,000/s", 2000.0, 64), ("64 KiB at 8 MB/s", 8e6, 65536)]


def section_accuracy(seconds: float) -> None:
    rows = []
    for name in LIBRARIES:
        results: list[tuple[float, float, float] | str] = ["not installed"] * 2

        def run(k: int, name: str = name, results: list[Any] = results) -> None:
            _, rate, chunk = CASES[k]
            burst = 0.2 * rate
            lim = make(name, rate, burst)
            if lim is None:
                return
            try:
                if lim.acquire is None:
                    grants = asyncio.run(_drain_and_run_async(lim, chunk, seconds))
                else:
                    grants = _drain_and_run(lim, chunk, seconds)
                results[k] = accuracy(grants, rate)
            except Exception as exc:
                results[k] = f"failed: {type(exc).__name__}"
            finally:
                lim.close()

        run_threads(2, run)  # both cases of one library at once: half the wall time
        for k, (label, rate, chunk) in enumerate(CASES):
            res = results[k]
            if isinstance(res, str):
                rows.append([name, label, res, "", ""])
                continue
            whole, second, best = res
            rows.append(
                [
                    name,
                    label,
                    f"{whole:.3f}",
                    f"{second:.3f}",
                    f"{best / (0.2 * rate + chunk):.2f}",
                ]
            )
    table(
        f"2. Accuracy on the real clock: blocking acquires for {seconds:g} s after draining"
        " (goal: 1.00 +/- 0.01; window <= 1.00)",
        [
            "library",
            "case",
            "achieved/target",
            "second half",
            "max 100 ms / (burst + chunk)",
        ],
        rows,
    )


# -- 3. copy loop overhead ----------------------------------------------------------------


def section_copy(repeats: int) -> None:
    size = 1 << 20  # a cache-sized buffer copied 32 times: the CPU cost, not the RAM's
    passes = 32
    src = memoryview(bytes(range(256)) * (size // 256))
    dst = bytearray(size)

    def copy(chunk: int, acquire: Callable[[int], object] | None) -> float:
        units = chunk // 1024  # everyone counts KiB
        offsets = range(0, size, chunk)
        t = time.thread_time()
        for _ in range(passes):
            if acquire is None:
                for off in offsets:
                    dst[off : off + chunk] = src[off : off + chunk]
            else:
                for off in offsets:
                    acquire(units)
                    dst[off : off + chunk] = src[off : off + chunk]
        return (time.thread_time() - t) / passes

    unlimited = wedguard.TokenBucketThrottler(math.inf)
    candidates: list[tuple[str, Callable[[int], object] | None]] = [
        ("bare loop", None),
        ("wedguard acquire, rate=inf", unlimited.acquire),
        ("wedguard try_acquire, rate=inf", unlimited.try_acquire),
    ]
    missing = []
    opened: list[Limiter] = []
    for name in LIBRARIES:
        lim = make(name, BIG, BIG)
        if lim is None or lim.try_acquire is None:
            missing.append(name)
            continue
        label = "wedguard try_acquire, huge rate" if name == "wedguard" else name
        candidates.append((label, lim.try_acquire))
        opened.append(lim)
    chunks = (4096, 65536)
    copy(65536, None)  # touch every page first
    best = {(label, c): math.inf for label, _ in candidates for c in chunks}
    for _ in range(repeats):  # interleaved, so noise hits every candidate alike
        for label, acquire in candidates:
            for c in chunks:
                best[label, c] = min(best[label, c], copy(c, acquire))
    for lim in opened:
        lim.close()
    rows = []
    for label, acquire in candidates:
        times = [best[label, c] for c in chunks]
        bare = [best["bare loop", c] for c in chunks]
        rows.append(
            [
                label,
                *[f"{t / size * 2**30 * 1e3:.0f} ms/GiB" for t in times],
                *(
                    [f"{(t / b - 1) * 100:+.1f} %" for t, b in zip(times, bare, strict=True)]
                    if acquire is not None
                    else ["", ""]
                ),
                f"{(times[0] - bare[0]) / (size // 4096) * 1e9:,.0f}" if acquire else "",
            ]
        )
    rows += [
        [name, "n/a (async only)" if make(name, 1, 1) else "not installed", "", "", "", ""]
        for name in missing
    ]
    table(
        "3. Copy loop (1 MiB copied 32 times in memory, best of "
        f"{repeats}, CPU time), one acquire of chunk/1024 units per chunk",
        [
            "loop",
            "4 KiB chunks",
            "64 KiB chunks",
            "overhead 4 KiB",
            "overhead 64 KiB",
            "ns per acquire (4 KiB)",
        ],
        rows,
    )


# -- 4. contention -----------------------------------------------------------------------------


def admitted_by_racers(lim: Limiter, capacity: int) -> int:
    """8 threads take 1 unit at a time from a bucket that does not refill.

    Each stops after 2,000 refusals in a row (so a false refusal cannot end it early).
    """
    f = lim.try_acquire
    assert f is not None
    counts = [0] * 8
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        barrier.wait()
        got = refused = 0
        attempts = 0
        while refused < 2000 and attempts < 50 * capacity:
            attempts += 1
            if f(1):
                got += 1
                refused = 0
            else:
                refused += 1
        counts[i] = got

    run_threads(8, worker)
    return sum(counts)


def section_contention(seconds: float) -> None:
    capacity = 20_000
    rows = []
    old = sys.getswitchinterval()
    # With a 1 us switch interval CPython's threading can trip over its own
    # bookkeeping when a thread starts (limits' storage starts timer threads):
    # "Exception ignored in thread started by ... KeyError". Count, don't print.
    ignored = 0
    old_hook = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        nonlocal ignored
        if isinstance(unraisable.exc_value, KeyError):
            ignored += 1
        else:
            old_hook(unraisable)

    sys.unraisablehook = hook
    for name in LIBRARIES:
        probe = make(name, BIG, BIG)
        if probe is None:
            rows.append([name, "not installed", "", ""])
            continue
        probe.close()
        if not probe.threads or probe.try_acquire is None:
            rows.append([name, "n/a (asyncio only)", "n/a", "n/a"])
            continue
        admitted = []
        for interval in (old, 1e-6):
            sys.setswitchinterval(interval)
            try:
                lim = make(name, 0, capacity)
                assert lim is not None
                admitted.append(admitted_by_racers(lim, capacity))
                lim.close()
            finally:
                sys.setswitchinterval(old)
        lim = make(name, BIG, BIG)
        assert lim is not None
        per_s, denied = threaded_rate(lim, seconds)
        lim.close()
        calls = per_s * seconds + denied
        rows.append(
            [
                name,
                *[
                    f"{a:,} ({'exact' if a == capacity else f'{a - capacity:+,}'})"
                    for a in admitted
                ],
                f"{denied:,} of {calls:,.0f} ({denied / calls:.1%})",
            ]
        )
    table(
        f"4. Contention, 8 threads: admitted from a bucket of {capacity:,} that does not refill,"
        " and false denials while the bucket has plenty",
        [
            "library",
            "admitted",
            "admitted, switchinterval 1e-6",
            f"false denials in {seconds:g} s",
        ],
        rows,
    )
    sys.unraisablehook = old_hook
    if ignored:
        print(f"\n({ignored} KeyError tracebacks from thread start-up were not printed)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="length of each accuracy run (default 3)"
    )
    parser.add_argument("--quick", action="store_true", help="shorter runs, noisier numbers")
    args = parser.parse_args()
    budget = 0.1 if args.quick else 0.3
    rounds = 5 if args.quick else 15
    seconds = 1.0 if args.quick else args.seconds
    start = time.perf_counter()
    print(f"Python {sys.version.split()[0]} on {sys.platform}, {os.cpu_count()} CPUs; {versions()}")
    print(f"wedguard from {os.path.dirname(wedguard.__file__)}")
    section_cost(rounds, budget)
    section_accuracy(seconds)
    section_copy(3 if args.quick else 9)
    section_contention(budget)
    print(f"\n(total {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
