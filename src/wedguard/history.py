"""Metric history: a small SQLite store, its aggregates, and what they tell.

A :class:`MetricsStore` keeps the samples the guard's sources take, the events it
emits and the report of every backup session, in one SQLite file (stdlib
:mod:`sqlite3`, WAL journal, so readers never wait for the writer). From that history
it answers:

* :meth:`MetricsStore.aggregate`: a metric in 1 min / 5 min / 1 h / 1 day buckets
  (mean, median, p95, max, count), computed inside SQLite;
* :meth:`MetricsStore.weekly_profile`: the typical production load for each of the
  168 hours of the week (median and p95), with seasons kept apart once there is data
  enough;
* :func:`recommend_windows`: the weekly windows in which a backup disturbs production
  least, honouring a calendar's blackouts, and :func:`windows_to_rules`, the calendar
  rules that encode them;
* :meth:`MetricsStore.session_trend` and :meth:`MetricsStore.overrun_alert`: how fast
  the nightly backup grows, and when it will no longer fit its window.

Retention (7 days by default) is enforced on open, every ``prune_every`` records, and
on demand with :meth:`MetricsStore.prune`.

Example::

    >>> from datetime import datetime, timedelta, timezone
    >>> store = MetricsStore(":memory:", retention="7d")
    >>> t0 = datetime(2026, 1, 5, tzinfo=timezone.utc)
    >>> for minute in range(120):
    ...     store.record({"cpu.percent": 10.0 + minute % 10}, at=t0 + timedelta(minutes=minute))
    >>> [(row.start.hour, row.mean, row.max, row.count) for row in store.aggregate("cpu.percent", "1h")]
    [(0, 14.5, 19.0, 60), (1, 14.5, 19.0, 60)]
    >>> store.close()

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import sqlite3
import threading
import time as _time
import urllib.parse
import weakref
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, time, timedelta, timezone, tzinfo
from os import PathLike, fspath
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from wedguard.clock import Clock, check_clock
from wedguard.errors import ConfigError, WedguardError
from wedguard.levels import Level
from wedguard.policy.alerting import Alert, Severity
from wedguard.sinks.delivery import backoff_delay
from wedguard.units import format_duration, parse_duration

__all__ = [
    "DEFAULT_SEASONS",
    "Bucket",
    "GrowthTrend",
    "HistoryError",
    "HistorySink",
    "HourStats",
    "MetricsStore",
    "RecommendedWindow",
    "SessionRecord",
    "StoreCorruptError",
    "StoreLockedError",
    "StoredEvent",
    "WeekTime",
    "WeeklyProfile",
    "default_metric",
    "recommend_windows",
    "windows_to_rules",
]

log = logging.getLogger("wedguard.history")

HOURS_PER_WEEK = 168
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

DEFAULT_SEASONS: Mapping[str, frozenset[int]] = MappingProxyType(
    {
        "winter": frozenset({12, 1, 2}),
        "spring": frozenset({3, 4, 5}),
        "summer": frozenset({6, 7, 8}),
        "autumn": frozenset({9, 10, 11}),
    }
)
"""Meteorological seasons of the northern hemisphere, by month number."""

_SCHEMA_VERSION = 1
_MAX_IDLE_READERS = 4
_SCHEMA = """
CREATE TABLE IF NOT EXISTS metrics (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS samples (
    metric_id INTEGER NOT NULL REFERENCES metrics(id),
    ts        REAL NOT NULL,
    value     REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_metric_ts ON samples (metric_id, ts);
CREATE INDEX IF NOT EXISTS samples_ts ON samples (ts);
CREATE TABLE IF NOT EXISTS events (
    ts   REAL NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE TABLE IF NOT EXISTS sessions (
    ts       REAL NOT NULL,
    name     TEXT NOT NULL,
    bytes    REAL NOT NULL,
    duration REAL NOT NULL,
    data     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_name_ts ON sessions (name, ts);
"""

# Buckets are aligned to the Unix epoch (UTC); a width must tile the day evenly.
_BUCKET_EXPECTED = "a bucket such as '1min', '5min', '1h' or '1d' (a whole number of seconds that divides a day, or whole days)"


def _floor_sql(expr: str) -> str:
    """SQL for floor(expr) without relying on SQLite's optional math functions."""
    return f"(CAST({expr} AS INTEGER) - (({expr}) < CAST({expr} AS INTEGER)))"


def _stats_sql(source: str) -> str:
    """Mean, min, max, count, p50 and p95 per key ``k`` of ``source`` (columns k, v).

    Percentiles interpolate linearly between closest ranks (as numpy's default and
    ``statistics.quantiles(method="inclusive")``): ranks come from a window function,
    so SQLite sorts each bucket and only one row per bucket reaches Python.
    """
    pos50 = "((n - 1) * 0.5)"
    pos95 = "((n - 1) * 0.95)"
    return f"""
    WITH src AS ({source}),
    ranked AS (
        SELECT k, v,
               ROW_NUMBER() OVER (PARTITION BY k ORDER BY v) AS rn,
               COUNT(*) OVER (PARTITION BY k) AS n
        FROM src
    ),
    grouped AS (
        SELECT k, AVG(v) AS mean, MIN(v) AS lo, MAX(v) AS hi, COUNT(*) AS cnt,
               MAX(CASE WHEN rn = CAST({pos50} AS INTEGER) + 1 THEN v END) AS a50,
               MAX(CASE WHEN rn = CAST({pos50} AS INTEGER) + 2 THEN v END) AS b50,
               MAX({pos50} - CAST({pos50} AS INTEGER)) AS f50,
               MAX(CASE WHEN rn = CAST({pos95} AS INTEGER) + 1 THEN v END) AS a95,
               MAX(CASE WHEN rn = CAST({pos95} AS INTEGER) + 2 THEN v END) AS b95,
               MAX({pos95} - CAST({pos95} AS INTEGER)) AS f95
        FROM ranked GROUP BY k
    )
    SELECT k, mean, lo, hi, cnt,
           a50 + (COALESCE(b50, a50) - a50) * f50,
           a95 + (COALESCE(b95, a95) - a95) * f95
    FROM grouped ORDER BY k
    """


# --------------------------------------------------------------------------- errors


class HistoryError(WedguardError):
    """The metrics store cannot be used: it is closed, unreadable, or not a store.

    Attributes:
        path: the database file (``":memory:"`` for an in-memory store).
        reason: what went wrong, in words.
        transient: True when trying again later may work (a lock held by another
            process, a full disk, an I/O error); False for a closed store or a file
            that is not a store.
    """

    def __init__(self, path: str, reason: str, *, transient: bool = False) -> None:
        self.path = path
        self.reason = reason
        self.transient = transient
        super().__init__(f"metrics store {path!r}: {reason}")


class StoreCorruptError(HistoryError):
    """The file is not a SQLite database, or not one wedguard can read."""


class StoreLockedError(HistoryError):
    """Another process holds the file locked for longer than the store's ``timeout``."""

    def __init__(self, path: str, reason: str, *, transient: bool = True) -> None:
        super().__init__(path, reason, transient=transient)


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back the open transaction, if SQLite has not already done so.

    On a full disk or an I/O error SQLite rolls the transaction back by itself; a
    second ROLLBACK would then fail with "cannot rollback - no transaction is active"
    and hide the real cause.
    """
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


# ---------------------------------------------------------------------- value types


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


@attrs.frozen(slots=True)
class Bucket:
    """One aggregated bucket of a metric.

    Attributes:
        start: the bucket's first instant (aware, UTC); buckets are aligned to the
            Unix epoch, so hourly buckets start on the hour and daily ones at 00:00 UTC.
        mean: the arithmetic mean of the samples in the bucket.
        p50: the median (linear interpolation between closest ranks).
        p95: the 95th percentile (same interpolation).
        max: the largest sample.
        count: how many samples fell in the bucket.
        min: the smallest sample.
    """

    start: datetime
    mean: float
    p50: float
    p95: float
    max: float
    count: int
    min: float


@attrs.frozen(slots=True)
class StoredEvent:
    """An event as the store kept it: when, its ``kind`` and its ``to_dict()`` form."""

    at: datetime
    kind: str
    data: Mapping[str, Any]


@attrs.frozen(slots=True)
class SessionRecord:
    """A stored session report: when it ended, its name, size and wall time.

    ``data`` is the report's full ``to_dict()`` form (timeline included).
    """

    at: datetime
    name: str
    bytes: float
    duration: float
    data: Mapping[str, Any]


@attrs.frozen(slots=True)
class HourStats:
    """Production load in one hour of the week, over every week in the profile."""

    median: float
    p95: float
    mean: float
    max: float
    count: int


class WeekTime(NamedTuple):
    """A moment of the week: ``weekday`` (0 = Monday) and a local ``time``.

    >>> str(WeekTime(6, time(2, 0)))
    'Sun 02:00'
    """

    weekday: int
    time: time

    def __str__(self) -> str:
        return f"{DAY_NAMES[self.weekday]} {self.time:%H:%M}"

    @property
    def minute_of_week(self) -> int:
        return self.weekday * 1440 + self.time.hour * 60 + self.time.minute


@attrs.frozen(slots=True)
class WeeklyProfile:
    """Typical production load for each of the 168 hours of the week.

    Hour ``h`` of the week is ``weekday * 24 + hour`` in the profile's time zone
    (0 = Monday 00:00-01:00). Hours without data are ``None``.

    Attributes:
        metrics: the metrics profiled.
        hours: per metric, a 168-tuple of :class:`HourStats` (or ``None``).
        tz: the time zone the hours are counted in.
        season: the season's name, or ``None`` when every month was used.
        months: the months the profile covers.
        weeks: how many distinct weeks contributed data.
    """

    metrics: tuple[str, ...]
    hours: Mapping[str, tuple[HourStats | None, ...]]
    tz: str
    season: str | None
    months: frozenset[int]
    weeks: int

    def at(self, metric: str, weekday: int, hour: int) -> HourStats | None:
        """The stats of ``metric`` on ``weekday`` (0 = Monday) at ``hour`` (0-23)."""
        return self.hours[metric][weekday * 24 + hour]

    def medians(self, metric: str) -> list[float | None]:
        """The 168 hourly medians of ``metric`` (``None`` where there is no data)."""
        return [None if s is None else s.median for s in self.hours[metric]]

    def p95s(self, metric: str) -> list[float | None]:
        """The 168 hourly 95th percentiles of ``metric``."""
        return [None if s is None else s.p95 for s in self.hours[metric]]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form: per metric, 168 hours of stats (or ``None``)."""
        return {
            "metrics": list(self.metrics),
            "tz": self.tz,
            "season": self.season,
            "months": sorted(self.months),
            "weeks": self.weeks,
            "hours": {
                metric: [None if c is None else attrs.asdict(c) for c in cells]
                for metric, cells in self.hours.items()
            },
        }


@attrs.frozen(slots=True)
class RecommendedWindow:
    """A weekly window in which a backup disturbs production least.

    Attributes:
        start: when it opens: ``(weekday, time)`` with ``weekday`` 0 = Monday.
        end: when it closes (may fall on the next day, or wrap to Monday).
        duration: its length in seconds.
        expected_load: the typical (median) load of ``metric`` over the window.
        peak_load: the highest hourly 95th percentile of ``metric`` in the window.
        metric: the metric the load is measured in.
        reason: why this window, in words.
        rank: 1 for the best window.
        tz: the time zone of ``start`` and ``end``.
        level: the most restrictive calendar level met in the window (``None``
            when no calendar was given).
    """

    start: WeekTime
    end: WeekTime
    duration: float
    expected_load: float
    peak_load: float
    metric: str
    reason: str
    rank: int
    tz: str = "UTC"
    level: Level | None = None

    @property
    def weekday(self) -> int:
        """The start's weekday (0 = Monday)."""
        return self.start.weekday

    def next_start(self, after: datetime) -> datetime:
        """The first start of this window at or after the aware instant ``after``."""
        _check_aware("after", after)
        zone = _zone(self.tz)
        local = after.astimezone(zone)
        day = local.date() + timedelta(days=(self.start.weekday - local.weekday()) % 7)
        candidate = datetime.combine(day, self.start.time, zone)
        if candidate < local:
            candidate = datetime.combine(day + timedelta(days=7), self.start.time, zone)
        return candidate

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form (for the CLI and reports)."""
        return {
            "rank": self.rank,
            "weekday": DAY_NAMES[self.start.weekday],
            "start": f"{self.start.time:%H:%M}",
            "end_weekday": DAY_NAMES[self.end.weekday],
            "end": f"{self.end.time:%H:%M}",
            "duration_s": self.duration,
            "expected_load": self.expected_load,
            "peak_load": self.peak_load,
            "metric": self.metric,
            "tz": self.tz,
            "level": None if self.level is None else self.level.name,
            "reason": self.reason,
        }

    def __str__(self) -> str:
        return f"{self.start}-{self.end.time:%H:%M}"


@attrs.frozen(slots=True)
class GrowthTrend:
    """The least-squares trend of a backup's size and wall time over days.

    Attributes:
        name: the session name, or ``None`` for all sessions together.
        count: how many session reports were fitted.
        first: the first report's time; ``last`` the last one's.
        bytes_per_day: growth of the backup's size, bytes per day.
        seconds_per_day: growth of its wall time, seconds per day.
        bytes_at_last: the fitted size at ``last``.
        duration_at_last: the fitted wall time at ``last``.
    """

    name: str | None
    count: int
    first: datetime
    last: datetime
    bytes_per_day: float
    seconds_per_day: float
    bytes_at_last: float
    duration_at_last: float

    def _days(self, at: datetime) -> float:
        return (at - self.last).total_seconds() / 86400.0

    def predicted_bytes(self, at: datetime) -> float:
        """The size the trend predicts for a session at ``at``."""
        return self.bytes_at_last + self.bytes_per_day * self._days(at)

    def predicted_duration(self, at: datetime) -> float:
        """The wall time (seconds) the trend predicts for a session at ``at``."""
        return self.duration_at_last + self.seconds_per_day * self._days(at)

    def days_until_duration(self, limit: float, *, at: datetime) -> float | None:
        """Days from ``at`` until the predicted wall time reaches ``limit`` seconds.

        0 when it already has; ``None`` when it never will (no growth).
        """
        now = self.predicted_duration(at)
        if now >= limit:
            return 0.0
        if self.seconds_per_day <= 0:
            return None
        return (limit - now) / self.seconds_per_day


# --------------------------------------------------------------------------- helpers


class _HasKind(Protocol):
    @property
    def kind(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


def _check_aware(field: str, value: object) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ConfigError(field, value, "an aware datetime (with tzinfo)")
    return value


def _ts(field: str, value: datetime | None) -> float | None:
    if value is None:
        return None
    return _check_aware(field, value).timestamp()


def _zone(tz: str | tzinfo) -> tzinfo:
    if isinstance(tz, tzinfo):
        return tz
    if tz in ("UTC", "utc", "Z"):
        return timezone.utc
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigError("tz", tz, "an IANA time zone such as 'Europe/London'") from None


def _tz_name(tz: str | tzinfo) -> str:
    if isinstance(tz, str):
        return "UTC" if tz in ("utc", "Z") else tz
    key = getattr(tz, "key", None)
    return key if isinstance(key, str) else str(tz)


def _offsets(zone: tzinfo, lo: float, hi: float) -> list[tuple[float, float, float]]:
    """Intervals ``(from_ts, to_ts, utc_offset_seconds)`` covering ``[lo, hi]``.

    The first and last intervals are open-ended, so every sample finds its offset.
    """

    def offset(ts: float) -> float:
        delta = _utc(ts).astimezone(zone).utcoffset()
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


def _bucket_seconds(bucket: str | float) -> int:
    try:
        seconds = parse_duration(bucket, field="bucket")
    except ConfigError:
        raise ConfigError("bucket", bucket, _BUCKET_EXPECTED) from None
    whole = round(seconds)
    if seconds <= 0 or abs(seconds - whole) > 1e-9 or (86400 % whole != 0 and whole % 86400 != 0):
        raise ConfigError("bucket", bucket, _BUCKET_EXPECTED)
    return int(whole)


def _positive_duration(field: str, value: str | float) -> float:
    seconds = parse_duration(value, field=field)
    if not seconds > 0 or not math.isfinite(seconds):
        raise ConfigError(field, value, "a positive duration such as '7d'")
    return seconds


def _json_default(value: object) -> object:
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


def _as_dict(obj: object, field: str) -> dict[str, Any]:
    if isinstance(obj, Mapping):
        return dict(obj)
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        data = to_dict()
        if isinstance(data, Mapping):
            return dict(data)
    raise ConfigError(field, obj, "an object with to_dict() or a mapping")


def _first(data: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        value = data.get(key)
        if value is not None:
            return value
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    return None


def _instant(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo is not None else None
    return None


# ----------------------------------------------------------------------------- store


def _close_all(writer: sqlite3.Connection, idle: list[sqlite3.Connection]) -> None:
    for conn in idle:
        conn.close()
    idle.clear()
    writer.close()


class MetricsStore:
    """Samples, events and session reports in one SQLite file.

    Args:
        path: the database file, created if missing; ``":memory:"`` keeps everything
            in memory (lost on close).
        retention: how long samples and events are kept, ``parse_duration`` syntax
            (default ``"7d"``). Older rows are removed on open, every
            ``prune_every`` records, and by :meth:`prune` (see there).
        session_retention: how long session reports are kept (default ``"400d"``,
            long enough to see growth and seasons).
        clock: where "now" comes from (default the system clock).
        prune_every: prune automatically after this many :meth:`record` calls.
        timeout: seconds to wait for another process's lock before giving up.
        verify: also run SQLite's ``quick_check`` at open, which finds damaged pages
            inside an otherwise valid file (it reads the whole file, so it is off by
            default; a file that is not a database at all is always refused).
        read_only: open an existing file for reading only (``file:...?mode=ro``):
            nothing is created, pruned or written (writes raise
            :class:`HistoryError`). Where SQLite cannot create the ``-shm`` file a
            WAL database needs (read-only media, a directory the user cannot
            write), the file is opened ``immutable=1`` instead; that reading does
            not see rows still in a ``-wal`` file (a warning says so when one is
            there). ``wedguard report`` and ``wedguard windows`` open it this way.

    Raises:
        ConfigError: a bad argument.
        StoreCorruptError: the file is not a SQLite database (or not a store).
        StoreLockedError: another process keeps the file locked.
        HistoryError: the file cannot be opened at all.

    Threads: any thread may call any method. Writes are serialised on one writer
    connection; reads run on a small pool of read-only connections, one per reading
    thread at a time, and with WAL they never wait for the writer. (An in-memory store
    has one connection for all.)

    Example::

        >>> from datetime import datetime, timezone
        >>> with MetricsStore(":memory:") as store:
        ...     store.record({"api.latency_s": 0.12, "cpu.percent": 35.0},
        ...                  at=datetime(2026, 1, 5, 14, 0, tzinfo=timezone.utc))
        ...     store.metrics()
        ['api.latency_s', 'cpu.percent']
    """

    def __init__(
        self,
        path: str | PathLike[str],
        retention: str | float = "7d",
        *,
        session_retention: str | float = "400d",
        clock: Clock | None = None,
        prune_every: int = 1000,
        timeout: float = 5.0,
        verify: bool = False,
        read_only: bool = False,
    ) -> None:
        try:
            self._path = fspath(path)
        except TypeError:
            raise ConfigError("path", path, "a file path or ':memory:'") from None
        if not isinstance(self._path, str) or not self._path:
            raise ConfigError("path", path, "a file path or ':memory:'")
        self._retention = _positive_duration("retention", retention)
        self._session_retention = _positive_duration("session_retention", session_retention)
        if isinstance(prune_every, bool) or not isinstance(prune_every, int) or prune_every < 1:
            raise ConfigError("prune_every", prune_every, "a whole number >= 1")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
            raise ConfigError("timeout", timeout, "a number of seconds >= 0")
        self._clock: Clock = check_clock(clock)
        self._prune_every = prune_every
        self._timeout = float(timeout)
        self._verify = bool(verify)
        self._memory = self._path == ":memory:"
        self._lock = threading.RLock()
        self._idle: list[sqlite3.Connection] = []
        self._metric_ids: dict[str, int] = {}
        self._since_prune = 0
        self._closed = False
        self._read_only = bool(read_only)
        self._immutable = False
        if self._read_only:
            if self._memory:
                raise ConfigError("read_only", read_only, "a database file, not ':memory:'")
            self._writer = self._open_read_only()
            self._finalizer = weakref.finalize(self, _close_all, self._writer, self._idle)
            return
        self._writer = self._open_writer()
        # a store dropped without close() still closes its connections, quietly
        self._finalizer = weakref.finalize(self, _close_all, self._writer, self._idle)
        try:
            self._prune(None, automatic=True)
        except BaseException:
            self._finalizer()
            raise

    # ---------------------------------------------------------------- connections

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(
            self._path,
            timeout=self._timeout,
            isolation_level=None,
            check_same_thread=False,
        )

    def _fail(self, exc: sqlite3.Error) -> HistoryError:
        text = str(exc)
        lowered = text.lower()
        if "locked" in lowered or "busy" in lowered:
            return StoreLockedError(
                self._path, f"locked by another process for over {self._timeout:g} s ({text})"
            )
        if isinstance(exc, sqlite3.OperationalError):
            return HistoryError(self._path, text, transient=not self._closed)
        return StoreCorruptError(self._path, f"not a readable SQLite database ({text})")

    def _open_read_only(self) -> sqlite3.Connection:
        """A read-only connection: ``mode=ro``, else ``mode=ro&immutable=1``."""
        if not os.path.isfile(self._path):
            raise HistoryError(self._path, "no such database (opened read-only)")
        base = "file:" + urllib.parse.quote(os.path.abspath(self._path))
        last: sqlite3.Error | None = None
        for query in ("?mode=ro", "?mode=ro&immutable=1"):
            try:
                conn = sqlite3.connect(
                    base + query,
                    uri=True,
                    timeout=self._timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
            except sqlite3.OperationalError as exc:
                last = exc
                continue
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                tables = {
                    row[0]
                    for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
                }
                ids = (
                    list(conn.execute("SELECT id, name FROM metrics"))
                    if "metrics" in tables
                    else []
                )
            except sqlite3.OperationalError as exc:
                # the -shm of a WAL database cannot be created here: try immutable
                conn.close()
                last = exc
                continue
            except sqlite3.Error as exc:
                conn.close()
                raise self._fail(exc) from exc
            if tables - {"metrics", "samples", "events", "sessions"} or "metrics" not in tables:
                conn.close()
                raise StoreCorruptError(
                    self._path, f"not a metrics store (tables: {', '.join(sorted(tables))})"
                )
            if version > _SCHEMA_VERSION:
                conn.close()
                raise HistoryError(
                    self._path,
                    f"written by a newer wedguard (schema {version}, this one reads {_SCHEMA_VERSION})",
                )
            self._immutable = "immutable" in query
            if self._immutable:
                wal = self._path + "-wal"
                if os.path.exists(wal) and os.path.getsize(wal) > 0:
                    log.warning(
                        "history %s opened immutable (its -shm cannot be created here): "
                        "rows still in %s are not read",
                        self._path,
                        wal,
                    )
            for ident, name in ids:
                self._metric_ids[name] = ident
            return conn
        assert last is not None
        raise self._fail(last) from last

    def _writable(self) -> None:
        if self._closed:
            raise HistoryError(self._path, "the store is closed")
        if self._read_only:
            raise HistoryError(self._path, "opened read-only")

    @property
    def read_only(self) -> bool:
        """True for a store opened with ``read_only=True``."""
        return self._read_only

    def _open_writer(self) -> sqlite3.Connection:
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            raise self._fail(exc) from exc
        try:
            if not self._memory:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()
                if mode is None or str(mode[0]).lower() != "wal":
                    raise StoreLockedError(self._path, "could not switch the journal to WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                tables = {
                    row[0]
                    for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
                }
                if tables - {"metrics", "samples", "events", "sessions"}:
                    raise StoreCorruptError(
                        self._path,
                        f"not a metrics store: holds other tables ({', '.join(sorted(tables))})",
                    )
                if version > _SCHEMA_VERSION:
                    raise HistoryError(
                        self._path,
                        f"written by a newer wedguard (schema {version}, this one reads {_SCHEMA_VERSION})",
                    )
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
            if self._verify:
                problems = [row[0] for row in conn.execute("PRAGMA quick_check(3)")]
                if problems != ["ok"]:
                    raise StoreCorruptError(self._path, "damaged: " + "; ".join(problems))
            for ident, name in conn.execute("SELECT id, name FROM metrics"):
                self._metric_ids[name] = ident
        except sqlite3.Error as exc:
            conn.close()
            raise self._fail(exc) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _read(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]:
        """Run a query on a reading connection.

        A file store keeps a small pool of read-only connections, one per reading
        thread at a time (WAL: they never wait for the writer); an in-memory store
        reads on its single connection under the lock.
        """
        if self._memory or self._read_only:
            with self._lock:
                if self._closed:
                    raise HistoryError(self._path, "the store is closed")
                try:
                    return self._writer.execute(sql, params).fetchall()
                except sqlite3.Error as exc:
                    raise self._fail(exc) from exc
        with self._lock:
            if self._closed:
                raise HistoryError(self._path, "the store is closed")
            conn = self._idle.pop() if self._idle else None
        try:
            if conn is None:
                conn = self._connect()
                conn.execute("PRAGMA query_only=ON")
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._fail(exc) from exc
        finally:
            if conn is not None:
                with self._lock:
                    if self._closed or len(self._idle) >= _MAX_IDLE_READERS:
                        conn.close()
                    else:
                        self._idle.append(conn)

    def _write(self, statements: Iterable[tuple[str, Sequence[Any]]]) -> int:
        """Run statements in one transaction on the writer; returns rows changed."""
        with self._lock:
            self._writable()
            conn = self._writer
            changed = 0
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for sql, params in statements:
                        changed += conn.execute(sql, params).rowcount
                    conn.execute("COMMIT")
                except BaseException:
                    _rollback(conn)
                    raise
            except sqlite3.Error as exc:
                raise self._fail(exc) from exc
            return changed

    def close(self) -> None:
        """Close every connection. Further use raises :class:`HistoryError`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._finalizer()

    def __enter__(self) -> MetricsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"MetricsStore({self._path!r}, retention={format_duration(self._retention)!r}, {state})"
        )

    # ----------------------------------------------------------------- properties

    @property
    def path(self) -> str:
        """The database file (``":memory:"`` for an in-memory store)."""
        return self._path

    @property
    def retention(self) -> float:
        """How long samples and events are kept, in seconds."""
        return self._retention

    @property
    def closed(self) -> bool:
        return self._closed

    # --------------------------------------------------------------------- writes

    def _metric_id(self, name: str, added: list[str]) -> int:
        """The id of metric ``name``, created in the writer's open transaction if new."""
        ident = self._metric_ids.get(name)
        if ident is None:
            self._writer.execute("INSERT OR IGNORE INTO metrics (name) VALUES (?)", (name,))
            row = self._writer.execute("SELECT id FROM metrics WHERE name = ?", (name,)).fetchone()
            ident = int(row[0])
            self._metric_ids[name] = ident
            added.append(name)
        return ident

    @staticmethod
    def _readings(sample: Mapping[str, float], ts: float) -> Iterator[tuple[str, float, float]]:
        if not isinstance(sample, Mapping):
            raise ConfigError("sample", sample, "a mapping of metric name to number")
        for name, value in sample.items():
            if not isinstance(name, str) or not name:
                raise ConfigError("sample", name, "metric names that are non-empty strings")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"sample[{name!r}]", value, "a number")
            if math.isfinite(value):  # a failed reading (nan) is not history
                yield name, ts, float(value)

    def record(self, sample: Mapping[str, float], at: datetime | None = None) -> None:
        """Store one sample (metric name to number) taken at the aware instant ``at``.

        ``at`` defaults to the clock's now. Values that are not finite (a probe
        that failed) are skipped.

        Raises:
            ConfigError: ``at`` is naive, or the sample is not a mapping of numbers.
        """
        self.record_many([(at if at is not None else self._clock.now(), sample)])

    def record_many(self, items: Iterable[tuple[datetime, Mapping[str, float]]]) -> None:
        """Store many ``(at, sample)`` pairs in one transaction (bulk import)."""
        readings: list[tuple[str, float, float]] = []
        records = 0
        for at, sample in items:
            ts = _check_aware("at", at).timestamp()
            readings.extend(self._readings(sample, ts))
            records += 1
        with self._lock:
            self._writable()
            conn = self._writer
            added: list[str] = []
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(
                        "INSERT INTO samples (metric_id, ts, value) VALUES (?, ?, ?)",
                        [(self._metric_id(name, added), ts, v) for name, ts, v in readings],
                    )
                    conn.execute("COMMIT")
                except BaseException:
                    _rollback(conn)
                    for name in added:  # those ids were rolled back too
                        self._metric_ids.pop(name, None)
                    raise
            except sqlite3.Error as exc:
                raise self._fail(exc) from exc
            self._since_prune += records
            if self._since_prune >= self._prune_every:
                try:
                    self._prune(None, automatic=True)
                except HistoryError as exc:
                    # the samples are committed: a prune that fails (a lock, a full
                    # disk) is tried again after the next prune_every records
                    log.warning("history: automatic prune failed: %s", exc)

    def record_event(self, event: _HasKind | Mapping[str, Any], at: datetime | None = None) -> None:
        """Store an event (anything with ``kind`` and ``to_dict()``, or a mapping).

        ``at`` defaults to the event's own ``at``/``time``/``started_at`` if it has
        one, else the clock's now.
        """
        data = _as_dict(event, "event")
        kind = getattr(event, "kind", None) if not isinstance(event, Mapping) else None
        kind = kind if isinstance(kind, str) else data.get("kind")
        if not isinstance(kind, str) or not kind:
            raise ConfigError("event", event, "an event with a non-empty 'kind'")
        when = at if at is not None else _instant(_first(data, "at", "time", "started_at"))
        ts = _ts("at", when if when is not None else self._clock.now())
        text = json.dumps(data, default=_json_default, sort_keys=True)
        self._write([("INSERT INTO events (ts, kind, data) VALUES (?, ?, ?)", (ts, kind, text))])

    def record_session(self, report: object, at: datetime | None = None) -> SessionRecord:
        """Store a backup session's report (its ``to_dict()`` form, or a mapping).

        The name, size and wall time are read from the report's ``name``, ``bytes``
        and ``wall_time`` (also ``duration``/``elapsed``/``wall_s``) keys; the time
        from ``ended_at``/``finished_at``/``started_at``, else ``at``, else now.

        Returns the :class:`SessionRecord` as stored.
        """
        data = _as_dict(report, "report")
        name = _first(data, "name", "session")
        if not isinstance(name, str) or not name:
            raise ConfigError("report", report, "a session report with a 'name'")
        size = _number(_first(data, "bytes", "total_bytes", "bytes_done"))
        if size is None:
            raise ConfigError("report.bytes", data.get("bytes"), "a number of bytes")
        duration = _number(
            _first(data, "wall_time", "duration_s", "duration", "elapsed", "wall_s", "wall")
        )
        if duration is None:
            raise ConfigError("report.wall_time", data.get("wall_time"), "a number of seconds")
        if at is None:
            at = _instant(_first(data, "ended_at", "finished_at", "end", "started_at", "start"))
            if at is None:
                at = self._clock.now()
        ts = _ts("at", at)
        assert ts is not None
        text = json.dumps(data, default=_json_default, sort_keys=True)
        self._write(
            [
                (
                    "INSERT INTO sessions (ts, name, bytes, duration, data) VALUES (?, ?, ?, ?, ?)",
                    (ts, name, size, duration, text),
                )
            ]
        )
        return SessionRecord(_utc(ts), name, size, duration, json.loads(text))

    def prune(self, now: datetime | None = None) -> int:
        """Remove what retention no longer covers, now; returns how many rows went.

        Samples and events older than ``retention`` before ``now`` (default the
        clock's now) go, and session reports older than ``session_retention``.

        The automatic pruning (on open and every ``prune_every`` records) is gentler:
        it counts back from the newest sample when that is older than now, so a host
        that was idle for a month, or history imported from elsewhere, keeps its last
        ``retention`` of samples until newer ones arrive.

        Example::

            >>> from datetime import datetime, timedelta, timezone
            >>> store = MetricsStore(":memory:", retention="1d")
            >>> now = datetime(2026, 1, 10, tzinfo=timezone.utc)
            >>> store.record({"cpu.percent": 50.0}, at=now - timedelta(days=3))
            >>> store.record({"cpu.percent": 20.0}, at=now)
            >>> store.prune(now=now), store.count()
            (1, 1)
            >>> store.close()
        """
        return self._prune(now, automatic=False)

    def _prune(self, now: datetime | None, *, automatic: bool) -> int:
        now_ts = _ts("now", now if now is not None else self._clock.now())
        assert now_ts is not None
        with self._lock:
            self._writable()
            self._since_prune = 0
            anchor = now_ts
            if automatic:
                try:
                    newest = self._writer.execute("SELECT MAX(ts) FROM samples").fetchone()[0]
                except sqlite3.Error as exc:
                    raise self._fail(exc) from exc
                if newest is not None:
                    anchor = min(now_ts, float(newest))
            cutoff = anchor - self._retention
            session_cutoff = now_ts - self._session_retention
            return self._write(
                [
                    ("DELETE FROM samples WHERE ts < ?", (cutoff,)),
                    ("DELETE FROM events WHERE ts < ?", (cutoff,)),
                    ("DELETE FROM sessions WHERE ts < ?", (session_cutoff,)),
                ]
            )

    # ---------------------------------------------------------------------- reads

    def metrics(self) -> list[str]:
        """The names of the metrics that have samples, sorted."""
        rows = self._read(
            "SELECT name FROM metrics m WHERE EXISTS "
            "(SELECT 1 FROM samples s WHERE s.metric_id = m.id) ORDER BY name"
        )
        return [row[0] for row in rows]

    def count(self, metric: str | None = None) -> int:
        """How many samples are stored (of ``metric``, or of all metrics)."""
        if metric is None:
            return int(self._read("SELECT COUNT(*) FROM samples")[0][0])
        return int(
            self._read(
                "SELECT COUNT(*) FROM samples WHERE metric_id = (SELECT id FROM metrics WHERE name = ?)",
                (metric,),
            )[0][0]
        )

    def span(self) -> tuple[datetime, datetime] | None:
        """The first and last sample times, or ``None`` when the store is empty."""
        lo, hi = self._read("SELECT MIN(ts), MAX(ts) FROM samples")[0]
        if lo is None:
            return None
        return _utc(lo), _utc(hi)

    def _range(self, since: datetime | None, until: datetime | None) -> tuple[str, list[Any]]:
        clauses, params = [], []
        lo, hi = _ts("since", since), _ts("until", until)
        if lo is not None:
            clauses.append("ts >= ?")
            params.append(lo)
        if hi is not None:
            clauses.append("ts < ?")
            params.append(hi)
        return "".join(f" AND {c}" for c in clauses), params

    def aggregate(
        self,
        metric: str,
        bucket: str | float = "1h",
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Bucket]:
        """``metric`` in time buckets: mean, p50, p95, max, count (and min) each.

        Args:
            metric: the metric name, e.g. ``"api.latency_s"``.
            bucket: the bucket width: ``"1min"``, ``"5min"``, ``"1h"``, ``"1d"`` (any
                whole number of seconds that divides a day, or whole days). Buckets
                are aligned to the Unix epoch, i.e. to UTC hours and days.
            since: only samples at or after this aware instant.
            until: only samples before this aware instant.

        Returns:
            The non-empty buckets, oldest first. Everything is computed in SQLite,
            percentiles included; one row per bucket reaches Python.

        Raises:
            ConfigError: a bad bucket or a naive ``since``/``until``.

        Example::

            >>> from datetime import datetime, timedelta, timezone
            >>> store = MetricsStore(":memory:", retention="30d")
            >>> t0 = datetime(2026, 1, 5, tzinfo=timezone.utc)
            >>> for second, latency in enumerate([0.10, 0.12, 0.11, 0.50]):
            ...     store.record({"api.latency_s": latency}, at=t0 + timedelta(seconds=second))
            >>> (row,) = store.aggregate("api.latency_s", "5min")
            >>> row.count, round(row.p50, 3), round(row.p95, 3), row.max
            (4, 0.115, 0.443, 0.5)
            >>> store.close()
        """
        width = _bucket_seconds(bucket)
        where, params = self._range(since, until)
        source = (
            f"SELECT {_floor_sql(f'ts / {width}')} AS k, value AS v FROM samples "
            f"WHERE metric_id = (SELECT id FROM metrics WHERE name = ?){where}"
        )
        rows = self._read(_stats_sql(source), [metric, *params])
        return [
            Bucket(
                start=_utc(float(k) * width),
                mean=float(mean),
                p50=float(p50),
                p95=float(p95),
                max=float(hi),
                count=int(cnt),
                min=float(lo),
            )
            for k, mean, lo, hi, cnt, p50, p95 in rows
        ]

    def series(
        self,
        metric: str,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        limit: int = 100_000,
    ) -> list[tuple[datetime, float]]:
        """The raw samples of ``metric`` in a time range, oldest first (for plots).

        At most ``limit`` samples are returned (the first ones); for long ranges
        prefer :meth:`aggregate`.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError("limit", limit, "a whole number >= 1")
        where, params = self._range(since, until)
        rows = self._read(
            "SELECT ts, value FROM samples WHERE metric_id = "
            f"(SELECT id FROM metrics WHERE name = ?){where} ORDER BY ts LIMIT ?",
            [metric, *params, limit],
        )
        return [(_utc(ts), float(v)) for ts, v in rows]

    def events(
        self,
        kind: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[StoredEvent]:
        """Stored events (of ``kind``, if given), oldest first."""
        where, params = self._range(since, until)
        if kind is not None:
            where += " AND kind = ?"
            params.append(kind)
        rows = self._read(f"SELECT ts, kind, data FROM events WHERE 1{where} ORDER BY ts", params)
        return [StoredEvent(_utc(ts), k, json.loads(d)) for ts, k, d in rows]

    def sessions(
        self,
        name: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[SessionRecord]:
        """Stored session reports (named ``name``, if given), oldest first."""
        where, params = self._range(since, until)
        if name is not None:
            where += " AND name = ?"
            params.append(name)
        rows = self._read(
            f"SELECT ts, name, bytes, duration, data FROM sessions WHERE 1{where} ORDER BY ts",
            params,
        )
        return [SessionRecord(_utc(ts), n, b, d, json.loads(data)) for ts, n, b, d, data in rows]

    # -------------------------------------------------------------- weekly profile

    def _how_source(
        self,
        metric: str,
        zone: tzinfo,
        months: frozenset[int] | None,
        since: datetime | None,
        until: datetime | None,
        key: str,
    ) -> tuple[str, list[Any]]:
        """SQL selecting (k, v) for ``metric`` with k an hour-of-week or week number."""
        where, params = self._range(since, until)
        bounds = self._read(
            "SELECT MIN(ts), MAX(ts) FROM samples WHERE metric_id = (SELECT id FROM metrics WHERE name = ?)"
            + where,
            [metric, *params],
        )[0]
        lo, hi = (0.0, 0.0) if bounds[0] is None else (float(bounds[0]), float(bounds[1]))
        intervals = _offsets(zone, lo, hi)
        values = ", ".join("(?, ?, ?)" for _ in intervals)
        offset_params = [x for interval in intervals for x in interval]
        hours = _floor_sql("(s.ts + o.off) / 3600")
        # the Unix epoch fell on a Thursday: hour 72 of its week
        expr = {
            "how": f"((({hours}) + 72) % 168 + 168) % 168",
            "week": _floor_sql(f"((({hours}) + 72) / 168.0)"),
        }[key]
        month_clause = ""
        if months is not None:
            month_clause = (
                " AND CAST(strftime('%m', s.ts + o.off, 'unixepoch') AS INTEGER) IN ("
                + ", ".join(str(int(m)) for m in sorted(months))
                + ")"
            )
        sql = (
            f"WITH o(a, b, off) AS (VALUES {values}) "
            f"SELECT {expr} AS k, s.value AS v FROM samples s JOIN o ON s.ts >= o.a AND s.ts < o.b "
            f"WHERE s.metric_id = (SELECT id FROM metrics WHERE name = ?)"
            f"{where.replace('ts ', 's.ts ')}{month_clause}"
        )
        return sql, [*offset_params, metric, *params]

    def _weeks(
        self,
        metrics: Sequence[str],
        zone: tzinfo,
        months: frozenset[int] | None,
        since: datetime | None,
        until: datetime | None,
    ) -> int:
        weeks: set[int] = set()
        for metric in metrics:
            sql, params = self._how_source(metric, zone, months, since, until, "week")
            weeks.update(
                int(row[0]) for row in self._read(f"SELECT DISTINCT k FROM ({sql})", params)
            )
        return len(weeks)

    def _profile(
        self,
        metrics: tuple[str, ...],
        zone: tzinfo,
        tz_name: str,
        season: str | None,
        months: frozenset[int] | None,
        since: datetime | None,
        until: datetime | None,
        weeks: int | None = None,
    ) -> WeeklyProfile:
        """The profile of ``metrics``; ``weeks`` is :meth:`_weeks` of the same
        arguments when the caller has counted them already."""
        hours: dict[str, tuple[HourStats | None, ...]] = {}
        for metric in metrics:
            cells: list[HourStats | None] = [None] * HOURS_PER_WEEK
            sql, params = self._how_source(metric, zone, months, since, until, "how")
            for k, mean, _lo, hi, cnt, p50, p95 in self._read(_stats_sql(sql), params):
                cells[int(k)] = HourStats(
                    median=float(p50),
                    p95=float(p95),
                    mean=float(mean),
                    max=float(hi),
                    count=int(cnt),
                )
            hours[metric] = tuple(cells)
        return WeeklyProfile(
            metrics=metrics,
            hours=MappingProxyType(hours),
            tz=tz_name,
            season=season,
            months=frozenset(range(1, 13)) if months is None else months,
            weeks=self._weeks(metrics, zone, months, since, until) if weeks is None else weeks,
        )

    def weekly_profiles(
        self,
        metrics: str | Sequence[str] = ("api.latency_s", "cpu.percent"),
        *,
        tz: str | tzinfo = "UTC",
        seasons: Mapping[str, Iterable[int]] | None = DEFAULT_SEASONS,
        min_weeks: int = 2,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> dict[str, WeeklyProfile]:
        """A weekly profile for every season with data enough, and ``"all"``.

        A season is kept apart when at least ``min_weeks`` distinct weeks of it hold
        samples. The ``"all"`` profile uses every month.
        """
        names, zone, month_sets = self._profile_args(metrics, tz, seasons, min_weeks)
        result = {"all": self._profile(names, zone, _tz_name(tz), None, None, since, until)}
        for season, months in month_sets.items():
            weeks = self._weeks(names, zone, months, since, until)
            if weeks >= min_weeks:
                result[season] = self._profile(
                    names, zone, _tz_name(tz), season, months, since, until, weeks
                )
        return result

    def weekly_profile(
        self,
        metrics: str | Sequence[str] = ("api.latency_s", "cpu.percent"),
        *,
        tz: str | tzinfo = "UTC",
        at: datetime | None = None,
        seasons: Mapping[str, Iterable[int]] | None = DEFAULT_SEASONS,
        min_weeks: int = 2,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> WeeklyProfile:
        """Typical load per hour of the week: median and p95 of each metric.

        Args:
            metrics: the metrics to profile (default API latency and CPU).
            tz: the time zone in which hours of the week are counted.
            at: the season to profile is the one containing this instant (default
                now); when that season has fewer than ``min_weeks`` weeks of data,
                every month is used and ``season`` is ``None``.
            seasons: season name to months (default :data:`DEFAULT_SEASONS`);
                ``None`` never splits by season.
            min_weeks: how many distinct weeks a season needs to be kept apart.
            since: only samples at or after this instant.
            until: only samples before this instant.

        Example::

            >>> from datetime import datetime, timedelta, timezone
            >>> store = MetricsStore(":memory:", retention="30d")
            >>> t0 = datetime(2026, 1, 5, tzinfo=timezone.utc)  # a Monday
            >>> store.record_many((t0 + timedelta(hours=h), {"cpu.percent": float(h % 24)})
            ...                   for h in range(14 * 24))
            >>> profile = store.weekly_profile("cpu.percent", at=t0)
            >>> profile.at("cpu.percent", weekday=2, hour=13).median, profile.weeks
            (13.0, 2)
            >>> store.close()
        """
        names, zone, month_sets = self._profile_args(metrics, tz, seasons, min_weeks)
        when = _check_aware("at", at if at is not None else self._clock.now())
        month = when.astimezone(zone).month
        for season, months in month_sets.items():
            if month not in months:
                continue
            weeks = self._weeks(names, zone, months, since, until)
            if weeks >= min_weeks:
                return self._profile(names, zone, _tz_name(tz), season, months, since, until, weeks)
        return self._profile(names, zone, _tz_name(tz), None, None, since, until)

    @staticmethod
    def _profile_args(
        metrics: str | Sequence[str],
        tz: str | tzinfo,
        seasons: Mapping[str, Iterable[int]] | None,
        min_weeks: int,
    ) -> tuple[tuple[str, ...], tzinfo, dict[str, frozenset[int]]]:
        names = (metrics,) if isinstance(metrics, str) else tuple(metrics)
        if not names or not all(isinstance(m, str) and m for m in names):
            raise ConfigError("metrics", metrics, "one or more metric names")
        zone = _zone(tz)
        if isinstance(min_weeks, bool) or not isinstance(min_weeks, int) or min_weeks < 1:
            raise ConfigError("min_weeks", min_weeks, "a whole number >= 1")
        month_sets: dict[str, frozenset[int]] = {}
        for season, months in (seasons or {}).items():
            month_set = frozenset(months)
            if not month_set or not all(isinstance(m, int) and 1 <= m <= 12 for m in month_set):
                raise ConfigError(f"seasons[{season!r}]", months, "month numbers 1-12")
            month_sets[season] = month_set
        return names, zone, month_sets

    # ------------------------------------------------------------ session history

    def session_trend(
        self,
        name: str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> GrowthTrend | None:
        """The least-squares growth of session size and wall time over days.

        Fitted in SQL over the stored reports (named ``name``, or all). ``None``
        when fewer than two reports at distinct times exist.

        Example::

            >>> from datetime import datetime, timedelta, timezone
            >>> store = MetricsStore(":memory:")
            >>> day0 = datetime(2026, 1, 5, 5, tzinfo=timezone.utc)
            >>> for day in range(10):
            ...     _ = store.record_session({"name": "photos", "bytes": 1e9 + day * 1e8,
            ...                               "wall_time": 3600.0 + day * 300.0},
            ...                              at=day0 + timedelta(days=day))
            >>> trend = store.session_trend("photos", until=day0 + timedelta(days=10))
            >>> round(trend.bytes_per_day), round(trend.seconds_per_day)
            (100000000, 300)
            >>> store.close()
        """
        where, params = self._range(since, until)
        if name is not None:
            where += " AND name = ?"
            params.append(name)
        row = self._read(
            f"""
            WITH pts AS (
                SELECT (ts - (SELECT MIN(ts) FROM sessions WHERE 1{where})) / 86400.0 AS x,
                       bytes AS b, duration AS d, ts
                FROM sessions WHERE 1{where}
            )
            SELECT COUNT(*), SUM(x), SUM(x * x), SUM(b), SUM(x * b), SUM(d), SUM(x * d),
                   MIN(ts), MAX(ts), MAX(x)
            FROM pts
            """,
            [*params, *params],
        )[0]
        n, sx, sxx, sb, sxb, sd, sxd, first, last, xmax = row
        if not n or n < 2:
            return None
        denom = n * sxx - sx * sx
        if denom <= 1e-12 * max(1.0, n * sxx):
            return None
        slope_b = (n * sxb - sx * sb) / denom
        slope_d = (n * sxd - sx * sd) / denom
        icpt_b = (sb - slope_b * sx) / n
        icpt_d = (sd - slope_d * sx) / n
        return GrowthTrend(
            name=name,
            count=int(n),
            first=_utc(first),
            last=_utc(last),
            bytes_per_day=slope_b,
            seconds_per_day=slope_d,
            bytes_at_last=icpt_b + slope_b * xmax,
            duration_at_last=icpt_d + slope_d * xmax,
        )

    def overrun_alert(
        self,
        name: str | None = None,
        window: str = "02:00-05:00",
        *,
        at: datetime | None = None,
        horizon: str | float = "30d",
        since: datetime | None = None,
    ) -> Alert | None:
        """An :class:`~wedguard.Alert` when the backup's growth will overrun its window.

        Args:
            name: the session name (``None``: all sessions together).
            window: the nightly window, ``"HH:MM-HH:MM"`` (may cross midnight), or
                its length as a duration.
            at: the moment to predict from (default now).
            horizon: warn only when the overrun is this close (default 30 days).
            since: fit only reports from this instant on.

        Returns:
            ``None`` when there is no trend, no growth, or the overrun lies beyond
            ``horizon``; otherwise a firing alert whose summary reads, e.g., "at this
            growth the nightly backup 'photos' overruns its 02:00–05:00 window in
            about 12 days".

        Example::

            >>> from datetime import datetime, timedelta, timezone
            >>> store = MetricsStore(":memory:")
            >>> night = datetime(2026, 1, 5, 5, tzinfo=timezone.utc)
            >>> for day in range(10):  # 2h25m, growing 100 s a night
            ...     _ = store.record_session({"name": "photos", "bytes": 4e10,
            ...                               "wall_time": 8700.0 + 100 * day},
            ...                              at=night + timedelta(days=day))
            >>> alert = store.overrun_alert("photos", "02:00-05:00",
            ...                             at=night + timedelta(days=9))
            >>> print(alert.summary)
            at this growth the nightly backup 'photos' overruns its 02:00–05:00 window in about 12 days
            >>> store.close()
        """
        label, limit = _window_length(window)
        ahead = _positive_duration("horizon", horizon) / 86400.0
        when = _check_aware("at", at if at is not None else self._clock.now())
        trend = self.session_trend(name, since=since)
        if trend is None:
            return None
        days = trend.days_until_duration(limit, at=when)
        if days is None or days > ahead:
            return None
        who = f"the nightly backup {name!r}" if name else "the nightly backup"
        predicted = trend.predicted_duration(when)
        details = (
            f"{trend.count} sessions from {trend.first:%Y-%m-%d} to {trend.last:%Y-%m-%d}: "
            f"size grows {trend.bytes_per_day / 1e6:+.1f} MB/day, wall time "
            f"{trend.seconds_per_day / 60:+.1f} min/day; expected tonight "
            f"{format_duration(max(predicted, 0.0))} for a window of {format_duration(limit)}."
        )
        if days <= 0:
            summary = f"{who} already overruns its {label} window"
            severity = Severity.HIGH
        else:
            whole = max(1, round(days))
            summary = (
                f"at this growth {who} overruns its {label} window in about "
                f"{whole} day{'' if whole == 1 else 's'}"
            )
            severity = (
                Severity.HIGH if days <= 3 else Severity.MEDIUM if days <= 14 else Severity.LOW
            )
        return Alert(
            key=f"history/overrun/{name or '*'}",
            severity=severity,
            summary=summary,
            details=details,
            labels={"session": name or "*", "window": label},
            started_at=when,
        )


_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*[-–]\s*(\d{1,2}):(\d{2})\s*$")


def _window_length(window: str | float) -> tuple[str, float]:
    """``"02:00-05:00"`` -> (``"02:00–05:00"``, 10800.0); a duration -> its seconds."""
    if isinstance(window, str):
        match = _WINDOW.match(window)
        if match:
            h1, m1, h2, m2 = (int(g) for g in match.groups())
            if h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59:
                raise ConfigError("window", window, "a window such as '02:00-05:00'")
            start, end = h1 * 60 + m1, h2 * 60 + m2
            length = (end - start) % 1440 or 1440
            return f"{h1:02d}:{m1:02d}–{h2:02d}:{m2:02d}", length * 60.0
    seconds = _positive_duration("window", window)
    return format_duration(seconds), seconds


# ------------------------------------------------------------------ recommendation


_NO_END = object()
LOAD_METRICS = ("cpu.percent", "api.latency_s", "db.latency_s")


def default_metric(available: Iterable[str]) -> str:
    """The load metric to rank windows by: the first of :data:`LOAD_METRICS` available,
    else the first production metric available (not ``backup.*``, not ``*.error``),
    else ``"cpu.percent"``.

    >>> default_metric(["api.latency_s", "backup.rss_bytes"])
    'api.latency_s'
    """
    names = sorted(available)
    for name in LOAD_METRICS:
        if name in names:
            return name
    for name in names:
        if not name.startswith("backup.") and not name.endswith(".error"):
            return name
    return "cpu.percent"


class _Calendar(Protocol):
    def at(self, when: datetime) -> Any: ...


def _level_of(window: Any) -> Level:
    level = getattr(window, "level", Level.OPEN)
    try:
        return Level(level)
    except ValueError:
        return Level[str(level).upper()]


def _hour_levels(calendar: _Calendar, zone: tzinfo, after: datetime, weeks: int) -> list[Level]:
    """The most restrictive calendar level in each hour of the week, over ``weeks``."""
    local = after.astimezone(zone)
    monday = datetime.combine(local.date() - timedelta(days=local.weekday()), time(0), zone)
    levels = [Level.OPEN] * HOURS_PER_WEEK
    step = timedelta(minutes=5)
    for week in range(weeks):
        base = monday + timedelta(days=7 * (week + 1))  # whole weeks from next Monday
        for hour in range(HOURS_PER_WEEK):
            # wall-clock arithmetic in the zone, then to UTC to walk real instants
            start = datetime.combine(
                (base + timedelta(hours=hour)).date(), time(hour % 24), zone
            ).astimezone(timezone.utc)
            end = start + timedelta(hours=1)
            t = start
            worst = levels[hour]
            while t < end and worst < Level.BLACKOUT:
                found = calendar.at(t)
                worst = max(worst, _level_of(found))
                nxt = getattr(found, "end", _NO_END)
                if nxt is None:  # the answer never changes again
                    break
                if isinstance(nxt, datetime) and nxt > t:
                    t = min(nxt, t + timedelta(hours=1))
                else:
                    t = t + step
            levels[hour] = worst
    return levels


def recommend_windows(
    store: MetricsStore | WeeklyProfile,
    duration: str | float = "2h",
    count: int = 3,
    calendar: _Calendar | None = None,
    metric: str | None = None,
    *,
    tz: str | tzinfo | None = None,
    at: datetime | None = None,
    weeks_ahead: int = 4,
) -> list[RecommendedWindow]:
    """The ``count`` weekly windows of ``duration`` where a backup hurts production least.

    Every whole hour of the week is a candidate start. A candidate's expected load is
    the mean of the typical (median) load of ``metric`` over its hours, from the
    store's weekly profile (the current season's when there is data enough). Windows
    that touch an hour without data, or a calendar blackout in any of the next
    ``weeks_ahead`` weeks, are left out. The quietest go first, ties broken by the
    lower p95; the windows returned never overlap.

    Args:
        store: a :class:`MetricsStore` or a :class:`WeeklyProfile` made from one.
        duration: how long the backup needs, e.g. ``"2h"`` (whole minutes, at most a day).
        count: how many windows to return (at most).
        calendar: anything with ``at(when) -> window`` whose ``.level`` is a
            :class:`~wedguard.Level` (e.g. a ``PeakHourCalendar``); BLACKOUT forbids.
        metric: the production metric to minimise; by default the first of
            ``cpu.percent``, ``api.latency_s`` and ``db.latency_s`` that has history.
        tz: the time zone of the windows (a store's profile is computed in it); by
            default the calendar's (its ``tz``), else UTC.
        at: "now", for seasons and for checking the calendar's coming weeks.
        weeks_ahead: how many coming weeks of the calendar to honour.

    Returns:
        Ranked :class:`RecommendedWindow` values, best first (fewer than ``count``
        when there are not enough quiet, allowed windows; empty without data).

    Example::

        >>> from datetime import datetime, timedelta, timezone
        >>> store = MetricsStore(":memory:", retention="30d")
        >>> t0 = datetime(2026, 1, 5, tzinfo=timezone.utc)  # a Monday
        >>> store.record_many(
        ...     (t0 + timedelta(hours=h), {"cpu.percent": 5.0 if h % 24 in (3, 4) else 60.0})
        ...     for h in range(7 * 24))
        >>> best = recommend_windows(store, "2h", count=1, at=t0)[0]
        >>> str(best), best.expected_load
        ('Mon 03:00-05:00', 5.0)
        >>> print(windows_to_rules([best]))
        Mon 03:00-05:00 open
        >>> store.close()
    """
    seconds = parse_duration(duration, field="duration")
    if not 60 <= seconds <= 86400 or abs(seconds / 60 - round(seconds / 60)) > 1e-9:
        raise ConfigError("duration", duration, "whole minutes between '1min' and '24h'")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError("count", count, "a whole number >= 1")
    if calendar is not None and not callable(getattr(calendar, "at", None)):
        raise ConfigError("calendar", calendar, "a calendar with at(when) -> window")
    if isinstance(weeks_ahead, bool) or not isinstance(weeks_ahead, int) or weeks_ahead < 1:
        raise ConfigError("weeks_ahead", weeks_ahead, "a whole number >= 1")
    if metric is not None and (not isinstance(metric, str) or not metric):
        raise ConfigError("metric", metric, "a metric name")
    if tz is None:
        cal_tz = getattr(calendar, "tz", None)
        tz = cal_tz if isinstance(cal_tz, (str, tzinfo)) else "UTC"
    if isinstance(store, WeeklyProfile):
        profile = store
        if metric is None:
            metric = default_metric(m for m in profile.metrics if any(profile.hours[m]))
        if metric not in profile.hours:
            raise ConfigError("metric", metric, f"one of the profile's metrics {profile.metrics}")
        zone = _zone(profile.tz)
        when = _check_aware("at", at) if at is not None else datetime.now(timezone.utc)
    elif isinstance(store, MetricsStore):
        zone = _zone(tz)
        when = _check_aware("at", at if at is not None else store._clock.now())
        if metric is None:
            metric = default_metric(store.metrics())
        profile = store.weekly_profile(metric, tz=tz, at=when)
    else:
        raise ConfigError("store", store, "a MetricsStore or a WeeklyProfile")

    cells = profile.hours[metric]
    span = math.ceil(seconds / 3600 - 1e-9)
    weights = [1.0] * span
    weights[-1] = seconds / 3600 - (span - 1)
    levels = (
        _hour_levels(calendar, zone, when, weeks_ahead)
        if calendar is not None
        else [Level.OPEN] * HOURS_PER_WEEK
    )
    known = [c.median for c in cells if c is not None]
    if not known:
        return []
    typical = sorted(known)[len(known) // 2]

    candidates: list[tuple[float, float, int, Level]] = []
    for start in range(HOURS_PER_WEEK):
        hours = [(start + i) % HOURS_PER_WEEK for i in range(span)]
        stats = [cells[h] for h in hours]
        if any(s is None for s in stats):
            continue
        level = max(levels[h] for h in hours)
        if level >= Level.BLACKOUT:
            continue
        load = sum(
            w * s.median for w, s in zip(weights, stats, strict=True) if s is not None
        ) / sum(weights)
        peak = max(s.p95 for s in stats if s is not None)
        candidates.append((load, peak, start, level))
    candidates.sort()

    chosen: list[tuple[float, float, int, Level]] = []
    taken: set[int] = set()
    for cand in candidates:
        needed = {(cand[2] + i) % HOURS_PER_WEEK for i in range(span)}
        if needed & taken:
            continue
        chosen.append(cand)
        taken |= needed
        if len(chosen) == count:
            break

    season = f" ({profile.season})" if profile.season else ""
    result = []
    for rank, (load, peak, start, level) in enumerate(chosen, 1):
        begin = WeekTime(start // 24, time(start % 24))
        end_minute = (start * 60 + round(seconds / 60)) % (HOURS_PER_WEEK * 60)
        end = WeekTime(end_minute // 1440, time((end_minute % 1440) // 60, end_minute % 60))
        share = f"{load / typical:.0%} of" if typical > 0 else "vs"
        reason = (
            f"typical {metric} {load:.3g} (p95 {peak:.3g}) from {begin} to {end}, "
            f"{share} the week's typical {typical:.3g}; "
            f"{profile.weeks} week{'s' if profile.weeks != 1 else ''} of history{season}"
        )
        if calendar is not None:
            reason += f"; calendar: {level.name.lower()}"
        result.append(
            RecommendedWindow(
                start=begin,
                end=end,
                duration=seconds,
                expected_load=load,
                peak_load=peak,
                metric=metric,
                reason=reason,
                rank=rank,
                tz=profile.tz,
                level=level if calendar is not None else None,
            )
        )
    return result


def _split_days(window: RecommendedWindow) -> Iterator[tuple[int, int, int]]:
    """(weekday, start minute, end minute) pieces of a window, split at midnight."""
    begin = window.start.minute_of_week
    remaining = round(window.duration / 60)
    while remaining > 0:
        day, minute = divmod(begin % (7 * 1440), 1440)
        piece = min(remaining, 1440 - minute)
        yield day, minute, minute + piece
        begin += piece
        remaining -= piece


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def windows_to_rules(
    windows: Iterable[RecommendedWindow], *, level: str = "open", outside: str | None = None
) -> str:
    """The calendar rules text (``PeakHourCalendar.parse`` syntax) for ``windows``.

    Each window becomes ``Day HH:MM-HH:MM <level>`` lines, split at midnight so no
    line crosses a day. With ``outside`` (e.g. ``"blackout"`` or ``"peak 10Mbit/s"``)
    the rest of the week is written too, with that level: since the most restrictive
    rule wins, this is how a calendar keeps backups to the windows.

    >>> w = RecommendedWindow(WeekTime(6, time(23)), WeekTime(0, time(1)), 7200.0,
    ...                       3.0, 4.0, "cpu.percent", "quiet", 1)
    >>> print(windows_to_rules([w], outside="blackout"))
    Sun 23:00-24:00 open
    Mon 00:00-01:00 open
    Mon 01:00-24:00 blackout
    Tue 00:00-24:00 blackout
    Wed 00:00-24:00 blackout
    Thu 00:00-24:00 blackout
    Fri 00:00-24:00 blackout
    Sat 00:00-24:00 blackout
    Sun 00:00-23:00 blackout
    """
    if not isinstance(level, str) or not level.strip():
        raise ConfigError("level", level, "a calendar level such as 'open'")
    if outside is not None and (not isinstance(outside, str) or not outside.strip()):
        raise ConfigError("outside", outside, "a calendar level such as 'blackout'")
    lines = []
    covered: list[list[tuple[int, int]]] = [[] for _ in range(7)]
    for window in windows:
        if not isinstance(window, RecommendedWindow):
            raise ConfigError("windows", window, "RecommendedWindow values")
        for day, lo, hi in _split_days(window):
            lines.append(f"{DAY_NAMES[day]} {_hhmm(lo)}-{_hhmm(hi)} {level.strip()}")
            covered[day].append((lo, hi))
    if outside is not None:
        for day in range(7):
            cursor = 0
            for lo, hi in [*sorted(covered[day]), (1440, 1440)]:
                if lo > cursor:
                    lines.append(f"{DAY_NAMES[day]} {_hhmm(cursor)}-{_hhmm(lo)} {outside.strip()}")
                cursor = max(cursor, hi)
    return "\n".join(lines)


# ------------------------------------------------------------- the guard's side


class HistorySink:
    """History for a guard that must never fail because of it.

    A :class:`~wedguard.Sink` that stores what the guard emits: session reports
    (``kind == "session"``) with :meth:`MetricsStore.record_session`, every other event
    with :meth:`MetricsStore.record_event`. :meth:`source` wraps a guard's source so
    its samples are recorded too.

    Nothing here ever raises into the backup, and a passing fault does not switch
    history off. When a write fails for a reason that may pass (the file locked by
    another process for longer than ``timeout``, a full disk, an I/O error, a store
    that cannot be opened yet), the row is kept in a bounded in-memory **backlog**
    (its time taken when it arrived), an ERROR names the real cause, and one
    :class:`~wedguard.Alert` (key ``"history/unavailable"``) goes to ``alerts``. The
    next rows try again after a backoff (``retry`` seconds, doubling up to
    ``retry_max``); the first write that works stores the whole backlog, in order,
    and resolves the alert. :meth:`flush` tries at once. When the backlog is full
    the oldest rows go first (counted in :attr:`dropped`).

    Only a store that can never work (a file that is not a store, a closed store)
    switches the sink off: the error stays in :attr:`failure`, the one alert is sent,
    and the backup goes on without history.

    Args:
        store: a :class:`MetricsStore`, or a path to open one at.
        alerts: where the alert goes: a sink (``emit``) or a callable.
        backlog: how many rows to keep in memory while the store cannot be written
            (default 10,000).
        retry: the first wait in seconds (real time) before trying a failed store
            again (default 1.0).
        retry_max: the longest wait between tries (default 60.0).
        **options: passed to :class:`MetricsStore` when ``store`` is a path
            (``retention``, ``clock``, ``timeout``, ...).

    Example::

        >>> from wedguard.testing import RecordingSink
        >>> alerts = RecordingSink()
        >>> history = HistorySink(":memory:", alerts=alerts)
        >>> history.emit({"kind": "session", "name": "photos", "bytes": 10, "duration_s": 2.0})
        >>> [s.name for s in history.store.sessions()]
        ['photos']
        >>> broken = HistorySink("/nonexistent/dir/history.db", alerts=alerts)
        >>> broken.available, [a.key for a in alerts.events]
        (False, ['history/unavailable'])
        >>> broken.emit({"kind": "session", "name": "photos", "bytes": 10, "duration_s": 2.0})
        >>> broken.backlog
        1
    """

    def __init__(
        self,
        store: MetricsStore | str | PathLike[str],
        *,
        alerts: Any = None,
        backlog: int = 10_000,
        retry: float = 1.0,
        retry_max: float = 60.0,
        **options: Any,
    ) -> None:
        if alerts is not None and not (callable(alerts) or callable(getattr(alerts, "emit", None))):
            raise ConfigError("alerts", alerts, "a sink (with emit) or a callable")
        if isinstance(backlog, bool) or not isinstance(backlog, int) or backlog < 1:
            raise ConfigError("backlog", backlog, "a whole number >= 1")
        if (
            isinstance(retry, bool)
            or not isinstance(retry, (int, float))
            or not 0 <= retry < math.inf
        ):
            raise ConfigError("retry", retry, "a finite number of seconds >= 0")
        if (
            isinstance(retry_max, bool)
            or not isinstance(retry_max, (int, float))
            or not retry <= retry_max < math.inf
        ):
            raise ConfigError("retry_max", retry_max, f"a finite number of seconds >= {retry}")
        self._alerts = alerts
        self._lock = threading.RLock()
        self._clock = check_clock(options.get("clock"))
        self._options = options
        self._retry = float(retry)
        self._retry_max = float(retry_max)
        self._backlog: deque[tuple[str, Any, datetime]] = deque()
        self._backlog_size = backlog
        self._attempts = 0
        self._next_try = -math.inf
        self._alert: Alert | None = None
        self._off = False
        self._drop_logged = -math.inf
        self.dropped = 0
        """Rows given up because the backlog was full (or the sink is off)."""
        self.failure: WedguardError | None = None
        """The last error (kept after recovery, for the record)."""
        self.store: MetricsStore | None = None
        self._path: str | PathLike[str] | None = None
        if isinstance(store, MetricsStore):
            self.store = store
        else:
            self._path = store
            with self._lock:
                self._open()

    @property
    def available(self) -> bool:
        """True while history is being recorded (a store is open and nothing waits)."""
        return self.store is not None and self._attempts == 0

    @property
    def backlog(self) -> int:
        """Rows kept in memory, waiting for the store to take them."""
        return len(self._backlog)

    @property
    def kind(self) -> str:
        return "history"

    # -- the backlog ------------------------------------------------------------------

    def _open(self) -> bool:
        if self.store is not None:
            return True
        assert self._path is not None
        try:
            self.store = MetricsStore(self._path, **self._options)
        except ConfigError:
            raise  # a programming error, not a broken file
        except WedguardError as exc:
            self._fault(exc)
            return False
        return True

    def _fault(self, exc: WedguardError) -> None:
        """A store error: retried later when it can pass, else history switches off."""
        if getattr(exc, "transient", False):
            self._trouble(exc)
        else:
            self._switch_off(exc)

    def _submit(self, op: str, payload: Any, at: datetime) -> None:
        with self._lock:
            if self._off:
                self.dropped += 1
                return
            self._backlog.append((op, payload, at))
            if len(self._backlog) > self._backlog_size:
                self._backlog.popleft()
                self.dropped += 1
                now = _time.monotonic()
                if now - self._drop_logged >= 10.0:
                    self._drop_logged = now
                    log.warning(
                        "history: backlog full (%d); %d row(s) dropped so far, oldest first",
                        self._backlog_size,
                        self.dropped,
                    )
            if _time.monotonic() >= self._next_try:
                self._drain()

    def _drain(self) -> bool:
        """Write the backlog, oldest first; True when it is empty. Lock held."""
        if self._off or not self._open():
            return not self._backlog
        store = self.store
        assert store is not None
        while self._backlog:
            op, payload, at = self._backlog[0]
            try:
                if op == "sample":
                    store.record(payload, at)
                elif op == "session":
                    store.record_session(payload, at)
                else:
                    store.record_event(payload, at)
            except ConfigError:
                pass  # a malformed row is dropped, history stays on
            except WedguardError as exc:
                self._fault(exc)
                return False
            except (sqlite3.Error, OSError) as exc:
                self._trouble(HistoryError(store.path, str(exc), transient=True))
                return False
            self._backlog.popleft()
        if self._attempts:
            self._recovered()
        return True

    def _trouble(self, exc: WedguardError) -> None:
        self._attempts += 1
        self._next_try = _time.monotonic() + backoff_delay(
            self._attempts, base=self._retry, cap=self._retry_max
        )
        self.failure = exc
        if self._alert is None:
            log.error(
                "history cannot be written (%s); %d row(s) kept in memory, trying again",
                exc,
                len(self._backlog),
            )
            self._alarm(
                "metric history cannot be written; rows are kept in memory and retried", exc
            )

    def _recovered(self) -> None:
        log.warning("history writable again after %d failed attempt(s)", self._attempts)
        self._attempts = 0
        self._next_try = -math.inf
        alert, self._alert = self._alert, None
        if alert is not None:
            self._tell(alert.resolved(self._clock.now()))

    def _switch_off(self, exc: WedguardError) -> None:
        self.failure = exc
        self._off = True
        self.dropped += len(self._backlog)
        self._backlog.clear()
        store, self.store = self.store, None
        if store is not None:
            with contextlib.suppress(Exception):  # closing a broken store
                store.close()
        log.error("history switched off: %s", exc)
        self._alarm("metric history unavailable; backups go on without it", exc)

    def _alarm(self, summary: str, exc: WedguardError) -> None:
        """Fire the one ``history/unavailable`` alert, unless it is already firing."""
        if self._alert is None:
            self._alert = Alert(
                key="history/unavailable",
                severity=Severity.MEDIUM,
                summary=summary,
                details=str(exc),
                labels={"component": "history"},
            )
            self._tell(self._alert)

    def _tell(self, alert: Alert) -> None:
        try:
            if callable(getattr(self._alerts, "emit", None)):
                self._alerts.emit(alert)
            elif callable(self._alerts):
                self._alerts(alert)
        except Exception:  # a failing alert sink must not fail the backup either
            pass

    # -- the sink ---------------------------------------------------------------------

    def emit(self, event: Any) -> None:
        """Store ``event``; never raises."""
        kind = event.get("kind") if isinstance(event, Mapping) else getattr(event, "kind", None)
        try:
            data = _as_dict(event, "event")
        except ConfigError:
            return  # not an event: dropped
        if kind == "session":
            own = _first(data, "ended_at", "finished_at", "end", "started_at", "start")
            self._submit("session", event, _instant(own) or self._clock.now())
        else:
            self._submit(
                "event",
                event,
                _instant(_first(data, "at", "time", "started_at")) or self._clock.now(),
            )

    def record(self, sample: Mapping[str, float], at: datetime | None = None) -> None:
        """Store a sample; never raises."""
        self._submit("sample", sample, at if at is not None else self._clock.now())

    def flush(self) -> bool:
        """Try to write the backlog now (whatever the backoff says); True when empty."""
        with self._lock:
            return self._drain()

    def source(self, source: Any) -> _RecordingSource:
        """Wrap a :class:`~wedguard.Source` so every sample it takes is recorded."""
        if not callable(getattr(source, "sample", None)):
            raise ConfigError("source", source, "a Source (with sample())")
        return _RecordingSource(source, self)

    def close(self) -> None:
        """Write what the backlog holds if the store takes it, then close the store."""
        with self._lock:
            if self._backlog:
                self._drain()
            store, self.store = self.store, None
            if self._backlog:
                log.error("history: %d row(s) not written at close", len(self._backlog))
        if store is not None:
            store.close()

    def __repr__(self) -> str:
        state = "off" if self.store is None else repr(self.store)
        waiting = f", backlog={len(self._backlog)}" if self._backlog else ""
        return f"HistorySink({state}{waiting})"


class _RecordingSource:
    """A source that passes samples through and records them in history."""

    __slots__ = ("_history", "_source")

    def __init__(self, source: Any, history: HistorySink) -> None:
        self._source = source
        self._history = history

    def sample(self) -> Mapping[str, float]:
        sample: Mapping[str, float] = self._source.sample()
        self._history.record(sample)
        return sample

    def __repr__(self) -> str:
        return f"recorded({self._source!r})"
