"""How much does PeakHourCalendar.at() cost?

Run: ``PYTHONPATH=src python benchmarks/peak_calendar.py``

Measures, for a 20-rule calendar in Europe/London:

* ``at() same window``: repeated queries inside one window (what a guard does between
  changes; the calendar remembers the last window);
* ``at() random instants in one week``: queries in windows found before (the calendar
  remembers recent windows by the hour they were asked in);
* ``at() random instants, 3 years, cold``: the uncached cost. Before each query the
  calendar forgets every window it found (and, in the second line, everything it
  remembers about sets of holding rules too), so each answer is computed: the instant
  turned into wall-clock time, every rule tested, the window's bounds found and
  turned back into instants;
* ``at() first query in a new year``: the same with the per-year day tables dropped
  too, so they are rebuilt (once per calendar year in real use);
* ``next_change()``: at random instants, cold as above;
* two floors for scale: ``datetime.astimezone`` alone, and a naive evaluator that
  checks every rule on the local day and the day before (no bounds, no merging).

No peer library offers a comparable calendar, so the floors stand in for peers. Read
the ratios, not the absolute figures: the machines are shared. Forgetting the caches
costs a few tenths of a microsecond per query and is included.
"""

from __future__ import annotations

import os
import random
import sys
import timeit
from datetime import datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(_HERE), "src"))

from wedguard import CalendarRule as Rule  # noqa: E402
from wedguard import PeakHourCalendar  # noqa: E402

RULES = """
Mon-Fri 06:00-22:00 peak 10Mbit/s cpu=30%
Sat-Sun 08:00-20:00 peak 20Mbit/s
May-Oct Mon-Sun 06:00-22:00 peak 5Mbit/s cpu=20%
May-Oct Sat 08:00-24:00 blackout name="wedding Saturdays"
Nov-Feb 17:00-19:00 peak 2MB/s
Mon 09:00-10:00 peak 1MB/s name="weekly report"
Tue,Thu 12:00-13:00 peak 3MB/s
Wed 22:00-02:00 peak 8MB/s name="nightly vacuum"
Fri 23:00-01:00 blackout name="payroll"
Sun 03:00-05:00 open
2026-06-13 blackout
2026-07-04 blackout
2026-08-22 blackout
2026-09-19 blackout
2026-12-24..2026-12-26 blackout
05-15..09-30 Sat,Sun 10:00-18:00 peak 4MB/s
Dec 06:00-23:00 peak 6MB/s
weekdays 07:30-08:30 peak 1MB/s name="login rush"
weekends 19:00-21:00 peak 2MB/s
Mon-Sun 00:30-01:00 peak 500kB/s name="log rotation"
"""


def naive(rules: tuple[Rule, ...], tz: ZoneInfo, t: datetime) -> int:
    wall = t.astimezone(tz).replace(tzinfo=None)
    level = -1
    for r in rules:
        for day in (wall.date() - timedelta(days=1), wall.date()):
            if day.weekday() not in r.weekdays:
                continue
            if r.season is not None and day not in r.season:
                continue
            if r.dates and day not in r.dates:
                continue
            midnight = datetime.combine(day, time())
            end = r.end if r.end > r.start else r.end + 1440
            if midnight + timedelta(minutes=r.start) <= wall < midnight + timedelta(minutes=end):
                level = max(level, int(r.level))
    return level


def per_call(stmt: object, number: int) -> float:
    best = min(timeit.repeat(stmt, number=number, repeat=15))  # type: ignore[arg-type]
    return best / number * 1e6


def main() -> None:
    tz = ZoneInfo("Europe/London")
    cal = PeakHourCalendar.parse(RULES, tz=tz)
    assert len(cal.rules) == 20
    rng = random.Random(7)
    base = datetime(2025, 1, 1, tzinfo=timezone.utc)
    instants = [base + timedelta(seconds=rng.randrange(3 * 365 * 86400)) for _ in range(2000)]
    week = datetime(2026, 6, 8, tzinfo=timezone.utc)
    in_week = [week + timedelta(seconds=rng.randrange(7 * 86400)) for _ in range(2000)]
    fixed = datetime(2026, 1, 6, 12, tzinfo=timezone.utc)

    it = iter(range(10**9))
    engine = cal._engine
    caches: dict[str, dict[Any, Any]] = {
        "windows": cal._recent,
        "answers": engine._evaluator._answers,  # what each set of holding rules decides
        "fields": engine._fields,  # a window's level, caps and reason per decision
        "instants": engine.zone._icache,  # wall minutes turned into instants
        "years": engine._evaluator.tables._cache,  # the per-year day tables
    }
    window_caches = ("windows",)
    memo_caches = ("answers", "fields", "instants")

    def forget(names: tuple[str, ...]) -> None:
        cal._last = None
        for name in names:
            caches[name].clear()

    def week_at() -> None:
        cal._last = None
        cal.at(in_week[next(it) % len(in_week)])

    def cold_at() -> None:
        forget(window_caches)
        cal.at(instants[next(it) % len(instants)])

    def colder_at() -> None:
        forget(window_caches + memo_caches)
        cal.at(instants[next(it) % len(instants)])

    def new_year_at() -> None:
        forget(window_caches + memo_caches + ("years",))
        cal.at(instants[next(it) % len(instants)])

    def cold_next() -> None:
        forget(window_caches)
        cal.next_change(instants[next(it) % len(instants)])

    rows = [
        ("at() same window", per_call(lambda: cal.at(fixed), 100_000)),
        ("at() random instants in one week", per_call(week_at, 20_000)),
        ("at() random, 3 years, cold", per_call(cold_at, 2_000)),
        ("at() cold, no memo either", per_call(colder_at, 2_000)),
        ("at() first query in a new year", per_call(new_year_at, 200)),
        ("next_change() random, 3 y, cold", per_call(cold_next, 2_000)),
        ("floor: datetime.astimezone", per_call(lambda: fixed.astimezone(tz), 100_000)),
        (
            "floor: naive level-only evaluator",
            per_call(lambda: naive(cal.rules, tz, instants[next(it) % 2000]), 2_000),
        ),
    ]
    floor = dict(rows)["floor: datetime.astimezone"]
    print(
        f"PeakHourCalendar, {len(cal.rules)} rules, Europe/London, Python {sys.version.split()[0]}"
    )
    print(f"{'case':34} {'µs/call':>9} {'× astimezone':>13}")
    for name, us in rows:
        print(f"{name:34} {us:9.2f} {us / floor:13.1f}")


if __name__ == "__main__":
    main()
