"""The calendar's line syntax: text to :class:`~wedguard.policy.calendar.model.CalendarRule`.

Each rule is ``[season] [dates] [weekdays] [HH:MM-HH:MM] level [rate] [cpu=30%]
[down=RATE] [name="..."]``, one per line or separated by ``;``; ``#`` starts a comment
(see :meth:`PeakHourCalendar.parse <wedguard.policy.calendar.PeakHourCalendar.parse>`).

>>> for rule in read_rules('Mon-Fri 06:00-22:00 peak 10Mbit/s; 2026-06-13 blackout # the day'):
...     print(rule)
Mon-Fri 06:00-22:00 peak 10Mbit/s
2026-06-13 blackout
>>> read_rules("Mon 25:00-26:00 peak")
Traceback (most recent call last):
...
wedguard.errors.ConfigError: line 1: '25:00' is not a time (HH:MM, 00:00–24:00)
"""

from __future__ import annotations

from typing import Any

from wedguard.errors import ConfigError
from wedguard.levels import Level
from wedguard.policy.calendar.model import CalendarRule, Season
from wedguard.policy.calendar.tokens import (
    _DATE,
    _LEVELS,
    _MD,
    _MONTH_INDEX,
    _TOKEN_WHAT,
    _WEEKDAY_INDEX,
    _WEEKDAY_SETS,
    _Bad,
    _line_error,
    _parse_cap,
    _parse_cpu,
    _parse_dates,
    _parse_range,
    _parse_weekdays,
)

__all__ = ["read_rules"]


def read_rules(text: str) -> list[CalendarRule]:
    """The rules of ``text``, in order.

    Raises:
        ConfigError: naming the line, the token and what was expected.
    """
    rules: list[CalendarRule] = []
    for number, line in enumerate(text.splitlines() or [""], start=1):
        rules.extend(_parse_rule(tokens, number) for tokens in _split_line(line, number) if tokens)
    return rules


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


def _parse_rule(tokens: list[str], number: int) -> CalendarRule:
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
        return CalendarRule(level, **kwargs)
    except ConfigError as err:  # pragma: no cover - the checks above catch these first
        raise _line_error(where, err.value, err.expected) from None


def _once(kwargs: dict[str, Any], field: str, token: str) -> None:
    if field in kwargs:
        raise _Bad(token, f"a second {field} (give each part once)")
