"""The calendar's fast evaluation: rule sets as bit sets, bounds found by scanning.

PeakHourCalendar answers most queries from per-year bit sets of the rules holding on
each day and a scan of the marked times of a few days around the query, and falls
back to a rule-by-rule search for windows that reach further. These tests hold the
two to the same answers and pin what the scan has to get right: windows longer than
the scan, clock changes inside a window, new year, the edges of the supported years,
rules that seldom or never hold, and the windows it remembers.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from test_calendar_properties import calendars, instants, observed, reference
from wedguard import CalendarRule as Rule
from wedguard import ConfigError, Level, PeakHourCalendar, Season
from wedguard.policy.calendar.evaluate import Evaluator
from wedguard.policy.calendar.zone import Zone

UTC = timezone.utc


@given(calendars, instants)
def test_the_fast_path_agrees_with_the_rule_by_rule_search(
    cal: PeakHourCalendar, t: datetime
) -> None:
    evaluator = Evaluator(cal.rules)  # what the calendar evaluates with
    day, minute, year, _dt = Zone(cal.tz).wall(t.timestamp())
    fast = evaluator.evaluate(day, minute, year)
    slow = evaluator.evaluate_slow(day, minute, year)
    assert fast[:4] == slow[:4]
    # whether a bound is sure to be a change: only rules sharing a name make it unsure,
    # and the search rule by rule does not look
    assert slow[4] == (0 if evaluator.shared else 3)
    if not evaluator.shared:
        assert fast[4] == 3


@settings(max_examples=25)
@given(calendars, st.lists(instants, min_size=2, max_size=12), st.randoms(use_true_random=False))
def test_remembered_windows_do_not_change_answers(
    cal: PeakHourCalendar, ts: list[datetime], rnd: random.Random
) -> None:
    """One calendar asked many times, in any order, answers as fresh ones do."""
    asked = ts + [t + timedelta(minutes=1) for t in ts]
    rnd.shuffle(asked)
    for t in asked:
        fresh = PeakHourCalendar(cal.rules, tz=cal.tz, default=cal.default_level)
        assert cal.at(t) == fresh.at(t)


def test_a_window_longer_than_the_scan() -> None:
    cal = PeakHourCalendar.parse("May-Oct blackout", tz="Europe/London")
    w = cal.at(datetime(2026, 7, 1, 12, tzinfo=UTC))
    assert w.level is Level.BLACKOUT
    assert w.start == datetime(2026, 5, 1, tzinfo=cal.tz)
    assert w.end == datetime(2026, 11, 1, tzinfo=cal.tz)
    assert w.start.utcoffset() == timedelta(hours=1)
    assert w.end.utcoffset() == timedelta(0)
    # and the open window between two seasons, across the new year
    w = cal.at(datetime(2027, 1, 15, tzinfo=UTC))
    assert (w.level, w.start, w.end) == (
        Level.OPEN,
        datetime(2026, 11, 1, tzinfo=cal.tz),
        datetime(2027, 5, 1, tzinfo=cal.tz),
    )


def test_a_window_across_the_new_year() -> None:
    cal = PeakHourCalendar.parse("Dec-Jan 22:00-06:00 blackout", tz="America/New_York")
    w = cal.at(datetime(2027, 1, 1, 3, tzinfo=cal.tz))
    assert w.level is Level.BLACKOUT
    assert w.start == datetime(2026, 12, 31, 22, tzinfo=cal.tz)
    assert w.end == datetime(2027, 1, 1, 6, tzinfo=cal.tz)
    # a range begun on 31 January still ends on 1 February; the next begins in December
    w = cal.at(datetime(2027, 2, 1, 7, tzinfo=cal.tz))
    assert w.level is Level.OPEN
    assert w.start == datetime(2027, 2, 1, 6, tzinfo=cal.tz)
    assert w.end == datetime(2027, 12, 1, 22, tzinfo=cal.tz)


def test_a_rule_that_runs_on_through_a_spring_forward_gap_is_one_window() -> None:
    """Clocks in London go from 01:00 to 02:00 on 29 March 2026. The rule's interval
    begun on the 28th ends at 01:15 and the next begins at 01:30: both inside the gap,
    so both take effect at the first instant after it, and the rule never lets go."""
    cal = PeakHourCalendar.parse("01:30-01:15 blackout", tz="Europe/London")
    w = cal.at(datetime(2026, 3, 28, 12, tzinfo=UTC))
    assert w.start == datetime(2026, 3, 28, 1, 30, tzinfo=cal.tz)
    assert w.end == datetime(2026, 3, 30, 1, 15, tzinfo=cal.tz)
    assert observed(cal.at(w.end)) != observed(w)
    gap = datetime(2026, 3, 29, 1, tzinfo=UTC)  # 02:00 BST, the first instant after the gap
    assert cal.at(gap) == w
    assert cal.at(gap - timedelta(microseconds=1)) == w
    # asked from the far side, the same window
    assert cal.at(datetime(2026, 3, 29, 12, tzinfo=UTC)) == w


def test_a_window_starting_right_after_a_gap_reaches_back_across_it() -> None:
    """On 29 March 2026 the rule's interval lies wholly inside the gap (01:00-02:00 in
    London): it never holds, and its end at 02:00 is no change."""
    cal = PeakHourCalendar.parse("Sun 01:15-02:00 blackout", tz="Europe/London")
    w = cal.at(datetime(2026, 3, 29, 12, tzinfo=UTC))
    assert w.level is Level.OPEN
    assert w.start == datetime(2026, 3, 22, 2, 0, tzinfo=cal.tz)
    assert w.end == datetime(2026, 4, 5, 1, 15, tzinfo=cal.tz)
    assert cal.at(datetime(2026, 3, 29, 0, 30, tzinfo=UTC)) == w


def test_pieces_of_one_name_either_side_of_a_gap_are_one_window() -> None:
    cal = PeakHourCalendar.parse(
        "Sun 00:00-01:00 peak 1MB/s name=a; Sun 02:00-05:00 peak 1MB/s name=a",
        tz="Europe/London",
    )
    w = cal.at(datetime(2026, 3, 29, 3, tzinfo=UTC))
    assert w.level is Level.PEAK
    assert w.start == datetime(2026, 3, 29, 0, 0, tzinfo=cal.tz)
    assert w.end == datetime(2026, 3, 29, 5, 0, tzinfo=cal.tz)
    assert w.rules == (cal.rules[0],)  # the rule that holds at the window's start
    # on an ordinary Sunday there is an hour between the two pieces
    w = cal.at(datetime(2026, 4, 5, 3, tzinfo=UTC))
    assert w.start == datetime(2026, 4, 5, 2, 0, tzinfo=cal.tz)


def test_a_rule_that_holds_once_in_decades() -> None:
    """29 February falls on a Monday in 2016 and next in 2044."""
    cal = PeakHourCalendar([Rule("blackout", season=Season(229, 229), weekdays="Mon")], tz="UTC")
    w = cal.at(datetime(2026, 1, 1, tzinfo=UTC))
    assert w.level is Level.OPEN
    assert w.start == datetime(2016, 3, 1, tzinfo=UTC)
    assert w.end == datetime(2044, 2, 29, tzinfo=UTC)
    assert cal.next_change(datetime(2044, 2, 29, 12, tzinfo=UTC)) == datetime(
        2044, 3, 1, tzinfo=UTC
    )


def test_a_rule_whose_dates_never_fall_on_its_weekdays_never_holds() -> None:
    never = Rule("blackout", dates=["2026-06-13", "2026-06-20"], weekdays="Mon")  # Saturdays
    cal = PeakHourCalendar([never], tz="Europe/London")
    w = cal.at(datetime(2026, 6, 13, 12, tzinfo=UTC))
    assert w.level is Level.OPEN
    assert not w.bounded
    assert w.start.year == 1
    assert cal.next_change(datetime(2026, 6, 1, tzinfo=UTC)) is None
    peak = Rule("peak", start="06:00", end="22:00")
    cal = PeakHourCalendar([never, peak], tz="Europe/London")
    w = cal.at(datetime(2026, 6, 13, 12, tzinfo=UTC))
    assert (w.level, w.rules) == (Level.PEAK, (peak,))
    assert (w.start.hour, w.end.hour) == (6, 22)


def test_the_edges_of_the_supported_years() -> None:
    cal = PeakHourCalendar.default("UTC")
    w = cal.at(datetime(9998, 12, 31, 12, tzinfo=UTC))
    assert (w.level, w.start, w.end) == (
        Level.PEAK,
        datetime(9998, 12, 31, 6, tzinfo=UTC),
        datetime(9998, 12, 31, 22, tzinfo=UTC),
    )
    w = cal.at(datetime(9998, 12, 31, 23, tzinfo=UTC))
    assert w.level is Level.OPEN
    assert w.start == datetime(9998, 12, 31, 22, tzinfo=UTC)
    assert not w.bounded  # no day after 9998-12-31 is searched
    w = cal.at(datetime(2, 1, 1, 3, tzinfo=UTC))
    assert w.level is Level.OPEN
    assert w.start.year == 1  # nor any day before the year 2
    assert w.end == datetime(2, 1, 1, 6, tzinfo=UTC)
    # a week inside the edges is answered by the same means as any other
    for t in (datetime(9998, 12, 20, 23, tzinfo=UTC), datetime(2, 1, 9, 23, tzinfo=UTC)):
        w = cal.at(t)
        assert (w.level, w.start.hour, w.end.hour) == (Level.OPEN, 22, 6)


@settings(max_examples=30)
@given(
    st.sampled_from(["Europe/London", "America/New_York", "Australia/Lord_Howe"]),
    st.dates(date(2020, 1, 1), date(2035, 12, 31)),
)
def test_every_day_of_a_twenty_rule_calendar_matches_the_reference(zone: str, day: date) -> None:
    cal = PeakHourCalendar.parse(TWENTY_RULES, tz=zone)
    t = datetime(day.year, day.month, day.day, tzinfo=cal.tz)
    end = t + timedelta(days=2)
    for w in cal.windows(t, end):
        assert observed(w) == reference(cal, w.start)
        # in UTC: arithmetic on a zone's datetimes is wall-clock arithmetic
        assert observed(w) == reference(cal, w.end.astimezone(UTC) - timedelta(milliseconds=1))


TWENTY_RULES = """
Mon-Fri 06:00-22:00 peak 10Mbit/s cpu=30%
Sat-Sun 08:00-20:00 peak 20Mbit/s
May-Oct Mon-Sun 06:00-22:00 peak 5Mbit/s cpu=20%
May-Oct Sat 08:00-24:00 blackout name="wedding Saturdays"
Nov-Feb 17:00-19:00 peak 2MB/s
Mon 09:00-10:00 peak 1MB/s name="weekly report"
Tue,Thu 12:00-13:00 peak 3MB/s
Wed 22:00-02:00 peak 8MB/s name="nightly vacuum"
Fri 23:00-01:00 blackout name="payroll"
Sun 01:00-05:00 open
2026-06-13 blackout
2026-07-04 blackout
2026-08-22 blackout
2026-09-19 blackout
2026-12-24..2026-12-26 blackout
05-15..09-30 Sat,Sun 10:00-18:00 peak 4MB/s
Dec 06:00-23:00 peak 6MB/s
weekdays 07:30-08:30 peak 1MB/s name="login rush"
weekends 19:00-21:00 peak 2MB/s
Mon-Sun 01:30-02:30 peak 500kB/s name="log rotation"
"""


def test_instants_outside_the_years_are_refused_whatever_was_asked_before() -> None:
    cal = PeakHourCalendar([], tz="Asia/Kolkata")
    w = cal.at(datetime(2026, 6, 1, tzinfo=UTC))
    assert not w.bounded  # one window for all time: remembered, but not beyond the years
    for t in (
        datetime(9999, 6, 1, tzinfo=UTC),
        datetime(9998, 12, 31, 20, tzinfo=UTC),  # 9999-01-01 01:30 in Kolkata
        datetime(1, 12, 31, 18, tzinfo=UTC),  # still the year 1 in Kolkata (+05:53)
    ):
        with pytest.raises(ConfigError, match="between the years 2 and 9998"):
            cal.at(t)
    assert cal.at(datetime(9998, 12, 31, 18, tzinfo=UTC)) is w
