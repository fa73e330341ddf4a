"""Which weekly windows a backup should run in: the quietest hours of production's
typical week, outside a calendar's blackouts, and the calendar rules that say so.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, time, timedelta, timezone, tzinfo
from typing import Any

import attrs

from wedguard.errors import ConfigError
from wedguard.history.convert import check_aware, zone
from wedguard.history.store import MetricsStore
from wedguard.history.values import (
    DAY_NAMES,
    HOURS_PER_WEEK,
    HourStats,
    WeeklyProfile,
    WeekTime,
)
from wedguard.interfaces import Calendar
from wedguard.levels import Level
from wedguard.units import parse_duration

__all__ = [
    "LOAD_METRICS",
    "RecommendedWindow",
    "default_metric",
    "recommend_windows",
    "windows_to_rules",
]

LOAD_METRICS = ("cpu.percent", "api.latency_s", "db.latency_s")
"""The production metrics windows are ranked by, in order of preference."""

_NO_END = object()


@attrs.frozen(slots=True)
class RecommendedWindow:
    """A weekly window in which a backup disturbs production least.

    Attributes:
        start: when it opens: ``(weekday, time)`` with ``weekday`` 0 = Monday.
        end: when it closes (may fall on the next day, or wrap to Monday).
        duration: its length in seconds.
        expected_load: the typical (median) load of ``metric`` over the window.
        peak_load: the highest hourly 95th percentile of ``metric`` in the window.
        metric: the metric the load is measured in.
        reason: why this window, in words.
        rank: 1 for the best window.
        tz: the time zone of ``start`` and ``end``.
        level: the most restrictive calendar level met in the window (``None``
            when no calendar was given).
    """

    start: WeekTime
    end: WeekTime
    duration: float
    expected_load: float
    peak_load: float
    metric: str
    reason: str
    rank: int
    tz: str = "UTC"
    level: Level | None = None

    @property
    def weekday(self) -> int:
        """The start's weekday (0 = Monday)."""
        return self.start.weekday

    def next_start(self, after: datetime) -> datetime:
        """The first start of this window at or after the aware instant ``after``."""
        check_aware("after", after)
        tzone = zone(self.tz)
        local = after.astimezone(tzone)
        day = local.date() + timedelta(days=(self.start.weekday - local.weekday()) % 7)
        candidate = datetime.combine(day, self.start.time, tzone)
        if candidate < local:
            candidate = datetime.combine(day + timedelta(days=7), self.start.time, tzone)
        return candidate

    def day_pieces(self) -> Iterator[tuple[int, int, int]]:
        """``(weekday, start minute, end minute)`` pieces of the window, split at midnight.

        >>> w = RecommendedWindow(WeekTime(6, time(23)), WeekTime(0, time(1)), 7200.0,
        ...                       3.0, 4.0, "cpu.percent", "quiet", 1)
        >>> list(w.day_pieces())
        [(6, 1380, 1440), (0, 0, 60)]
        """
        begin = self.start.minute_of_week
        remaining = round(self.duration / 60)
        while remaining > 0:
            day, minute = divmod(begin % (7 * 1440), 1440)
            piece = min(remaining, 1440 - minute)
            yield day, minute, minute + piece
            begin += piece
            remaining -= piece

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form (for the CLI and reports)."""
        return {
            "rank": self.rank,
            "weekday": DAY_NAMES[self.start.weekday],
            "start": f"{self.start.time:%H:%M}",
            "end_weekday": DAY_NAMES[self.end.weekday],
            "end": f"{self.end.time:%H:%M}",
            "duration_s": self.duration,
            "expected_load": self.expected_load,
            "peak_load": self.peak_load,
            "metric": self.metric,
            "tz": self.tz,
            "level": None if self.level is None else self.level.name,
            "reason": self.reason,
        }

    def __str__(self) -> str:
        return f"{self.start}-{self.end.time:%H:%M}"


def default_metric(available: Iterable[str]) -> str:
    """The load metric to rank windows by: the first of :data:`LOAD_METRICS` available,
    else the first production metric available (not ``backup.*``, not ``*.error``),
    else ``"cpu.percent"``.

    >>> default_metric(["api.latency_s", "backup.rss_bytes"])
    'api.latency_s'
    """
    names = sorted(available)
    for name in LOAD_METRICS:
        if name in names:
            return name
    for name in names:
        if not name.startswith("backup.") and not name.endswith(".error"):
            return name
    return "cpu.percent"


def _level_of(window: Any) -> Level:
    level = getattr(window, "level", Level.OPEN)
    try:
        return Level(level)
    except ValueError:
        return Level[str(level).upper()]


def _hour_levels(calendar: Calendar, tzone: tzinfo, after: datetime, weeks: int) -> list[Level]:
    """The most restrictive calendar level in each hour of the week, over ``weeks``."""
    local = after.astimezone(tzone)
    monday = datetime.combine(local.date() - timedelta(days=local.weekday()), time(0), tzone)
    levels = [Level.OPEN] * HOURS_PER_WEEK
    step = timedelta(minutes=5)
    for week in range(weeks):
        base = monday + timedelta(days=7 * (week + 1))  # whole weeks from next Monday
        for hour in range(HOURS_PER_WEEK):
            # wall-clock arithmetic in the zone, then to UTC to walk real instants
            start = datetime.combine(
                (base + timedelta(hours=hour)).date(), time(hour % 24), tzone
            ).astimezone(timezone.utc)
            end = start + timedelta(hours=1)
            t = start
            worst = levels[hour]
            while t < end and worst < Level.BLACKOUT:
                found = calendar.at(t)
                worst = max(worst, _level_of(found))
                nxt = getattr(found, "end", _NO_END)
                if nxt is None:  # the answer never changes again
                    break
                if isinstance(nxt, datetime) and nxt > t:
                    t = min(nxt, t + timedelta(hours=1))
                else:
                    t = t + step
            levels[hour] = worst
    return levels


_Candidate = tuple[float, float, int, Level]
"""``(expected load, peak load, start hour of the week, calendar level)``."""


def recommend_windows(
    store: MetricsStore | WeeklyProfile,
    duration: str | float = "2h",
    count: int = 3,
    calendar: Calendar | None = None,
    metric: str | None = None,
    *,
    tz: str | tzinfo | None = None,
    at: datetime | None = None,
    weeks_ahead: int = 4,
) -> list[RecommendedWindow]:
    """The ``count`` weekly windows of ``duration`` where a backup hurts production least.

    Every whole hour of the week is a candidate start. A candidate's expected load is
    the mean of the typical (median) load of ``metric`` over its hours, from the
    store's weekly profile (the current season's when there is data enough). Windows
    that touch an hour without data, or a calendar blackout in any of the next
    ``weeks_ahead`` weeks, are left out. The quietest go first, ties broken by the
    lower p95; the windows returned never overlap.

    Args:
        store: a :class:`MetricsStore` or a :class:`WeeklyProfile` made from one.
        duration: how long the backup needs, e.g. ``"2h"`` (whole minutes, at most a day).
        count: how many windows to return (at most).
        calendar: anything with ``at(when) -> window`` whose ``.level`` is a
            :class:`~wedguard.Level` (e.g. a ``PeakHourCalendar``); BLACKOUT forbids.
        metric: the production metric to minimise; by default the first of
            ``cpu.percent``, ``api.latency_s`` and ``db.latency_s`` that has history.
        tz: the time zone of the windows (a store's profile is computed in it); by
            default the calendar's (its ``tz``), else UTC.
        at: "now", for seasons and for checking the calendar's coming weeks.
        weeks_ahead: how many coming weeks of the calendar to honour.

    Returns:
        Ranked :class:`RecommendedWindow` values, best first (fewer than ``count``
        when there are not enough quiet, allowed windows; empty without data).

    Example::

        >>> from datetime import datetime, timedelta, timezone
        >>> store = MetricsStore(":memory:", retention="30d")
        >>> t0 = datetime(2026, 1, 5, tzinfo=timezone.utc)  # a Monday
        >>> store.record_many(
        ...     (t0 + timedelta(hours=h), {"cpu.percent": 5.0 if h % 24 in (3, 4) else 60.0})
        ...     for h in range(7 * 24))
        >>> best = recommend_windows(store, "2h", count=1, at=t0)[0]
        >>> str(best), best.expected_load
        ('Mon 03:00-05:00', 5.0)
        >>> print(windows_to_rules([best]))
        Mon 03:00-05:00 open
        >>> store.close()
    """
    seconds = _check_args(duration, count, calendar, metric, weeks_ahead)
    if tz is None:
        cal_tz = getattr(calendar, "tz", None)
        tz = cal_tz if isinstance(cal_tz, (str, tzinfo)) else "UTC"
    profile, metric, tzone, when = _profile_of(store, metric, tz, at)
    cells = profile.hours[metric]
    levels = (
        _hour_levels(calendar, tzone, when, weeks_ahead)
        if calendar is not None
        else [Level.OPEN] * HOURS_PER_WEEK
    )
    known = [c.median for c in cells if c is not None]
    if not known:
        return []
    typical = sorted(known)[len(known) // 2]
    chosen = _pick(_candidates(cells, seconds, levels), seconds, count)
    return [
        _window(rank, cand, seconds, metric, profile, typical, calendar is not None)
        for rank, cand in enumerate(chosen, 1)
    ]


def _check_args(
    duration: str | float, count: int, calendar: object, metric: str | None, weeks_ahead: int
) -> float:
    """The checked arguments of :func:`recommend_windows`; returns the duration in seconds."""
    seconds = parse_duration(duration, field="duration")
    if not 60 <= seconds <= 86400 or abs(seconds / 60 - round(seconds / 60)) > 1e-9:
        raise ConfigError("duration", duration, "whole minutes between '1min' and '24h'")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError("count", count, "a whole number >= 1")
    if calendar is not None and not callable(getattr(calendar, "at", None)):
        raise ConfigError("calendar", calendar, "a calendar with at(when) -> window")
    if isinstance(weeks_ahead, bool) or not isinstance(weeks_ahead, int) or weeks_ahead < 1:
        raise ConfigError("weeks_ahead", weeks_ahead, "a whole number >= 1")
    if metric is not None and (not isinstance(metric, str) or not metric):
        raise ConfigError("metric", metric, "a metric name")
    return seconds


def _profile_of(
    store: MetricsStore | WeeklyProfile,
    metric: str | None,
    tz: str | tzinfo,
    at: datetime | None,
) -> tuple[WeeklyProfile, str, tzinfo, datetime]:
    """The profile to rank by, the metric, the windows' zone and "now"."""
    if isinstance(store, WeeklyProfile):
        profile = store
        if metric is None:
            metric = default_metric(m for m in profile.metrics if any(profile.hours[m]))
        if metric not in profile.hours:
            raise ConfigError("metric", metric, f"one of the profile's metrics {profile.metrics}")
        when = check_aware("at", at) if at is not None else datetime.now(timezone.utc)
        return profile, metric, zone(profile.tz), when
    if isinstance(store, MetricsStore):
        tzone = zone(tz)
        when = check_aware("at", at if at is not None else store.clock.now())
        if metric is None:
            metric = default_metric(store.metrics())
        return store.weekly_profile(metric, tz=tz, at=when), metric, tzone, when
    raise ConfigError("store", store, "a MetricsStore or a WeeklyProfile")


def _candidates(
    cells: Sequence[HourStats | None], seconds: float, levels: Sequence[Level]
) -> list[_Candidate]:
    """Every allowed start hour with data in all its hours, quietest first."""
    span = math.ceil(seconds / 3600 - 1e-9)
    weights = [1.0] * span
    weights[-1] = seconds / 3600 - (span - 1)
    candidates: list[_Candidate] = []
    for start in range(HOURS_PER_WEEK):
        hours = [(start + i) % HOURS_PER_WEEK for i in range(span)]
        stats = [cells[h] for h in hours]
        if any(s is None for s in stats):
            continue
        level = max(levels[h] for h in hours)
        if level >= Level.BLACKOUT:
            continue
        load = sum(
            w * s.median for w, s in zip(weights, stats, strict=True) if s is not None
        ) / sum(weights)
        peak = max(s.p95 for s in stats if s is not None)
        candidates.append((load, peak, start, level))
    candidates.sort()
    return candidates


def _pick(candidates: Iterable[_Candidate], seconds: float, count: int) -> list[_Candidate]:
    """The first ``count`` candidates that do not overlap one another."""
    span = math.ceil(seconds / 3600 - 1e-9)
    chosen: list[_Candidate] = []
    taken: set[int] = set()
    for cand in candidates:
        needed = {(cand[2] + i) % HOURS_PER_WEEK for i in range(span)}
        if needed & taken:
            continue
        chosen.append(cand)
        taken |= needed
        if len(chosen) == count:
            break
    return chosen


def _window(
    rank: int,
    candidate: _Candidate,
    seconds: float,
    metric: str,
    profile: WeeklyProfile,
    typical: float,
    with_calendar: bool,
) -> RecommendedWindow:
    """The :class:`RecommendedWindow` of a chosen candidate, with its reason in words."""
    load, peak, start, level = candidate
    begin = WeekTime(start // 24, time(start % 24))
    end_minute = (start * 60 + round(seconds / 60)) % (HOURS_PER_WEEK * 60)
    end = WeekTime(end_minute // 1440, time((end_minute % 1440) // 60, end_minute % 60))
    share = f"{load / typical:.0%} of" if typical > 0 else "vs"
    season = f" ({profile.season})" if profile.season else ""
    reason = (
        f"typical {metric} {load:.3g} (p95 {peak:.3g}) from {begin} to {end}, "
        f"{share} the week's typical {typical:.3g}; "
        f"{profile.weeks} week{'s' if profile.weeks != 1 else ''} of history{season}"
    )
    if with_calendar:
        reason += f"; calendar: {level.name.lower()}"
    return RecommendedWindow(
        start=begin,
        end=end,
        duration=seconds,
        expected_load=load,
        peak_load=peak,
        metric=metric,
        reason=reason,
        rank=rank,
        tz=profile.tz,
        level=level if with_calendar else None,
    )


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def windows_to_rules(
    windows: Iterable[RecommendedWindow], *, level: str = "open", outside: str | None = None
) -> str:
    """The calendar rules text (``PeakHourCalendar.parse`` syntax) for ``windows``.

    Each window becomes ``Day HH:MM-HH:MM <level>`` lines, split at midnight so no
    line crosses a day. With ``outside`` (e.g. ``"blackout"`` or ``"peak 10Mbit/s"``)
    the rest of the week is written too, with that level: since the most restrictive
    rule wins, this is how a calendar keeps backups to the windows.

    >>> w = RecommendedWindow(WeekTime(6, time(23)), WeekTime(0, time(1)), 7200.0,
    ...                       3.0, 4.0, "cpu.percent", "quiet", 1)
    >>> print(windows_to_rules([w], outside="blackout"))
    Sun 23:00-24:00 open
    Mon 00:00-01:00 open
    Mon 01:00-24:00 blackout
    Tue 00:00-24:00 blackout
    Wed 00:00-24:00 blackout
    Thu 00:00-24:00 blackout
    Fri 00:00-24:00 blackout
    Sat 00:00-24:00 blackout
    Sun 00:00-23:00 blackout
    """
    if not isinstance(level, str) or not level.strip():
        raise ConfigError("level", level, "a calendar level such as 'open'")
    if outside is not None and (not isinstance(outside, str) or not outside.strip()):
        raise ConfigError("outside", outside, "a calendar level such as 'blackout'")
    lines = []
    covered: list[list[tuple[int, int]]] = [[] for _ in range(7)]
    for window in windows:
        if not isinstance(window, RecommendedWindow):
            raise ConfigError("windows", window, "RecommendedWindow values")
        for day, lo, hi in window.day_pieces():
            lines.append(f"{DAY_NAMES[day]} {_hhmm(lo)}-{_hhmm(hi)} {level.strip()}")
            covered[day].append((lo, hi))
    if outside is not None:
        for day in range(7):
            cursor = 0
            for lo, hi in [*sorted(covered[day]), (1440, 1440)]:
                if lo > cursor:
                    lines.append(f"{DAY_NAMES[day]} {_hhmm(cursor)}-{_hhmm(lo)} {outside.strip()}")
                cursor = max(cursor, hi)
    return "\n".join(lines)


# ------------------------------------------------------------- the guard's side
