"""What ``AlertDispatcher.fire()`` costs the caller, beside other ways to hand off an event.

Run: ``PYTHONPATH=src python benchmarks/alerts.py`` (or ``nox -s bench -- alerts``).

Each contender hands the same pre-built alert to something that deals with it later
or elsewhere; the table prints the median and 99th percentile per call and the ratio
of medians to ``queue.SimpleQueue.put`` (the cheapest hand-off CPython has). Read the
ratios, not the absolute figures: machines are shared and noisy.
"""

from __future__ import annotations

import logging
import queue
import statistics
import time
from collections.abc import Callable

from wedguard.runtime.alerts import Alert, AlertDispatcher, Severity
from wedguard.sinks import WebhookSink
from wedguard.testing import RecordingSink

N = 20_000
ROUNDS = 5


def measure(fn: Callable[[Alert], object], alerts: list[Alert]) -> tuple[float, float]:
    medians, p99s = [], []
    for _ in range(ROUNDS):
        times = []
        for a in alerts:
            t0 = time.perf_counter_ns()
            fn(a)
            times.append(time.perf_counter_ns() - t0)
        times.sort()
        medians.append(times[len(times) // 2])
        p99s.append(times[int(len(times) * 0.99)])
    return statistics.median(medians) / 1000, statistics.median(p99s) / 1000


def main() -> None:
    alerts = [Alert(f"k{i % 100}", Severity.HIGH, "API +9 %") for i in range(N)]
    log = logging.getLogger("bench.alerts")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    q: queue.SimpleQueue[Alert] = queue.SimpleQueue()
    bounded: queue.Queue[Alert] = queue.Queue(maxsize=N * ROUNDS)
    dispatcher = AlertDispatcher(
        routes={Severity.HIGH: [RecordingSink()]}, group_wait=30, queue_size=N * ROUNDS
    )
    hook = WebhookSink("http://127.0.0.1:9/unused", queue_size=N * ROUNDS, backoff=60)
    contenders: list[tuple[str, Callable[[Alert], object]]] = [
        ("queue.SimpleQueue.put", q.put),
        ("queue.Queue.put_nowait (bounded)", bounded.put_nowait),
        ("logging.Logger.warning (NullHandler)", lambda a: log.warning("%s", a.summary)),
        ("wedguard AlertDispatcher.fire", dispatcher.fire),
        ("wedguard WebhookSink.emit", hook.emit),
    ]
    rows = [(name, *measure(fn, alerts)) for name, fn in contenders]
    base = rows[0][1]
    print(f"{N} calls x {ROUNDS} rounds; medians of the rounds")
    print(f"{'contender':40} {'median µs':>10} {'p99 µs':>8} {'ratio':>6}")
    for name, median, p99 in rows:
        print(f"{name:40} {median:10.2f} {p99:8.2f} {median / base:6.1f}")
    dispatcher.close(timeout=1)
    hook.close(timeout=0)


if __name__ == "__main__":
    main()
