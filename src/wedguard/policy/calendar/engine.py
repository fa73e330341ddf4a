"""From an instant to a :class:`~wedguard.policy.calendar.model.Window`.

:class:`Engine` turns the instant into the zone's wall clock once (W of
:mod:`~wedguard.policy.calendar.zone`), has the :class:`~wedguard.policy.calendar.
evaluate.Evaluator` decide at that wall minute and find the wall bounds, and turns only
those two bounds back into instants. Wall minutes inside a spring-forward gap are
never W of any instant: when a bound falls there, or where two pieces of one rclone
entry or rules of the same name meet, the answer on the far side is checked and the
window extended while it is the same. So windows are maximal: a window's end is the
first instant at which anything in the answer changes.

>>> from datetime import datetime, timezone
>>> from wedguard.policy.calendar.model import CalendarRule
>>> engine = Engine([CalendarRule("peak", start="06:00", end="22:00")], "Europe/London", Level.OPEN)
>>> start, end, w = engine.window(datetime(2026, 3, 29, 12, tzinfo=timezone.utc).timestamp())
>>> w.level, w.start.isoformat(), w.end.isoformat()
(<Level.PEAK: 1>, '2026-03-29T06:00:00+01:00', '2026-03-29T22:00:00+01:00')
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, tzinfo
from typing import Any

from wedguard.errors import ConfigError
from wedguard.levels import Level
from wedguard.policy.calendar.evaluate import Evaluator, _Found
from wedguard.policy.calendar.model import CalendarRule, Window
from wedguard.policy.calendar.tokens import _INF, _MAX_ORDINAL, _MIN_ORDINAL, _UTC_MAX, _UTC_MIN
from wedguard.policy.calendar.zone import Zone

__all__ = ["Engine"]

# A window's level, rate cap, CPU cap, reason and download cap.
_Fields = tuple[Level, float | None, float | None, str, float | None]


class Engine:
    """The windows of a set of rules in a zone, with ``default`` where none holds.

    The object is safe to share between threads: its caches hold immutable values,
    and a race only repeats work.

    Raises:
        ConfigError: the zone is unknown.
    """

    __slots__ = ("_default", "_evaluator", "_fields", "beyond", "first", "zone")

    def __init__(self, rules: Sequence[CalendarRule], tz: str | tzinfo, default: Level) -> None:
        self.zone = Zone(tz)
        self._default = default
        self._evaluator = Evaluator(rules)
        self._fields: dict[tuple[Any, ...], _Fields] = {}
        # the instants when the local years 2-9998 begin and end
        self.first = self.zone.instant(_MIN_ORDINAL, 0)
        self.beyond = self.zone.instant(_MAX_ORDINAL + 1, 0)

    def window(self, ts: float) -> tuple[float, float, Window]:
        """The window holding at POSIX time ``ts``, with its bounds as POSIX times
        (``±inf`` when unbounded).

        Raises:
            ConfigError: ``ts`` is outside the years 2-9998 in the zone.
        """
        day, minute, year, dt = self.zone.wall(ts)
        key, lo, hi, deciders, sure = self._evaluator.evaluate(day, minute, year)
        guess = dt.utcoffset()
        assert guess is not None
        # A bound where nothing changes (inside a gap, or where two pieces of one rclone
        # entry or rules of the same name meet) is stepped over, a bounded number of
        # times. Every other bound is a real change.
        end, end_dt = self._extend_end(key, hi, sure, guess)
        start, start_dt, moved = self._extend_start(key, lo, sure, guess)
        if moved and self._evaluator.shared and start_dt is not None:
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

    def _evaluate_at(self, ts: float) -> _Found:
        day, minute, year, _dt = self.zone.wall(ts)
        return self._evaluator.evaluate(day, minute, year)

    def _extend_end(
        self, key: tuple[Any, ...], hi: float, sure: int, guess: timedelta
    ) -> tuple[float, datetime | None]:
        """The window's end: the instant of wall bound ``hi``, stepped over while the
        answer beyond it is still ``key``."""
        guess_s = guess.total_seconds()
        convert = self.zone.convert
        end, end_dt, exact = convert(hi, guess, guess_s)
        if exact and sure & 2:
            return end, end_dt
        try:
            for _ in range(256):
                if end == _INF:
                    break
                key2, _lo, hi2, _d, sure2 = self._evaluate_at(end)
                if key2 != key:
                    break
                end, end_dt, exact = convert(hi2, guess, guess_s)
                if exact and sure2 & 2:
                    break
        except ConfigError:  # the neighbour is outside the years 2-9998: stop there
            pass
        return end, end_dt

    def _extend_start(
        self, key: tuple[Any, ...], lo: float, sure: int, guess: timedelta
    ) -> tuple[float, datetime | None, bool]:
        """The window's start: the instant of wall bound ``lo``, stepped back while the
        answer before it is still ``key``; and whether it was stepped back."""
        guess_s = guess.total_seconds()
        convert = self.zone.convert
        seen_before = self.zone.seen_before
        start, start_dt, _exact = convert(lo, guess, guess_s)
        moved = False
        if start_dt is None or (sure & 1 and seen_before(start_dt)):
            return start, start_dt, moved
        try:
            for _ in range(256):
                key2, lo2, _hi, _d, sure2 = self._evaluate_at(start - 1e-3)
                if key2 != key:
                    break
                moved = True
                start, start_dt, _exact = convert(lo2, guess, guess_s)
                if start_dt is None or (sure2 & 1 and seen_before(start_dt)):
                    break
        except ConfigError:
            pass
        return start, start_dt, moved

    def _make(
        self, key: tuple[Any, ...], lo: datetime, hi: datetime, rules: tuple[CalendarRule, ...]
    ) -> Window:
        fields = self._fields.get(key)
        if fields is None:
            fields = self._window_fields(key)
        level, rate, cpu, reason, down = fields
        return Window(level, rate, cpu, lo, hi, reason, rules, down)

    def _window_fields(self, key: tuple[Any, ...]) -> _Fields:
        """A window's level, caps, reason and download cap for a decision ``key``."""
        fields: _Fields
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
