"""The :class:`PeakHourCalendar`: rules, a zone and a default, asked about instants."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, tzinfo
from typing import Any

import attrs

from wedguard.errors import ConfigError
from wedguard.levels import Level
from wedguard.policy.calendar.describe import (
    describe_rules,
    describe_week,
    overlap_notes,
    week_bounds,
)
from wedguard.policy.calendar.engine import Engine
from wedguard.policy.calendar.model import CalendarRule, Season, Window, _to_dates, _to_level
from wedguard.policy.calendar.rclone import read_timetable, repeated_times
from wedguard.policy.calendar.syntax import read_rules
from wedguard.policy.calendar.tokens import _LEVEL_WHAT, _UTC_MAX, _WHEN_WHAT
from wedguard.policy.calendar.zone import _to_tz

__all__ = ["PeakHourCalendar"]


class PeakHourCalendar:
    """Peak hours, seasons and event days: what a backup may do at any instant.

    Args:
        rules: the :class:`CalendarRule` objects; their order does not matter.
        tz: the zone the rules' wall-clock times are in (an IANA name or a tzinfo).
        default: the level when no rule holds (``Level.OPEN`` unless given).

    >>> from datetime import datetime, timezone
    >>> cal = PeakHourCalendar([CalendarRule("peak", start="06:00", end="22:00")], tz="UTC")
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
    costs a comparison. See ``benchmarks/peak_calendar.py``. The object is safe to share
    between threads (the caches hold immutable values; a race only repeats work).

    Raises:
        ConfigError: a rule is not a :class:`CalendarRule`, the zone is unknown (the message
            names it) or the default is not a level.
    """

    __slots__ = (
        "_beyond",
        "_default",
        "_engine",
        "_first",
        "_last",
        "_notes",
        "_recent",
        "_rules",
        "_tz",
        "_tzkey",
    )

    def __init__(
        self,
        rules: Iterable[CalendarRule] = (),
        *,
        tz: str | tzinfo = "UTC",
        default: Level | str = Level.OPEN,
    ) -> None:
        if isinstance(rules, (str, bytes)):  # type: ignore[unreachable]
            raise ConfigError(
                "rules", rules, "CalendarRule objects (PeakHourCalendar.parse reads text)"
            )
        try:
            rule_list = tuple(rules)
        except TypeError:
            raise ConfigError("rules", rules, "an iterable of CalendarRule") from None
        for i, rule in enumerate(rule_list):
            if not isinstance(rule, CalendarRule):
                raise ConfigError(f"rules[{i}]", rule, "a CalendarRule")
        self._rules = rule_list
        self._notes: tuple[str, ...] = ()
        self._tz, self._tzkey = _to_tz(tz)
        try:
            self._default = _to_level(default)
        except ConfigError:
            raise ConfigError("default", default, _LEVEL_WHAT) from None
        self._engine = Engine(rule_list, self._tz, self._default)
        self._first, self._beyond = self._engine.first, self._engine.beyond
        self._recent: dict[float, list[tuple[float, float, Window]]] = {}
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
        return cls(read_rules(text), tz=tz, default=default)

    @classmethod
    def default(cls, tz: str | tzinfo = "UTC") -> PeakHourCalendar:
        """06:00–22:00 every day is PEAK (10 Mbit/s, 30 % CPU); the rest is OPEN.

        The caps are the platform defaults of the design: the backup may use at most
        30 % CPU and 10 Mbit/s during peak hours.

        >>> str(PeakHourCalendar.default().rules[0])
        'Mon-Sun 06:00-22:00 peak 10Mbit/s cpu=30% name="peak hours"'
        """
        return cls(
            [
                CalendarRule(
                    Level.PEAK, start=360, end=1320, rate=1.25e6, cpu_share=0.3, name="peak hours"
                )
            ],
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
            CalendarRule(Level.PEAK, start=360, end=1320, rate=peak_rate, cpu_share=peak_cpu,
                 name="peak hours"),
            CalendarRule(Level.PEAK, start=360, end=1320, season=season, rate=season_rate,
                 cpu_share=season_cpu, name="wedding season peak hours"),
        ]  # fmt: skip
        if dates:
            rules.append(CalendarRule(Level.BLACKOUT, dates=dates, name="event day"))
        return cls(rules, tz=tz)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PeakHourCalendar:
        """Build a calendar from a mapping, e.g. the ``[calendar]`` table of a TOML file.

        Keys: ``tz``, ``default`` (a level name), ``rules`` (line-syntax text, or a list
        of tables for :meth:`CalendarRule.from_dict`), ``rclone`` (an rclone timetable).

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
            rules = [
                CalendarRule.from_dict(r, where=f"calendar.rules[{i}]") for i, r in enumerate(raw)
            ]
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
        0 is BLACKOUT. The download side is kept as :attr:`CalendarRule.rate_down` and
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
        cal = cls(read_timetable(text), tz=tz)
        cal._notes = tuple(repeated_times(text))
        return cal

    # -- properties -------------------------------------------------------

    @property
    def rules(self) -> tuple[CalendarRule, ...]:
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
        return self._notes + tuple(overlap_notes(self._rules, date.today().year))

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
        if (
            not self._engine.first <= ts < self._engine.beyond
        ):  # the local day is not in the years 2-9998
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
            found = self._engine.window(ts)
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
            return describe_rules(self._rules, self._tzkey, self._default)
        monday, first, last = week_bounds(week_of, self._engine.zone)
        return describe_week(monday, self.windows(first, last), self._engine.zone)

    def __str__(self) -> str:
        return self.describe()
