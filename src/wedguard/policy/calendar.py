"""The peak-hour calendar: how much a backup may do at any instant.

A :class:`PeakHourCalendar` is a pure policy object. It is told an instant and answers
with a :class:`Window`: the :class:`~wedguard.levels.Level` that holds (``OPEN``, ``PEAK``
or ``BLACKOUT``), the rate cap and CPU share cap, when that window started, when it
ends, and which rule or rules decided. It never reads a clock itself.

>>> from datetime import datetime, timezone
>>> cal = PeakHourCalendar.parse('''
...     Mon-Sun 06:00-22:00 peak 10Mbit/s cpu=30%
...     May-Oct Sat 08:00-24:00 blackout name="wedding Saturdays"
...     2026-12-24 blackout
... ''', tz="Europe/London")
>>> w = cal.at(datetime(2026, 6, 13, 12, 0, tzinfo=timezone.utc))   # a Saturday in June
>>> w.level, w.reason
(<Level.BLACKOUT: 2>, "rule 'wedding Saturdays'")
>>> w = cal.at(datetime(2026, 1, 6, 12, 0, tzinfo=timezone.utc))
>>> w.level, w.rate, w.cpu_share, w.start.hour, w.end.hour
(<Level.PEAK: 1>, 1250000.0, 0.3, 6, 22)

Semantics, in one place:

* **Rules.** A rule holds on the days its weekdays, season and dates (each optional)
  all allow, from its start time to its end time. A range that ends at or before it
  starts (``22:00-02:00``) crosses midnight: it belongs to the day it starts on.
  ``24:00`` (or ``00:00``) as an end means midnight at the end of the day.
* **Overlaps.** The most restrictive level wins; among the rules at that level, the
  lowest rate cap and the lowest CPU share apply. The window's reason names the rules
  that decided (those that set a cap, or all of them when none sets one). When no rule
  holds, the calendar's ``default`` level applies.
* **Time zones.** Rules are wall-clock times in the calendar's zone. A time that does
  not exist on a day (the spring-forward gap) takes effect at the first instant after
  the gap; an ambiguous time (the fall-back fold) takes effect at its first occurrence.
  A window may therefore last 23 or 25 hours, or (for a rule wholly inside a gap)
  vanish that day.
* **Windows are maximal.** ``at(t).end`` is the first instant after ``t`` at which
  anything in the answer changes, and ``next_change(t)`` returns exactly that, or
  ``None`` when nothing ever changes.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from wedguard.errors import ConfigError
from wedguard.levels import Level
from wedguard.units import format_rate, parse_rate

__all__ = ["PeakHourCalendar", "Rule", "Season", "Window"]

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


# --------------------------------------------------------------------------- values


@attrs.frozen(slots=True)
class Season:
    """A range of the year, from one month-day to another, both included.

    ``start`` and ``end`` are ``month * 100 + day`` (``515`` is 15 May). A season whose
    end comes before its start wraps the new year (``Nov-Feb``). A season ending on
    29 February ends on the 28th in common years; one starting on 29 February starts
    on 1 March.

    >>> Season.parse("May-Oct")
    Season(start=501, end=1031)
    >>> date(2027, 1, 10) in Season.parse("Nov-Feb")
    True
    >>> str(Season.parse("05-15..09-30"))
    '05-15..09-30'
    """

    start: int
    end: int

    def __attrs_post_init__(self) -> None:
        for field, value in (("season.start", self.start), ("season.end", self.end)):
            month, day = divmod(value, 100) if isinstance(value, int) else (0, 0)
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or not 1 <= month <= 12
                or not 1 <= day <= _MONTH_DAYS[month - 1]
            ):
                raise ConfigError(field, value, "a month-day as month * 100 + day, e.g. 515")

    @classmethod
    def parse(cls, text: str) -> Season:
        """Parse ``'May'``, ``'May-Oct'``, ``'Nov-Feb'`` or ``'05-15..09-30'``.

        Raises:
            ConfigError: the text is not a season.
        """
        try:
            return cls._parse(text)
        except _Bad as bad:
            raise ConfigError("season", text, bad.what) from None

    @classmethod
    def _parse(cls, text: str) -> Season:
        if not isinstance(text, str):
            raise _Bad(text, _SEASON_WHAT)
        if ".." in text:
            ends = text.split("..")
            if len(ends) != 2:
                raise _Bad(text, _SEASON_WHAT)
            mds = []
            for end in ends:
                m = _MD.fullmatch(end)
                if m is None:
                    raise _Bad(text, _SEASON_WHAT)
                mds.append(_check_md(int(m[1]), int(m[2]), text))
            return cls(mds[0], mds[1])
        ends = text.lower().split("-")
        if len(ends) > 2 or not all(e in _MONTH_INDEX for e in ends):
            raise _Bad(text, _SEASON_WHAT)
        first, last = _MONTH_INDEX[ends[0]], _MONTH_INDEX[ends[-1]]
        return cls(first * 100 + 1, last * 100 + _MONTH_DAYS[last - 1])

    @property
    def whole_months(self) -> bool:
        """True when the season starts on a 1st and ends on a month's last day."""
        return self.start % 100 == 1 and self.end % 100 == _MONTH_DAYS[self.end // 100 - 1]

    def contains_md(self, md: int) -> bool:
        """Whether the month-day ``md`` (``month * 100 + day``) is in the season."""
        if self.start <= self.end:
            return self.start <= md <= self.end
        return md >= self.start or md <= self.end

    def __contains__(self, day: object) -> bool:
        if not isinstance(day, date):
            return False
        return self.contains_md(day.month * 100 + day.day)

    def __str__(self) -> str:
        if self.whole_months:
            first, last = _MONTH_NAMES[self.start // 100 - 1], _MONTH_NAMES[self.end // 100 - 1]
            return first if first == last else f"{first}-{last}"
        s, e = self.start, self.end
        return f"{s // 100:02d}-{s % 100:02d}..{e // 100:02d}-{e % 100:02d}"


def _to_level(value: Level | str | int) -> Level:
    if isinstance(value, Level):
        return value
    if isinstance(value, str) and value.strip().lower() in _LEVELS:
        return _LEVELS[value.strip().lower()]
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1, 2):
        return Level(value)
    raise ConfigError("level", value, _LEVEL_WHAT)


def _to_weekdays(value: Iterable[int | str] | str) -> frozenset[int]:
    try:
        if isinstance(value, str):
            days = _parse_weekdays(value)
        else:
            days_set: set[int] = set()
            for item in value:
                if isinstance(item, str):
                    days_set |= _parse_weekdays(item)
                elif isinstance(item, int) and not isinstance(item, bool) and 0 <= item <= 6:
                    days_set.add(item)
                else:
                    raise _Bad(value, "weekdays as names or numbers 0 (Monday) to 6 (Sunday)")
            days = frozenset(days_set)
    except _Bad as bad:
        raise ConfigError("weekdays", value, bad.what) from None
    except TypeError:
        raise ConfigError("weekdays", value, _WEEKDAY_WHAT) from None
    if not days:
        raise ConfigError("weekdays", value, "at least one weekday")
    return days


def _to_minutes(value: int | str, field: str, *, start: bool) -> int:
    if isinstance(value, str):
        try:
            minutes = _parse_time(value, start=start)
        except _Bad as bad:
            raise ConfigError(field, value, bad.what) from None
    elif isinstance(value, int) and not isinstance(value, bool):
        minutes = value
    else:
        raise ConfigError(field, value, _START_WHAT if start else _TIME_WHAT)
    if not 0 <= minutes <= (_DAY - 1 if start else _DAY):
        raise ConfigError(field, value, _START_WHAT if start else _TIME_WHAT)
    if not start and minutes == 0:
        minutes = _DAY
    return minutes


def _to_start(value: int | str) -> int:
    return _to_minutes(value, "start", start=True)


def _to_end(value: int | str) -> int:
    return _to_minutes(value, "end", start=False)


def _to_season(value: Season | str | None) -> Season | None:
    if value is None or isinstance(value, Season):
        return value
    return Season.parse(value)


def _to_dates(value: Iterable[date | str] | str) -> frozenset[date]:
    try:
        if isinstance(value, str):
            return _parse_dates(value)
        out: set[date] = set()
        for item in value:
            if isinstance(item, datetime):
                raise _Bad(item, "a date (not a datetime)")
            if isinstance(item, date):
                out.add(item)
            elif isinstance(item, str):
                out |= _parse_dates(item)
            else:
                raise _Bad(item, _DATE_WHAT)
        return frozenset(out)
    except _Bad as bad:
        raise ConfigError("dates", bad.token, bad.what) from None
    except TypeError:
        raise ConfigError("dates", value, _DATE_WHAT) from None


def _to_cap(value: float | str | None, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return _parse_cap(value)
        except _Bad as bad:
            raise ConfigError(field, value, bad.what) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(field, value, _RATE_WHAT)
    rate = float(value)
    if math.isnan(rate) or rate < 0:
        raise ConfigError(field, value, "a rate in bytes/s at least 0, or None")
    return None if math.isinf(rate) else rate


def _to_rate(value: float | str | None) -> float | None:
    cap = _to_cap(value, "rate")
    if cap == 0:
        raise ConfigError("rate", value, "a rate above 0 (use Level.BLACKOUT to stop)")
    return cap


def _to_rate_down(value: float | str | None) -> float | None:
    return _to_cap(value, "rate_down")


def _to_cpu(value: float | str | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return _parse_cpu(value)
        except _Bad as bad:
            raise ConfigError("cpu_share", value, bad.what) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ConfigError("cpu_share", value, "a share above 0 and at most 1 (0.3 is 30 %)")
    return float(value)


_LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def _to_name(value: str) -> str:
    if not isinstance(value, str) or '"' in value or not _LINE_BREAKS.isdisjoint(value):
        raise ConfigError("name", value, "a one-line string without double quotes")
    return value.strip()


@attrs.frozen(slots=True)
class Rule:
    """One line of a calendar: when it holds and what it allows.

    Constructor arguments and attributes (text is accepted and normalised):

    Attributes:
        level: ``Level.OPEN``, ``PEAK`` or ``BLACKOUT`` (or its name).
        weekdays: the days it holds on (0 is Monday), or text such as ``"Mon-Fri"``.
        start: minutes after midnight, or ``"HH:MM"`` (00:00–23:59).
        end: minutes after midnight, or ``"HH:MM"`` (up to 24:00; 00:00 means 24:00).
            An end at or before the start crosses midnight into the next day.
        season: a :class:`Season` or text such as ``"May-Oct"``; None is all year.
        dates: specific dates (``date`` objects or ``"YYYY-MM-DD"`` text); empty means
            any date.
        rate: the rate cap in bytes/s (a float, or text for
            :func:`~wedguard.units.parse_rate`); None means no cap. PEAK rules only.
        cpu_share: the CPU share cap, above 0 and at most 1. PEAK rules only.
        rate_down: a download-side cap kept for information (rclone ``UP:DOWN``).
        name: used in reasons; the rule's text when empty.

    >>> r = Rule("peak", weekdays="Mon-Fri", start="06:00", end="22:00", rate="10Mbit/s")
    >>> str(r)
    'Mon-Fri 06:00-22:00 peak 10Mbit/s'
    >>> r.rate
    1250000.0

    Raises:
        ConfigError: any field is malformed (the message names the field and value).
    """

    level: Level = attrs.field(converter=_to_level)
    weekdays: frozenset[int] = attrs.field(default=_ALL_DAYS, converter=_to_weekdays)
    start: int = attrs.field(default=0, converter=_to_start)
    end: int = attrs.field(default=_DAY, converter=_to_end)
    season: Season | None = attrs.field(default=None, converter=_to_season)
    dates: frozenset[date] = attrs.field(default=frozenset(), converter=_to_dates)
    rate: float | None = attrs.field(default=None, converter=_to_rate)
    cpu_share: float | None = attrs.field(default=None, converter=_to_cpu)
    rate_down: float | None = attrs.field(default=None, converter=_to_rate_down)
    name: str = attrs.field(default="", converter=_to_name)

    def __attrs_post_init__(self) -> None:
        if self.start == self.end:
            raise ConfigError("end", _format_time(self.end), "an end different from the start")
        if self.level is not Level.PEAK:
            if self.rate is not None:
                raise ConfigError("rate", self.rate, f"None: a {self.level.name} rule has no cap")
            if self.cpu_share is not None:
                raise ConfigError(
                    "cpu_share", self.cpu_share, f"None: a {self.level.name} rule has no cap"
                )

    @property
    def all_day(self) -> bool:
        """True when the rule holds from 00:00 to 24:00 on its days."""
        return self.start == 0 and self.end == _DAY

    @property
    def crosses_midnight(self) -> bool:
        """True when the time range ends on the day after it starts."""
        return self.end < self.start

    @property
    def label(self) -> str:
        """The rule's name, or its text when it has none: what reasons quote."""
        return self.name or self.text()

    def text(self, *, with_name: bool = False) -> str:
        """The rule in the line syntax :meth:`PeakHourCalendar.parse` reads."""
        parts: list[str] = []
        if self.season is not None:
            parts.append(str(self.season))
        if self.dates:
            parts.append(",".join(d.isoformat() for d in sorted(self.dates)))
        if self.weekdays != _ALL_DAYS or not (self.dates or self.season):
            parts.append(_format_weekdays(self.weekdays))
        if not self.all_day:
            parts.append(f"{_format_time(self.start)}-{_format_time(self.end)}")
        parts.append(self.level.name.lower())
        if self.rate is not None:
            parts.append(_format_cap(self.rate))
        if self.cpu_share is not None:
            parts.append(f"cpu={self.cpu_share * 100:g}%")
        if self.rate_down is not None:
            parts.append(f"down={_format_cap(self.rate_down) if self.rate_down else 0}")
        if with_name and self.name:
            parts.append(f'name="{self.name}"')
        return " ".join(parts)

    def __str__(self) -> str:
        return self.text(with_name=True)

    def holds_on(self, day: date) -> bool:
        """Whether the rule's weekdays, season and dates allow ``day``."""
        return (
            day.weekday() in self.weekdays
            and (self.season is None or day in self.season)
            and (not self.dates or day in self.dates)
        )

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (TOML/JSON friendly) that :meth:`from_dict` reads back.

        >>> Rule("blackout", dates=["2026-06-13"], name="wedding").to_dict()
        {'level': 'blackout', 'dates': ['2026-06-13'], 'name': 'wedding'}
        """
        out: dict[str, Any] = {"level": self.level.name.lower()}
        if self.weekdays != _ALL_DAYS:
            out["weekdays"] = _format_weekdays(self.weekdays)
        if not self.all_day:
            out["hours"] = f"{_format_time(self.start)}-{_format_time(self.end)}"
        if self.season is not None:
            out["season"] = str(self.season)
        if self.dates:
            out["dates"] = [d.isoformat() for d in sorted(self.dates)]
        if self.rate is not None:
            out["rate"] = self.rate
        if self.cpu_share is not None:
            out["cpu_share"] = self.cpu_share
        if self.rate_down is not None:
            out["rate_down"] = self.rate_down
        if self.name:
            out["name"] = self.name
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "rule") -> Rule:
        """Build a rule from a mapping such as one ``[[calendar.rules]]`` TOML table.

        Keys: ``level`` (required), ``weekdays``, ``hours`` (``"06:00-22:00"``) or
        ``start``/``end``, ``season``, ``dates``, ``rate``, ``cpu_share`` (or ``cpu``),
        ``rate_down``, ``name``.

        >>> Rule.from_dict({"level": "peak", "hours": "06:00-22:00", "rate": "10Mbit/s"})
        Rule(level=<Level.PEAK: 1>, weekdays=frozenset({0, 1, 2, 3, 4, 5, 6}), start=360, end=1320, season=None, dates=frozenset(), rate=1250000.0, cpu_share=None, rate_down=None, name='')

        Raises:
            ConfigError: a key is unknown or a value malformed (named as ``where.key``).
        """
        if not isinstance(data, Mapping):
            raise ConfigError(where, data, "a table (mapping) of rule fields")
        known = {
            "level",
            "weekdays",
            "hours",
            "start",
            "end",
            "season",
            "dates",
            "rate",
            "cpu_share",
            "cpu",
            "rate_down",
            "name",
        }
        for key in data:
            if key not in known:
                raise ConfigError(f"{where}.{key}", data[key], f"one of {sorted(known)}")
        if "level" not in data:
            raise ConfigError(f"{where}.level", None, _LEVEL_WHAT)
        kwargs: dict[str, Any] = {}
        for key in ("level", "weekdays", "season", "dates", "rate", "rate_down", "name"):
            if key in data:
                kwargs[key] = data[key]
        if "cpu" in data or "cpu_share" in data:
            kwargs["cpu_share"] = data.get("cpu_share", data.get("cpu"))
        if "hours" in data:
            if not isinstance(data["hours"], str):
                raise ConfigError(f"{where}.hours", data["hours"], _RANGE_WHAT)
            try:
                kwargs["start"], kwargs["end"] = _parse_range(data["hours"])
            except _Bad as bad:
                raise ConfigError(f"{where}.hours", data["hours"], bad.what) from None
        for key in ("start", "end"):
            if key in data:
                kwargs[key] = data[key]
        try:
            return cls(**kwargs)
        except ConfigError as err:
            raise ConfigError(f"{where}.{err.field}", err.value, err.expected) from None


@attrs.frozen(slots=True)
class Window:
    """What the calendar allows from ``start`` (included) to ``end`` (excluded).

    Attributes:
        level: OPEN, PEAK or BLACKOUT.
        rate: the rate cap in bytes/s, None for no cap (0.0 in a BLACKOUT).
        cpu_share: the CPU share cap (0.3 is 30 %), None for no cap (0.0 in a BLACKOUT).
        start: when the window began, in the calendar's zone (``datetime.min`` in UTC
            when it always held).
        end: when it ends (``datetime.max`` in UTC when it never does).
        reason: names the rule or rules that decided.
        rules: those rules (empty when the calendar's default applies).
        rate_down: the download-side cap of an rclone ``UP:DOWN`` entry, else None.
    """

    level: Level
    rate: float | None
    cpu_share: float | None
    start: datetime
    end: datetime
    reason: str
    rules: tuple[Rule, ...] = ()
    rate_down: float | None = None

    @property
    def bounded(self) -> bool:
        """True when the window has a finite end."""
        return self.end != _UTC_MAX

    def contains(self, when: datetime) -> bool:
        """Whether the aware instant ``when`` is in ``[start, end)``.

        Compares instants (not wall clocks), so it is right in a fall-back fold too.
        """
        return self.start.timestamp() <= when.timestamp() < self.end.timestamp()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict: ISO instants (None when unbounded), caps, reason.

        >>> from datetime import datetime, timezone
        >>> cal = PeakHourCalendar.default()
        >>> cal.at(datetime(2026, 1, 5, 3, tzinfo=timezone.utc)).to_dict()["level"]
        'OPEN'
        """
        return {
            "level": self.level.name,
            "rate": self.rate,
            "cpu_share": self.cpu_share,
            "rate_down": self.rate_down,
            "start": None if self.start == _UTC_MIN else self.start.isoformat(),
            "end": None if self.end == _UTC_MAX else self.end.isoformat(),
            "reason": self.reason,
            "rules": [r.label for r in self.rules],
        }


# --------------------------------------------------------------------------- compiled

# Each rule's days are kept as one bit mask per calendar year: bit k is set when the
# rule holds on the day whose ordinal is ``base + k``. A year's mask reaches _PAD days
# into the years on either side, so a query looks up to a week back and ahead without
# leaving it.
_PAD = 8
_REPEAT = sum(1 << (7 * j) for j in range(60))  # a 7-bit pattern, 60 times: 420 bits
_CYCLE_YEARS = 401  # the Gregorian calendar (weekdays included) repeats every 400 years
_EPOCH_MINUTE = date(1970, 1, 1).toordinal() * _DAY
# wall minutes that map to instants (two days beyond the years 2-9998, as _instant does)
_WALL_FIRST = (_MIN_ORDINAL - 2) * _DAY
_WALL_LAST = (_MAX_ORDINAL + 3) * _DAY - 1


def _md_first(year: int, md: int) -> int:
    """The ordinal of the first day of ``year`` whose month-day is ``md`` or later."""
    month, day = divmod(md, 100)
    try:
        return date(year, month, day).toordinal()
    except ValueError:  # 29 February in a common year
        return date(year, 3, 1).toordinal()


def _md_last(year: int, md: int) -> int:
    """The ordinal of the last day of ``year`` whose month-day is ``md`` or earlier."""
    month, day = divmod(md, 100)
    try:
        return date(year, month, day).toordinal()
    except ValueError:  # 29 February in a common year
        return date(year, 2, 28).toordinal()


def _season_bits(season: Season, base: int, span: int) -> int:
    """Bit k set when ordinal ``base + k`` is in the season, for k < span."""
    bits = 0
    last = base + span - 1
    for year in range(date.fromordinal(base).year, date.fromordinal(last).year + 1):
        first_md = _md_first(year, season.start)
        last_md = _md_last(year, season.end)
        ranges: tuple[tuple[int, int], ...]
        if season.start <= season.end:
            ranges = ((first_md, last_md),)
        else:
            ranges = (
                (first_md, date(year, 12, 31).toordinal()),
                (date(year, 1, 1).toordinal(), last_md),
            )
        for lo, hi in ranges:
            lo, hi = max(lo, base), min(hi, last)
            if lo <= hi:
                bits |= ((1 << (hi - lo + 1)) - 1) << (lo - base)
    return bits


class _Compiled:
    """A rule in the shape the evaluator wants: integers and precomputed keys."""

    __slots__ = (
        "always",
        "cpu",
        "dates",
        "down",
        "endp",
        "endx",
        "full",
        "label",
        "level",
        "mask",
        "rate",
        "rule",
        "season",
        "start",
        "uncapped",
    )

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.level = int(rule.level)
        mask = 0
        for day in rule.weekdays:
            mask |= 1 << day
        self.mask = mask
        self.season = rule.season
        self.dates = tuple(sorted(d.toordinal() for d in rule.dates))
        self.start = rule.start
        self.endp = rule.end if rule.end > rule.start else rule.end + _DAY
        self.endx = self.endp - _DAY  # where an interval begun the day before ends
        self.full = rule.all_day
        whole_year = self.season is None or all(
            self.season.contains_md(m * 100 + d)
            for m in range(1, 13)
            for d in range(1, _MONTH_DAYS[m - 1] + 1)
        )
        self.always = mask == 127 and not self.dates and whole_year
        self.rate = _INF if rule.rate is None else rule.rate
        self.cpu = _INF if rule.cpu_share is None else rule.cpu_share
        self.down = _INF if rule.rate_down is None else rule.rate_down
        self.uncapped = rule.rate is None and rule.cpu_share is None and rule.rate_down is None
        self.label = rule.label

    def bits(self, base: int, span: int) -> int:
        """Bit k set when the rule holds on ordinal ``base + k``, for k < span."""
        every = (1 << span) - 1
        out = every
        if self.mask != 127:
            w0 = (base - 1) % 7  # the weekday of ``base`` (ordinal 1 is a Monday)
            week = ((self.mask >> w0) | (self.mask << (7 - w0))) & 127
            out = (week * _REPEAT) & every
        if self.season is not None:
            out &= _season_bits(self.season, base, span)
        if self.dates:
            lo = bisect.bisect_left(self.dates, base)
            hi = bisect.bisect_left(self.dates, base + span)
            days = 0
            for d in self.dates[lo:hi]:
                days |= 1 << (d - base)
            out &= days
        return out


# --------------------------------------------------------------------------- calendar

# One calendar year: the ordinal of its first day (bit or index 0), the number of days,
# a day mask per rule, and per day the set of rules holding on it (bit i is rule i).
_Year = tuple[int, int, tuple[int, ...], list[int]]

# What a set of holding rules decides: the comparable key, the deciding rules, and the
# set of rules whose starting or ending would change the answer (bit i is rule i).
_Answer = tuple[tuple[Any, ...], tuple[Rule, ...], int]

# A decision at one wall-clock minute: a comparable key, the wall-clock minutes
# (ordinal * 1440 + minute, or ±inf) where it may begin and end, the deciding rules,
# and whether the beginning (bit 1) and the end (bit 2) are sure to change the answer:
# they are unless a rule sharing its name with another one starts or ends there.
_Found = tuple[tuple[Any, ...], float, float, tuple[Rule, ...], int]


def _to_tz(tz: str | tzinfo) -> tuple[tzinfo, str]:
    if isinstance(tz, tzinfo):
        if hasattr(tz, "localize"):  # pytz: its zones do not work with datetime.replace
            raise ConfigError("tz", tz, "a zoneinfo.ZoneInfo or an IANA name, not a pytz zone")
        if isinstance(tz, ZoneInfo):
            return tz, tz.key
        if tz is timezone.utc:
            return tz, "UTC"
        return tz, str(tz)
    if not isinstance(tz, str) or not tz.strip():
        raise ConfigError("tz", tz, "an IANA time zone name such as 'Europe/London'")
    try:
        zone = ZoneInfo(tz.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ConfigError(
            "tz", tz, f"a known IANA time zone name such as 'Europe/London' (no zone {tz!r})"
        ) from None
    return zone, zone.key


class PeakHourCalendar:
    """Peak hours, seasons and event days: what a backup may do at any instant.

    Args:
        rules: the :class:`Rule` objects; their order does not matter.
        tz: the zone the rules' wall-clock times are in (an IANA name or a tzinfo).
        default: the level when no rule holds (``Level.OPEN`` unless given).

    >>> from datetime import datetime, timezone
    >>> cal = PeakHourCalendar([Rule("peak", start="06:00", end="22:00")], tz="UTC")
    >>> cal.at(datetime(2026, 1, 5, 7, tzinfo=timezone.utc)).level
    <Level.PEAK: 1>
    >>> cal.next_change(datetime(2026, 1, 5, 7, tzinfo=timezone.utc)).isoformat()
    '2026-01-05T22:00:00+00:00'

    Cost: ``at()`` turns the instant into the zone's wall clock once and answers in
    integer wall-clock minutes. The rules are compiled, per calendar year, into the
    set of rules holding on each day and, per piece of the day between two times
    where some rule starts or ends, the set covering it, so the rules holding at an
    instant are one expression on bit sets; what each set of holding rules decides is
    remembered. The window's bounds are the nearest times, before and after, where a
    rule that matters starts or ends (up to six days either side are scanned; a
    longer window searches each rule's days), and only those two are turned back into
    instants. A query costs O(rules) with small constants, well under 10 µs for 20
    rules; the first query in a calendar year builds that year's tables. ``at()``
    also remembers the last window and recent ones, so asking again inside them
    costs a comparison. See ``benchmarks/calendar.py``. The object is safe to share
    between threads (the caches hold immutable values; a race only repeats work).

    Raises:
        ConfigError: a rule is not a :class:`Rule`, the zone is unknown (the message
            names it) or the default is not a level.
    """

    __slots__ = (
        "_answers",
        "_beyond",
        "_by_level",
        "_compiled",
        "_default",
        "_fields",
        "_first",
        "_fixed",
        "_full",
        "_icache",
        "_in_today",
        "_in_yesterday",
        "_last",
        "_marks_today",
        "_marks_yesterday",
        "_notes",
        "_recent",
        "_rules",
        "_shared",
        "_special",
        "_times",
        "_tz",
        "_tzkey",
        "_weekly",
        "_years",
    )

    def __init__(
        self,
        rules: Iterable[Rule] = (),
        *,
        tz: str | tzinfo = "UTC",
        default: Level | str = Level.OPEN,
    ) -> None:
        if isinstance(rules, (str, bytes)):  # type: ignore[unreachable]
            raise ConfigError("rules", rules, "Rule objects (PeakHourCalendar.parse reads text)")
        try:
            rule_list = tuple(rules)
        except TypeError:
            raise ConfigError("rules", rules, "an iterable of Rule") from None
        for i, rule in enumerate(rule_list):
            if not isinstance(rule, Rule):
                raise ConfigError(f"rules[{i}]", rule, "a Rule")
        self._rules = rule_list
        self._notes: tuple[str, ...] = ()
        self._tz, self._tzkey = _to_tz(tz)
        try:
            self._default = _to_level(default)
        except ConfigError:
            raise ConfigError("default", default, _LEVEL_WHAT) from None
        self._compiled = tuple(_Compiled(r) for r in rule_list)
        self._fixed = isinstance(self._tz, timezone)
        labels = [c.label for c in self._compiled]
        counts = Counter(labels)
        # the rules whose name another rule shares (bit i is rule i)
        self._shared = sum(1 << i for i, label in enumerate(labels) if counts[label] > 1)
        self._icache: dict[int, float] = {}
        self._years: dict[int, _Year] = {}
        self._answers: dict[int, _Answer] = {}
        self._fields: dict[
            tuple[Any, ...], tuple[Level, float | None, float | None, str, float | None]
        ] = {}
        self._tables()
        self._recent: dict[float, list[tuple[float, float, Window]]] = {}
        self._last: tuple[float, float, Window] | None = None
        # the instants when the local years 2-9998 begin and end
        self._first = self._instant(_MIN_ORDINAL, 0)
        self._beyond = self._instant(_MAX_ORDINAL + 1, 0)

    # -- construction -----------------------------------------------------

    @classmethod
    def parse(
        cls, text: str, tz: str | tzinfo = "UTC", *, default: Level | str = Level.OPEN
    ) -> PeakHourCalendar:
        """Read rules in the line syntax, one per line or separated by ``;``.

        Each rule is ``[season] [dates] [weekdays] [HH:MM-HH:MM] level [rate]
        [cpu=30%] [down=RATE] [name="..."]``; ``#`` starts a comment.

        * season: ``May``, ``May-Oct``, ``Nov-Feb`` (wraps the year), ``05-15..09-30``;
        * dates: ``2026-06-13``, ``2026-06-13,2026-07-04``, ``2026-12-24..2026-12-26``;
        * weekdays: ``Mon``, ``Mon-Fri``, ``Sat,Sun``, ``Fri-Mon``, ``daily``,
          ``weekdays``, ``weekends`` (all days when left out);
        * time range: ``06:00-22:00``, ``22:00-02:00`` (crosses midnight),
          ``08:00-24:00`` (all day when left out);
        * level: ``open``, ``peak`` or ``blackout``;
        * rate: anything :func:`~wedguard.units.parse_rate` reads (``10Mbit/s``), also
          as ``rate=...``; ``cpu=30%`` or ``cpu=0.3``.

        >>> cal = PeakHourCalendar.parse("Mon-Fri 06:00-22:00 peak 10Mbit/s; 2026-06-13 blackout")
        >>> for rule in cal.rules:
        ...     print(rule)
        Mon-Fri 06:00-22:00 peak 10Mbit/s
        2026-06-13 blackout

        Raises:
            ConfigError: naming the line, the token and what was expected, e.g.
                ``line 2: '25:00' is not a time (HH:MM, 00:00–24:00)``.
        """
        if not isinstance(text, str):
            raise ConfigError("text", text, "calendar rules as text")
        rules: list[Rule] = []
        for number, line in enumerate(text.splitlines() or [""], start=1):
            rules.extend(
                _parse_rule(tokens, number) for tokens in _split_line(line, number) if tokens
            )
        return cls(rules, tz=tz, default=default)

    @classmethod
    def default(cls, tz: str | tzinfo = "UTC") -> PeakHourCalendar:
        """06:00–22:00 every day is PEAK (10 Mbit/s, 30 % CPU); the rest is OPEN.

        The caps are the platform defaults of the design: the backup may use at most
        30 % CPU and 10 Mbit/s during peak hours.

        >>> str(PeakHourCalendar.default().rules[0])
        'Mon-Sun 06:00-22:00 peak 10Mbit/s cpu=30% name="peak hours"'
        """
        return cls(
            [Rule(Level.PEAK, start=360, end=1320, rate=1.25e6, cpu_share=0.3, name="peak hours")],
            tz=tz,
        )

    @classmethod
    def wedding_platform(
        cls,
        event_dates: Iterable[date | str] = (),
        tz: str | tzinfo = "UTC",
        *,
        peak_rate: float | str = "10Mbit/s",
        season_rate: float | str = "5Mbit/s",
        peak_cpu: float = 0.3,
        season_cpu: float = 0.2,
        season: Season | str = "May-Oct",
    ) -> PeakHourCalendar:
        """The wedding platform's calendar.

        * 06:00–22:00 every day is PEAK at ``peak_rate`` and ``peak_cpu``;
        * in the wedding season (May–October) peak hours are stricter:
          ``season_rate`` and ``season_cpu``;
        * every date in ``event_dates`` is BLACKOUT all day.

        >>> from datetime import datetime
        >>> cal = PeakHourCalendar.wedding_platform(["2026-06-13"], tz="Europe/London")
        >>> cal.at(datetime(2026, 6, 13, 3, 0, tzinfo=cal.tz)).level
        <Level.BLACKOUT: 2>
        >>> cal.at(datetime(2026, 6, 12, 9, 0, tzinfo=cal.tz)).rate   # 5 Mbit/s
        625000.0

        Raises:
            ConfigError: a date, rate, share or the zone is malformed.
        """
        dates = _to_dates(event_dates)
        rules = [
            Rule(Level.PEAK, start=360, end=1320, rate=peak_rate, cpu_share=peak_cpu,
                 name="peak hours"),
            Rule(Level.PEAK, start=360, end=1320, season=season, rate=season_rate,
                 cpu_share=season_cpu, name="wedding season peak hours"),
        ]  # fmt: skip
        if dates:
            rules.append(Rule(Level.BLACKOUT, dates=dates, name="event day"))
        return cls(rules, tz=tz)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PeakHourCalendar:
        """Build a calendar from a mapping, e.g. the ``[calendar]`` table of a TOML file.

        Keys: ``tz``, ``default`` (a level name), ``rules`` (line-syntax text, or a list
        of tables for :meth:`Rule.from_dict`), ``rclone`` (an rclone timetable).

        >>> cal = PeakHourCalendar.from_dict({"tz": "Europe/London",
        ...                                   "rules": "Mon-Sun 06:00-22:00 peak 10Mbit/s"})
        >>> PeakHourCalendar.from_dict(cal.to_dict()) == cal
        True

        Raises:
            ConfigError: a key is unknown or a value malformed (named as ``calendar.key``).
        """
        if not isinstance(data, Mapping):
            raise ConfigError("calendar", data, "a table (mapping)")
        for key in data:
            if key not in ("tz", "default", "rules", "rclone"):
                raise ConfigError(f"calendar.{key}", data[key], "tz, default, rules or rclone")
        tz = data.get("tz", "UTC")
        default = data.get("default", Level.OPEN)
        if not isinstance(default, (str, Level)):
            raise ConfigError("calendar.default", default, _LEVEL_WHAT)
        raw = data.get("rules", [])
        if isinstance(raw, str):
            cal = cls.parse(raw, tz=tz, default=default)
            rules = list(cal.rules)
        elif isinstance(raw, Sequence):
            rules = [Rule.from_dict(r, where=f"calendar.rules[{i}]") for i, r in enumerate(raw)]
        else:
            raise ConfigError("calendar.rules", raw, "rule lines as text, or a list of tables")
        notes: tuple[str, ...] = ()
        if "rclone" in data:
            rclone = cls.from_rclone(data["rclone"], tz=tz)
            rules.extend(rclone.rules)
            notes = rclone._notes
        cal = cls(rules, tz=tz, default=default)
        cal._notes = notes
        return cal

    def to_dict(self) -> dict[str, Any]:
        """The calendar as a plain dict (TOML/JSON friendly) for :meth:`from_dict`."""
        return {
            "tz": self._tzkey,
            "default": self._default.name.lower(),
            "rules": [r.to_dict() for r in self._rules],
        }

    @classmethod
    def from_rclone(cls, text: str, tz: str | tzinfo = "UTC") -> PeakHourCalendar:
        """Read an rclone ``--bwlimit`` value: a bare rate or a timetable.

        * ``"10M"``: a constant cap. Bare numbers and ``k``/``K`` are KiB/s, ``M`` is
          MiB/s, ``G`` GiB/s, ``T`` TiB/s, ``P`` PiB/s, ``E`` EiB/s, ``b``/``B`` bytes/s;
          ``Ki``, ``KiB`` and so on are accepted as rclone does.
        * ``"08:00,512k 12:00,10M 23:00,off"``: entries ``HH:MM,RATE`` apply every
          day; ``Mon-08:00,512k`` (``Ddd-HH:MM,RATE``) apply on one weekday. Each entry
          holds from its time until the next entry, and the last wraps round the week
          to the first. Two entries at the same time: the later one counts.
        * ``RATE`` is a rate, ``off`` (no limit) or ``UP:DOWN`` (``10M:100k``).
        * Entries are separated by blanks or ``;`` (as recent rclone releases do).

        Mapping: ``off`` is OPEN with no cap; a rate is PEAK with that cap; a rate of
        0 is BLACKOUT. The download side is kept as :attr:`Rule.rate_down` and
        :attr:`Window.rate_down`; the upload side is the cap.

        >>> from datetime import datetime, timezone
        >>> cal = PeakHourCalendar.from_rclone("08:00,512k 12:00,10M 23:00,off")
        >>> w = cal.at(datetime(2026, 1, 5, 9, tzinfo=timezone.utc))
        >>> w.level, w.rate, w.end.hour
        (<Level.PEAK: 1>, 524288.0, 12)
        >>> cal.at(datetime(2026, 1, 5, 3, tzinfo=timezone.utc)).reason
        "rule 'rclone 23:00,off'"

        Raises:
            ConfigError: naming the entry and what was expected.
        """
        if not isinstance(text, str):
            raise ConfigError("bwlimit", text, "an rclone --bwlimit value")
        cal = cls(_rclone_rules(text), tz=tz)
        cal._notes = tuple(_rclone_repeats(text))
        return cal

    # -- properties -------------------------------------------------------

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The rules, in the order given."""
        return self._rules

    def notes(self) -> tuple[str, ...]:
        """What is legal but worth a second look, one sentence each: rules that hold
        at the same time (where they do, the most restrictive level wins, then the
        lowest rate cap) and, in an rclone timetable, times given twice (the later
        entry counts, as in rclone). ``wedguard config check`` and ``wedguard
        calendar`` print them.

        Overlaps are looked for on every day of this year and the next four, and on
        every date a rule names.

        >>> cal = PeakHourCalendar.parse("06:00-22:00 peak 10Mbit/s; Sat 08:00-12:00 blackout")
        >>> print(cal.notes()[0])  # doctest: +ELLIPSIS
        rules 'Mon-Sun 06:00-22:00 peak 10Mbit/s' and 'Sat 08:00-12:00 blackout' overlap ...
        >>> cal.notes()[0].endswith("then the lowest rate cap: 'Sat 08:00-12:00 blackout'")
        True
        """
        return self._notes + tuple(_overlaps(self._rules, date.today().year))

    @property
    def tz(self) -> tzinfo:
        """The zone the rules' wall-clock times are read in."""
        return self._tz

    @property
    def default_level(self) -> Level:
        """The level when no rule holds."""
        return self._default

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PeakHourCalendar):
            return NotImplemented
        return (
            self._rules == other._rules
            and self._tzkey == other._tzkey
            and self._default == other._default
        )

    def __hash__(self) -> int:
        return hash((self._rules, self._tzkey, self._default))

    def __repr__(self) -> str:
        return (
            f"PeakHourCalendar({len(self._rules)} rules, tz={self._tzkey!r}, "
            f"default={self._default.name})"
        )

    # -- queries ----------------------------------------------------------

    def at(self, when: datetime) -> Window:
        """The window that holds at the aware instant ``when``.

        Raises:
            ConfigError: ``when`` is naive, or outside the years 2–9998.
        """
        if not isinstance(when, datetime) or when.tzinfo is None or when.utcoffset() is None:
            raise ConfigError("when", when, "an aware datetime (with tzinfo)")
        ts = when.timestamp()
        if not self._first <= ts < self._beyond:  # the local day is not in the years 2-9998
            raise ConfigError("when", when, _WHEN_WHAT)
        last = self._last
        if last is not None and last[0] <= ts < last[1]:
            return last[2]
        hour = ts // 3600
        recent = self._recent.get(hour)
        if recent is not None:
            for found in recent:
                if found[0] <= ts < found[1]:
                    self._last = found
                    return found[2]
        try:
            found = self._window(ts)
        except ConfigError:
            raise ConfigError("when", when, _WHEN_WHAT) from None
        if recent is None:
            if len(self._recent) >= 4096:
                self._recent.clear()
            self._recent[hour] = [found]
        elif len(recent) < 64:
            recent.append(found)
        self._last = found
        return found[2]

    def next_change(self, when: datetime) -> datetime | None:
        """When the answer of :meth:`at` next changes after ``when``; None if never.

        Always ``at(when).end`` when that is finite; strictly later than ``when``.
        """
        end = self.at(when).end
        return None if end == _UTC_MAX else end

    def windows(self, start: datetime, end: datetime) -> Iterator[Window]:
        """The windows that tile ``[start, end)``, in order, clipped to it.

        >>> from datetime import datetime, timezone
        >>> cal = PeakHourCalendar.default()
        >>> day = datetime(2026, 1, 5, tzinfo=timezone.utc)
        >>> for w in cal.windows(day, day.replace(hour=23)):
        ...     print(w.level, w.start.hour, w.end.hour)
        OPEN 0 6
        PEAK 6 22
        OPEN 22 23

        Raises:
            ConfigError: a bound is naive, or ``end`` is before ``start``.
        """
        for field, value in (("start", start), ("end", end)):
            if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
                raise ConfigError(field, value, "an aware datetime (with tzinfo)")
        if end < start:
            raise ConfigError("end", end, f"an instant not before start ({start.isoformat()})")
        return self._iter_windows(start, end)

    def _iter_windows(self, start: datetime, end: datetime) -> Iterator[Window]:
        # Instants are compared as timestamps: Python compares two datetimes of the
        # same zone by their wall clocks, which is wrong in a fall-back fold.
        tz = self._tz
        t, stop = start.timestamp(), end.timestamp()
        current = start
        while t < stop:
            w = self.at(current)
            w_end = w.end.timestamp()
            lo = current if w.start.timestamp() <= t else w.start
            hi = end if w_end >= stop else w.end
            yield attrs.evolve(w, start=lo.astimezone(tz), end=hi.astimezone(tz))
            current, t = w.end, w_end

    # -- evaluation -------------------------------------------------------
    #
    # A query is answered in wall-clock minutes (ordinal * 1440 + minute of the day) in
    # the calendar's zone. Let f(m) be the instant a rule boundary at wall minute m takes
    # effect (its first occurrence, or the first instant after a spring-forward gap): f
    # never decreases, so a rule holds at instant t exactly when its wall interval
    # [a, b) contains W(t), the last wall minute m with f(m) <= t. W(t) is t's wall
    # clock, except in the repeated hour after clocks go back, where it is the minute
    # before the repeat ends. Every rule is thus tested with integer comparisons, and
    # only the window's two bounds are turned back into instants. Wall minutes inside a
    # gap are never W(t) of any instant: when a bound falls there, the answer on the far
    # side of the gap is checked and the window extended if it is the same.

    def _instant(self, day: int, minute: int) -> float:
        """The POSIX time of wall clock ``minute`` on ordinal ``day``: the first
        instant at which the zone's clock reads that time or later."""
        if minute >= _DAY:
            day += minute // _DAY
            minute %= _DAY
        key = day * _DAY + minute
        cache = self._icache
        hit = cache.get(key)
        if hit is not None:
            return hit
        if day < _MIN_ORDINAL - 2:
            return -_INF
        if day > _MAX_ORDINAL + 2:
            return _INF
        d = date.fromordinal(day)
        naive = datetime(d.year, d.month, d.day, minute // 60, minute % 60)
        ts = naive.replace(tzinfo=self._tz).timestamp()  # fold=0: first occurrence
        if not self._fixed:
            back = datetime.fromtimestamp(ts, self._tz).replace(tzinfo=None)
            if back != naive:  # in a gap: the first instant after it
                lo = math.floor(naive.replace(tzinfo=self._tz, fold=1).timestamp())
                hi = math.ceil(ts)
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if datetime.fromtimestamp(mid, self._tz).replace(tzinfo=None) >= naive:
                        hi = mid
                    else:
                        lo = mid
                ts = float(hi)
        if len(cache) > 8192:
            cache.clear()
        cache[key] = ts
        return ts

    def _tables(self) -> None:
        """The rule sets the fast evaluation reads, as bit sets (bit i is rule i).

        ``_times``: every minute of the day where some rule starts or ends, and 0.
        For the segment of the day from ``_times[j]``: ``_in_today[j]``, the rules whose
        interval begun today covers it; ``_in_yesterday[j]``, those whose interval
        begun yesterday does. At ``_times[j]``: ``_marks_today[j]``, the rules whose
        interval begun today starts or ends there; ``_marks_yesterday[j]``, those
        whose interval begun yesterday ends there. All-day rules (``_full``) start and
        end at midnight only, where the days they hold on change.
        """
        full = 0
        weekly = [0] * 7
        special: list[int] = []
        today: dict[int, int] = {}
        yesterday: dict[int, int] = {}
        for i, c in enumerate(self._compiled):
            bit = 1 << i
            if c.season is None and not c.dates:
                for wd in range(7):
                    if (c.mask >> wd) & 1:
                        weekly[wd] |= bit
            else:
                special.append(i)
            if c.full:
                full |= bit
                continue
            today[c.start] = today.get(c.start, 0) | bit
            if c.endp < _DAY:
                today[c.endp] = today.get(c.endp, 0) | bit
            else:
                yesterday[c.endx] = yesterday.get(c.endx, 0) | bit
        times = sorted({0, *today, *yesterday})
        in_today: list[int] = []
        in_yesterday: list[int] = []
        for t in times:
            a = b = 0
            for i, c in enumerate(self._compiled):
                if c.start <= t < c.endp:
                    a |= 1 << i
                if t < c.endx:
                    b |= 1 << i
            in_today.append(a)
            in_yesterday.append(b)
        by_level = [0, 0, 0]
        for i, c in enumerate(self._compiled):
            by_level[c.level] |= 1 << i
        self._by_level = tuple(by_level)
        self._full = full
        self._weekly = tuple(weekly)
        self._special = tuple(special)
        self._times = times
        self._in_today = tuple(in_today)
        self._in_yesterday = tuple(in_yesterday)
        self._marks_today = tuple(today.get(t, 0) for t in times)
        self._marks_yesterday = tuple(yesterday.get(t, 0) for t in times)

    def _year(self, year: int) -> _Year:
        """Every rule's day mask for ``year`` (with _PAD days of the years around)."""
        hit = self._years.get(year)
        if hit is None:
            base = date(year, 1, 1).toordinal() - _PAD
            span = date(year, 12, 31).toordinal() + _PAD + 1 - base
            masks = tuple(c.bits(base, span) for c in self._compiled)
            weekly = self._weekly
            days = [weekly[(base - 1 + k) % 7] for k in range(span)]
            for i in self._special:
                bit = 1 << i
                m = masks[i]
                while m:
                    low = m & -m
                    days[low.bit_length() - 1] |= bit
                    m ^= low
            hit = (base, span, masks, days)
            if len(self._years) >= 64:
                self._years.clear()
            self._years[year] = hit
        return hit

    def _next_on(self, i: int, x: int, year: int, want: bool) -> int | None:
        """The first day >= ``x`` on which rule ``i`` holds (``want``) or does not;
        None when there is none up to the year 9998. ``x`` lies in ``year``'s mask."""
        c = self._compiled[i]
        stop = _MAX_ORDINAL
        limit = 10_000
        if want:
            if c.dates:
                stop = min(c.dates[-1], _MAX_ORDINAL)
            limit = _CYCLE_YEARS  # a weekday-and-season pattern holds within 400 years
        elif c.always:
            return None
        for _ in range(limit):
            if x > stop:
                return None
            base, span, masks, _days = self._year(year)
            rel = x - base
            bits = ((masks[i] if want else ~masks[i]) >> rel) & ((1 << (span - rel)) - 1)
            if bits:
                d = x + (bits & -bits).bit_length() - 1
                return d if d <= _MAX_ORDINAL else None
            x = base + span
            year += 1
        return None

    def _prev_on(self, i: int, x: int, year: int, want: bool) -> int | None:
        """The last day <= ``x`` on which rule ``i`` holds (``want``) or does not; None
        when there is none from the year 2. ``x`` lies in ``year``'s mask."""
        c = self._compiled[i]
        stop = _MIN_ORDINAL
        limit = 10_000
        if want:
            if c.dates:
                stop = max(c.dates[0], _MIN_ORDINAL)
            limit = _CYCLE_YEARS
        elif c.always:
            return None
        for _ in range(limit):
            if x < stop:
                return None
            base, _span, masks, _days = self._year(year)
            rel = x - base
            bits = (masks[i] if want else ~masks[i]) & ((1 << (rel + 1)) - 1)
            if bits:
                d = base + bits.bit_length() - 1
                return d if d >= _MIN_ORDINAL else None
            x = base - 1
            year -= 1
        return None

    def _wall(self, ts: float) -> tuple[int, int, int, datetime]:
        """W(ts) as (ordinal, minute of the day, year), and ts in the zone."""
        tz = self._tz
        try:
            dt = datetime.fromtimestamp(ts, tz)
        except (OverflowError, ValueError, OSError):
            raise ConfigError("when", ts, _WHEN_WHAT) from None
        wall = dt
        if dt.fold:  # the repeated hour: the reading just before the repeat ends
            off = dt.utcoffset()
            first = dt.replace(fold=0).utcoffset()
            assert off is not None
            assert first is not None
            lo = math.floor(ts - (first - off).total_seconds())
            hi = math.floor(ts)
            while hi - lo > 1:  # the transition is a whole second in (lo, hi]
                mid = (lo + hi) // 2
                if datetime.fromtimestamp(mid, tz).utcoffset() == off:
                    hi = mid
                else:
                    lo = mid
            wall = (datetime.fromtimestamp(hi, timezone.utc) - _TICK).astimezone(tz)
        day = wall.toordinal()
        if not _MIN_ORDINAL <= day <= _MAX_ORDINAL:
            raise ConfigError("when", ts, _WHEN_WHAT)
        return day, wall.hour * 60 + wall.minute, wall.year, dt

    def _answer(self, held: int) -> _Answer:
        """What the rules in ``held`` decide (remembered: few sets ever occur)."""
        compiled = self._compiled
        level = -1
        rate = cpu = down = _INF
        rest = held
        while rest:
            low = rest & -rest
            rest ^= low
            c = compiled[low.bit_length() - 1]
            if c.level > level:
                level, rate, cpu, down = c.level, c.rate, c.cpu, c.down
            elif c.level == level:
                rate = min(rate, c.rate)
                cpu = min(cpu, c.cpu)
                down = min(down, c.down)
        deciders: list[_Compiled] = []
        if level < 0:  # the default: every rule that starts changes it
            key: tuple[Any, ...] = (-1,)
            watch = self._by_level[0] | self._by_level[1] | self._by_level[2]
        else:
            # a rule of a higher level changes the answer by starting; one of a lower
            # level neither decides nor changes anything; one of this level decides
            # when it sets a cap that applies, and changes the answer by starting when
            # it would set one
            watch = 0
            for above in self._by_level[level + 1 :]:
                watch |= above
            uncapped = rate == _INF and cpu == _INF and down == _INF
            rest = self._by_level[level]
            while rest:
                low = rest & -rest
                rest ^= low
                c = compiled[low.bit_length() - 1]
                if held & low:
                    if (
                        uncapped
                        or (c.rate == rate and rate < _INF)
                        or (c.cpu == cpu and cpu < _INF)
                        or (c.down == down and down < _INF)
                    ):
                        deciders.append(c)
                        watch |= low
                elif (
                    (c.rate <= rate and c.rate < _INF)
                    or (c.cpu <= cpu and c.cpu < _INF)
                    or (c.down <= down and c.down < _INF)
                    or (uncapped and c.uncapped)
                ):
                    watch |= low
            key = (level, rate, cpu, down, tuple(dict.fromkeys(c.label for c in deciders)))
        answer = (key, tuple(c.rule for c in deciders), watch)
        if len(self._answers) >= 4096:
            self._answers.clear()
        self._answers[held] = answer
        return answer

    def _evaluate(self, day: int, minute: int, year: int) -> _Found:
        """The decision at a wall minute, its wall bounds and the deciding rules.

        The rules holding are one bit set, from the day's set of rules and the
        segment of the day. The bounds are the nearest instants, before and after,
        where a rule that matters starts or ends: the marked times of this day and of
        up to six days either side are scanned, and a window reaching further is left
        to :meth:`_evaluate_slow`.
        """
        if not _MIN_ORDINAL + _PAD < day < _MAX_ORDINAL - _PAD:
            return self._evaluate_slow(day, minute, year)
        base, _span, _masks, days = self._year(year)
        k = day - base
        times = self._times
        j = bisect.bisect_right(times, minute) - 1
        now = days[k]
        prev = days[k - 1]
        held = (now & self._in_today[j]) | (prev & self._in_yesterday[j])
        answer = self._answers.get(held)
        if answer is None:
            answer = self._answer(held)
        key, deciders, watch = answer
        if not watch:  # nothing can change
            return key, -_INF, _INF, deciders, 3
        marks_today = self._marks_today
        marks_yesterday = self._marks_yesterday
        # at midnight the all-day rules also start and end, where their days change
        midnight = marks_today[0]
        midnight_y = marks_yesterday[0]
        full = self._full
        n = len(times)
        d0 = day * _DAY
        shared = self._shared
        # the end: the first mark after ``minute`` of a rule that matters
        end = -1
        for i in range(j + 1, n):
            hit = ((marks_today[i] & now) | (marks_yesterday[i] & prev)) & watch
            if hit:
                end = d0 + times[i]
                break
        else:
            for ahead in range(1, 7):
                cur = days[k + ahead]
                before = days[k + ahead - 1]
                hit = ((midnight & cur) | (midnight_y & before) | ((cur ^ before) & full)) & watch
                if hit:
                    end = d0 + ahead * _DAY
                    break
                for i in range(1, n):
                    hit = ((marks_today[i] & cur) | (marks_yesterday[i] & before)) & watch
                    if hit:
                        end = d0 + ahead * _DAY + times[i]
                        break
                if end >= 0:
                    break
            else:
                return self._evaluate_slow(day, minute, year)
        sure = 1 if hit & shared else 3
        # the start: the last such mark at or before ``minute``
        for i in range(j, 0, -1):
            hit = ((marks_today[i] & now) | (marks_yesterday[i] & prev)) & watch
            if hit:
                return key, d0 + times[i], end, deciders, sure & 2 if hit & shared else sure
        for back in range(7):
            cur = days[k - back]
            before = days[k - back - 1]
            hit = ((midnight & cur) | (midnight_y & before) | ((cur ^ before) & full)) & watch
            if hit:
                return key, d0 - back * _DAY, end, deciders, sure & 2 if hit & shared else sure
            if back == 6:
                break
            cur, before = before, days[k - back - 2]
            for i in range(n - 1, 0, -1):
                hit = ((marks_today[i] & cur) | (marks_yesterday[i] & before)) & watch
                if hit:
                    start = d0 - (back + 1) * _DAY + times[i]
                    return key, start, end, deciders, sure & 2 if hit & shared else sure
        return self._evaluate_slow(day, minute, year)

    def _evaluate_slow(self, day: int, minute: int, year: int) -> _Found:
        """:meth:`_evaluate` rule by rule, searching each rule's days as far as needed."""
        base, _span, masks, _days = self._year(year)
        k = day - base - 2
        compiled = self._compiled
        # Per rule: bits 0-4 say whether it holds on the days day-2 .. day+2; bit 5 is
        # set when today's interval holds, bit 6 when yesterday's (crossing midnight).
        state: list[int] = []
        level = -1
        rate = cpu = down = _INF
        for c, m in zip(compiled, masks):  # noqa: B905 - equal lengths
            b = (m >> k) & 31
            if b & 4 and c.start <= minute < c.endp:
                state.append(b | 32)
            elif b & 2 and minute < c.endx:
                state.append(b | 64)
            else:
                state.append(b)
                continue
            if c.level >= level:
                if c.level > level:
                    level, rate, cpu, down = c.level, c.rate, c.cpu, c.down
                else:
                    if c.rate < rate:
                        rate = c.rate
                    if c.cpu < cpu:
                        cpu = c.cpu
                    if c.down < down:
                        down = c.down
        uncapped = rate == _INF and cpu == _INF and down == _INF
        start = -_INF
        end = _INF
        deciders: list[_Compiled] = []
        d0 = day * _DAY
        # the neighbouring days may be used directly unless they are out of range
        early = day > _MIN_ORDINAL
        late = day < _MAX_ORDINAL
        k3 = k + 3  # bit of tomorrow
        before = (1 << (k + 2)) - 1  # bits of the days up to yesterday
        lo: float
        hi: float
        for i, c in enumerate(compiled):
            if c.level < level:
                continue  # it neither decides nor would change anything by starting
            b = state[i]
            if b & 96:
                if c.level != level or not (
                    uncapped
                    or (c.rate == rate and rate < _INF)
                    or (c.cpu == cpu and cpu < _INF)
                    or (c.down == down and down < _INF)
                ):
                    continue
                deciders.append(c)
                if not c.full:
                    lo = d0 + c.start if b & 32 else d0 - _DAY + c.start
                    hi = lo + c.endp - c.start
                else:  # the run of days it holds on
                    if early and not b & 2:
                        lo = d0
                    else:
                        p = self._prev_on(i, day - 1, year, False)
                        lo = -_INF if p is None else (p + 1) * _DAY
                    if late and not b & 8:
                        hi = d0 + _DAY
                    else:
                        n = self._next_on(i, day + 1, year, False)
                        hi = _INF if n is None else n * _DAY
            elif c.level > level or (
                (c.rate <= rate and c.rate < _INF)
                or (c.cpu <= cpu and c.cpu < _INF)
                or (c.down <= down and c.down < _INF)
                or (uncapped and c.uncapped)
            ):
                # the start of its next interval and the end of its previous one (an
                # all-day rule's start is 0 and its end 1440: the same sums serve)
                if b & 4 and minute < c.start:
                    hi = d0 + c.start
                elif late and b & 8:
                    hi = d0 + _DAY + c.start
                else:
                    t = masks[i] >> k3  # the days from tomorrow on, in this year's mask
                    if t:
                        n = day + (t & -t).bit_length()
                        hi = n * _DAY + c.start if n <= _MAX_ORDINAL else _INF
                    else:
                        n2 = self._next_on(i, day + 1, year, True)
                        hi = _INF if n2 is None else n2 * _DAY + c.start
                if b & 4 and minute >= c.endp:
                    lo = d0 + c.endp
                elif early and b & 2:
                    lo = d0 - _DAY + c.endp
                else:
                    t = masks[i] & before  # the days up to yesterday
                    if t:
                        p = base + t.bit_length() - 1
                        lo = p * _DAY + c.endp if p >= _MIN_ORDINAL else -_INF
                    else:
                        p2 = self._prev_on(i, day - 1, year, True)
                        lo = -_INF if p2 is None else p2 * _DAY + c.endp
            else:
                continue
            if lo > start:
                start = lo
            if hi < end:
                end = hi
        sure = 0 if self._shared else 3
        if level < 0:
            return (-1,), start, end, (), sure
        labels = tuple(dict.fromkeys(c.label for c in deciders))
        rules = tuple(c.rule for c in deciders)
        return (level, rate, cpu, down, labels), start, end, rules, sure

    def _evaluate_at(self, ts: float) -> _Found:
        day, minute, year, _dt = self._wall(ts)
        return self._evaluate(day, minute, year)

    def _convert(
        self, wall: float, guess: timedelta, guess_s: float
    ) -> tuple[float, datetime | None, bool]:
        """f(wall): the instant a boundary at this wall minute takes effect, that instant
        in the zone, and whether the zone's clock reads exactly ``wall`` then (False in
        a spring-forward gap). ``guess`` is the UTC offset to try first (``guess_s`` in
        seconds)."""
        if not _WALL_FIRST <= wall <= _WALL_LAST:  # also ±inf
            return (_INF, None, True) if wall > 0 else (-_INF, None, True)
        tz = self._tz
        seconds = (int(wall) - _EPOCH_MINUTE) * 60
        ts = seconds - guess_s
        dt = datetime.fromtimestamp(ts, tz)
        off = dt.utcoffset()
        if off == guess and not dt.fold:
            return ts, dt, True
        if off is not None:  # the offset on the other side of a change
            ts = seconds - off.total_seconds()
            dt = datetime.fromtimestamp(ts, tz)
            if dt.utcoffset() == off and not dt.fold:
                return ts, dt, True
        # in a gap or a fold: the exact search
        day, minute = divmod(int(wall), _DAY)
        ts = self._instant(day, minute)
        dt = datetime.fromtimestamp(ts, tz)
        d = date.fromordinal(day)
        naive = datetime(d.year, d.month, d.day, minute // 60, minute % 60)
        return ts, dt, dt.replace(tzinfo=None) == naive

    def _seen_before(self, start_dt: datetime) -> bool:
        """Whether the wall minute before the one ``start_dt`` shows is read at the
        instant a minute earlier (so it is not inside a spring-forward gap).

        The offset of a wall time (at its first occurrence; before the change for a
        time inside a gap) is the same as ``start_dt``'s exactly when no clock change
        lies in between.
        """
        return (start_dt - _MINUTE).utcoffset() == start_dt.utcoffset()

    def _window(self, ts: float) -> tuple[float, float, Window]:
        day, minute, year, dt = self._wall(ts)
        key, lo, hi, deciders, sure = self._evaluate(day, minute, year)
        guess = dt.utcoffset()
        assert guess is not None
        guess_s = guess.total_seconds()
        # A bound where nothing changes (inside a gap, or where two pieces of one rclone
        # entry or rules of the same name meet) is stepped over, a bounded number of
        # times. Every other bound is a real change.
        end, end_dt, exact = self._convert(hi, guess, guess_s)
        if not (exact and sure & 2):
            try:
                for _ in range(256):
                    if end == _INF:
                        break
                    key2, _lo, hi2, _d, sure2 = self._evaluate_at(end)
                    if key2 != key:
                        break
                    end, end_dt, exact = self._convert(hi2, guess, guess_s)
                    if exact and sure2 & 2:
                        break
            except ConfigError:  # the neighbour is outside the years 2-9998: stop there
                pass
        start, start_dt, _exact = self._convert(lo, guess, guess_s)
        if start_dt is not None and not (sure & 1 and self._seen_before(start_dt)):
            moved = False
            try:
                for _ in range(256):
                    key2, lo2, _hi, _d, sure2 = self._evaluate_at(start - 1e-3)
                    if key2 != key:
                        break
                    moved = True
                    start, start_dt, _exact = self._convert(lo2, guess, guess_s)
                    if start_dt is None or (sure2 & 1 and self._seen_before(start_dt)):
                        break
            except ConfigError:
                pass
            if moved and self._shared and start_dt is not None:
                # the rules as they stand at the window's start, wherever it was asked
                # (between two bounds found at once the deciding rules do not change)
                deciders = self._evaluate_at(start)[3]
        return (
            start,
            end,
            self._make(
                key,
                _UTC_MIN if start_dt is None else start_dt,
                _UTC_MAX if end_dt is None else end_dt,
                deciders,
            ),
        )

    def _make(
        self, key: tuple[Any, ...], lo: datetime, hi: datetime, rules: tuple[Rule, ...]
    ) -> Window:
        fields = self._fields.get(key)
        if fields is None:
            fields = self._window_fields(key)
        level, rate, cpu, reason, down = fields
        return Window(level, rate, cpu, lo, hi, reason, rules, down)

    def _window_fields(
        self, key: tuple[Any, ...]
    ) -> tuple[Level, float | None, float | None, str, float | None]:
        """A window's level, caps, reason and download cap for a decision ``key``."""
        if key[0] < 0:
            zero = 0.0 if self._default is Level.BLACKOUT else None
            fields = (
                self._default,
                zero,
                zero,
                f"no rule applies (default {self._default.name})",
                None,
            )
        else:
            level, rate, cpu, down, labels = key
            lvl = Level(level)
            if lvl is Level.BLACKOUT:
                rate_out: float | None = 0.0
                cpu_out: float | None = 0.0
            else:
                rate_out = None if rate == _INF else rate
                cpu_out = None if cpu == _INF else cpu
            quoted = ", ".join(repr(label) for label in labels)
            reason = f"rule {quoted}" if len(labels) == 1 else f"rules {quoted}"
            fields = (lvl, rate_out, cpu_out, reason, None if down == _INF else down)
        if len(self._fields) >= 4096:
            self._fields.clear()
        self._fields[key] = fields
        return fields

    # -- description ------------------------------------------------------

    def describe(self, week_of: date | datetime | None = None) -> str:
        """The calendar as a readable table.

        Without ``week_of``: one row per weekday and rule (seasonal rules say their
        season, dated rules are listed after the week). With ``week_of`` (a date or an
        aware datetime): the actual windows of the Monday-to-Sunday week containing
        it, in the calendar's zone.

        >>> print(PeakHourCalendar.default("Europe/London").describe())
        Calendar in Europe/London (default OPEN)
        Day  Hours        Level  Rate cap   CPU  Season  Rule
        Mon  06:00-22:00  PEAK   1.25 MB/s  30%  -       peak hours
        Tue  06:00-22:00  PEAK   1.25 MB/s  30%  -       peak hours
        Wed  06:00-22:00  PEAK   1.25 MB/s  30%  -       peak hours
        Thu  06:00-22:00  PEAK   1.25 MB/s  30%  -       peak hours
        Fri  06:00-22:00  PEAK   1.25 MB/s  30%  -       peak hours
        Sat  06:00-22:00  PEAK   1.25 MB/s  30%  -       peak hours
        Sun  06:00-22:00  PEAK   1.25 MB/s  30%  -       peak hours
        Other times: OPEN
        """
        if week_of is None:
            return self._describe_rules()
        return self._describe_week(week_of)

    def __str__(self) -> str:
        return self.describe()

    def _describe_rules(self) -> str:
        header = ("Day", "Hours", "Level", "Rate cap", "CPU", "Season", "Rule")
        rows: list[tuple[str, ...]] = []
        weekly = [r for r in self._rules if not r.dates]
        for day in range(7):
            todays = sorted(
                (r for r in weekly if day in r.weekdays), key=lambda r: (r.start, -r.level)
            )
            rows.extend((_WEEKDAY_NAMES[day], *_rule_cells(r)) for r in todays)
        dated = [r for r in self._rules if r.dates]
        for r in dated:
            days = sorted(r.dates)
            when = days[0].isoformat() if len(days) == 1 else f"{days[0]}..{days[-1]}"
            rows.append((when, *_rule_cells(r)))
        lines = [f"Calendar in {self._tzkey} (default {self._default.name})"]
        lines.extend(_table(header, rows))
        lines.append(f"Other times: {self._default.name}")
        return "\n".join(lines)

    def _describe_week(self, week_of: date | datetime) -> str:
        if isinstance(week_of, datetime):
            if week_of.tzinfo is None or week_of.utcoffset() is None:
                raise ConfigError("week_of", week_of, "a date or an aware datetime")
            day = week_of.astimezone(self._tz).date()
        elif isinstance(week_of, date):
            day = week_of
        else:
            raise ConfigError("week_of", week_of, "a date or an aware datetime")
        monday = day - timedelta(days=day.weekday())
        first = datetime.fromtimestamp(self._instant(monday.toordinal(), 0), self._tz)
        last = datetime.fromtimestamp(self._instant(monday.toordinal() + 7, 0), self._tz)
        header = ("Day", "From", "To", "Level", "Rate cap", "CPU", "Why")
        rows = []
        for w in self.windows(first, last):
            start = w.start.astimezone(self._tz)
            stop = w.end.astimezone(self._tz)
            stop_text = stop.strftime("%H:%M")
            if stop.date() != start.date():
                stop_text = "24:00" if stop_text == "00:00" else f"{stop:%a} {stop_text}"
            rows.append(
                (
                    f"{start:%a %Y-%m-%d}",
                    f"{start:%H:%M}",
                    stop_text,
                    w.level.name,
                    "-" if w.rate is None else format_rate(w.rate),
                    "-" if w.cpu_share is None else f"{w.cpu_share * 100:g}%",
                    w.reason,
                )
            )
        lines = [f"Week of {monday.isoformat()} in {self._tzkey}"]
        lines.extend(_table(header, rows))
        return "\n".join(lines)


def _rule_cells(r: Rule) -> tuple[str, ...]:
    hours = f"{_format_time(r.start)}-{_format_time(r.end)}"
    return (
        hours,
        r.level.name,
        "-" if r.rate is None else format_rate(r.rate),
        "-" if r.cpu_share is None else f"{r.cpu_share * 100:g}%",
        "-" if r.season is None else str(r.season),
        r.label,
    )


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    out = []
    for row in (header, *rows):
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        out.append("  ".join(cells).rstrip())
    return out


# --------------------------------------------------------------------------- line syntax


def _split_line(line: str, number: int) -> list[list[str]]:
    """Split one line into rules (at ';') and tokens (at blanks), honouring double
    quotes and dropping a '#' comment."""
    rules: list[list[str]] = []
    tokens: list[str] = []
    current: list[str] = []
    started = False
    quoted = False
    for ch in line:
        if quoted:
            if ch == '"':
                quoted = False
            else:
                current.append(ch)
            continue
        if ch == '"':
            quoted = True
            started = True
        elif ch == "#":
            break
        elif ch == ";" or ch.isspace():
            if started:
                tokens.append("".join(current))
                current, started = [], False
            if ch == ";":
                rules.append(tokens)
                tokens = []
        else:
            current.append(ch)
            started = True
    if quoted:
        raise _line_error(f"line {number}", line.strip(), "closed: a double quote is missing")
    if started:
        tokens.append("".join(current))
    rules.append(tokens)
    return rules


def _parse_rule(tokens: list[str], number: int) -> Rule:
    where = f"line {number}"
    kwargs: dict[str, Any] = {}
    level: Level | None = None
    try:
        for token in tokens:
            low = token.lower()
            key, eq, value = token.partition("=")
            if eq:
                kw = key.lower()
                slot = {"rate": "rate", "cpu": "cpu_share", "down": "rate_down", "name": "name"}
                if kw not in slot:
                    raise _Bad(token, "a known key (rate=, cpu=, down=, name=)")
                if slot[kw] in kwargs:
                    raise _Bad(token, f"a second {kw}= (give it once)")
                if kw == "cpu":
                    kwargs["cpu_share"] = _parse_cpu(value)
                elif kw == "name":
                    if not value.strip() or "\n" in value:
                        raise _Bad(token, 'a name such as name="wedding days"')
                    kwargs["name"] = value
                elif kw == "down":
                    kwargs["rate_down"] = 0.0 if value.strip() == "0" else _parse_cap(value)
                else:
                    kwargs["rate"] = _parse_cap(value)
            elif low in _LEVELS:
                if level is not None:
                    raise _Bad(token, "a second level (give one of open, peak, blackout)")
                level = _LEVELS[low]
            elif _DATE.match(token):
                _once(kwargs, "dates", token)
                kwargs["dates"] = _parse_dates(token)
            elif ".." in token and _MD.match(token):
                _once(kwargs, "season", token)
                kwargs["season"] = Season._parse(token)
            elif ":" in token:
                _once(kwargs, "start", token)
                kwargs["start"], kwargs["end"] = _parse_range(token)
            elif low.split(",")[0].split("-")[0] in _WEEKDAY_INDEX or low in _WEEKDAY_SETS:
                _once(kwargs, "weekdays", token)
                kwargs["weekdays"] = _parse_weekdays(token)
            elif low.split("-")[0] in _MONTH_INDEX:
                _once(kwargs, "season", token)
                kwargs["season"] = Season._parse(token)
            elif level is not None:
                _once(kwargs, "rate", token)
                kwargs["rate"] = _parse_cap(token)
            else:
                raise _Bad(token, _TOKEN_WHAT)
    except _Bad as bad:
        raise _line_error(where, bad.token, bad.what) from None
    if level is None:
        raise _line_error(where, " ".join(tokens), "a rule: it has no level (open, peak, blackout)")
    if level is not Level.PEAK:
        for field in ("rate", "cpu_share"):
            if kwargs.get(field) is not None:
                raise _line_error(
                    where, " ".join(tokens), f"a valid rule: {level.name} takes no {field}"
                )
    try:
        return Rule(level, **kwargs)
    except ConfigError as err:  # pragma: no cover - the checks above catch these first
        raise _line_error(where, err.value, err.expected) from None


def _once(kwargs: dict[str, Any], field: str, token: str) -> None:
    if field in kwargs:
        raise _Bad(token, f"a second {field} (give each part once)")


# --------------------------------------------------------------------------- rclone

_RCLONE_RATE = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_RCLONE_MULT = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "p": 2**50, "e": 2**60}
_RCLONE_RATE_WHAT = (
    "an rclone rate: a number of KiB/s with an optional suffix B, K, M, G, T, P, E "
    "(or Ki, KiB, MiB, ...), or 'off'"
)
_RCLONE_ENTRY_WHAT = "an rclone timetable entry such as '08:00,512k' or 'Mon-08:00,10M:1M'"
_RCLONE_DAYS = {
    "sun": 6,
    "sunday": 6,
    "mon": 0,
    "monday": 0,
    "tue": 1,
    "tuesday": 1,
    "wed": 2,
    "wednesday": 2,
    "thu": 3,
    "thursday": 3,
    "fri": 4,
    "friday": 4,
    "sat": 5,
    "saturday": 5,
}


def _rclone_size(text: str) -> float | None:
    """rclone's SizeSuffix: bytes per second, None for 'off'."""
    if text.lower() == "off":
        return None
    if not text:
        raise _Bad(text, _RCLONE_RATE_WHAT)
    number, mult = text, 1024.0
    last = text[-1]
    if last.isdigit() or last == ".":
        pass
    elif last in "bB":
        if len(text) > 2 and text[-2] == "i":
            prefix = text[-3].lower()
            if prefix not in _RCLONE_MULT:
                raise _Bad(text, _RCLONE_RATE_WHAT)
            number, mult = text[:-3], float(_RCLONE_MULT[prefix])
        else:
            number, mult = text[:-1], 1.0
    elif last in "iI":
        prefix = text[-2].lower() if len(text) > 1 else ""
        if prefix not in _RCLONE_MULT:
            raise _Bad(text, _RCLONE_RATE_WHAT)
        number, mult = text[:-2], float(_RCLONE_MULT[prefix])
    elif last.lower() in _RCLONE_MULT:
        number, mult = text[:-1], float(_RCLONE_MULT[last.lower()])
    else:
        raise _Bad(text, _RCLONE_RATE_WHAT)
    if _RCLONE_RATE.fullmatch(number) is None:
        raise _Bad(text, _RCLONE_RATE_WHAT)
    value = float(number) * mult
    if not math.isfinite(value):
        raise _Bad(text, _RCLONE_RATE_WHAT)
    return value


def _rclone_pair(text: str) -> tuple[float | None, float | None]:
    up, colon, down = text.partition(":")
    tx = _rclone_size(up)
    rx = _rclone_size(down) if colon else tx
    return tx, rx


def _rclone_hhmm(text: str) -> int:
    if len(text) != 5 or text[2] != ":" or not (text[:2] + text[3:]).isdigit():
        raise _Bad(text, "an rclone time (hh:mm, 00:00-23:59)")
    hours, minutes = int(text[:2]), int(text[3:])
    if hours > 23 or minutes > 59:
        raise _Bad(text, "an rclone time (hh:mm, 00:00-23:59)")
    return hours * 60 + minutes


def _rclone_rules(text: str) -> list[Rule]:
    try:
        return _rclone_rules_inner(text)
    except _Bad as bad:
        raise ConfigError("bwlimit", bad.token, bad.what) from None


def _rclone_rules_inner(text: str) -> list[Rule]:
    stripped = text.strip()
    if not stripped:
        raise _Bad(text, "an rclone --bwlimit value such as '10M' or '08:00,512k 23:00,off'")
    if "," not in stripped and ";" not in stripped and not any(c.isspace() for c in stripped):
        tx, rx = _rclone_pair(stripped)
        return [_rclone_rule(tx, rx, 0, _DAY, _ALL_DAYS, stripped)]
    # slots: week minute (Monday 00:00 = 0) -> (tx, rx, label); later entries win
    slots: dict[int, tuple[float | None, float | None, str]] = {}
    for token in stripped.replace(";", " ").split():
        parts = token.split(",")
        if len(parts) != 2:
            raise _Bad(token, _RCLONE_ENTRY_WHAT)
        when, bw = parts
        tx, rx = _rclone_pair(bw)
        if "-" in when:
            pieces = when.split("-")
            if len(pieces) != 2 or pieces[0].lower() not in _RCLONE_DAYS:
                raise _Bad(when, "an rclone day and time such as 'Mon-08:00'")
            minute = _rclone_hhmm(pieces[1])
            day = _RCLONE_DAYS[pieces[0].lower()]
            slots.pop(day * _DAY + minute, None)
            slots[day * _DAY + minute] = (tx, rx, token)
        else:
            minute = _rclone_hhmm(when)
            for day in range(7):
                slots.pop(day * _DAY + minute, None)
                slots[day * _DAY + minute] = (tx, rx, token)
    week = 7 * _DAY
    points = sorted(slots)
    # an entry that follows an identical one changes nothing: drop it
    kept = [p for i, p in enumerate(points) if slots[p] != slots[points[i - 1]]]
    points = kept or points[:1]
    if len(points) == 1:  # one entry holds all the time
        tx, rx, label = slots[points[0]]
        return [_rclone_rule(tx, rx, 0, _DAY, _ALL_DAYS, label)]
    pieces_out: dict[tuple[int, int, float | None, float | None, str], set[int]] = {}
    for i, p in enumerate(points):
        q = points[i + 1] if i + 1 < len(points) else points[0] + week
        tx, rx, label = slots[p]
        for day_start, a, b in _split_span(p, q):
            key = (a, b, tx, rx, label)
            pieces_out.setdefault(key, set()).add(day_start % 7)
    rules = []
    for (a, b, tx, rx, label), days in pieces_out.items():
        rules.append(_rclone_rule(tx, rx, a, b, frozenset(days), label))
    return rules


def _rclone_repeats(text: str) -> list[str]:
    """Times an rclone timetable gives more than once (rclone takes the later one)."""
    seen: dict[str, str] = {}
    notes = []
    for token in text.replace(";", " ").split():
        when = token.split(",")[0]
        earlier = ""
        for key in [when.lower()] if "-" in when else [f"{d}-{when}" for d in _WEEK]:
            day, _, hhmm = key.partition("-")
            key = f"{_WEEK[_RCLONE_DAYS[day]].title()} {hhmm}"
            if key in seen and not earlier:
                earlier = seen[key]
                at = key if "-" in when + earlier.split(",")[0] else hhmm
            seen[key] = token
        if earlier:
            notes.append(
                f"rclone entries {earlier!r} and {token!r} are both at {at}: "
                f"the later one, {token!r}, counts (as in rclone)"
            )
    return notes


_WEEK = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _spans(rule: Rule, day: date) -> list[tuple[int, int]]:
    """The minutes of ``day`` the rule holds, as [start, end) pieces."""
    out = []
    if rule.holds_on(day):
        out.append((rule.start, rule.end if rule.end > rule.start else _DAY))
    if rule.crosses_midnight and rule.holds_on(day - timedelta(days=1)):
        out.append((0, rule.end))
    return out


def _winner(a: Rule, b: Rule) -> Rule:
    """Where both hold: the more restrictive level, then the lower cap."""
    if a.level != b.level:
        return a if a.level > b.level else b
    cap_a = math.inf if a.rate is None else a.rate
    cap_b = math.inf if b.rate is None else b.rate
    return b if cap_b < cap_a else a


def _overlaps(rules: Sequence[Rule], year: int) -> Iterator[str]:
    """A note for each pair of rules that hold at the same time on some day of
    ``year`` to ``year + 4`` or a date a rule names."""
    if len(rules) < 2:
        return
    days: set[date] = set()
    for r in rules:
        days.update(r.dates)
        days.update(d + timedelta(days=1) for d in r.dates)
    first = date(year, 1, 1)
    days.update(first + timedelta(days=i) for i in range((date(year + 5, 1, 1) - first).days))
    found: dict[tuple[int, int], tuple[date, int, int]] = {}
    for day in sorted(days):
        spans = [(i, _spans(r, day)) for i, r in enumerate(rules)]
        spans = [(i, sp) for i, sp in spans if sp]
        for x, (i, a) in enumerate(spans):
            for j, b in spans[x + 1 :]:
                if (i, j) in found:
                    continue
                for s1, e1 in a:
                    for s2, e2 in b:
                        if max(s1, s2) < min(e1, e2):
                            found[(i, j)] = (day, max(s1, s2), min(e1, e2))
                            break
                    if (i, j) in found:
                        break
    for (i, j), (day, start, end) in sorted(found.items()):
        one, other = rules[i], rules[j]
        when = f"{day:%a}" if not (one.dates or other.dates) else f"{day:%a %Y-%m-%d}"
        yield (
            f"rules {one.label!r} and {other.label!r} overlap ({when} "
            f"{_format_time(start)}-{_format_time(end)}); where both hold, the most "
            f"restrictive level wins, then the lowest rate cap: "
            f"{_winner(one, other).label!r}"
        )


def _split_span(p: int, q: int) -> list[tuple[int, int, int]]:
    """Split the week-minute span [p, q) into (day, start, end) pieces of at most a
    day, each starting on its day (a piece may cross midnight)."""
    out = []
    if q - p < _DAY:
        day, start = divmod(p, _DAY)
        end = (q - day * _DAY) % _DAY or _DAY
        out.append((day, start, end))
        return out
    t = p
    while t < q:
        day, start = divmod(t, _DAY)
        stop = min(q, (day + 1) * _DAY)
        out.append((day, start, stop - day * _DAY))
        t = stop
    return out


def _rclone_rule(
    tx: float | None, rx: float | None, start: int, end: int, days: frozenset[int], label: str
) -> Rule:
    if tx is None:
        level, rate = Level.OPEN, None
    elif tx == 0:
        level, rate = Level.BLACKOUT, None
    else:
        level, rate = Level.PEAK, tx
    return Rule(
        level,
        weekdays=days,
        start=start,
        end=end,
        rate=rate,
        rate_down=rx,
        name=f"rclone {label}",
    )
