"""The calendar for people: its rules as a table, a week's windows, overlap notes.

>>> from wedguard.policy.calendar.model import CalendarRule
>>> rules = [CalendarRule("peak", start="06:00", end="22:00"), CalendarRule("blackout", weekdays="Sat")]
>>> print(describe_rules(rules, "UTC", Level.OPEN).splitlines()[-4])
Sat  00:00-24:00  BLACKOUT  -         -    -       Sat blackout
>>> next(overlap_notes(rules, 2026))
"rules 'Mon-Sun 06:00-22:00 peak' and 'Sat blackout' overlap (Sat 06:00-22:00); where both hold, the most restrictive level wins, then the lowest rate cap: 'Sat blackout'"
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime, timedelta

from wedguard.errors import ConfigError
from wedguard.levels import Level
from wedguard.policy.calendar.model import CalendarRule, Window
from wedguard.policy.calendar.tokens import _DAY, _WEEKDAY_NAMES, _format_time
from wedguard.policy.calendar.zone import Zone
from wedguard.units import format_rate

__all__ = ["describe_rules", "describe_week", "overlap_notes", "week_bounds"]


def describe_rules(rules: Sequence[CalendarRule], tzkey: str, default: Level) -> str:
    """One row per weekday and rule (seasonal rules say their season), then the dated
    rules."""
    header = ("Day", "Hours", "Level", "Rate cap", "CPU", "Season", "Rule")
    rows: list[tuple[str, ...]] = []
    weekly = [r for r in rules if not r.dates]
    for day in range(7):
        todays = sorted((r for r in weekly if day in r.weekdays), key=lambda r: (r.start, -r.level))
        rows.extend((_WEEKDAY_NAMES[day], *_rule_cells(r)) for r in todays)
    dated = [r for r in rules if r.dates]
    for r in dated:
        days = sorted(r.dates)
        when = days[0].isoformat() if len(days) == 1 else f"{days[0]}..{days[-1]}"
        rows.append((when, *_rule_cells(r)))
    lines = [f"Calendar in {tzkey} (default {default.name})"]
    lines.extend(_table(header, rows))
    lines.append(f"Other times: {default.name}")
    return "\n".join(lines)


def week_bounds(week_of: date | datetime, zone: Zone) -> tuple[date, datetime, datetime]:
    """The Monday of the week containing ``week_of`` (a date, or an aware datetime read
    in the zone), and the instants that week begins and ends, in the zone.

    Raises:
        ConfigError: ``week_of`` is neither a date nor an aware datetime.
    """
    if isinstance(week_of, datetime):
        if week_of.tzinfo is None or week_of.utcoffset() is None:
            raise ConfigError("week_of", week_of, "a date or an aware datetime")
        day = week_of.astimezone(zone.tz).date()
    elif isinstance(week_of, date):
        day = week_of
    else:
        raise ConfigError("week_of", week_of, "a date or an aware datetime")
    monday = day - timedelta(days=day.weekday())
    first = datetime.fromtimestamp(zone.instant(monday.toordinal(), 0), zone.tz)
    last = datetime.fromtimestamp(zone.instant(monday.toordinal() + 7, 0), zone.tz)
    return monday, first, last


def describe_week(monday: date, windows: Iterable[Window], zone: Zone) -> str:
    """The windows of the week that begins on ``monday``, one row each."""
    header = ("Day", "From", "To", "Level", "Rate cap", "CPU", "Why")
    rows = []
    for w in windows:
        start = w.start.astimezone(zone.tz)
        stop = w.end.astimezone(zone.tz)
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
    lines = [f"Week of {monday.isoformat()} in {zone.key}"]
    lines.extend(_table(header, rows))
    return "\n".join(lines)


def _rule_cells(r: CalendarRule) -> tuple[str, ...]:
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


def _spans(rule: CalendarRule, day: date) -> list[tuple[int, int]]:
    """The minutes of ``day`` the rule holds, as [start, end) pieces."""
    out = []
    if rule.holds_on(day):
        out.append((rule.start, rule.end if rule.end > rule.start else _DAY))
    if rule.crosses_midnight and rule.holds_on(day - timedelta(days=1)):
        out.append((0, rule.end))
    return out


def _winner(a: CalendarRule, b: CalendarRule) -> CalendarRule:
    """Where both hold: the more restrictive level, then the lower cap."""
    if a.level != b.level:
        return a if a.level > b.level else b
    cap_a = math.inf if a.rate is None else a.rate
    cap_b = math.inf if b.rate is None else b.rate
    return b if cap_b < cap_a else a


def overlap_notes(rules: Sequence[CalendarRule], year: int) -> Iterator[str]:
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
