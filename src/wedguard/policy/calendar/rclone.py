"""rclone ``--bwlimit`` values as calendar rules.

A bare rate (``"10M"``) is one rule that always holds; a timetable
(``"08:00,512k 12:00,10M 23:00,off"``, ``"Mon-08:00,512k"``) becomes rules that each
hold from an entry's time until the next entry's, the last wrapping round the week to
the first (see :meth:`PeakHourCalendar.from_rclone
<wedguard.policy.calendar.PeakHourCalendar.from_rclone>` for the mapping to levels).

>>> for rule in read_timetable("08:00,512k 23:00,off"):
...     print(rule)
Mon-Sun 08:00-23:00 peak 512KiB/s down=512KiB/s name="rclone 08:00,512k"
Mon-Sun 23:00-08:00 open name="rclone 23:00,off"
>>> for note in repeated_times("08:00,1M 08:00,2M"):
...     print(note)
rclone entries '08:00,1M' and '08:00,2M' are both at 08:00: the later one, '08:00,2M', counts (as in rclone)
"""

from __future__ import annotations

import math
import re

from wedguard.errors import ConfigError
from wedguard.levels import Level
from wedguard.policy.calendar.model import CalendarRule
from wedguard.policy.calendar.tokens import _ALL_DAYS, _DAY, _Bad

__all__ = ["read_timetable", "repeated_times"]

_WEEK = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


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


def read_timetable(text: str) -> list[CalendarRule]:
    """The rules of an rclone ``--bwlimit`` value: a bare rate or a timetable.

    Raises:
        ConfigError: naming the entry (as ``bwlimit``) and what was expected.
    """
    try:
        return _rclone_rules_inner(text)
    except _Bad as bad:
        raise ConfigError("bwlimit", bad.token, bad.what) from None


def _rclone_rules_inner(text: str) -> list[CalendarRule]:
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


def repeated_times(text: str) -> list[str]:
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
) -> CalendarRule:
    if tx is None:
        level, rate = Level.OPEN, None
    elif tx == 0:
        level, rate = Level.BLACKOUT, None
    else:
        level, rate = Level.PEAK, tx
    return CalendarRule(
        level,
        weekdays=days,
        start=start,
        end=end,
        rate=rate,
        rate_down=rx,
        name=f"rclone {label}",
    )
