"""Wall clocks and instants in the calendar's zone, daylight saving included.

Rules speak in wall-clock minutes of the calendar's zone: ``ordinal * 1440 + minute``
(the ordinal of the day as :meth:`datetime.date.toordinal` gives it). Let f(m) be the
instant a rule boundary at wall minute m takes effect: its first occurrence, or the
first instant after a spring-forward gap. f never decreases, so a rule holds at instant
t exactly when its wall interval [a, b) contains W(t), the last wall minute m with
f(m) <= t. W(t) is t's wall clock, except in the repeated hour after clocks go back,
where it is the minute before the repeat ends. :class:`Zone` computes f
(:meth:`Zone.instant`, :meth:`Zone.convert`) and W (:meth:`Zone.wall`).

>>> zone = Zone("Europe/London")
>>> day = date(2026, 3, 29).toordinal()          # clocks go forward at 01:00
>>> datetime.fromtimestamp(zone.instant(day, 90), timezone.utc).time()  # 01:30 does not exist
datetime.time(1, 0)
>>> autumn = datetime(2026, 10, 25, 0, 30, tzinfo=timezone.utc).timestamp()  # 01:30 BST
>>> zone.wall(autumn)[:2] == (date(2026, 10, 25).toordinal(), 90)
True
>>> zone.wall(autumn + 3600)[:2] == (date(2026, 10, 25).toordinal(), 119)  # 01:30 GMT
True
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from wedguard.errors import ConfigError
from wedguard.policy.calendar.tokens import (
    _DAY,
    _INF,
    _MAX_ORDINAL,
    _MIN_ORDINAL,
    _MINUTE,
    _TICK,
    _WHEN_WHAT,
)

__all__ = ["Zone"]

_EPOCH_MINUTE = date(1970, 1, 1).toordinal() * _DAY
# wall minutes that map to instants (two days beyond the years 2-9998, as instant() does)
_WALL_FIRST = (_MIN_ORDINAL - 2) * _DAY
_WALL_LAST = (_MAX_ORDINAL + 3) * _DAY - 1


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


class Zone:
    """The calendar's zone: f and W of the module's docstring, with a cache.

    Args:
        tz: an IANA name or a tzinfo (not a pytz zone).

    Raises:
        ConfigError: the zone is unknown (the message names it) or a pytz zone.
    """

    __slots__ = ("_fixed", "_icache", "key", "tz")

    def __init__(self, tz: str | tzinfo) -> None:
        self.tz, self.key = _to_tz(tz)
        self._fixed = isinstance(self.tz, timezone)
        self._icache: dict[int, float] = {}

    def instant(self, day: int, minute: int) -> float:
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
        ts = naive.replace(tzinfo=self.tz).timestamp()  # fold=0: first occurrence
        if not self._fixed:
            back = datetime.fromtimestamp(ts, self.tz).replace(tzinfo=None)
            if back != naive:  # in a gap: the first instant after it
                lo = math.floor(naive.replace(tzinfo=self.tz, fold=1).timestamp())
                hi = math.ceil(ts)
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if datetime.fromtimestamp(mid, self.tz).replace(tzinfo=None) >= naive:
                        hi = mid
                    else:
                        lo = mid
                ts = float(hi)
        if len(cache) > 8192:
            cache.clear()
        cache[key] = ts
        return ts

    def wall(self, ts: float) -> tuple[int, int, int, datetime]:
        """W(ts) as (ordinal, minute of the day, year), and ts in the zone."""
        tz = self.tz
        try:
            dt = datetime.fromtimestamp(ts, tz)
        except (OverflowError, ValueError, OSError):
            raise ConfigError("when", ts, _WHEN_WHAT) from None
        wall = dt
        if dt.fold:  # the repeated hour: the reading just before the repeat ends
            off = dt.utcoffset()
            first = dt.replace(fold=0).utcoffset()
            assert off is not None
            assert first is not None
            lo = math.floor(ts - (first - off).total_seconds())
            hi = math.floor(ts)
            while hi - lo > 1:  # the transition is a whole second in (lo, hi]
                mid = (lo + hi) // 2
                if datetime.fromtimestamp(mid, tz).utcoffset() == off:
                    hi = mid
                else:
                    lo = mid
            wall = (datetime.fromtimestamp(hi, timezone.utc) - _TICK).astimezone(tz)
        day = wall.toordinal()
        if not _MIN_ORDINAL <= day <= _MAX_ORDINAL:
            raise ConfigError("when", ts, _WHEN_WHAT)
        return day, wall.hour * 60 + wall.minute, wall.year, dt

    def convert(
        self, wall: float, guess: timedelta, guess_s: float
    ) -> tuple[float, datetime | None, bool]:
        """f(wall): the instant a boundary at this wall minute takes effect, that instant
        in the zone, and whether the zone's clock reads exactly ``wall`` then (False in
        a spring-forward gap). ``guess`` is the UTC offset to try first (``guess_s`` in
        seconds)."""
        if not _WALL_FIRST <= wall <= _WALL_LAST:  # also ±inf
            return (_INF, None, True) if wall > 0 else (-_INF, None, True)
        tz = self.tz
        seconds = (int(wall) - _EPOCH_MINUTE) * 60
        ts = seconds - guess_s
        dt = datetime.fromtimestamp(ts, tz)
        off = dt.utcoffset()
        if off == guess and not dt.fold:
            return ts, dt, True
        if off is not None:  # the offset on the other side of a change
            ts = seconds - off.total_seconds()
            dt = datetime.fromtimestamp(ts, tz)
            if dt.utcoffset() == off and not dt.fold:
                return ts, dt, True
        # in a gap or a fold: the exact search
        day, minute = divmod(int(wall), _DAY)
        ts = self.instant(day, minute)
        dt = datetime.fromtimestamp(ts, tz)
        d = date.fromordinal(day)
        naive = datetime(d.year, d.month, d.day, minute // 60, minute % 60)
        return ts, dt, dt.replace(tzinfo=None) == naive

    @staticmethod
    def seen_before(start_dt: datetime) -> bool:
        """Whether the wall minute before the one ``start_dt`` shows is read at the
        instant a minute earlier (so it is not inside a spring-forward gap).

        The offset of a wall time (at its first occurrence; before the change for a
        time inside a gap) is the same as ``start_dt``'s exactly when no clock change
        lies in between.
        """
        return (start_dt - _MINUTE).utcoffset() == start_dt.utcoffset()
