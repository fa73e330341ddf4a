"""The calendar's units and the tokens of its line syntax.

Times of the day are minutes after midnight (``360`` is 06:00, ``1440`` is 24:00),
weekdays are 0 (Monday) to 6 (Sunday), month-days are ``month * 100 + day``, rate caps
are bytes per second. Each ``_parse_*`` function reads one token and raises
:class:`_Bad` naming it and what was expected; each ``_format_*`` function writes a
value back as text that parses to the same value.

>>> _parse_range("22:00-02:00")
(1320, 120)
>>> _format_weekdays(_parse_weekdays("Fri-Mon"))
'Mon,Fri-Sun'
>>> _format_cap(_parse_cap("10Mbit/s"))
'10Mbit/s'
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, timedelta, timezone

from wedguard.errors import ConfigError
from wedguard.levels import Level
from wedguard.units import parse_rate

_DAY = 1440  # minutes
_ALL_DAYS = frozenset(range(7))
_WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_WEEKDAY_FULL = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MONTH_FULL = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_WEEKDAY_INDEX: dict[str, int] = {}
for _i, (_short, _full) in enumerate(zip(_WEEKDAY_NAMES, _WEEKDAY_FULL, strict=True)):
    _WEEKDAY_INDEX[_short.lower()] = _i
    _WEEKDAY_INDEX[_full] = _i
_WEEKDAY_INDEX["tues"] = 1
_WEEKDAY_INDEX["thur"] = 3
_WEEKDAY_INDEX["thurs"] = 3
_WEEKDAY_SETS = {
    "daily": _ALL_DAYS,
    "everyday": _ALL_DAYS,
    "weekdays": frozenset(range(5)),
    "weekends": frozenset({5, 6}),
    "weekend": frozenset({5, 6}),
}
_MONTH_INDEX: dict[str, int] = {}
for _i, (_short, _full) in enumerate(zip(_MONTH_NAMES, _MONTH_FULL, strict=True), start=1):
    _MONTH_INDEX[_short.lower()] = _i
    _MONTH_INDEX[_full] = _i
_MONTH_INDEX["sept"] = 9
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February as in leap years
_LEVELS = {"open": Level.OPEN, "peak": Level.PEAK, "blackout": Level.BLACKOUT}

_MIN_ORDINAL = date(2, 1, 1).toordinal()
_MAX_ORDINAL = date(9998, 12, 31).toordinal()
_INF = math.inf
_UTC_MIN = datetime.min.replace(tzinfo=timezone.utc)
_UTC_MAX = datetime.max.replace(tzinfo=timezone.utc)
_TICK = timedelta(microseconds=1)
_MINUTE = timedelta(minutes=1)
_WHEN_WHAT = "an instant between the years 2 and 9998"

_TIME_WHAT = "a time (HH:MM, 00:00–24:00)"
_START_WHAT = "a start time (HH:MM, 00:00–23:59)"
_RANGE_WHAT = "a time range (HH:MM-HH:MM, e.g. '06:00-22:00' or '22:00-02:00')"
_WEEKDAY_WHAT = "weekdays such as 'Mon', 'Mon-Fri', 'Sat,Sun', 'daily', 'weekdays' or 'weekends'"
_SEASON_WHAT = "a season such as 'May', 'May-Oct', 'Nov-Feb' or '05-15..09-30'"
_DATE_WHAT = "a date such as '2026-06-13' or a range '2026-06-13..2026-06-15'"
_LEVEL_WHAT = "a level (open, peak or blackout)"
_RATE_WHAT = "a rate such as '10Mbit/s', '5MB/s', '512KiB/s' or 'off'"
_CPU_WHAT = "a CPU share such as 'cpu=30%' or 'cpu=0.3' (above 0, at most 100 %)"
_TOKEN_WHAT = "a season, weekdays, a date, a time range, a level or key=value"


class _Bad(Exception):
    """A malformed token: ``token`` is not ``what``."""

    def __init__(self, token: object, what: str) -> None:
        super().__init__(token, what)
        self.token = token
        self.what = what


def _line_error(where: str, token: object, what: str) -> ConfigError:
    err = ConfigError(f"{where}: {token!r} is not {what}")
    err.field = where
    err.value = token
    err.expected = what
    return err


# --------------------------------------------------------------------------- tokens


_HHMM = re.compile(r"([0-9]{1,2}):([0-9]{2})")


def _parse_time(text: str, *, start: bool) -> int:
    """'06:00' -> 360 minutes. Starts run 00:00-23:59, ends 00:00-24:00."""
    m = _HHMM.fullmatch(text)
    if m is None:
        raise _Bad(text, _TIME_WHAT)
    hours, minutes = int(m[1]), int(m[2])
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise _Bad(text, _TIME_WHAT)
    if start and hours == 24:
        raise _Bad(text, _START_WHAT)
    return hours * 60 + minutes


def _parse_range(text: str) -> tuple[int, int]:
    parts = text.split("-")
    if len(parts) != 2:
        raise _Bad(text, _RANGE_WHAT)
    start = _parse_time(parts[0], start=True)
    end = _parse_time(parts[1], start=False)
    end = end or _DAY
    if end == start:
        raise _Bad(text, "a time range whose end differs from its start")
    return start, end


def _format_time(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _parse_weekdays(text: str) -> frozenset[int]:
    low = text.lower()
    if low in _WEEKDAY_SETS:
        return _WEEKDAY_SETS[low]
    days: set[int] = set()
    for item in low.split(","):
        ends = item.split("-")
        if len(ends) > 2 or not all(e in _WEEKDAY_INDEX for e in ends):
            raise _Bad(text, _WEEKDAY_WHAT)
        first, last = _WEEKDAY_INDEX[ends[0]], _WEEKDAY_INDEX[ends[-1]]
        day = first
        days.add(day)
        while day != last:  # ranges may wrap: Fri-Mon
            day = (day + 1) % 7
            days.add(day)
    return frozenset(days)


def _format_weekdays(days: frozenset[int]) -> str:
    if days == _ALL_DAYS:
        return "Mon-Sun"
    # runs of consecutive days, Monday first
    runs: list[tuple[int, int]] = []
    for day in sorted(days):
        if runs and runs[-1][1] == day - 1:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    parts = []
    for a, b in runs:
        if a == b:
            parts.append(_WEEKDAY_NAMES[a])
        elif b == a + 1:
            parts.append(f"{_WEEKDAY_NAMES[a]},{_WEEKDAY_NAMES[b]}")
        else:
            parts.append(f"{_WEEKDAY_NAMES[a]}-{_WEEKDAY_NAMES[b]}")
    return ",".join(parts)


_MD = re.compile(r"([0-9]{2})-([0-9]{2})")
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")


def _check_md(month: int, day: int, token: str) -> int:
    if not 1 <= month <= 12 or not 1 <= day <= _MONTH_DAYS[month - 1]:
        raise _Bad(token, _SEASON_WHAT)
    return month * 100 + day


def _parse_date(text: str) -> date:
    m = _DATE.fullmatch(text)
    if m is None:
        raise _Bad(text, _DATE_WHAT)
    try:
        return date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        raise _Bad(text, _DATE_WHAT) from None


def _parse_dates(text: str) -> frozenset[date]:
    out: set[date] = set()
    for item in text.split(","):
        ends = item.split("..")
        if len(ends) == 1:
            out.add(_parse_date(ends[0]))
        elif len(ends) == 2:
            first, last = _parse_date(ends[0]), _parse_date(ends[1])
            span = (last - first).days
            if span < 0 or span > 3660:
                raise _Bad(item, "a date range of at most ten years, first date first")
            out.update(first + timedelta(days=i) for i in range(span + 1))
        else:
            raise _Bad(item, _DATE_WHAT)
    return frozenset(out)


def _parse_cpu(text: str) -> float:
    raw = text.strip()
    try:
        share = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        raise _Bad(text, _CPU_WHAT) from None
    if not 0.0 < share <= 1.0:  # also refuses nan
        raise _Bad(text, _CPU_WHAT)
    return share


def _parse_cap(text: str) -> float | None:
    """A rate cap in bytes/s; 'off'/'unlimited' -> None (no cap)."""
    try:
        rate = parse_rate(text)
    except ConfigError:
        raise _Bad(text, _RATE_WHAT) from None
    if math.isinf(rate):
        return None
    if rate <= 0:
        raise _Bad(text, "a rate above 0 (use 'blackout' to stop backups)")
    return rate


def _format_cap(rate: float) -> str:
    """A rate as text that parses back to exactly the same float."""
    for unit, factor in (
        ("GiB/s", float(2**30)),
        ("GB/s", 1e9),
        ("MiB/s", float(2**20)),
        ("MB/s", 1e6),
        ("Gbit/s", 1.25e8),
        ("Mbit/s", 125_000.0),
        ("KiB/s", 1024.0),
        ("kB/s", 1000.0),
    ):
        value = rate / factor
        if value >= 1 and value == round(value):
            text = f"{round(value)}{unit}"
            if parse_rate(text) == rate:
                return text
    if rate == round(rate):
        return f"{round(rate)}B/s"
    return f"{rate!r}B/s"
