"""How reports label things: colours, time ticks, instants and the zone they are shown in.

>>> clock_label(3725), time_step(3600.0)
('1:02:05', 600.0)
"""

from __future__ import annotations

import math
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from wedguard.errors import ConfigError
from wedguard.levels import Level

__all__ = [
    "LEVEL_COLORS",
    "MARK_COLORS",
    "MARK_WORDS",
    "clock_label",
    "display_zone",
    "local_time",
    "time_step",
]

LEVEL_COLORS = {Level.PEAK: "#f5a623", Level.BLACKOUT: "#7f7f7f"}


MARK_COLORS = {"breaker": "#d0021b", "stop": "#000000", "halt": "#9013fe"}

MARK_WORDS = {"breaker": "breaker change", "stop": "emergency stop", "halt": "HALT (impact)"}


def local_time(when: datetime, tz: tzinfo | None = None) -> str:
    """An instant as a person reads it: local time (the calendar's zone when known, else
    the machine's), to the second, with the zone's name."""
    return f"{when.astimezone(tz):%Y-%m-%d %H:%M:%S %Z}".strip()


def display_zone(calendar: Any, tz: str | tzinfo | None) -> tzinfo | None:
    """The zone a page shows times in: ``tz``, else the calendar's, else the machine's."""
    if isinstance(tz, str):
        try:
            return ZoneInfo(tz)
        except (KeyError, ValueError):
            raise ConfigError("tz", tz, "an IANA time zone such as 'Europe/London'") from None
    if tz is not None:
        return tz
    zone = getattr(calendar, "tz", None)
    return zone if isinstance(zone, tzinfo) else None


def clock_label(seconds: float, _pos: object = None) -> str:
    sign = "-" if seconds < 0 else ""
    whole = round(abs(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{sign}{hours}:{minutes:02d}:{secs:02d}"


_TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600)


def time_step(duration: float) -> float:
    """A round tick step giving at most about eight ticks over ``duration`` seconds."""
    for step in _TIME_STEPS:
        if duration / step <= 8:
            return float(step)
    return float(math.ceil(duration / 8 / 21600) * 21600)
