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


class _Compiled:
    """A rule in the shape the evaluator wants: integers and precomputed keys."""

    __slots__ = (
        "cpu",
        "dates",
        "dateset",
        "down",
        "endp",
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
        self.dateset = frozenset(d.toordinal() for d in rule.dates)
        self.dates = tuple(sorted(self.dateset))
        self.start = rule.start
        self.endp = rule.end if rule.end > rule.start else rule.end + _DAY
        self.full = rule.all_day
        self.rate = _INF if rule.rate is None else rule.rate
        self.cpu = _INF if rule.cpu_share is None else rule.cpu_share
        self.down = _INF if rule.rate_down is None else rule.rate_down
        self.uncapped = rule.rate is None and rule.cpu_share is None and rule.rate_down is None
        self.label = rule.label

    # -- days ---------------------------------------------------------------

    def day_ok(self, d: int) -> bool:
        if self.dateset and d not in self.dateset:
            return False
        if self.mask != 127 and not (self.mask >> ((d - 1) % 7)) & 1:
            return False
        if self.season is not None:
            day = date.fromordinal(d)
            return self.season.contains_md(day.month * 100 + day.day)
        return True

    def _in_season(self, d: int) -> bool:
        assert self.season is not None
        day = date.fromordinal(d)
        return self.season.contains_md(day.month * 100 + day.day)

    def next_active(self, x: int) -> int | None:
        """The first day >= x on which the rule holds."""
        if self.dates:
            i = bisect.bisect_left(self.dates, x)
            for d in self.dates[i:]:
                if self.day_ok(d):
                    return d
            return None
        for _ in range(4000):
            if x > _MAX_ORDINAL:
                return None
            if self.season is not None and not self._in_season(x):
                nxt = _season_next_start(self.season, x)
                if nxt is None:
                    return None
                x = nxt
            if self.mask != 127:
                wd = (x - 1) % 7
                if not (self.mask >> wd) & 1:
                    k = 1
                    while not (self.mask >> ((wd + k) % 7)) & 1:
                        k += 1
                    x += k
                    continue
            return x
        return None  # pragma: no cover - no Gregorian pattern needs this many steps

    def prev_active(self, x: int) -> int | None:
        """The last day <= x on which the rule holds."""
        if self.dates:
            i = bisect.bisect_right(self.dates, x)
            for d in reversed(self.dates[:i]):
                if self.day_ok(d):
                    return d
            return None
        for _ in range(4000):
            if x < _MIN_ORDINAL:
                return None
            if self.season is not None and not self._in_season(x):
                prv = _season_prev_end(self.season, x)
                if prv is None:
                    return None
                x = prv
            if self.mask != 127:
                wd = (x - 1) % 7
                if not (self.mask >> wd) & 1:
                    k = 1
                    while not (self.mask >> ((wd - k) % 7)) & 1:
                        k += 1
                    x -= k
                    continue
            return x
        return None  # pragma: no cover

    def next_inactive(self, x: int) -> int | None:
        """The first day >= x on which the rule does not hold (None: never)."""
        best: int | None = None
        if self.dateset:
            y = x
            while y in self.dateset:
                y += 1
            best = y
        if self.mask != 127:
            for k in range(7):
                if not (self.mask >> ((x - 1 + k) % 7)) & 1:
                    best = x + k if best is None else min(best, x + k)
                    break
        if self.season is not None:
            y2 = x if not self._in_season(x) else _season_run_end(self.season, x)
            if y2 is not None:
                best = y2 if best is None else min(best, y2)
        if best is not None and best > _MAX_ORDINAL:
            return None
        return best

    def prev_inactive(self, x: int) -> int | None:
        """The last day <= x on which the rule does not hold (None: never)."""
        best: int | None = None
        if self.dateset:
            y = x
            while y in self.dateset:
                y -= 1
            best = y
        if self.mask != 127:
            for k in range(7):
                if not (self.mask >> ((x - 1 - k) % 7)) & 1:
                    best = x - k if best is None else max(best, x - k)
                    break
        if self.season is not None:
            y2 = x if not self._in_season(x) else _season_run_start(self.season, x)
            if y2 is not None:
                best = y2 if best is None else max(best, y2)
        if best is not None and best < _MIN_ORDINAL:
            return None
        return best


def _md_day(year: int, md: int, *, first: bool) -> int | None:
    """The ordinal of month-day ``md`` in ``year``; 29 Feb in a common year becomes
    1 March when it starts a season (``first``) and 28 February when it ends one."""
    if not 1 <= year <= 9999:
        return None
    month, day = divmod(md, 100)
    try:
        return date(year, month, day).toordinal()
    except ValueError:  # 29 February in a common year
        return date(year, 3, 1).toordinal() if first else date(year, 2, 28).toordinal()


def _season_next_start(season: Season, x: int) -> int | None:
    """First in-season day after ``x`` (which is out of season)."""
    year = date.fromordinal(x).year
    for y in (year, year + 1):
        d = _md_day(y, season.start, first=True)
        if d is not None and d >= x:
            return d
    return None


def _season_prev_end(season: Season, x: int) -> int | None:
    """Last in-season day before ``x`` (which is out of season)."""
    year = date.fromordinal(x).year
    for y in (year, year - 1):
        d = _md_day(y, season.end, first=False)
        if d is not None and d <= x:
            return d
    return None


def _season_run_end(season: Season, x: int) -> int | None:
    """First day after the in-season run containing ``x``; None if the season is the
    whole year."""
    day = date.fromordinal(x)
    year = day.year
    md = day.month * 100 + day.day
    if season.start > season.end and md >= season.start:
        year += 1
    end = _md_day(year, season.end, first=False)
    if end is None or end + 1 > _MAX_ORDINAL:
        return None
    after = end + 1
    nxt = date.fromordinal(after)
    if season.contains_md(nxt.month * 100 + nxt.day):
        return None
    return after


def _season_run_start(season: Season, x: int) -> int | None:
    """Last day before the in-season run containing ``x``; None if the season is the
    whole year."""
    day = date.fromordinal(x)
    year = day.year
    md = day.month * 100 + day.day
    if season.start > season.end and md <= season.end:
        year -= 1
    start = _md_day(year, season.start, first=True)
    if start is None or start - 1 < _MIN_ORDINAL:
        return None
    before = start - 1
    prv = date.fromordinal(before)
    if season.contains_md(prv.month * 100 + prv.day):
        return None
    return before


# --------------------------------------------------------------------------- calendar

# A local day's table: each rule's view of the day, the instants in the day where an
# answer may change, and the window found for each segment between them (or None).
_DayTable = tuple[
    tuple[tuple[Any, ...], ...], list[float], list[tuple[float, float, Window] | None]
]


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

    Cost: ``at()`` remembers the last window it returned, so asking again inside it
    costs a comparison. It also keeps a small table per local day, cut where any rule
    may change, with the window found for each piece: a query on a known day costs a
    bisection. Finding a window the first time costs O(rules); the first query on a
    new day also searches each rule's previous and next days. See
    ``benchmarks/calendar.py``. The object is safe to share between threads (the
    caches hold immutable values; a race only repeats work).

    Raises:
        ConfigError: a rule is not a :class:`Rule`, the zone is unknown (the message
            names it) or the default is not a level.
    """

    __slots__ = (
        "_compiled",
        "_days",
        "_default",
        "_fixed",
        "_icache",
        "_last",
        "_rules",
        "_shared_labels",
        "_tz",
        "_tzkey",
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
        self._tz, self._tzkey = _to_tz(tz)
        try:
            self._default = _to_level(default)
        except ConfigError:
            raise ConfigError("default", default, _LEVEL_WHAT) from None
        self._compiled = tuple(_Compiled(r) for r in rule_list)
        self._fixed = isinstance(self._tz, timezone)
        labels = [c.label for c in self._compiled]
        self._shared_labels = len(set(labels)) != len(labels)
        self._icache: dict[int, float] = {}
        self._days: dict[int, _DayTable] = {}
        self._last: tuple[float, float, Window] | None = None

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
        if "rclone" in data:
            rules.extend(cls.from_rclone(data["rclone"], tz=tz).rules)
        return cls(rules, tz=tz, default=default)

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
        return cls(_rclone_rules(text), tz=tz)

    # -- properties -------------------------------------------------------

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The rules, in the order given."""
        return self._rules

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
        last = self._last
        if last is not None and last[0] <= ts < last[1]:
            return last[2]
        try:
            day = datetime.fromtimestamp(ts, self._tz).toordinal()
        except (OverflowError, ValueError, OSError):
            day = 0
        if not _MIN_ORDINAL <= day <= _MAX_ORDINAL:
            raise ConfigError("when", when, "an instant between the years 2 and 9998")
        _entries, breaks, segments = self._day(day)
        i = max(bisect.bisect_right(breaks, ts) - 1, 0)
        found = segments[i]
        if found is None:
            found = segments[i] = self._window(ts)
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

    def _interval(self, c: _Compiled, day: int) -> tuple[float, float] | None:
        """The rule's interval that starts on ``day`` (which it holds on), or None
        when the interval is empty (swallowed by a spring-forward gap)."""
        a = self._instant(day, c.start)
        b = self._instant(day, c.endp)
        return (a, b) if a < b else None

    def _next_start(self, c: _Compiled, day: int) -> float:
        """Start of the first non-empty interval starting on ``day`` or later."""
        d = c.next_active(day)
        for _ in range(8):
            if d is None:
                return _INF
            iv = self._interval(c, d)
            if iv is not None:
                return iv[0]
            d = c.next_active(d + 1)
        return _INF  # pragma: no cover - gaps are never eight days in a row

    def _prev_end(self, c: _Compiled, day: int) -> float:
        """End of the last non-empty interval starting on ``day`` or earlier."""
        d = c.prev_active(day)
        for _ in range(8):
            if d is None:
                return -_INF
            iv = self._interval(c, d)
            if iv is not None:
                return iv[1]
            d = c.prev_active(d - 1)
        return -_INF  # pragma: no cover

    def _day(self, day: int) -> _DayTable:
        """What every rule looks like from local ``day``, computed once per day.

        Per rule: ``(1, lo, hi)`` an all-day rule holding on its run ``[lo, hi)``;
        ``(2, prev_end, next_start)`` an all-day rule not holding; or
        ``(0, today, yesterday, next_start, prev_end)`` with today's interval and the
        one begun yesterday that crosses midnight (each ``(a, b)`` or None).
        """
        cached = self._days.get(day)
        if cached is not None:
            return cached
        inst = self._instant
        out: list[tuple[Any, ...]] = []
        for c in self._compiled:
            if c.full:
                if c.day_ok(day):
                    p = c.prev_inactive(day - 1)
                    n = c.next_inactive(day + 1)
                    lo = -_INF if p is None else inst(p + 1, 0)
                    hi = _INF if n is None else inst(n, 0)
                    out.append((1, lo, hi))
                else:
                    p = c.prev_active(day - 1)
                    n = c.next_active(day + 1)
                    lo = -_INF if p is None else inst(p + 1, 0)
                    hi = _INF if n is None else inst(n, 0)
                    out.append((2, lo, hi))
                continue
            crosses = c.endp > _DAY
            today = self._interval(c, day) if c.day_ok(day) else None
            yesterday = self._interval(c, day - 1) if crosses and c.day_ok(day - 1) else None
            out.append(
                (
                    0,
                    today,
                    yesterday,
                    self._next_start(c, day + 1),
                    self._prev_end(c, day - 2 if crosses else day - 1),
                )
            )
        # Every instant where some rule's answer can change, within the day: between two
        # of them nothing changes, so one window serves the whole segment.
        first, last = inst(day, 0), inst(day + 1, 0)
        points = {first}
        for entry in out:
            for value in entry[1:]:
                if isinstance(value, tuple):
                    points.update(value)
                elif value is not None:
                    points.add(value)
        breaks = sorted(p for p in points if first <= p < last)
        segments: list[tuple[float, float, Window] | None] = [None] * len(breaks)
        result = (tuple(out), breaks, segments)
        if len(self._days) > 128:
            self._days.clear()
        self._days[day] = result
        return result

    @staticmethod
    def _locate(entry: tuple[Any, ...], ts: float) -> tuple[bool, float, float]:
        """(holds, lo, hi): the rule's maximal interval around ``ts`` when it holds,
        else the end of its previous interval and the start of its next one."""
        kind = entry[0]
        if kind:
            return kind == 1, entry[1], entry[2]
        today = entry[1]
        yesterday = entry[2]
        if today is not None and today[0] <= ts < today[1]:
            return True, today[0], today[1]
        if yesterday is not None and yesterday[0] <= ts < yesterday[1]:
            return True, yesterday[0], yesterday[1]
        nxt = today[0] if today is not None and today[0] > ts else entry[3]
        if today is not None and today[1] <= ts:
            prv = today[1]
        elif yesterday is not None:
            prv = yesterday[1]
        else:
            prv = entry[4]
        return False, prv, nxt

    def _evaluate(self, ts: float) -> tuple[tuple[Any, ...], float, float, list[_Compiled]]:
        """The decision at ``ts`` (as a comparable key), its bounds and deciders."""
        try:
            day = datetime.fromtimestamp(ts, self._tz).toordinal()
        except (OverflowError, ValueError, OSError):
            day = 0
        if not _MIN_ORDINAL <= day <= _MAX_ORDINAL:
            raise ConfigError("when", ts, "an instant between the years 2 and 9998")
        entries = self._day(day)[0]
        locate = self._locate
        found = [locate(entry, ts) for entry in entries]
        level = -1
        rate = cpu = down = _INF
        for c, (holds, _lo, _hi) in zip(self._compiled, found):  # noqa: B905 - equal lengths
            if holds and c.level >= level:
                if c.level > level:
                    level, rate, cpu, down = c.level, c.rate, c.cpu, c.down
                else:
                    rate = min(rate, c.rate)
                    cpu = min(cpu, c.cpu)
                    down = min(down, c.down)
        start, end = -_INF, _INF
        deciders: list[_Compiled] = []
        if level < 0:  # the default: every rule that starts changes it
            for _holds, lo, hi in found:
                start = max(start, lo)
                end = min(end, hi)
            return (-1,), start, end, deciders
        uncapped = rate == _INF and cpu == _INF and down == _INF
        for c, (holds, lo, hi) in zip(self._compiled, found):  # noqa: B905
            if c.level < level:
                continue  # it neither decides nor would change anything by starting
            if holds:
                if c.level == level and (
                    uncapped
                    or (c.rate == rate and rate < _INF)
                    or (c.cpu == cpu and cpu < _INF)
                    or (c.down == down and down < _INF)
                ):
                    deciders.append(c)
                    start = max(start, lo)
                    end = min(end, hi)
            elif c.level > level or (
                (c.rate <= rate and c.rate < _INF)
                or (c.cpu <= cpu and c.cpu < _INF)
                or (c.down <= down and c.down < _INF)
                or (uncapped and c.uncapped)
            ):
                start = max(start, lo)
                end = min(end, hi)
        labels = tuple(dict.fromkeys(c.label for c in deciders))
        return (level, rate, cpu, down, labels), start, end, deciders

    def _window(self, ts: float) -> tuple[float, float, Window]:
        key, start, end, deciders = self._evaluate(ts)
        # A boundary where nothing changes (two pieces of one rclone entry, rules of
        # the same name meeting) is stepped over, a bounded number of times.
        if not self._shared_labels:
            # Every boundary found is a real change: a rule's window only ends where its
            # label leaves or joins the reason, and labels are unique.
            return start, end, self._make(key, start, end, deciders)
        try:
            for _ in range(256):
                if end == _INF:
                    break
                key2, _s, end2, _d = self._evaluate(end)
                if key2 != key:
                    break
                end = end2
            for _ in range(256):
                if start == -_INF:
                    break
                key2, start2, _e, _d = self._evaluate(start - 1e-3)
                if key2 != key:
                    break
                start = start2
        except ConfigError:  # the neighbour is outside the years 2-9998: stop there
            pass
        if start > -_INF:
            # the rules as they stand at the window's start, wherever it was asked (with
            # unique labels the deciding rules are the same throughout the window)
            deciders = self._evaluate(start)[3]
        return start, end, self._make(key, start, end, deciders)

    def _make(
        self, key: tuple[Any, ...], start: float, end: float, deciders: list[_Compiled]
    ) -> Window:
        lo = _UTC_MIN if start == -_INF else datetime.fromtimestamp(start, self._tz)
        hi = _UTC_MAX if end == _INF else datetime.fromtimestamp(end, self._tz)
        if key[0] < 0:
            return Window(
                self._default,
                0.0 if self._default is Level.BLACKOUT else None,
                0.0 if self._default is Level.BLACKOUT else None,
                lo,
                hi,
                f"no rule applies (default {self._default.name})",
            )
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
        return Window(
            lvl,
            rate_out,
            cpu_out,
            lo,
            hi,
            reason,
            tuple(c.rule for c in deciders),
            None if down == _INF else down,
        )

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
