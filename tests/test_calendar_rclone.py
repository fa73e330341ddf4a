"""PeakHourCalendar.from_rclone: rclone's --bwlimit syntax and its documented examples.

The cases mirror rclone's own documentation and its fs/bwtimetable_test.go tables.
17-23 April 2017 is Monday to Sunday.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wedguard import ConfigError, Level, PeakHourCalendar, Window

UTC = timezone.utc
KI = 1024.0
MI = 1024.0 * 1024.0


def at(cal: PeakHourCalendar, day: int, hour: int, minute: int = 0) -> Window:
    return cal.at(datetime(2017, 4, day, hour, minute, tzinfo=UTC))


@pytest.mark.parametrize(
    ("text", "up", "down"),
    [
        ("666", 666 * KI, 666 * KI),  # bare numbers are KiB/s
        ("666:333", 666 * KI, 333 * KI),
        ("10M", 10 * MI, 10 * MI),
        ("10M:100k", 10 * MI, 100 * KI),
        ("1M:off", 1 * MI, None),
        ("512k", 512 * KI, 512 * KI),
        ("512K", 512 * KI, 512 * KI),
        ("1G", 1024 * MI, 1024 * MI),
        ("1.5M", 1.5 * MI, 1.5 * MI),
        ("100B", 100.0, 100.0),
        ("100b", 100.0, 100.0),
        ("10Mi", 10 * MI, 10 * MI),
        ("10MiB", 10 * MI, 10 * MI),
        ("2T", 2 * 1024 * 1024 * MI, 2 * 1024 * 1024 * MI),
    ],
)
def test_single_rate_is_a_constant_cap(text: str, up: float, down: float | None) -> None:
    cal = PeakHourCalendar.from_rclone(text)
    w = at(cal, 20, 15)
    assert (w.level, w.rate, w.rate_down) == (Level.PEAK, up, down)
    assert not w.bounded
    assert cal.next_change(datetime(2017, 4, 20, tzinfo=UTC)) is None


def test_off_and_zero() -> None:
    w = at(PeakHourCalendar.from_rclone("off"), 20, 15)
    assert (w.level, w.rate, w.rate_down) == (Level.OPEN, None, None)
    w = at(PeakHourCalendar.from_rclone("0"), 20, 15)
    assert (w.level, w.rate) == (Level.BLACKOUT, 0.0)
    w = at(PeakHourCalendar.from_rclone("off:10M"), 20, 15)
    assert (w.level, w.rate, w.rate_down) == (Level.OPEN, None, 10 * MI)


def test_documented_daily_timetable() -> None:
    """rclone docs: '08:00,512k 12:00,10M 13:00,512k 18:00,30M 23:00,off'."""
    cal = PeakHourCalendar.from_rclone("08:00,512k 12:00,10M 13:00,512k 18:00,30M 23:00,off")
    expected = [
        ((7, 59), Level.OPEN, None),  # before the first entry: yesterday's last (off)
        ((8, 0), Level.PEAK, 512 * KI),
        ((11, 59), Level.PEAK, 512 * KI),
        ((12, 0), Level.PEAK, 10 * MI),
        ((13, 0), Level.PEAK, 512 * KI),
        ((18, 0), Level.PEAK, 30 * MI),
        ((22, 59), Level.PEAK, 30 * MI),
        ((23, 0), Level.OPEN, None),
    ]
    for day in range(17, 24):
        for (hour, minute), level, rate in expected:
            w = at(cal, day, hour, minute)
            assert (w.level, w.rate) == (level, rate), (day, hour, minute)
    w = at(cal, 20, 3)
    assert w.start == datetime(2017, 4, 19, 23, tzinfo=UTC)
    assert w.end == datetime(2017, 4, 20, 8, tzinfo=UTC)
    assert w.reason == "rule 'rclone 23:00,off'"


def test_documented_weekly_timetable() -> None:
    """rclone docs: 'Mon-00:00,512 Fri-23:59,10M Sat-10:00,1M Sun-20:00,off'."""
    cal = PeakHourCalendar.from_rclone("Mon-00:00,512 Fri-23:59,10M Sat-10:00,1M Sun-20:00,off")
    w = at(cal, 19, 12)  # Wednesday
    assert (w.rate, w.start, w.end) == (
        512 * KI,
        datetime(2017, 4, 17, tzinfo=UTC),
        datetime(2017, 4, 21, 23, 59, tzinfo=UTC),
    )
    assert at(cal, 22, 9).rate == 10 * MI  # Saturday 09:00
    assert at(cal, 22, 10).rate == 1 * MI
    assert at(cal, 23, 19, 59).rate == 1 * MI
    w = at(cal, 23, 20)  # Sunday 20:00 until Monday 00:00: unlimited
    assert (w.level, w.end) == (Level.OPEN, datetime(2017, 4, 24, tzinfo=UTC))
    assert at(cal, 24, 0).rate == 512 * KI


def test_documented_mixed_timetable() -> None:
    """rclone docs: 'Mon-00:00,512 12:00,1M Sun-20:00,off'."""
    cal = PeakHourCalendar.from_rclone("Mon-00:00,512 12:00,1M Sun-20:00,off")
    assert at(cal, 17, 11).rate == 512 * KI  # Monday morning
    assert at(cal, 17, 12).rate == 1 * MI
    assert at(cal, 18, 11).rate == 1 * MI  # Tuesday morning: Monday 12:00 still holds
    assert at(cal, 23, 13).rate == 1 * MI  # Sunday 12:00 entry
    assert at(cal, 23, 21).level is Level.OPEN  # Sunday 20:00 off
    w = at(cal, 18, 11)
    assert w.start == datetime(2017, 4, 17, 12, tzinfo=UTC)
    assert w.end == datetime(2017, 4, 18, 12, tzinfo=UTC) or w.end > w.start


def test_limit_at_cases_from_rclone() -> None:
    """TestBwTimetableLimitAt, translated."""
    daily = PeakHourCalendar.from_rclone("11:00,333:33 13:00,666:66 23:01,1M:102 23:50,off:1M")
    w = at(daily, 20, 10, 15)  # Thursday 10:15: Wednesday 23:50 entry
    assert (w.level, w.rate, w.rate_down) == (Level.OPEN, None, 1 * MI)
    assert w.start == datetime(2017, 4, 19, 23, 50, tzinfo=UTC)
    w = at(daily, 20, 11)
    assert (w.rate, w.rate_down) == (333 * KI, 33 * KI)
    w = at(daily, 20, 13, 1)
    assert (w.rate, w.rate_down) == (666 * KI, 66 * KI)
    w = at(daily, 20, 23, 59)
    assert (w.level, w.rate_down) == (Level.OPEN, 1 * MI)

    weekly = PeakHourCalendar.from_rclone(
        "Mon-11:00,333:33 Tue-13:40,666:66 Fri-00:00,10M:1M Sat-10:00,off:100 Sun-23:00,666:66"
    )
    w = at(weekly, 20, 23, 59)  # Thursday: Tuesday 13:40 entry
    assert (w.rate, w.rate_down) == (666 * KI, 66 * KI)
    w = at(weekly, 21, 23, 59)  # Friday
    assert (w.rate, w.rate_down) == (10 * MI, 1 * MI)
    w = at(weekly, 17, 10, 59)  # Monday before 11:00: Sunday 23:00 entry
    assert (w.rate, w.rate_down) == (666 * KI, 66 * KI)


def test_wrap_round_the_week_uses_the_previous_entry_in_time() -> None:
    """A deliberate difference: before the first entry of rclone's Sunday-based week,
    rclone falls back to the last entry *listed*; wedguard takes the entry that came
    last in time, so every instant has the entry that most recently began."""
    cal = PeakHourCalendar.from_rclone(
        "Mon-11:00,333 Tue-13:40,666 Fri-00:00,10M Sat-10:00,off Sun-23:00,666"
    )
    w = at(cal, 23, 10)  # Sunday 10:00: Saturday 10:00 (off) began most recently
    assert w.level is Level.OPEN
    assert w.start == datetime(2017, 4, 22, 10, tzinfo=UTC)
    assert w.end == datetime(2017, 4, 23, 23, tzinfo=UTC)


def test_same_time_later_entry_wins_and_semicolons() -> None:
    cal = PeakHourCalendar.from_rclone("08:00,1M;Mon-08:00,2M  20:00,off")
    assert at(cal, 17, 9).rate == 2 * MI  # Monday: the later entry for that time
    assert at(cal, 18, 9).rate == 1 * MI


def test_single_timed_entry_holds_all_the_time() -> None:
    cal = PeakHourCalendar.from_rclone("08:00,512k")
    w = at(cal, 20, 3)
    assert w.rate == 512 * KI
    assert cal.next_change(datetime(2017, 4, 20, tzinfo=UTC)) is None


def test_rate_zero_in_a_timetable_is_blackout() -> None:
    cal = PeakHourCalendar.from_rclone("09:00,0 17:00,off")
    w = at(cal, 20, 12)
    assert (w.level, w.start, w.end) == (
        Level.BLACKOUT,
        datetime(2017, 4, 20, 9, tzinfo=UTC),
        datetime(2017, 4, 20, 17, tzinfo=UTC),
    )


def test_windows_tile_a_week_without_gaps() -> None:
    cal = PeakHourCalendar.from_rclone("Mon-00:00,512 12:00,1M Sun-20:00,off", tz="Europe/London")
    start = datetime(2017, 3, 20, tzinfo=UTC)
    ws = list(cal.windows(start, start + timedelta(days=14)))  # spans the March DST change
    assert ws[0].start == start
    for a, b in itertools.pairwise(ws):
        assert a.end == b.start
        assert (a.level, a.rate, a.reason) != (b.level, b.rate, b.reason)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "bad,bad",
        "bad bad",
        "bad",
        "1000X",
        "2401,666",
        "1061,666",
        "bad-10:20,666",
        "Mon-bad,666",
        "Mon-10:20,bad",
        "24:00,1M",
        "10:60,1M",
        "Mon-10:20-11:00,1M",
        "10:20,1M,2M",
        "-5M",
        "1e999M",
        "M",
        "iB",
        "10XiB",
        "10:20,1M:2M:3M",
    ],
)
def test_malformed_timetables(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        PeakHourCalendar.from_rclone(text)
    assert info.value.field == "bwlimit"


# --------------------------------------------------------------------------- properties

DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
RATES = {"off": None, "0": 0.0, "512": 512 * KI, "1M": MI, "10M": 10 * MI, "100k": 100 * KI}

entries = st.lists(
    st.tuples(
        st.one_of(st.none(), st.integers(0, 6)),
        st.integers(0, 47).map(lambda k: k * 30),
        st.sampled_from(sorted(RATES)),
        st.one_of(st.none(), st.sampled_from(sorted(RATES))),
    ),
    min_size=1,
    max_size=6,
)


def rclone_text(items: list[tuple[int | None, int, str, str | None]]) -> str:
    out = []
    for day, minute, up, down in items:
        when = f"{minute // 60:02d}:{minute % 60:02d}"
        if day is not None:
            when = f"{DAYS[day]}-{when}"
        rate = up if down is None else f"{up}:{down}"
        out.append(f"{when},{rate}")
    return " ".join(out)


def rclone_reference(
    items: list[tuple[int | None, int, str, str | None]], t: datetime
) -> tuple[Level, float | None, float | None]:
    """The entry that began most recently, round the week; later entries win ties."""
    slots: dict[int, tuple[str, str | None]] = {}
    for day, minute, up, down in items:
        for d in range(7) if day is None else [day]:
            slots[d * 1440 + minute] = (up, down)
    now = t.weekday() * 1440 + t.hour * 60 + t.minute
    past = [p for p in slots if p <= now]
    up, down = slots[max(past) if past else max(slots)]
    tx = RATES[up]
    rx = tx if down is None else RATES[down]
    if tx is None:
        return Level.OPEN, None, rx
    if tx == 0:
        return Level.BLACKOUT, 0.0, rx
    return Level.PEAK, tx, rx


@given(entries, st.integers(0, 14 * 24 * 60))
def test_timetables_match_an_rclone_reference(
    items: list[tuple[int | None, int, str, str | None]], minutes: int
) -> None:
    cal = PeakHourCalendar.from_rclone(rclone_text(items))
    t = datetime(2026, 1, 5, tzinfo=UTC) + timedelta(minutes=minutes)
    w = cal.at(t)
    assert (w.level, w.rate, w.rate_down) == rclone_reference(items, t)
    assert w.start <= t < w.end
    if w.bounded:  # the window ends where the answer changes
        after = cal.at(w.end)
        assert (after.level, after.rate, after.rate_down, after.reason) != (
            w.level,
            w.rate,
            w.rate_down,
            w.reason,
        )


def test_one_window_whatever_instant_it_is_asked_at() -> None:
    """An entry spanning several days is one window, equal from any instant in it."""
    cal = PeakHourCalendar.from_rclone("Mon-00:00,512 12:00,1M Sun-20:00,off")
    a = at(cal, 17, 13)  # Monday 13:00
    b = at(cal, 20, 3)  # Thursday 03:00
    assert a == b
    assert a.start == datetime(2017, 4, 17, 12, tzinfo=UTC)
    assert a.end == datetime(2017, 4, 23, 20, tzinfo=UTC)
