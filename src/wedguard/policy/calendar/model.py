"""The calendar's values: :class:`Season`, :class:`CalendarRule` and :class:`Window`.

They are frozen attrs classes. A rule accepts text for any field and normalises it
(``"Mon-Fri"`` becomes ``frozenset({0, 1, 2, 3, 4})``, ``"10Mbit/s"`` becomes
``1250000.0``); a malformed field raises :class:`~wedguard.errors.ConfigError` naming
the field and the value.

>>> r = CalendarRule("peak", weekdays="Mon-Fri", start="06:00", end="22:00")
>>> r.weekdays == frozenset(range(5)), r.start, r.end
(True, 360, 1320)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

import attrs

from wedguard.errors import ConfigError
from wedguard.levels import Level
from wedguard.policy.calendar.tokens import (
    _ALL_DAYS,
    _DATE_WHAT,
    _DAY,
    _LEVEL_WHAT,
    _LEVELS,
    _MD,
    _MONTH_DAYS,
    _MONTH_INDEX,
    _MONTH_NAMES,
    _RANGE_WHAT,
    _RATE_WHAT,
    _SEASON_WHAT,
    _START_WHAT,
    _TIME_WHAT,
    _UTC_MAX,
    _UTC_MIN,
    _WEEKDAY_WHAT,
    _Bad,
    _check_md,
    _format_cap,
    _format_time,
    _format_weekdays,
    _parse_cap,
    _parse_cpu,
    _parse_dates,
    _parse_range,
    _parse_time,
    _parse_weekdays,
)

__all__ = ["CalendarRule", "Season", "Window"]


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
class CalendarRule:
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

    >>> r = CalendarRule("peak", weekdays="Mon-Fri", start="06:00", end="22:00", rate="10Mbit/s")
    >>> str(r)
    'Mon-Fri 06:00-22:00 peak 10Mbit/s'
    >>> r.rate
    1250000.0

    Formerly ``Rule`` (a name the impact analyser's limits also had): ``wedguard.Rule``
    and ``wedguard.policy.calendar.Rule`` still work for one release and warn with
    :class:`DeprecationWarning`.

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

        >>> CalendarRule("blackout", dates=["2026-06-13"], name="wedding").to_dict()
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
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "rule") -> CalendarRule:
        """Build a rule from a mapping such as one ``[[calendar.rules]]`` TOML table.

        Keys: ``level`` (required), ``weekdays``, ``hours`` (``"06:00-22:00"``) or
        ``start``/``end``, ``season``, ``dates``, ``rate``, ``cpu_share`` (or ``cpu``),
        ``rate_down``, ``name``.

        >>> CalendarRule.from_dict({"level": "peak", "hours": "06:00-22:00", "rate": "10Mbit/s"})
        CalendarRule(level=<Level.PEAK: 1>, weekdays=frozenset({0, 1, 2, 3, 4, 5, 6}), start=360, end=1320, season=None, dates=frozenset(), rate=1250000.0, cpu_share=None, rate_down=None, name='')

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
    rules: tuple[CalendarRule, ...] = ()
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

        >>> from datetime import timezone
        >>> w = Window(Level.PEAK, 1.25e6, 0.3, datetime(2026, 1, 5, 6, tzinfo=timezone.utc),
        ...            datetime(2026, 1, 5, 22, tzinfo=timezone.utc), "rule 'peak hours'")
        >>> w.to_dict()["level"], w.to_dict()["end"]
        ('PEAK', '2026-01-05T22:00:00+00:00')
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
