"""The values the metric history hands out: buckets, events, sessions, weekly profiles,
growth trends.

>>> str(WeekTime(6, time(2, 0)))
'Sun 02:00'
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, time
from types import MappingProxyType
from typing import Any, NamedTuple

import attrs

__all__ = [
    "DAY_NAMES",
    "DEFAULT_SEASONS",
    "HOURS_PER_WEEK",
    "Bucket",
    "GrowthTrend",
    "HourStats",
    "SessionRecord",
    "StoredEvent",
    "WeekTime",
    "WeeklyProfile",
]

HOURS_PER_WEEK = 168
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

DEFAULT_SEASONS: Mapping[str, frozenset[int]] = MappingProxyType(
    {
        "winter": frozenset({12, 1, 2}),
        "spring": frozenset({3, 4, 5}),
        "summer": frozenset({6, 7, 8}),
        "autumn": frozenset({9, 10, 11}),
    }
)
"""Meteorological seasons of the northern hemisphere, by month number."""


@attrs.frozen(slots=True)
class Bucket:
    """One aggregated bucket of a metric.

    Attributes:
        start: the bucket's first instant (aware, UTC); buckets are aligned to the
            Unix epoch, so hourly buckets start on the hour and daily ones at 00:00 UTC.
        mean: the arithmetic mean of the samples in the bucket.
        p50: the median (linear interpolation between closest ranks).
        p95: the 95th percentile (same interpolation).
        max: the largest sample.
        count: how many samples fell in the bucket.
        min: the smallest sample.
    """

    start: datetime
    mean: float
    p50: float
    p95: float
    max: float
    count: int
    min: float


@attrs.frozen(slots=True)
class StoredEvent:
    """An event as the store kept it: when, its ``kind`` and its ``to_dict()`` form."""

    at: datetime
    kind: str
    data: Mapping[str, Any]


@attrs.frozen(slots=True)
class SessionRecord:
    """A stored session report: when it ended, its name, size and wall time.

    ``data`` is the report's full ``to_dict()`` form (timeline included).
    """

    at: datetime
    name: str
    bytes: float
    duration: float
    data: Mapping[str, Any]


@attrs.frozen(slots=True)
class HourStats:
    """Production load in one hour of the week, over every week in the profile."""

    median: float
    p95: float
    mean: float
    max: float
    count: int


class WeekTime(NamedTuple):
    """A moment of the week: ``weekday`` (0 = Monday) and a local ``time``.

    >>> str(WeekTime(6, time(2, 0)))
    'Sun 02:00'
    """

    weekday: int
    time: time

    def __str__(self) -> str:
        return f"{DAY_NAMES[self.weekday]} {self.time:%H:%M}"

    @property
    def minute_of_week(self) -> int:
        return self.weekday * 1440 + self.time.hour * 60 + self.time.minute


@attrs.frozen(slots=True)
class WeeklyProfile:
    """Typical production load for each of the 168 hours of the week.

    Hour ``h`` of the week is ``weekday * 24 + hour`` in the profile's time zone
    (0 = Monday 00:00-01:00). Hours without data are ``None``.

    Attributes:
        metrics: the metrics profiled.
        hours: per metric, a 168-tuple of :class:`HourStats` (or ``None``).
        tz: the time zone the hours are counted in.
        season: the season's name, or ``None`` when every month was used.
        months: the months the profile covers.
        weeks: how many distinct weeks contributed data.
    """

    metrics: tuple[str, ...]
    hours: Mapping[str, tuple[HourStats | None, ...]]
    tz: str
    season: str | None
    months: frozenset[int]
    weeks: int

    def at(self, metric: str, weekday: int, hour: int) -> HourStats | None:
        """The stats of ``metric`` on ``weekday`` (0 = Monday) at ``hour`` (0-23)."""
        return self.hours[metric][weekday * 24 + hour]

    def medians(self, metric: str) -> list[float | None]:
        """The 168 hourly medians of ``metric`` (``None`` where there is no data)."""
        return [None if s is None else s.median for s in self.hours[metric]]

    def p95s(self, metric: str) -> list[float | None]:
        """The 168 hourly 95th percentiles of ``metric``."""
        return [None if s is None else s.p95 for s in self.hours[metric]]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form: per metric, 168 hours of stats (or ``None``)."""
        return {
            "metrics": list(self.metrics),
            "tz": self.tz,
            "season": self.season,
            "months": sorted(self.months),
            "weeks": self.weeks,
            "hours": {
                metric: [None if c is None else attrs.asdict(c) for c in cells]
                for metric, cells in self.hours.items()
            },
        }


@attrs.frozen(slots=True)
class GrowthTrend:
    """The least-squares trend of a backup's size and wall time over days.

    Attributes:
        name: the session name, or ``None`` for all sessions together.
        count: how many session reports were fitted.
        first: the first report's time; ``last`` the last one's.
        bytes_per_day: growth of the backup's size, bytes per day.
        seconds_per_day: growth of its wall time, seconds per day.
        bytes_at_last: the fitted size at ``last``.
        duration_at_last: the fitted wall time at ``last``.
    """

    name: str | None
    count: int
    first: datetime
    last: datetime
    bytes_per_day: float
    seconds_per_day: float
    bytes_at_last: float
    duration_at_last: float

    def _days(self, at: datetime) -> float:
        return (at - self.last).total_seconds() / 86400.0

    def predicted_bytes(self, at: datetime) -> float:
        """The size the trend predicts for a session at ``at``."""
        return self.bytes_at_last + self.bytes_per_day * self._days(at)

    def predicted_duration(self, at: datetime) -> float:
        """The wall time (seconds) the trend predicts for a session at ``at``."""
        return self.duration_at_last + self.seconds_per_day * self._days(at)

    def days_until_duration(self, limit: float, *, at: datetime) -> float | None:
        """Days from ``at`` until the predicted wall time reaches ``limit`` seconds.

        0 when it already has; ``None`` when it never will (no growth).
        """
        now = self.predicted_duration(at)
        if now >= limit:
            return 0.0
        if self.seconds_per_day <= 0:
            return None
        return (limit - now) / self.seconds_per_day
