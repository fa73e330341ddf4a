"""How fast a nightly backup grows, and when it will no longer fit its window.

>>> window_length("02:00-05:00")
('02:00–05:00', 10800.0)
>>> window_length("23:30-01:00")
('23:30–01:00', 5400.0)
"""

from __future__ import annotations

import re
from datetime import datetime

from wedguard.errors import ConfigError
from wedguard.history.convert import positive_duration, utc
from wedguard.history.db import Reader, time_range
from wedguard.history.values import GrowthTrend
from wedguard.policy.alerting import Alert, Severity
from wedguard.units import format_duration

__all__ = ["alert_on_overrun", "fit_trend", "window_length"]

_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*[-–]\s*(\d{1,2}):(\d{2})\s*$")


def window_length(window: str | float) -> tuple[str, float]:
    """``"02:00-05:00"`` -> (``"02:00–05:00"``, 10800.0); a duration -> its seconds."""
    if isinstance(window, str):
        match = _WINDOW.match(window)
        if match:
            h1, m1, h2, m2 = (int(g) for g in match.groups())
            if h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59:
                raise ConfigError("window", window, "a window such as '02:00-05:00'")
            start, end = h1 * 60 + m1, h2 * 60 + m2
            length = (end - start) % 1440 or 1440
            return f"{h1:02d}:{m1:02d}–{h2:02d}:{m2:02d}", length * 60.0
    seconds = positive_duration("window", window)
    return format_duration(seconds), seconds


def fit_trend(
    read: Reader, name: str | None, since: datetime | None, until: datetime | None
) -> GrowthTrend | None:
    """The least-squares trend of the sessions named ``name`` (or all), fitted in SQL;
    ``None`` when fewer than two reports at distinct times exist."""
    where, params = time_range(since, until)
    if name is not None:
        where += " AND name = ?"
        params.append(name)
    row = read(
        f"""
        WITH pts AS (
            SELECT (ts - (SELECT MIN(ts) FROM sessions WHERE 1{where})) / 86400.0 AS x,
                   bytes AS b, duration AS d, ts
            FROM sessions WHERE 1{where}
        )
        SELECT COUNT(*), SUM(x), SUM(x * x), SUM(b), SUM(x * b), SUM(d), SUM(x * d),
               MIN(ts), MAX(ts), MAX(x)
        FROM pts
        """,
        [*params, *params],
    )[0]
    n, sx, sxx, sb, sxb, sd, sxd, first, last, xmax = row
    if not n or n < 2:
        return None
    denom = n * sxx - sx * sx
    if denom <= 1e-12 * max(1.0, n * sxx):
        return None
    slope_b = (n * sxb - sx * sb) / denom
    slope_d = (n * sxd - sx * sd) / denom
    icpt_b = (sb - slope_b * sx) / n
    icpt_d = (sd - slope_d * sx) / n
    return GrowthTrend(
        name=name,
        count=int(n),
        first=utc(first),
        last=utc(last),
        bytes_per_day=slope_b,
        seconds_per_day=slope_d,
        bytes_at_last=icpt_b + slope_b * xmax,
        duration_at_last=icpt_d + slope_d * xmax,
    )


def alert_on_overrun(
    trend: GrowthTrend, name: str | None, label: str, limit: float, when: datetime, ahead: float
) -> Alert | None:
    """The alert for a backup whose ``trend`` overruns its window (``label``, ``limit``
    seconds long) within ``ahead`` days of ``when``; ``None`` when it does not."""
    days = trend.days_until_duration(limit, at=when)
    if days is None or days > ahead:
        return None
    who = f"the nightly backup {name!r}" if name else "the nightly backup"
    predicted = trend.predicted_duration(when)
    details = (
        f"{trend.count} sessions from {trend.first:%Y-%m-%d} to {trend.last:%Y-%m-%d}: "
        f"size grows {trend.bytes_per_day / 1e6:+.1f} MB/day, wall time "
        f"{trend.seconds_per_day / 60:+.1f} min/day; expected tonight "
        f"{format_duration(max(predicted, 0.0))} for a window of {format_duration(limit)}."
    )
    if days <= 0:
        summary = f"{who} already overruns its {label} window"
        severity = Severity.HIGH
    else:
        whole = max(1, round(days))
        summary = (
            f"at this growth {who} overruns its {label} window in about "
            f"{whole} day{'' if whole == 1 else 's'}"
        )
        severity = Severity.HIGH if days <= 3 else Severity.MEDIUM if days <= 14 else Severity.LOW
    return Alert(
        key=f"history/overrun/{name or '*'}",
        severity=severity,
        summary=summary,
        details=details,
        labels={"session": name or "*", "window": label},
        started_at=when,
    )
