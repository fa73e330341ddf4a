"""Metrics store benchmark: MetricsStore side by side with the obvious alternatives.

Run it with ``python benchmarks/history.py`` (or ``nox -s bench -- history``). It prints
two tables:

1. recording: samples of 7 metrics (one guard sampler tick) per second, for
   ``MetricsStore.record`` on a file (WAL, one transaction per tick) against a plain
   sqlite3 table with the default rollback journal and a commit per tick (the naive
   floor), and against ``record_many`` (bulk import);
2. aggregation: a week of one metric every 10 s (60,480 samples) into hourly buckets
   (mean, p50, p95, max, count): ``MetricsStore.aggregate`` in SQL against loading the
   rows into Python and using ``statistics.quantiles`` (what a store without SQL
   percentiles has to do). Both give the same numbers; the script checks that.

Wall time, best of three. This is a script, not a test.
"""

from __future__ import annotations

import os
import sys

# This folder holds calendar.py, which would shadow the standard library's calendar
# module for everything imported below: run from here without it on the path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import datetime, timedelta, timezone  # noqa: E402

_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "src")
if os.path.isdir(os.path.join(_SRC, "wedguard")):
    sys.path.insert(0, os.path.abspath(_SRC))
from wedguard.history import MetricsStore  # noqa: E402

T0 = datetime(2026, 1, 5, tzinfo=timezone.utc)
METRICS = (
    "api.latency_s",
    "db.latency_s",
    "cpu.percent",
    "backup.cpu.percent",
    "backup.rss_bytes",
    "net.sent_bytes_per_s",
    "disk.busy_percent",
)


def best_of(runs: int, fn: Callable[[], float]) -> float:
    return min(fn() for _ in range(runs))


def bench_record(ticks: int) -> list[tuple[str, float]]:
    sample = {name: float(i) for i, name in enumerate(METRICS)}

    def wedguard_record() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            store = MetricsStore(os.path.join(tmp, "h.db"), retention="3650d")
            start = time.perf_counter()
            for i in range(ticks):
                store.record(sample, at=T0 + timedelta(seconds=i))
            elapsed = time.perf_counter() - start
            store.close()
        return ticks / elapsed

    def wedguard_bulk() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            store = MetricsStore(os.path.join(tmp, "h.db"), retention="3650d")
            start = time.perf_counter()
            store.record_many((T0 + timedelta(seconds=i), sample) for i in range(ticks))
            elapsed = time.perf_counter() - start
            store.close()
        return ticks / elapsed

    def naive() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            conn = sqlite3.connect(os.path.join(tmp, "n.db"))
            conn.execute("CREATE TABLE samples (name TEXT, ts REAL, value REAL)")
            start = time.perf_counter()
            for i in range(ticks):
                ts = (T0 + timedelta(seconds=i)).timestamp()
                conn.executemany(
                    "INSERT INTO samples VALUES (?, ?, ?)", [(k, ts, v) for k, v in sample.items()]
                )
                conn.commit()
            elapsed = time.perf_counter() - start
            conn.close()
        return ticks / elapsed

    return [
        ("naive sqlite3 (rollback journal, commit per tick)", best_of(3, naive)),
        ("MetricsStore.record (WAL, one transaction per tick)", best_of(3, wedguard_record)),
        ("MetricsStore.record_many (bulk)", best_of(3, wedguard_bulk)),
    ]


def bench_aggregate() -> list[tuple[str, float]]:
    n = 7 * 24 * 360
    store = MetricsStore(":memory:", retention="3650d")
    store.record_many(
        (T0 + timedelta(seconds=10 * i), {"api.latency_s": 0.1 + (i * 7919 % 1000) / 1e4})
        for i in range(n)
    )

    def in_sql() -> float:
        start = time.perf_counter()
        rows = store.aggregate("api.latency_s", "1h")
        elapsed = time.perf_counter() - start
        assert len(rows) == 168
        return elapsed

    def in_python() -> float:
        start = time.perf_counter()
        raw = store.series("api.latency_s", limit=10**7)
        groups: dict[int, list[float]] = defaultdict(list)
        for at, value in raw:
            groups[int(at.timestamp()) // 3600].append(value)
        out = []
        for key in sorted(groups):
            values = groups[key]
            cuts = statistics.quantiles(values, n=100, method="inclusive")
            out.append((key, statistics.fmean(values), cuts[49], cuts[94], max(values)))
        elapsed = time.perf_counter() - start
        assert len(out) == 168
        sql = store.aggregate("api.latency_s", "1h")
        assert all(
            abs(a.p95 - b[3]) < 1e-9 and abs(a.p50 - b[2]) < 1e-9
            for a, b in zip(sql, out, strict=True)
        )
        return elapsed

    result = [
        ("rows into Python + statistics.quantiles", best_of(3, in_python)),
        ("MetricsStore.aggregate (SQL window functions)", best_of(3, in_sql)),
    ]
    store.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=2000, help="sampler ticks to record")
    args = parser.parse_args()

    print(f"Recording {args.ticks} ticks of {len(METRICS)} metrics (ticks/s, higher is better)")
    rows = bench_record(args.ticks)
    floor = rows[0][1]
    for name, rate in rows:
        print(f"  {name:55s} {rate:12,.0f}  x{rate / floor:6.2f}")

    print("Hourly buckets over a week at 10 s (seconds, lower is better)")
    rows = bench_aggregate()
    floor = rows[0][1]
    for name, seconds in rows:
        print(f"  {name:55s} {seconds:12.4f}  x{floor / seconds:6.2f}")


if __name__ == "__main__":
    main()
