"""Properties of PeakHourCalendar on random rule sets and instants.

The reference evaluator here is deliberately naive: for an instant it reads the wall
clock in the calendar's zone and checks every rule on that day and the day before. It
shares no code with the calendar.
"""

from __future__ import annotations

import contextlib
import itertools
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from wedguard import CalendarRule as Rule
from wedguard import ConfigError, Level, PeakHourCalendar, Season, Window

UTC = timezone.utc
ZONES = ["UTC", "Europe/London", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
BASE = datetime(2025, 12, 1, tzinfo=UTC)
SPAN_MINUTES = 3 * 365 * 24 * 60


# --------------------------------------------------------------------------- reference


def wall_clock(t: datetime, tz: tzinfo) -> datetime:
    """The latest wall-clock reading the zone has shown up to ``t`` (naive).

    In the repeated hour after clocks go back, that is the reading just before they
    went back: a time in that hour "has happened" at its first occurrence.
    """
    local = t.astimezone(tz)
    if not local.fold:
        return local.replace(tzinfo=None)
    offset = local.utcoffset()
    # the transition is a whole second in (t - 3h, t]: find it by bisection
    lo, hi = int(t.timestamp()) - 3 * 3600, int(t.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == offset:
            hi = mid
        else:
            lo = mid
    return (
        (datetime.fromtimestamp(hi, UTC) - timedelta(microseconds=1))
        .astimezone(tz)
        .replace(tzinfo=None)
    )


def rule_holds(rule: Rule, wall: datetime) -> bool:
    for day in (wall.date() - timedelta(days=1), wall.date()):
        if day.weekday() not in rule.weekdays:
            continue
        if rule.season is not None:
            md = day.month * 100 + day.day
            s, e = rule.season.start, rule.season.end
            if not (s <= md <= e if s <= e else md >= s or md <= e):
                continue
        if rule.dates and day not in rule.dates:
            continue
        midnight = datetime.combine(day, time())
        end = rule.end if rule.end > rule.start else rule.end + 1440
        if midnight + timedelta(minutes=rule.start) <= wall < midnight + timedelta(minutes=end):
            return True
    return False


def reference(cal: PeakHourCalendar, t: datetime) -> tuple[Any, ...]:
    wall = wall_clock(t, cal.tz)
    holding = [r for r in cal.rules if rule_holds(r, wall)]
    if not holding:
        blackout = cal.default_level is Level.BLACKOUT
        zero = 0.0 if blackout else None
        return (cal.default_level, zero, zero, None, frozenset())
    level = max(r.level for r in holding)
    top = [r for r in holding if r.level == level]
    caps = {}
    for field in ("rate", "cpu_share", "rate_down"):
        values = [getattr(r, field) for r in top if getattr(r, field) is not None]
        caps[field] = min(values) if values else None
    decided = [
        r for r in top if any(caps[f] is not None and getattr(r, f) == caps[f] for f in caps)
    ] or top
    rate, cpu = caps["rate"], caps["cpu_share"]
    if level is Level.BLACKOUT:
        rate = cpu = 0.0
    return (level, rate, cpu, caps["rate_down"], frozenset(r.label for r in decided))


def observed(w: Window) -> tuple[Any, ...]:
    return (w.level, w.rate, w.cpu_share, w.rate_down, frozenset(r.label for r in w.rules))


# --------------------------------------------------------------------------- strategies

half_hours = st.integers(0, 47).map(lambda k: k * 30)
seasons = st.one_of(
    st.none(),
    st.sampled_from(["May-Oct", "Nov-Feb", "Mar", "Dec-Jan"]).map(Season.parse),
    st.tuples(st.integers(1, 12), st.integers(1, 28), st.integers(1, 12), st.integers(1, 28)).map(
        lambda v: Season(v[0] * 100 + v[1], v[2] * 100 + v[3])
    ),
)
event_dates = st.one_of(
    st.just(frozenset()),
    st.frozensets(st.dates(date(2025, 11, 20), date(2029, 2, 1)), min_size=1, max_size=4),
)


LINE_BREAKS = '"\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029'
names = st.one_of(
    st.just(""),
    st.text(
        st.characters(blacklist_characters=LINE_BREAKS, blacklist_categories=["Cs"]), max_size=12
    ),
)


@st.composite
def rules(draw: st.DrawFn) -> Rule:
    level = draw(st.sampled_from(Level))
    start = draw(half_hours)
    end = draw(st.one_of(half_hours, st.just(1440)))
    assume(end != start and not (start == 0 and end == 0))
    capped = level is Level.PEAK
    return Rule(
        level,
        weekdays=draw(st.frozensets(st.integers(0, 6), min_size=1)),
        start=start,
        end=end,
        season=draw(seasons),
        dates=draw(event_dates),
        rate=draw(st.sampled_from([None, 1e6, 2e6, 5e6])) if capped else None,
        cpu_share=draw(st.sampled_from([None, 0.2, 0.5])) if capped else None,
        rate_down=draw(st.sampled_from([None, None, 1e6, 0.0])),
        name=draw(names),
    )


calendars = st.builds(
    PeakHourCalendar,
    st.lists(rules(), max_size=6),
    tz=st.sampled_from(ZONES),
    default=st.sampled_from(Level),
)
instants = st.one_of(
    # on the minute, where rule boundaries are
    st.integers(0, SPAN_MINUTES).map(lambda m: BASE + timedelta(minutes=m)),
    st.integers(0, SPAN_MINUTES * 60_000_000).map(lambda us: BASE + timedelta(microseconds=us)),
)


# --------------------------------------------------------------------------- properties


@given(calendars, instants)
def test_at_matches_reference_and_holds_its_instant(cal: PeakHourCalendar, t: datetime) -> None:
    """at(t) contains t, agrees with the brute-force evaluation, and is homogeneous
    at both of its ends (the reference agrees just inside start and end)."""
    w = cal.at(t)
    assert w.start <= t < w.end
    assert w.contains(t)
    assert observed(w) == reference(cal, t)
    if w.bounded:
        assert reference(cal, w.end - timedelta(milliseconds=1)) == observed(w)
    if w.start.year > 1:
        assert reference(cal, w.start) == observed(w)


@given(calendars, instants)
def test_windows_are_maximal(cal: PeakHourCalendar, t: datetime) -> None:
    """Just outside a window the answer differs: its ends are real changes."""
    w = cal.at(t)
    if w.bounded:
        assert observed(cal.at(w.end)) != observed(w)
    if w.start.year > 1:
        assert observed(cal.at(w.start - timedelta(milliseconds=1))) != observed(w)


@given(calendars, instants)
def test_next_change_is_the_window_end_and_increases(cal: PeakHourCalendar, t: datetime) -> None:
    previous = t
    for _ in range(4):
        nxt = cal.next_change(previous)
        w = cal.at(previous)
        if nxt is None:
            assert not w.bounded
            break
        assert nxt == w.end
        assert nxt.timestamp() > previous.timestamp()
        previous = nxt


@settings(max_examples=40)
@given(calendars, instants, st.integers(1, 20 * 24 * 60))
def test_windows_tile_the_range(cal: PeakHourCalendar, start: datetime, minutes: int) -> None:
    end = start + timedelta(minutes=minutes)
    ws = list(cal.windows(start, end))
    assert ws
    # instants compared as timestamps: == between datetimes ignores the fold (PEP 495)
    assert ws[0].start.timestamp() == start.timestamp()
    assert ws[-1].end.timestamp() == end.timestamp()
    for a, b in itertools.pairwise(ws):
        assert a.end.timestamp() == b.start.timestamp()
        assert a.start.timestamp() < a.end.timestamp()
    for w in ws:
        assert observed(w) == reference(cal, w.start)


@given(st.lists(rules(), max_size=6), st.sampled_from(ZONES))
def test_text_and_dict_forms_round_trip(rule_list: list[Rule], tz: str) -> None:
    cal = PeakHourCalendar(rule_list, tz=tz)
    text = "\n".join(str(r) for r in rule_list)
    assert PeakHourCalendar.parse(text, tz=tz) == cal
    assert PeakHourCalendar.from_dict(cal.to_dict()) == cal


@given(st.text(max_size=80))
def test_parse_arbitrary_text_raises_only_config_error(text: str) -> None:
    with contextlib.suppress(ConfigError):
        PeakHourCalendar.parse(text)


token_text = st.lists(
    st.sampled_from(
        ["Mon", "Mon-Fri", "May-Oct", "06:00-22:00", "25:00", "peak", "blackout", "open",
         "10Mbit/s", "cpu=30%", 'name="x"', "2026-06-13", "05-15..09-30", ";", "#", "=",
         "24:00-01:00", "rate=", "down=0", "..", "-", ","]
    ),
    max_size=8,
).map(" ".join)  # fmt: skip


@given(
    st.one_of(token_text, st.text(alphabet='MonFri0123456789:-,;. =peakbltoucr%#"', max_size=40))
)
def test_parse_near_miss_text_raises_only_config_error(text: str) -> None:
    with contextlib.suppress(ConfigError):
        PeakHourCalendar.parse(text)


@given(
    st.one_of(
        st.text(max_size=60),
        st.text(alphabet="MonTueSat0123456789:-,; kKMGiBoff.", max_size=40),
    )
)
def test_from_rclone_arbitrary_text_raises_only_config_error(text: str) -> None:
    with contextlib.suppress(ConfigError):
        PeakHourCalendar.from_rclone(text)


def test_reference_wall_clock_in_the_repeated_hour() -> None:
    """The reference's own reading of a fold, checked by hand (New York, 2026-11-01)."""
    ny = ZoneInfo("America/New_York")
    second = datetime(2026, 11, 1, 6, 30, tzinfo=UTC)  # 01:30 EST, the second 01:30
    assert second.astimezone(ny).fold == 1
    assert wall_clock(second, ny) == datetime(2026, 11, 1, 1, 59, 59, 999999)


# --------------------------------------------------------------------------- a guard's view


class GuardReadingTheCalendar(RuleBasedStateMachine):
    """A guard caches the current window until next_change() and only then asks again.

    Time moves forward in steps of any size (and sometimes lands exactly on a change);
    the cached answer must always equal the brute-force reference, and asking the
    calendar again inside the window must give the very same window.
    """

    @initialize(cal=calendars, start=instants)
    def setup(self, cal: PeakHourCalendar, start: datetime) -> None:
        self.cal = cal
        self.now = start
        self.window = cal.at(start)
        self.until = cal.next_change(start)

    def _refresh(self) -> None:
        if self.until is not None and self.now >= self.until:
            self.window = self.cal.at(self.now)
            self.until = self.cal.next_change(self.now)

    @rule(seconds=st.integers(1, 3 * 86400))
    def advance(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)
        self._refresh()

    @precondition(lambda self: self.until is not None)
    @rule()
    def jump_to_the_change(self) -> None:
        assert self.until is not None
        self.now = self.until.astimezone(UTC)
        self._refresh()

    @rule(seconds=st.integers(0, 600))
    def jump_just_before_the_change(self, seconds: int) -> None:
        if self.until is None:
            return
        target = self.until.astimezone(UTC) - timedelta(seconds=1 + seconds)
        if target > self.now:
            self.now = target
            self._refresh()

    @invariant()
    def cached_answer_is_right(self) -> None:
        if not hasattr(self, "cal"):
            return
        assert observed(self.window) == reference(self.cal, self.now)
        assert self.window.contains(self.now)
        assert self.cal.at(self.now) == self.window


GuardReadingTheCalendar.TestCase.settings = settings(
    max_examples=30, stateful_step_count=20, deadline=None
)
test_guard_reading_the_calendar = GuardReadingTheCalendar.TestCase
