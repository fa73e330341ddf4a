"""The weekly profile: typical production load in each of the 168 hours of the week.

Hours of the week are counted in a time zone, inside SQLite: each sample's UTC offset
comes from a short table of the zone's offset changes over the samples' span, so a
summer hour and a winter hour land on the same local hour.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, tzinfo
from types import MappingProxyType
from typing import Any

import attrs

from wedguard.errors import ConfigError
from wedguard.history.convert import check_aware, tz_name, utc_offsets, zone
from wedguard.history.db import Reader, floor_sql, stats_sql, time_range
from wedguard.history.values import HOURS_PER_WEEK, HourStats, WeeklyProfile

__all__ = ["ProfileQuery", "profile_args", "season_profile", "season_profiles"]


@attrs.frozen
class ProfileQuery:
    """Profiles of one database's samples in ``zone``, from ``since`` until ``until``."""

    read: Reader
    zone: tzinfo
    tz_name: str
    since: datetime | None
    until: datetime | None

    def source(self, metric: str, months: frozenset[int] | None, key: str) -> tuple[str, list[Any]]:
        """SQL selecting (k, v) for ``metric`` with k an hour-of-week or week number."""
        where, params = time_range(self.since, self.until)
        bounds = self.read(
            "SELECT MIN(ts), MAX(ts) FROM samples WHERE metric_id = (SELECT id FROM metrics WHERE name = ?)"
            + where,
            [metric, *params],
        )[0]
        lo, hi = (0.0, 0.0) if bounds[0] is None else (float(bounds[0]), float(bounds[1]))
        intervals = utc_offsets(self.zone, lo, hi)
        values = ", ".join("(?, ?, ?)" for _ in intervals)
        offset_params = [x for interval in intervals for x in interval]
        hours = floor_sql("(s.ts + o.off) / 3600")
        # the Unix epoch fell on a Thursday: hour 72 of its week
        expr = {
            "how": f"((({hours}) + 72) % 168 + 168) % 168",
            "week": floor_sql(f"((({hours}) + 72) / 168.0)"),
        }[key]
        month_clause = ""
        if months is not None:
            month_clause = (
                " AND CAST(strftime('%m', s.ts + o.off, 'unixepoch') AS INTEGER) IN ("
                + ", ".join(str(int(m)) for m in sorted(months))
                + ")"
            )
        sql = (
            f"WITH o(a, b, off) AS (VALUES {values}) "
            f"SELECT {expr} AS k, s.value AS v FROM samples s JOIN o ON s.ts >= o.a AND s.ts < o.b "
            f"WHERE s.metric_id = (SELECT id FROM metrics WHERE name = ?)"
            f"{where.replace('ts ', 's.ts ')}{month_clause}"
        )
        return sql, [*offset_params, metric, *params]

    def weeks(self, metrics: Sequence[str], months: frozenset[int] | None) -> int:
        """How many distinct weeks (of ``months``) hold samples of ``metrics``."""
        weeks: set[int] = set()
        for metric in metrics:
            sql, params = self.source(metric, months, "week")
            weeks.update(
                int(row[0]) for row in self.read(f"SELECT DISTINCT k FROM ({sql})", params)
            )
        return len(weeks)

    def profile(
        self,
        metrics: tuple[str, ...],
        season: str | None,
        months: frozenset[int] | None,
        weeks: int | None = None,
    ) -> WeeklyProfile:
        """The profile of ``metrics``; ``weeks`` is :meth:`weeks` of the same
        arguments when the caller has counted them already."""
        hours: dict[str, tuple[HourStats | None, ...]] = {}
        for metric in metrics:
            cells: list[HourStats | None] = [None] * HOURS_PER_WEEK
            sql, params = self.source(metric, months, "how")
            for k, mean, _lo, hi, cnt, p50, p95 in self.read(stats_sql(sql), params):
                cells[int(k)] = HourStats(
                    median=float(p50),
                    p95=float(p95),
                    mean=float(mean),
                    max=float(hi),
                    count=int(cnt),
                )
            hours[metric] = tuple(cells)
        return WeeklyProfile(
            metrics=metrics,
            hours=MappingProxyType(hours),
            tz=self.tz_name,
            season=season,
            months=frozenset(range(1, 13)) if months is None else months,
            weeks=self.weeks(metrics, months) if weeks is None else weeks,
        )


def profile_args(
    metrics: str | Sequence[str],
    tz: str | tzinfo,
    seasons: Mapping[str, Iterable[int]] | None,
    min_weeks: int,
) -> tuple[tuple[str, ...], tzinfo, dict[str, frozenset[int]]]:
    """The checked arguments of a profile: metric names, the zone, season months."""
    names = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    if not names or not all(isinstance(m, str) and m for m in names):
        raise ConfigError("metrics", metrics, "one or more metric names")
    tzone = zone(tz)
    if isinstance(min_weeks, bool) or not isinstance(min_weeks, int) or min_weeks < 1:
        raise ConfigError("min_weeks", min_weeks, "a whole number >= 1")
    month_sets: dict[str, frozenset[int]] = {}
    for season, months in (seasons or {}).items():
        month_set = frozenset(months)
        if not month_set or not all(isinstance(m, int) and 1 <= m <= 12 for m in month_set):
            raise ConfigError(f"seasons[{season!r}]", months, "month numbers 1-12")
        month_sets[season] = month_set
    return names, tzone, month_sets


def season_profiles(
    read: Reader,
    metrics: str | Sequence[str],
    *,
    tz: str | tzinfo,
    seasons: Mapping[str, Iterable[int]] | None,
    min_weeks: int,
    since: datetime | None,
    until: datetime | None,
) -> dict[str, WeeklyProfile]:
    """``"all"``, and every season with ``min_weeks`` weeks of data: see
    :meth:`~wedguard.history.MetricsStore.weekly_profiles`."""
    names, tzone, month_sets = profile_args(metrics, tz, seasons, min_weeks)
    query = ProfileQuery(read, tzone, tz_name(tz), since, until)
    result = {"all": query.profile(names, None, None)}
    for season, months in month_sets.items():
        weeks = query.weeks(names, months)
        if weeks >= min_weeks:
            result[season] = query.profile(names, season, months, weeks)
    return result


def season_profile(
    read: Reader,
    metrics: str | Sequence[str],
    *,
    tz: str | tzinfo,
    at: object,
    seasons: Mapping[str, Iterable[int]] | None,
    min_weeks: int,
    since: datetime | None,
    until: datetime | None,
) -> WeeklyProfile:
    """The profile of the season holding ``at`` when it has ``min_weeks`` weeks of
    data, else of every month: see :meth:`~wedguard.history.MetricsStore.weekly_profile`."""
    names, tzone, month_sets = profile_args(metrics, tz, seasons, min_weeks)
    query = ProfileQuery(read, tzone, tz_name(tz), since, until)
    month = check_aware("at", at).astimezone(tzone).month
    for season, months in month_sets.items():
        if month not in months:
            continue
        weeks = query.weeks(names, months)
        if weeks >= min_weeks:
            return query.profile(names, season, months, weeks)
    return query.profile(names, None, None)
