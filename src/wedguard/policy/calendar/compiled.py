"""The rules compiled for evaluation: integers and bit sets.

A :class:`CompiledRule` keeps a rule's times as minutes, its weekdays as a 7-bit
mask and its caps as floats (``inf`` for none). :class:`RuleTables` holds, for all the
rules of a calendar, the sets of rules (as bit sets: bit i is rule i) that the
evaluation reads: per day of a calendar year, the rules holding on that day; per
piece of the day between two times where some rule starts or ends, the rules covering
it.

>>> from wedguard.policy.calendar.model import CalendarRule
>>> tables = RuleTables((CompiledRule(CalendarRule("peak", weekdays="Sat", start="22:00", end="02:00")),))
>>> tables.times
[0, 120, 1320]
>>> base, span, masks, days = tables.year(2026)
>>> saturday = date(2026, 6, 13).toordinal()
>>> days[saturday - base], days[saturday + 1 - base]
(1, 0)
"""

from __future__ import annotations

import bisect
from datetime import date

from wedguard.policy.calendar.model import CalendarRule, Season
from wedguard.policy.calendar.tokens import _DAY, _INF, _MAX_ORDINAL, _MIN_ORDINAL, _MONTH_DAYS

__all__ = ["CompiledRule", "RuleTables"]

# into the years on either side, so a query looks up to a week back and ahead without
# leaving it.
_PAD = 8
_REPEAT = sum(1 << (7 * j) for j in range(60))  # a 7-bit pattern, 60 times: 420 bits
_CYCLE_YEARS = 401  # the Gregorian calendar (weekdays included) repeats every 400 years


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


class CompiledRule:
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

    def __init__(self, rule: CalendarRule) -> None:
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


# One calendar year: the ordinal of its first day (bit or index 0), the number of days,
# a day mask per rule, and per day the set of rules holding on it (bit i is rule i).
_Year = tuple[int, int, tuple[int, ...], list[int]]


class RuleTables:
    """The rule sets a calendar's evaluation reads, built once per calendar; the day
    masks of a calendar year are built when a query first needs that year."""

    __slots__ = (
        "_cache",
        "by_level",
        "compiled",
        "full",
        "in_today",
        "in_yesterday",
        "marks_today",
        "marks_yesterday",
        "special",
        "times",
        "weekly",
    )

    def __init__(self, compiled: tuple[CompiledRule, ...]) -> None:
        """The rule sets the fast evaluation reads, as bit sets (bit i is rule i).

        ``times``: every minute of the day where some rule starts or ends, and 0.
        For the segment of the day from ``times[j]``: ``in_today[j]``, the rules whose
        interval begun today covers it; ``in_yesterday[j]``, those whose interval
        begun yesterday does. At ``times[j]``: ``marks_today[j]``, the rules whose
        interval begun today starts or ends there; ``marks_yesterday[j]``, those
        whose interval begun yesterday ends there. All-day rules (``full``) start and
        end at midnight only, where the days they hold on change.
        """
        self.compiled = compiled
        self._cache: dict[int, _Year] = {}
        full = 0
        weekly = [0] * 7
        special: list[int] = []
        today: dict[int, int] = {}
        yesterday: dict[int, int] = {}
        for i, c in enumerate(self.compiled):
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
            for i, c in enumerate(self.compiled):
                if c.start <= t < c.endp:
                    a |= 1 << i
                if t < c.endx:
                    b |= 1 << i
            in_today.append(a)
            in_yesterday.append(b)
        by_level = [0, 0, 0]
        for i, c in enumerate(self.compiled):
            by_level[c.level] |= 1 << i
        self.by_level = tuple(by_level)
        self.full = full
        self.weekly = tuple(weekly)
        self.special = tuple(special)
        self.times = times
        self.in_today = tuple(in_today)
        self.in_yesterday = tuple(in_yesterday)
        self.marks_today = tuple(today.get(t, 0) for t in times)
        self.marks_yesterday = tuple(yesterday.get(t, 0) for t in times)

    def year(self, year: int) -> _Year:
        """Every rule's day mask for ``year`` (with _PAD days of the years around)."""
        hit = self._cache.get(year)
        if hit is None:
            base = date(year, 1, 1).toordinal() - _PAD
            span = date(year, 12, 31).toordinal() + _PAD + 1 - base
            masks = tuple(c.bits(base, span) for c in self.compiled)
            weekly = self.weekly
            days = [weekly[(base - 1 + k) % 7] for k in range(span)]
            for i in self.special:
                bit = 1 << i
                m = masks[i]
                while m:
                    low = m & -m
                    days[low.bit_length() - 1] |= bit
                    m ^= low
            hit = (base, span, masks, days)
            if len(self._cache) >= 64:
                self._cache.clear()
            self._cache[year] = hit
        return hit

    def next_on(self, i: int, x: int, year: int, want: bool) -> int | None:
        """The first day >= ``x`` on which rule ``i`` holds (``want``) or does not;
        None when there is none up to the year 9998. ``x`` lies in ``year``'s mask."""
        c = self.compiled[i]
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
            base, span, masks, _days = self.year(year)
            rel = x - base
            bits = ((masks[i] if want else ~masks[i]) >> rel) & ((1 << (span - rel)) - 1)
            if bits:
                d = x + (bits & -bits).bit_length() - 1
                return d if d <= _MAX_ORDINAL else None
            x = base + span
            year += 1
        return None

    def prev_on(self, i: int, x: int, year: int, want: bool) -> int | None:
        """The last day <= ``x`` on which rule ``i`` holds (``want``) or does not; None
        when there is none from the year 2. ``x`` lies in ``year``'s mask."""
        c = self.compiled[i]
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
            base, _span, masks, _days = self.year(year)
            rel = x - base
            bits = (masks[i] if want else ~masks[i]) & ((1 << (rel + 1)) - 1)
            if bits:
                d = base + bits.bit_length() - 1
                return d if d >= _MIN_ORDINAL else None
            x = base - 1
            year -= 1
        return None
