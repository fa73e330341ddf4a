"""The week a backup runs in: the profile's hour-of-week grid and the windows to outline."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone, tzinfo
from typing import Any

from wedguard.errors import ConfigError
from wedguard.history import (
    MetricsStore,
    RecommendedWindow,
    WeeklyProfile,
    default_metric,
    recommend_windows,
)

__all__ = ["week_grid", "week_inputs", "week_pieces"]


def week_grid(
    profile: WeeklyProfile, metric: str, stat: str = "median"
) -> list[list[float | None]]:
    """The profile as 7 rows (Monday first) of 24 hourly values (``None``: no data).

    ``stat`` is ``"median"``, ``"p95"``, ``"mean"`` or ``"max"``.
    """
    if stat not in ("median", "p95", "mean", "max"):
        raise ConfigError("stat", stat, "'median', 'p95', 'mean' or 'max'")
    if metric not in profile.hours:
        raise ConfigError("metric", metric, f"one of the profile's metrics {profile.metrics}")
    cells = profile.hours[metric]
    return [
        [None if c is None else float(getattr(c, stat)) for c in cells[day * 24 : day * 24 + 24]]
        for day in range(7)
    ]


def week_inputs(
    source: MetricsStore | WeeklyProfile,
    metric: str | None,
    windows: Sequence[RecommendedWindow] | None,
    duration: str | float,
    count: int,
    calendar: Any,
    tz: str | tzinfo | None,
    at: datetime | None,
) -> tuple[WeeklyProfile, str, list[RecommendedWindow]]:
    if isinstance(source, MetricsStore):
        if metric is None:
            metric = default_metric(source.metrics())
        if tz is None:
            cal_tz = getattr(calendar, "tz", None)
            tz = cal_tz if isinstance(cal_tz, (str, tzinfo)) else "UTC"
        when = at if at is not None else datetime.now(timezone.utc)
        profile = source.weekly_profile(metric, tz=tz, at=when)
    elif isinstance(source, WeeklyProfile):
        profile = source
        if metric is None:
            metric = default_metric(m for m in profile.metrics if any(profile.hours[m]))
    else:
        raise ConfigError("source", source, "a MetricsStore or a WeeklyProfile")
    if windows is None:
        windows = recommend_windows(
            profile, duration, count=count, calendar=calendar, metric=metric, at=at
        )
    return profile, metric, list(windows)


def week_pieces(window: RecommendedWindow) -> list[tuple[int, float, float]]:
    """(weekday, start hour, end hour) pieces of a window, split at midnight."""
    return [(day, lo / 60, hi / 60) for day, lo, hi in window.day_pieces()]
