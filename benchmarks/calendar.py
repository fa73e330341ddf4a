"""How much does PeakHourCalendar.at() cost?

Run: ``PYTHONPATH=src python benchmarks/calendar.py``

Measures, for a 20-rule calendar in Europe/London:

* ``at() same window``: repeated queries inside one window (what a guard does between
  changes; the calendar remembers the last window);
* ``at() random instants in one week``: every query in a different window, on days the
  calendar has already seen (it keeps a small table per local day, split where any
  rule may change, and remembers the window found for each piece);
* ``at() first query in a segment``: the O(rules) evaluation that finds a window;
* ``at() random instants, 3 years``: nearly every query on a day not seen before, so
  the day's table is built first (searching each rule's next and previous days);
* ``next_change()``: at random instants;
* two floors for scale: ``datetime.astimezone`` alone, and a naive evaluator that
  checks every rule on the local day and the day before (no bounds, no merging).

No peer library offers a comparable calendar, so the floors stand in for peers. Read
the ratios, not the absolute figures: the machines are shared.
"""

from __future__ import annotations

import os
import sys

# This script is named like the standard library's ``calendar`` module, which the
# imports below need: take the script's own folder off the import path first.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import random  # noqa: E402
import timeit  # noqa: E402
from datetime import datetime, time, timedelta, timezone  # noqa: E402
from zoneinfo import ZoneInfo  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(_HERE), "src"))

from wedguard import PeakHourCalendar, Rule  # noqa: E402

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
    best = min(timeit.repeat(stmt, number=number, repeat=5))  # type: ignore[arg-type]
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

    def random_at() -> None:
        cal._last = None  # a fresh query each time: no remembered window
        cal.at(instants[next(it) % len(instants)])

    def week_at() -> None:
        cal._last = None
        cal.at(in_week[next(it) % len(in_week)])

    def first_in_segment() -> None:
        # the day's table is known, the segment's window is not: the O(rules) evaluation
        t = in_week[next(it) % len(in_week)]
        cal._window(t.timestamp())

    def random_next() -> None:
        cal._last = None
        cal.next_change(instants[next(it) % len(instants)])

    rows = [
        ("at() same window", per_call(lambda: cal.at(fixed), 200_000)),
        ("at() random instants in one week", per_call(week_at, 20_000)),
        ("at() first query in a segment", per_call(first_in_segment, 5_000)),
        ("at() random instants, 3 years", per_call(random_at, 2_000)),
        ("next_change() random instants", per_call(random_next, 2_000)),
        ("floor: datetime.astimezone", per_call(lambda: fixed.astimezone(tz), 200_000)),
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
