"""Weekly profile, seasons, recommended backup windows and the calendar rules text."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, time, timedelta, timezone
from types import MappingProxyType
from zoneinfo import ZoneInfo

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wedguard import ConfigError, Level
from wedguard.history import (
    HourStats,
    MetricsStore,
    RecommendedWindow,
    WeeklyProfile,
    WeekTime,
    default_metric,
    recommend_windows,
    windows_to_rules,
)
from wedguard.testing import FakeClock

T0 = datetime(2026, 1, 5, tzinfo=timezone.utc)  # a Monday
UTC = timezone.utc


def synthetic(
    store: MetricsStore,
    start: datetime,
    days: int,
    load: Callable[[datetime], float],
    *,
    every: int = 20,
    metric: str = "cpu.percent",
) -> None:
    """Record ``days`` of ``metric`` every ``every`` minutes, valued by ``load(local time)``."""
    steps = days * 24 * 60 // every
    store.record_many(
        (start + timedelta(minutes=i * every), {metric: load(start + timedelta(minutes=i * every))})
        for i in range(steps)
    )


def busy_except(*quiet: tuple[int, int, int, float]) -> Callable[[datetime], float]:
    """60 % load with a little wobble, except (weekday, from hour, to hour, load) windows."""

    def load(at: datetime) -> float:
        for weekday, lo, hi, value in quiet:
            if at.weekday() == weekday and lo <= at.hour < hi:
                return value + (at.minute % 3)
        return 60.0 + (at.minute % 7)

    return load


@pytest.fixture
def store() -> MetricsStore:
    s = MetricsStore(":memory:", retention="400d", clock=FakeClock(T0))
    yield s  # type: ignore[misc]
    s.close()


class FakeCalendar:
    """A calendar for tests: (weekday, from hour, to hour, level) rules, UTC."""

    @attrs.frozen
    class Window:
        level: Level
        start: datetime
        end: datetime

    def __init__(self, *rules: tuple[int, int, int, Level]) -> None:
        self.rules = rules
        self.calls = 0

    def at(self, when: datetime) -> FakeCalendar.Window:
        self.calls += 1
        when = when.astimezone(UTC)
        hour_start = when.replace(minute=0, second=0, microsecond=0)
        level = Level.OPEN
        for weekday, lo, hi, rule_level in self.rules:
            if when.weekday() == weekday and lo <= when.hour < hi and rule_level > level:
                level = rule_level
        return FakeCalendar.Window(level, hour_start, hour_start + timedelta(hours=1))


# ---------------------------------------------------------------------- profile


def test_weekly_profile_medians_and_p95_per_hour(store: MetricsStore) -> None:
    synthetic(store, T0, 14, busy_except((5, 3, 6, 5.0)))
    synthetic(store, T0, 14, lambda at: 0.1 + at.hour / 100, metric="api.latency_s")
    profile = store.weekly_profile(at=T0)
    assert profile.metrics == ("api.latency_s", "cpu.percent")
    assert profile.weeks == 2
    assert profile.season == "winter"  # two weeks of January make a season
    quiet = profile.at("cpu.percent", weekday=5, hour=4)
    busy = profile.at("cpu.percent", weekday=5, hour=12)
    assert quiet is not None
    assert busy is not None
    assert isinstance(quiet, HourStats)
    assert quiet.median == 6.0  # minutes 0,20,40 -> wobble 0,2,1
    assert quiet.count == 6  # three samples an hour, two weeks
    assert busy.median == 65.0  # minutes 0,20,40 -> wobble 0,6,5
    assert quiet.p95 <= quiet.max == 7.0
    assert profile.at("api.latency_s", 2, 13).median == pytest.approx(0.23)  # type: ignore[union-attr]
    assert len(profile.medians("cpu.percent")) == 168
    assert all(v is not None for v in profile.p95s("cpu.percent"))


def test_weekly_profile_marks_hours_without_data(store: MetricsStore) -> None:
    store.record({"cpu.percent": 10.0}, at=T0 + timedelta(days=2, hours=7, minutes=5))
    profile = store.weekly_profile("cpu.percent", seasons=None)
    cells = profile.hours["cpu.percent"]
    assert cells[2 * 24 + 7] is not None
    assert sum(c is not None for c in cells) == 1


def test_weekly_profile_counts_hours_in_the_local_zone(store: MetricsStore) -> None:
    """Local 02:00 stays hour 2 across the DST change, in summer and in winter."""
    london = ZoneInfo("Europe/London")

    def load(at: datetime) -> float:
        return 5.0 if at.astimezone(london).hour == 2 else 50.0

    # four weeks around the end of British Summer Time (2026-10-25)
    synthetic(store, datetime(2026, 10, 12, tzinfo=UTC), 28, load)
    profile = store.weekly_profile("cpu.percent", tz="Europe/London", seasons=None)
    medians = profile.medians("cpu.percent")
    assert {h % 24 for h, v in enumerate(medians) if v == 5.0} == {2}
    assert all(v == 5.0 for h, v in enumerate(medians) if h % 24 == 2)
    utc_profile = store.weekly_profile("cpu.percent", tz="UTC", seasons=None)
    utc_medians = utc_profile.medians("cpu.percent")
    # in UTC the quiet hour moves from 01:00 (summer time) to 02:00: both are mixed
    assert {h % 24 for h, v in enumerate(utc_medians) if v is not None and v < 50} == {1, 2}
    assert utc_medians.count(5.0) < 7  # no longer the same hour every day


def test_seasons_are_kept_apart_when_there_is_data_enough(store: MetricsStore) -> None:
    synthetic(store, datetime(2026, 1, 5, tzinfo=UTC), 14, busy_except((6, 3, 5, 2.0)))
    synthetic(store, datetime(2026, 7, 6, tzinfo=UTC), 14, busy_except((6, 8, 10, 2.0)))
    profiles = store.weekly_profiles("cpu.percent")
    assert set(profiles) == {"all", "winter", "summer"}
    assert profiles["summer"].months == frozenset({6, 7, 8})
    summer = store.weekly_profile("cpu.percent", at=datetime(2026, 7, 30, tzinfo=UTC))
    assert summer.season == "summer"
    assert summer.at("cpu.percent", 6, 8).median < 5  # type: ignore[union-attr]
    assert summer.at("cpu.percent", 6, 3).median > 50  # type: ignore[union-attr]
    winter = store.weekly_profile("cpu.percent", at=datetime(2026, 2, 1, tzinfo=UTC))
    assert winter.season == "winter"
    assert winter.at("cpu.percent", 6, 3).median < 5  # type: ignore[union-attr]
    # spring has no data: the whole year is used
    spring = store.weekly_profile("cpu.percent", at=datetime(2026, 4, 1, tzinfo=UTC))
    assert spring.season is None
    assert spring.weeks == 4


def test_one_week_is_not_a_season(store: MetricsStore) -> None:
    synthetic(store, datetime(2026, 7, 6, tzinfo=UTC), 7, busy_except((6, 8, 10, 2.0)))
    profile = store.weekly_profile("cpu.percent", at=datetime(2026, 7, 20, tzinfo=UTC))
    assert profile.season is None
    assert (
        store.weekly_profile(
            "cpu.percent", at=datetime(2026, 7, 20, tzinfo=UTC), min_weeks=1
        ).season
        == "summer"
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"metrics": []}, "metrics"),
        ({"tz": "Mars/Olympus"}, "tz"),
        ({"min_weeks": 0}, "min_weeks"),
        ({"seasons": {"wet": [13]}}, "seasons['wet']"),
        ({"at": datetime(2026, 1, 1)}, "at"),
    ],
)
def test_profile_bad_arguments(store: MetricsStore, kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        store.weekly_profile(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


# ---------------------------------------------------------------- recommendation


def test_finds_the_known_quiet_windows(store: MetricsStore) -> None:
    """Three weeks with quiet Saturday 03-06 and Tuesday 01-03: both are found, ranked."""
    synthetic(store, T0, 21, busy_except((5, 3, 6, 5.0), (1, 1, 3, 12.0)))
    windows = recommend_windows(store, duration="2h", count=3, at=T0)
    assert [str(w) for w in windows[:2]] == ["Sat 03:00-05:00", "Tue 01:00-03:00"]
    best = windows[0]
    assert isinstance(best, RecommendedWindow)
    assert best.start == WeekTime(5, time(3)) == (5, time(3))
    assert best.weekday == 5
    assert best.end == (5, time(5))
    assert best.duration == 7200
    assert best.rank == 1
    assert windows[1].rank == 2
    assert best.expected_load == pytest.approx(6.0)
    assert best.expected_load < windows[1].expected_load < windows[2].expected_load
    assert "cpu.percent" in best.reason
    assert "3 weeks" in best.reason
    assert best.level is None  # no calendar given


def test_windows_never_overlap(store: MetricsStore) -> None:
    synthetic(store, T0, 14, busy_except((5, 0, 12, 5.0)))
    windows = recommend_windows(store, duration="3h", count=5, at=T0)
    assert [str(w) for w in windows[:4]] == [
        "Sat 00:00-03:00",
        "Sat 03:00-06:00",
        "Sat 06:00-09:00",
        "Sat 09:00-12:00",
    ]


def test_blackouts_are_honoured(store: MetricsStore) -> None:
    synthetic(store, T0, 14, busy_except((5, 3, 6, 5.0), (1, 1, 3, 12.0)))
    calendar = FakeCalendar((5, 0, 8, Level.BLACKOUT), (1, 2, 3, Level.PEAK))
    windows = recommend_windows(store, "2h", count=3, calendar=calendar, at=T0)
    assert all(w.weekday != 5 or w.end.time.hour <= 0 for w in windows)
    assert str(windows[0]) == "Tue 01:00-03:00"
    assert windows[0].level is Level.PEAK
    assert "calendar: peak" in windows[0].reason
    assert calendar.calls > 0


def test_blackout_touching_the_last_minutes_forbids(store: MetricsStore) -> None:
    synthetic(store, T0, 14, busy_except((2, 1, 4, 5.0)))
    calendar = FakeCalendar((2, 3, 4, Level.BLACKOUT))
    windows = recommend_windows(store, "2h", count=1, calendar=calendar, at=T0)
    assert str(windows[0]) == "Wed 01:00-03:00"
    partial = recommend_windows(store, "2h30m", count=1, calendar=calendar, at=T0)
    assert str(partial[0]) != "Wed 01:00-03:30"


def test_windows_wrap_around_the_week(store: MetricsStore) -> None:
    synthetic(store, T0, 14, busy_except((6, 23, 24, 3.0), (0, 0, 1, 3.0)))
    (best,) = recommend_windows(store, "2h", count=1, at=T0)
    assert (best.start, best.end) == ((6, time(23)), (0, time(1)))
    assert best.next_start(T0) == datetime(2026, 1, 11, 23, tzinfo=UTC)
    assert windows_to_rules([best]) == "Sun 23:00-24:00 open\nMon 00:00-01:00 open"


def test_recommendation_in_a_local_zone(store: MetricsStore) -> None:
    london = ZoneInfo("Europe/London")

    def load(at: datetime) -> float:
        local = at.astimezone(london)
        return 4.0 if local.weekday() == 6 and 2 <= local.hour < 4 else 40.0

    synthetic(store, datetime(2026, 6, 1, tzinfo=UTC), 14, load)
    (best,) = recommend_windows(
        store, "2h", count=1, tz="Europe/London", at=datetime(2026, 6, 20, tzinfo=UTC)
    )
    assert str(best) == "Sun 02:00-04:00"
    assert best.tz == "Europe/London"
    assert best.next_start(datetime(2026, 6, 20, tzinfo=UTC)) == datetime(
        2026, 6, 21, 1, tzinfo=UTC
    )


def test_recommendation_uses_the_current_season(store: MetricsStore) -> None:
    synthetic(store, datetime(2026, 1, 5, tzinfo=UTC), 14, busy_except((6, 3, 5, 2.0)))
    synthetic(store, datetime(2026, 7, 6, tzinfo=UTC), 14, busy_except((6, 8, 10, 2.0)))
    (summer,) = recommend_windows(store, "2h", count=1, at=datetime(2026, 7, 25, tzinfo=UTC))
    (winter,) = recommend_windows(store, "2h", count=1, at=datetime(2026, 1, 25, tzinfo=UTC))
    assert str(summer) == "Sun 08:00-10:00"
    assert "(summer)" in summer.reason
    assert str(winter) == "Sun 03:00-05:00"
    assert "(winter)" in winter.reason


def test_no_data_no_windows(store: MetricsStore) -> None:
    assert recommend_windows(store, at=T0) == []


def test_hours_without_data_are_not_recommended(store: MetricsStore) -> None:
    synthetic(store, T0, 1, lambda at: 1.0 if at.hour < 3 else 50.0)  # Monday only
    windows = recommend_windows(store, "2h", count=30, at=T0)
    assert len(windows) == 12  # Monday's twelve 2-hour windows, nothing else
    assert all(w.weekday == 0 and w.end.minute_of_week <= 1440 for w in windows)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"duration": "30s"}, "duration"),
        ({"duration": "25h"}, "duration"),
        ({"duration": "90s"}, "duration"),
        ({"duration": "soon"}, "duration"),
        ({"count": 0}, "count"),
        ({"calendar": "every night"}, "calendar"),
        ({"weeks_ahead": 0}, "weeks_ahead"),
        ({"metric": ""}, "metric"),
        ({"tz": "Nowhere/Land"}, "tz"),
    ],
)
def test_recommend_bad_arguments(
    store: MetricsStore, kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        recommend_windows(store, **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_recommend_rejects_what_is_not_a_store() -> None:
    with pytest.raises(ConfigError) as info:
        recommend_windows("history.db")  # type: ignore[arg-type]
    assert info.value.field == "store"


def profile_of(medians: list[float]) -> WeeklyProfile:
    cells = tuple(HourStats(m, m * 1.5, m, m * 2, 10) for m in medians)
    return WeeklyProfile(
        metrics=("cpu.percent",),
        hours=MappingProxyType({"cpu.percent": cells}),
        tz="UTC",
        season=None,
        months=frozenset(range(1, 13)),
        weeks=3,
    )


@settings(max_examples=60)  # each example walks a week of calendar
@given(
    medians=st.lists(st.integers(min_value=1, max_value=99), min_size=168, max_size=168),
    hours=st.integers(min_value=1, max_value=6),
    count=st.integers(min_value=1, max_value=5),
    blackout=st.sets(st.integers(min_value=0, max_value=167), max_size=40),
)
def test_recommendation_properties(
    medians: list[int], hours: int, count: int, blackout: set[int]
) -> None:
    """Ranked best first, never overlapping, never in a blackout, the best is optimal."""
    calendar = FakeCalendar(*((h // 24, h % 24, h % 24 + 1, Level.BLACKOUT) for h in blackout))
    profile = profile_of([float(m) for m in medians])
    windows = recommend_windows(
        profile, f"{hours}h", count=count, calendar=calendar, at=T0, weeks_ahead=1
    )

    def load(start: int) -> float:
        return sum(medians[(start + i) % 168] for i in range(hours)) / hours

    allowed = [s for s in range(168) if not any((s + i) % 168 in blackout for i in range(hours))]
    assert len(windows) <= count
    if not allowed:
        assert windows == []
        return
    assert windows[0].expected_load == pytest.approx(min(load(s) for s in allowed))
    loads = [w.expected_load for w in windows]
    assert loads == sorted(loads)
    assert [w.rank for w in windows] == list(range(1, len(windows) + 1))
    used: set[int] = set()
    for w in windows:
        start = w.start.weekday * 24 + w.start.time.hour
        span = {(start + i) % 168 for i in range(hours)}
        assert not span & blackout
        assert not span & used
        used |= span
        assert w.expected_load == pytest.approx(load(start))
        assert w.peak_load == pytest.approx(max(medians[h] * 1.5 for h in span))


@given(quiet=st.integers(min_value=0, max_value=167), hours=st.integers(min_value=1, max_value=4))
def test_a_planted_quiet_window_is_found(quiet: int, hours: int) -> None:
    medians = [50.0 + (h * 7) % 13 for h in range(168)]
    for i in range(hours):
        medians[(quiet + i) % 168] = 1.0
    (best,) = recommend_windows(profile_of(medians), f"{hours}h", count=1, at=T0)
    assert best.start == (quiet // 24, time(quiet % 24))
    assert best.expected_load == 1.0


# -------------------------------------------------------------------- rules text


def window(weekday: int, hour: int, minutes: int) -> RecommendedWindow:
    end = (weekday * 1440 + hour * 60 + minutes) % (7 * 1440)
    return RecommendedWindow(
        WeekTime(weekday, time(hour)),
        WeekTime(end // 1440, time((end % 1440) // 60, end % 60)),
        minutes * 60.0,
        1.0,
        2.0,
        "cpu.percent",
        "quiet",
        1,
    )


def test_rules_text() -> None:
    text = windows_to_rules([window(0, 2, 120), window(5, 22, 150)])
    assert text.splitlines() == [
        "Mon 02:00-04:00 open",
        "Sat 22:00-24:00 open",
        "Sun 00:00-00:30 open",
    ]


def test_rules_text_with_the_rest_of_the_week() -> None:
    text = windows_to_rules([window(0, 2, 120)], outside="peak 10Mbit/s")
    lines = text.splitlines()
    assert lines[:3] == [
        "Mon 02:00-04:00 open",
        "Mon 00:00-02:00 peak 10Mbit/s",
        "Mon 04:00-24:00 peak 10Mbit/s",
    ]
    assert lines[3:] == [
        f"{d} 00:00-24:00 peak 10Mbit/s" for d in ("Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    ]


def test_rules_cover_the_week_exactly() -> None:
    """Windows plus the outside lines tile the week: every minute exactly once."""
    windows = [window(6, 23, 90), window(2, 0, 1440), window(4, 10, 45)]
    minutes = [0] * (7 * 1440)
    days = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    for line in windows_to_rules(windows, outside="blackout").splitlines():
        day, span, _level = line.split(" ", 2)
        lo, hi = span.split("-")
        lo_m = int(lo[:2]) * 60 + int(lo[3:])
        hi_m = int(hi[:2]) * 60 + int(hi[3:])
        assert lo_m < hi_m
        for m in range(lo_m, hi_m):
            minutes[days.index(day) * 1440 + m] += 1
    assert set(minutes) == {1}


def test_rules_bad_arguments() -> None:
    with pytest.raises(ConfigError):
        windows_to_rules(["Mon 02:00"])  # type: ignore[list-item]
    with pytest.raises(ConfigError):
        windows_to_rules([], level="")
    with pytest.raises(ConfigError):
        windows_to_rules([], outside=" ")


def test_reasons_read_well(store: MetricsStore) -> None:
    synthetic(store, T0, 7, busy_except((3, 2, 4, 6.0)))
    (best,) = recommend_windows(store, "2h", count=1, at=T0)
    assert best.reason.startswith("typical cpu.percent 7 (p95 ")
    assert "of the week's typical" in best.reason
    assert "1 week of history" in best.reason
    assert not math.isnan(best.peak_load)


# ------------------------------------------------------------ the real calendar


def test_with_a_peak_hour_calendar(store: MetricsStore) -> None:
    """A PeakHourCalendar's blackouts are honoured and its peak hours reported."""
    from wedguard import PeakHourCalendar

    synthetic(store, T0, 14, busy_except((5, 3, 6, 5.0), (1, 1, 3, 12.0), (2, 20, 22, 14.0)))
    calendar = PeakHourCalendar.parse(
        """
        Mon-Sun 06:00-22:00 peak 10Mbit/s
        Sat 00:00-08:00 blackout
        """,
        tz="UTC",
    )
    windows = recommend_windows(store, "2h", count=2, calendar=calendar, at=T0)
    assert [str(w) for w in windows] == ["Tue 01:00-03:00", "Wed 20:00-22:00"]
    assert [w.level for w in windows] == [Level.OPEN, Level.PEAK]


def test_rules_text_parses_as_a_calendar(store: MetricsStore) -> None:
    """The rules text, read back by PeakHourCalendar, opens exactly the windows."""
    from wedguard import PeakHourCalendar

    synthetic(store, T0, 14, busy_except((6, 23, 24, 3.0), (0, 0, 1, 3.0), (3, 2, 4, 4.0)))
    windows = recommend_windows(store, "2h", count=2, at=T0)
    assert [str(w) for w in windows] == ["Sun 23:00-01:00", "Thu 02:00-04:00"]
    calendar = PeakHourCalendar.parse(windows_to_rules(windows, outside="blackout"), tz="UTC")
    week = [T0 + timedelta(minutes=30 * i) for i in range(7 * 48)]
    opened = {(t.weekday(), t.hour) for t in week if calendar.at(t).level is Level.OPEN}
    assert opened == {(6, 23), (0, 0), (3, 2), (3, 3)}
    assert calendar.at(T0 + timedelta(days=2)).level is Level.BLACKOUT


def test_default_metric_is_the_load_that_has_history(store: MetricsStore) -> None:
    """A store with latency only: windows are ranked by latency without being told."""
    synthetic(store, T0, 7, lambda at: 0.05 if at.hour in (4, 5) else 0.3, metric="api.latency_s")
    (best,) = recommend_windows(store, "2h", count=1, at=T0)
    assert best.metric == "api.latency_s"
    assert best.start.time == time(4)
    assert default_metric(["db.latency_s", "cpu.percent"]) == "cpu.percent"
    assert default_metric(["backup.rss_bytes", "queue.depth"]) == "queue.depth"
    assert default_metric([]) == "cpu.percent"


def test_windows_follow_the_calendars_zone(store: MetricsStore) -> None:
    from wedguard import PeakHourCalendar

    london = ZoneInfo("Europe/London")

    def load(at: datetime) -> float:
        return 3.0 if at.astimezone(london).hour in (1, 2) else 30.0

    synthetic(store, datetime(2026, 6, 1, tzinfo=UTC), 14, load)
    calendar = PeakHourCalendar.parse("Mon-Sun 06:00-22:00 peak", tz="Europe/London")
    windows = recommend_windows(
        store, "2h", count=1, calendar=calendar, at=datetime(2026, 6, 16, tzinfo=UTC)
    )
    assert windows[0].tz == "Europe/London"
    assert windows[0].start.time == time(1)


def test_window_to_dict() -> None:
    data = window(6, 23, 90).to_dict()
    assert data == {
        "rank": 1,
        "weekday": "Sun",
        "start": "23:00",
        "end_weekday": "Mon",
        "end": "00:30",
        "duration_s": 5400.0,
        "expected_load": 1.0,
        "peak_load": 2.0,
        "metric": "cpu.percent",
        "tz": "UTC",
        "level": None,
        "reason": "quiet",
    }


def test_profile_to_dict_is_json(store: MetricsStore) -> None:
    import json

    synthetic(store, T0, 7, busy_except((5, 3, 6, 5.0)))
    data = json.loads(json.dumps(store.weekly_profile("cpu.percent", at=T0).to_dict()))
    assert data["metrics"] == ["cpu.percent"]
    assert data["weeks"] == 1
    assert data["hours"]["cpu.percent"][5 * 24 + 4]["median"] == 6.0
    assert len(data["hours"]["cpu.percent"]) == 168


@settings(max_examples=40)
@given(
    samples=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=21 * 86400 - 1),
            st.floats(min_value=0, max_value=100, allow_nan=False),
        ),
        min_size=1,
        max_size=80,
    ),
    tz=st.sampled_from(["UTC", "Europe/London", "America/New_York", "Asia/Kolkata"]),
)
def test_profile_matches_a_python_reference(samples: list[tuple[int, float]], tz: str) -> None:
    """Each hour-of-week cell holds exactly the samples whose local time falls in it."""
    from collections import defaultdict

    zone = ZoneInfo(tz)
    start = datetime(2026, 3, 16, tzinfo=UTC)  # three weeks across the spring DST changes
    expected: dict[int, list[float]] = defaultdict(list)
    with MetricsStore(":memory:", retention="3650d", clock=FakeClock(start)) as store:
        for offset, value in samples:
            at = start + timedelta(seconds=offset)
            store.record({"m": value}, at=at)
            local = at.astimezone(zone)
            expected[local.weekday() * 24 + local.hour].append(value)
        profile = store.weekly_profile("m", tz=tz, seasons=None)
    cells = profile.hours["m"]
    assert {h for h, c in enumerate(cells) if c is not None} == set(expected)
    for hour, values in expected.items():
        cell = cells[hour]
        assert cell is not None
        assert cell.count == len(values)
        assert cell.max == max(values)
        ordered = sorted(values)
        mid = (len(ordered) - 1) / 2
        median = (ordered[math.floor(mid)] + ordered[math.ceil(mid)]) / 2
        assert cell.median == pytest.approx(median)
