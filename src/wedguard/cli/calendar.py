"""``wedguard calendar``: the level in force now (or ``--at TIME``), and the week.

Example::

    >>> from datetime import timezone
    >>> parse_at("2026-06-13T09:30", timezone.utc).isoformat()
    '2026-06-13T09:30:00+00:00'
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta, timezone
from typing import Any

from wedguard.cli.args import Commands, config_option
from wedguard.cli.common import EXIT_OK, command_config, print_notes
from wedguard.errors import ConfigError
from wedguard.levels import Level
from wedguard.units import format_rate

__all__ = ["cmd_calendar", "existing", "parse_at", "register", "window_line"]


_AT_WHAT = (
    "a time such as '2026-06-13T09:30', '2026-06-13 09:30+01:00', '09:30' (today) or "
    "'Sat 09:30' (this week)"
)
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_at(text: str | None, tz: Any) -> datetime:
    """``--at``: an ISO time, ``HH:MM`` today or ``Ddd HH:MM`` this week, read in
    ``tz`` unless it carries an offset."""
    now = datetime.now(tz)
    if text is None:
        return now
    words = text.strip().split()
    try:
        if len(words) == 2 and words[0][:3].lower() in _DAYS and ":" in words[1]:
            clock = datetime.strptime(words[1], "%H:%M").time()
            day = now.date() + timedelta(days=_DAYS.index(words[0][:3].lower()) - now.weekday())
            return datetime.combine(day, clock, tz)
        if len(words) == 1 and len(text.strip()) <= 5 and ":" in text:
            return datetime.combine(now.date(), datetime.strptime(text.strip(), "%H:%M").time(), tz)
        when = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    except ValueError:
        raise ConfigError("--at", text, _AT_WHAT) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return existing(when, text)


def existing(when: datetime, text: str) -> datetime:
    """``when`` unless it is a wall-clock time its zone skips (the spring-forward gap):
    such a time never happens, so it is refused rather than silently moved. An
    ambiguous time (the autumn repeat) is its first occurrence."""
    if when.tzinfo is None or isinstance(when.tzinfo, timezone):
        return when
    back = when.astimezone(timezone.utc).astimezone(when.tzinfo)
    if back.replace(tzinfo=None) != when.replace(tzinfo=None):
        raise ConfigError(
            "--at",
            text,
            f"a time that exists in {when.tzinfo} ({when:%Y-%m-%d %H:%M} falls in the hour "
            "the clocks skip)",
        )
    return when


def window_line(w: Any) -> str:
    """A window's level and cap, as the calendar command shows it."""
    cap = "" if w.rate is None or w.level is Level.BLACKOUT else f" {format_rate(w.rate)}"
    return f"{w.level.name}{cap}"


def cmd_calendar(args: argparse.Namespace) -> int:
    """Print the window in force at ``--at`` (and with ``--week`` the week's windows)."""
    config = command_config(args.config)
    cal = config.calendar
    if cal is None:
        when = parse_at(args.at, None if args.at else datetime.now().astimezone().tzinfo)
        print(f"{when.isoformat(timespec='minutes')}: OPEN (no calendar)")
        return EXIT_OK
    when = parse_at(args.at, cal.tz)
    print_notes(cal.notes())
    w = cal.at(when)
    local = when.astimezone(cal.tz)
    until = "" if not w.bounded else f" until {w.end.astimezone(cal.tz):%a %Y-%m-%d %H:%M}"
    print(f"{local:%a %Y-%m-%d %H:%M %Z}: {window_line(w)}{until} ({w.reason})")
    if args.week:
        start = datetime.combine(
            local.date() - timedelta(days=local.weekday()), datetime.min.time(), cal.tz
        )
        end = start + timedelta(days=7)
        print()
        print(f"{'day':<14} {'from':>5}  {'to':>9}  {'level':<9} {'cap':>12}  reason")
        for win in cal.windows(start, end):
            s = max(win.start, start).astimezone(cal.tz)
            e = min(win.end, end).astimezone(cal.tz)
            to = (
                "24:00" if e.date() > s.date() and e.time() == datetime.min.time() else f"{e:%H:%M}"
            )
            if e.date() > s.date() and to != "24:00":
                to = f"{e:%a} {to}"
            cap = (
                "-"
                if win.rate is None
                else ("0" if win.level is Level.BLACKOUT else format_rate(win.rate))
            )
            print(
                f"{s:%a %Y-%m-%d} {s:%H:%M}  {to:>9}  {win.level.name:<9} {cap:>12}  {win.reason}"
            )
    return EXIT_OK


# -- stop, resume, status, throttle ------------------------------------------------------


def register(commands: Commands) -> None:
    """``wedguard calendar``: its arguments."""
    p = commands.add("calendar", "the level in force now (or at TIME), and the week as a table")
    p.add_argument(
        "--at", metavar="TIME", help="an ISO time, e.g. 2026-06-13T09:30 (calendar's zone)"
    )
    p.add_argument("--week", action="store_true", help="also print the week as a table")
    config_option(p)
    p.set_defaults(func=cmd_calendar)
