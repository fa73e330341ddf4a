"""Conversions the history modules share: aware instants, time zones, durations, JSON.

>>> aware_instant("2026-01-05T03:00:00+00:00")
datetime.datetime(2026, 1, 5, 3, 0, tzinfo=datetime.timezone.utc)
>>> aware_instant("2026-01-05T03:00:00") is None  # naive: no instant
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from wedguard.errors import ConfigError
from wedguard.units import parse_duration

__all__ = [
    "as_dict",
    "aware_instant",
    "bucket_seconds",
    "check_aware",
    "first",
    "json_default",
    "number",
    "positive_duration",
    "timestamp",
    "tz_name",
    "utc",
    "utc_offsets",
    "zone",
]

# Buckets are aligned to the Unix epoch (UTC); a width must tile the day evenly.
_BUCKET_EXPECTED = "a bucket such as '1min', '5min', '1h' or '1d' (a whole number of seconds that divides a day, or whole days)"


def utc(ts: float) -> datetime:
    """The aware UTC datetime of the Unix time ``ts``."""
    return datetime.fromtimestamp(ts, timezone.utc)


def check_aware(field: str, value: object) -> datetime:
    """``value`` if it is an aware datetime, else :class:`~wedguard.ConfigError`."""
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ConfigError(field, value, "an aware datetime (with tzinfo)")
    return value


def timestamp(field: str, value: datetime | None) -> float | None:
    """The Unix time of an aware ``value`` (``None`` stays ``None``)."""
    if value is None:
        return None
    return check_aware(field, value).timestamp()


def zone(tz: str | tzinfo) -> tzinfo:
    """The time zone named ``tz`` (``"UTC"``, an IANA name) or ``tz`` itself."""
    if isinstance(tz, tzinfo):
        return tz
    if tz in ("UTC", "utc", "Z"):
        return timezone.utc
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigError("tz", tz, "an IANA time zone such as 'Europe/London'") from None


def tz_name(tz: str | tzinfo) -> str:
    """The name a profile or window records for ``tz``."""
    if isinstance(tz, str):
        return "UTC" if tz in ("utc", "Z") else tz
    key = getattr(tz, "key", None)
    return key if isinstance(key, str) else str(tz)


def utc_offsets(zone: tzinfo, lo: float, hi: float) -> list[tuple[float, float, float]]:
    """Intervals ``(from_ts, to_ts, utc_offset_seconds)`` covering ``[lo, hi]``.

    The first and last intervals are open-ended, so every sample finds its offset.
    """

    def offset(ts: float) -> float:
        delta = utc(ts).astimezone(zone).utcoffset()
        return 0.0 if delta is None else delta.total_seconds()

    intervals: list[tuple[float, float, float]] = []
    start = -1e18
    current = offset(lo)
    t = lo
    day = 86400.0
    while t < hi:
        nxt = min(t + day, hi)
        if offset(nxt) != current:
            a, b = t, nxt  # the change lies in (a, b]: bisect to the second
            while b - a > 1.0:
                mid = (a + b) / 2
                if offset(mid) == current:
                    a = mid
                else:
                    b = mid
            change = math.ceil(b) if offset(math.ceil(b)) != current else b
            intervals.append((start, change, current))
            start = change
            current = offset(change)
            nxt = change
        t = nxt
    intervals.append((start, 1e18, current))
    return intervals


def bucket_seconds(bucket: str | float) -> int:
    """The width of an aggregation bucket in whole seconds (it tiles the day)."""
    try:
        seconds = parse_duration(bucket, field="bucket")
    except ConfigError:
        raise ConfigError("bucket", bucket, _BUCKET_EXPECTED) from None
    whole = round(seconds)
    if seconds <= 0 or abs(seconds - whole) > 1e-9 or (86400 % whole != 0 and whole % 86400 != 0):
        raise ConfigError("bucket", bucket, _BUCKET_EXPECTED)
    return int(whole)


def positive_duration(field: str, value: str | float) -> float:
    """``value`` (``parse_duration`` syntax) as a positive, finite number of seconds."""
    seconds = parse_duration(value, field=field)
    if not seconds > 0 or not math.isfinite(seconds):
        raise ConfigError(field, value, "a positive duration such as '7d'")
    return seconds


def json_default(value: object) -> object:
    """The JSON form of what ``json.dumps`` cannot write itself (datetimes, enums, ...)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    name = getattr(value, "name", None)
    if isinstance(name, str):  # enums
        return name
    return str(value)


def as_dict(obj: object, field: str) -> dict[str, Any]:
    """A mapping, or an object's ``to_dict()``, as a dict (``field`` names it in errors)."""
    if isinstance(obj, Mapping):
        return dict(obj)
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        data = to_dict()
        if isinstance(data, Mapping):
            return dict(data)
    raise ConfigError(field, obj, "an object with to_dict() or a mapping")


def first(data: Mapping[str, Any], *keys: str) -> Any:
    """The value of the first of ``keys`` that ``data`` holds (not ``None``), else ``None``."""
    for key in keys:
        value = data.get(key)
        if value is not None:
            return value
    return None


def number(value: Any) -> float | None:
    """A number (or a timedelta, in seconds) as a float; anything else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    return None


def aware_instant(value: Any) -> datetime | None:
    """An aware datetime, or ISO-8601 text of one, as a datetime; anything else ``None``."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo is not None else None
    return None
