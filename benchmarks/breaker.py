"""Circuit breaker overhead, side by side with pybreaker, circuitbreaker and purgatory.

Run: ``python benchmarks/breaker.py`` (about 10 s; no arguments needed).

1. Nanoseconds added per *successful* call through each library's decorator, measured
   against a bare call of the same function in the same run (best of several rounds).
   Sync: wedguard, pybreaker, circuitbreaker. Async: wedguard and purgatory.
2. Eight threads calling a guarded function that takes 2 ms (it sleeps, releasing the
   GIL): calls per second, and the share of unguarded throughput each library keeps.
   A breaker that holds a lock while the call runs serialises the threads.

Peer libraries are imported lazily; a missing one is reported and skipped. The
machines are shared and noisy: read the ratios, not the absolute figures.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import wedguard as wg

ROUNDS = 40
CALLS = 20_000
ASYNC_CALLS = 10_000
THREADS = 8
THREAD_CALLS = 100  # per thread; 2 ms each
WORK_S = 0.002


def _peer(name: str) -> Any | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        print(f"  ({name} is not installed; skipped)")
        return None


def target(x: int) -> int:
    return x


async def atarget(x: int) -> int:
    return x


def _loop_ns(fn: Callable[[int], int], calls: int) -> float:
    loop = range(calls)
    start = time.perf_counter_ns()
    for _ in loop:
        fn(1)
    return (time.perf_counter_ns() - start) / calls


async def _aloop_ns(fn: Callable[[int], Awaitable[int]], calls: int) -> float:
    loop = range(calls)
    start = time.perf_counter_ns()
    for _ in loop:
        await fn(1)
    return (time.perf_counter_ns() - start) / calls


def per_call_ns(contenders: dict[str, Callable[[int], int]]) -> dict[str, float]:
    """Best-of-ROUNDS nanoseconds per call of fn(1), rounds interleaved so that noise
    from other processes hits every contender alike."""
    best = dict.fromkeys(contenders, float("inf"))
    gc.disable()
    try:
        for _ in range(ROUNDS):
            for name, fn in contenders.items():
                best[name] = min(best[name], _loop_ns(fn, CALLS))
    finally:
        gc.enable()
    return best


def async_per_call_ns(
    contenders: dict[str, Callable[[int], Awaitable[int]]], setup: Any = None
) -> dict[str, float]:
    async def run() -> dict[str, float]:
        if setup is not None:
            await setup.initialize()
        best = dict.fromkeys(contenders, float("inf"))
        for _ in range(ROUNDS):
            for name, fn in contenders.items():
                best[name] = min(best[name], await _aloop_ns(fn, ASYNC_CALLS))
        return best

    gc.disable()
    try:
        return asyncio.run(run())
    finally:
        gc.enable()


def sync_contenders() -> dict[str, Callable[[int], int]]:
    contenders: dict[str, Callable[[int], int]] = {
        "bare call": target,
        "wedguard": wg.CircuitBreaker("bench")(target),
    }
    pybreaker = _peer("pybreaker")
    if pybreaker is not None:
        contenders["pybreaker"] = pybreaker.CircuitBreaker(fail_max=3, reset_timeout=300)(target)
    circuitbreaker = _peer("circuitbreaker")
    if circuitbreaker is not None:
        contenders["circuitbreaker"] = circuitbreaker.CircuitBreaker(
            failure_threshold=3, recovery_timeout=300
        )(target)
    return contenders


def async_contenders() -> tuple[dict[str, Callable[[int], Awaitable[int]]], Any]:
    contenders: dict[str, Callable[[int], Awaitable[int]]] = {
        "bare call": atarget,
        "wedguard": wg.CircuitBreaker("bench")(atarget),
    }
    purgatory = _peer("purgatory")
    factory = None
    if purgatory is not None:
        factory = purgatory.AsyncCircuitBreakerFactory(default_threshold=3, default_ttl=300)
        contenders["purgatory"] = factory("bench")(atarget)
    return contenders, factory


def overhead_table() -> list[tuple[str, str, float, float]]:
    rows: list[tuple[str, str, float, float]] = []
    measured = per_call_ns(sync_contenders())
    bare = measured["bare call"]
    for name, ns in measured.items():
        rows.append(("sync", name, ns, ns - bare))
    contenders, factory = async_contenders()
    measured = async_per_call_ns(contenders, factory)
    bare = measured["bare call"]
    for name, ns in measured.items():
        rows.append(("async", name, ns, ns - bare))
    return rows


def work(x: int) -> int:
    time.sleep(WORK_S)
    return x


def threaded_calls_per_s(fn: Callable[[int], int]) -> float:
    barrier = threading.Barrier(THREADS + 1)

    def worker() -> None:
        barrier.wait()
        for _ in range(THREAD_CALLS):
            fn(1)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return THREADS * THREAD_CALLS / (time.perf_counter() - start)


def threads_table() -> list[tuple[str, float]]:
    contenders: dict[str, Callable[[int], int]] = {
        "unguarded": work,
        "wedguard": wg.CircuitBreaker("bench")(work),
    }
    pybreaker = _peer("pybreaker")
    if pybreaker is not None:
        contenders["pybreaker"] = pybreaker.CircuitBreaker(fail_max=3, reset_timeout=300)(work)
    circuitbreaker = _peer("circuitbreaker")
    if circuitbreaker is not None:
        contenders["circuitbreaker"] = circuitbreaker.CircuitBreaker(
            failure_threshold=3, recovery_timeout=300
        )(work)
    # best of two runs each, interleaved so drift hits everyone alike
    best = dict.fromkeys(contenders, 0.0)
    for _ in range(2):
        for name, fn in contenders.items():
            best[name] = max(best[name], threaded_calls_per_s(fn))
    return list(best.items())


def main() -> None:
    started = time.perf_counter()
    print(f"Python {sys.version.split()[0]}, wedguard {wg.__version__}")
    print()
    print(f"Per successful call through the decorator (best of {ROUNDS} rounds)")
    print(f"{'':6} {'library':16} {'ns/call':>9} {'added ns':>9} {'vs wedguard':>12}")
    rows = overhead_table()
    ours = {kind: added for kind, name, _, added in rows if name == "wedguard"}
    for kind, name, ns, added in rows:
        ratio = "" if name == "bare call" else f"{added / ours[kind]:.2f}x"
        print(f"{kind:6} {name:16} {ns:9.0f} {added:9.0f} {ratio:>12}")
    print()
    print(f"{THREADS} threads calling a guarded {WORK_S * 1000:g} ms function")
    print(f"{'library':16} {'calls/s':>9} {'of unguarded':>13}")
    table = threads_table()
    unguarded = table[0][1]
    for name, rate in table:
        print(f"{name:16} {rate:9.0f} {rate / unguarded:12.0%}")
    print()
    print(f"(took {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
