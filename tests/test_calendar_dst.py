"""A DST sweep: every clock change 2020-2035 in five zones, checked around the change.

Europe/London and America/New_York shift by an hour, Australia/Lord_Howe by thirty
minutes; America/Sao_Paulo changed at midnight until 2019 (so 2018-2019 are swept too)
and Asia/Kolkata never changes. Only the days of the changes are examined, to stay fast.
"""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from test_calendar_properties import observed, reference
from wedguard import CalendarRule as Rule
from wedguard import Level, PeakHourCalendar

UTC = timezone.utc
SWEEP = {
    "Europe/London": range(2020, 2036),
    "America/New_York": range(2020, 2036),
    "Australia/Lord_Howe": range(2020, 2036),
    "America/Sao_Paulo": range(2018, 2036),
    "Asia/Kolkata": range(2020, 2036),
}


def transitions(tz: ZoneInfo, years: range) -> list[int]:
    """POSIX seconds of every offset change in ``years``, found by a 6-hour scan and
    bisection to the second."""
    out = []
    t = int(datetime(years.start, 1, 1, tzinfo=UTC).timestamp())
    stop = int(datetime(years.stop, 1, 1, tzinfo=UTC).timestamp())
    step = 6 * 3600
    offset = datetime.fromtimestamp(t, tz).utcoffset()
    while t < stop:
        nxt = t + step
        new = datetime.fromtimestamp(nxt, tz).utcoffset()
        if new != offset:
            lo, hi = t, nxt
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if datetime.fromtimestamp(mid, tz).utcoffset() == offset:
                    lo = mid
                else:
                    hi = mid
            out.append(hi)
            offset = new
        t = nxt
    return out


def probe_calendar(tz: ZoneInfo, change: int) -> tuple[PeakHourCalendar, int, date]:
    """Rules starting and ending around the wall-clock time of a change."""
    before = datetime.fromtimestamp(change - 1, tz)
    wall = (before.hour * 60 + before.minute + 1) % 1440  # the old clock at the change
    day = before.date() if wall else before.date() + timedelta(days=1)
    days = {day - timedelta(days=1), day, day + timedelta(days=1)}
    rules = []
    for k in (-90, -60, -30, -15, 0, 15, 30, 45, 60, 90):
        start = (wall + k) % 1440
        end = (start + 45) % 1440 or 1440
        level = Level.BLACKOUT if k in (-15, 45) else Level.PEAK
        rate = None if level is Level.BLACKOUT else 1e6 + k * 1000 + 100_000
        rules.append(Rule(level, start=start, end=end, dates=days, rate=rate, name=f"k{k}"))
    rules.append(Rule(Level.PEAK, dates={day}, rate=9e6, name="that day"))
    rules.append(Rule(Level.PEAK, start="23:00", end="01:30", dates=days, rate=8e6, name="night"))
    return PeakHourCalendar(rules, tz=tz), wall, day


def cases() -> list[tuple[str, int]]:
    out = []
    for name, years in SWEEP.items():
        out.extend((name, change) for change in transitions(ZoneInfo(name), years))
    return out


CASES = cases()


def test_the_sweep_finds_the_expected_changes() -> None:
    counts: dict[str, int] = {}
    for name, _ in CASES:
        counts[name] = counts.get(name, 0) + 1
    assert counts["Europe/London"] == 32
    assert counts["America/New_York"] == 32
    assert counts["Australia/Lord_Howe"] == 32
    assert counts["America/Sao_Paulo"] == 3  # Feb 2018, Nov 2018, Feb 2019
    assert "Asia/Kolkata" not in counts


@pytest.mark.parametrize(("zone", "change"), CASES, ids=[f"{z}-{c}" for z, c in CASES])
def test_windows_around_a_clock_change(zone: str, change: int) -> None:
    tz = ZoneInfo(zone)
    cal, _wall, _day = probe_calendar(tz, change)
    t0 = datetime.fromtimestamp(change, UTC)
    lo, hi = t0 - timedelta(hours=4), t0 + timedelta(hours=4)
    probes = [lo + timedelta(minutes=m) for m in range(0, 8 * 60, 5)]
    probes += [t0 - timedelta(seconds=1), t0, t0 + timedelta(seconds=1)]
    for t in probes:
        w = cal.at(t)
        assert w.start <= t < w.end
        assert observed(w) == reference(cal, t), t
        assert cal.next_change(t) == (w.end if w.bounded else None)
    ws = list(cal.windows(lo, hi))
    assert ws[0].start.timestamp() == lo.timestamp()
    assert ws[-1].end.timestamp() == hi.timestamp()
    for a, b in itertools.pairwise(ws):
        assert a.end.timestamp() == b.start.timestamp()
        assert observed(a) != observed(b)
        assert observed(a) == reference(cal, a.start)
    # next_change walks strictly forward through the changes and never loops
    t, seen = lo, 0
    while t < hi:
        nxt = cal.next_change(t)
        assert nxt is not None
        assert nxt.timestamp() > t.timestamp()
        t, seen = nxt, seen + 1
    assert seen == len(ws)  # one change per window boundary, and the one ending at hi


@pytest.mark.parametrize(("zone", "change"), CASES, ids=[f"{z}-{c}" for z, c in CASES])
def test_gap_and_fold_semantics(zone: str, change: int) -> None:
    """A start in the gap takes effect at the change itself; a start in the repeated
    hour takes effect at its first occurrence."""
    tz = ZoneInfo(zone)
    before = datetime.fromtimestamp(change - 1, tz).utcoffset()
    after = datetime.fromtimestamp(change, tz).utcoffset()
    assert before is not None
    assert after is not None
    shift = int((after - before).total_seconds() // 60)
    t0 = datetime.fromtimestamp(change, UTC)
    old_wall = (t0 + before).replace(tzinfo=None)  # what the old clock read at the change
    if shift > 0:  # spring forward: walls [old_wall, old_wall + shift) do not exist
        inside = old_wall + timedelta(minutes=shift // 2)
    else:  # fall back: walls [old_wall + shift, old_wall) happen twice
        inside = old_wall + timedelta(minutes=shift // 2)
    start = inside.hour * 60 + inside.minute
    end = (start + 120) % 1440 or 1440
    cal = PeakHourCalendar(
        [Rule(Level.BLACKOUT, start=start, end=end, dates={inside.date()})], tz=tz
    )
    probe = t0 + timedelta(minutes=abs(shift) + 5)
    w = cal.at(probe)
    assert w.level is Level.BLACKOUT
    # (compare instants by timestamp: Python's == is always False across zones when one
    # side is an ambiguous wall time, PEP 495)
    if shift > 0:
        assert w.start.timestamp() == t0.timestamp()
    else:
        first = t0 + timedelta(minutes=shift // 2)  # the first occurrence, before the change
        assert w.start.timestamp() == first.timestamp()
        assert w.start.astimezone(tz).replace(tzinfo=None) == inside
        assert w.start.astimezone(tz).fold == 0


def test_spring_forward_day_is_shorter_and_fall_back_day_longer() -> None:
    cal = PeakHourCalendar.parse("2026-03-29 blackout; 2026-10-25 blackout", tz="Europe/London")
    spring = cal.at(datetime(2026, 3, 29, 12, tzinfo=UTC))
    assert spring.end.timestamp() - spring.start.timestamp() == 23 * 3600
    autumn = cal.at(datetime(2026, 10, 25, 12, tzinfo=UTC))
    assert autumn.end.timestamp() - autumn.start.timestamp() == 25 * 3600


def test_rule_wholly_inside_the_gap_vanishes_that_day() -> None:
    cal = PeakHourCalendar.parse("01:15-01:45 blackout", tz="Europe/London")
    ws = list(cal.windows(datetime(2026, 3, 29, tzinfo=UTC), datetime(2026, 3, 29, 6, tzinfo=UTC)))
    assert [w.level for w in ws] == [Level.OPEN]
    assert cal.at(datetime(2026, 3, 30, 1, 20, tzinfo=UTC)).level is Level.OPEN  # 02:20 BST
    assert cal.at(datetime(2026, 3, 31, 0, 20, tzinfo=UTC)).level is Level.BLACKOUT  # 01:20
