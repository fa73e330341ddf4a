"""The metrics store: samples, events and session reports in one SQLite file.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, tzinfo
from os import PathLike, fspath
from typing import Any

from wedguard.clock import Clock, check_clock
from wedguard.errors import ConfigError
from wedguard.history.convert import (
    bucket_seconds,
    check_aware,
    positive_duration,
    timestamp,
    utc,
)
from wedguard.history.db import Database, time_range
from wedguard.history.errors import HistoryError
from wedguard.history.profile import season_profile, season_profiles
from wedguard.history.queries import buckets, stored_events, stored_sessions
from wedguard.history.rows import event_row, sample_readings, session_row
from wedguard.history.trend import alert_on_overrun, fit_trend, window_length
from wedguard.history.values import (
    DEFAULT_SEASONS,
    Bucket,
    GrowthTrend,
    SessionRecord,
    StoredEvent,
    WeeklyProfile,
)
from wedguard.interfaces import Event
from wedguard.policy.alerting import Alert
from wedguard.units import format_duration

__all__ = ["MetricsStore"]

log = logging.getLogger("wedguard.history")


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
        self._retention = positive_duration("retention", retention)
        self._session_retention = positive_duration("session_retention", session_retention)
        if isinstance(prune_every, bool) or not isinstance(prune_every, int) or prune_every < 1:
            raise ConfigError("prune_every", prune_every, "a whole number >= 1")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
            raise ConfigError("timeout", timeout, "a number of seconds >= 0")
        self._clock: Clock = check_clock(clock)
        self._prune_every = prune_every
        self._since_prune = 0
        if read_only and self._path == ":memory:":
            raise ConfigError("read_only", read_only, "a database file, not ':memory:'")
        self._db = Database(
            self._path, timeout=float(timeout), verify=bool(verify), read_only=bool(read_only)
        )
        # the connections, shared with the database (which closes them when dropped)
        self._writer, self._idle = self._db.writer, self._db.idle
        if read_only:
            return
        try:
            self._prune(None, automatic=True)
        except BaseException:
            self._db.close()
            raise

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Every read of the store's methods goes through here (one place to watch)."""
        return self._db.read(sql, params)

    def close(self) -> None:
        """Close every connection. Further use raises :class:`HistoryError`."""
        self._db.close()

    def __enter__(self) -> MetricsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
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
        return self._db.closed

    @property
    def read_only(self) -> bool:
        """True for a store opened with ``read_only=True``."""
        return self._db.read_only

    @property
    def clock(self) -> Clock:
        """The clock the store takes "now" from."""
        return self._clock

    # --------------------------------------------------------------------- writes

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
            ts = check_aware("at", at).timestamp()
            readings.extend(sample_readings(sample, ts))
            records += 1
        with self._db.lock:
            self._db.insert_samples(readings)
            self._since_prune += records
            if self._since_prune >= self._prune_every:
                try:
                    self._prune(None, automatic=True)
                except HistoryError as exc:
                    # the samples are committed: a prune that fails (a lock, a full
                    # disk) is tried again after the next prune_every records
                    log.warning("history: automatic prune failed: %s", exc)

    def record_event(self, event: Event | Mapping[str, Any], at: datetime | None = None) -> None:
        """Store an event (anything with ``kind`` and ``to_dict()``, or a mapping).

        ``at`` defaults to the event's own ``at``/``time``/``started_at`` if it has
        one, else the clock's now.
        """
        row = event_row(event, at, self._clock.now)
        self._db.write([("INSERT INTO events (ts, kind, data) VALUES (?, ?, ?)", row)])

    def record_session(self, report: object, at: datetime | None = None) -> SessionRecord:
        """Store a backup session's report (its ``to_dict()`` form, or a mapping).

        The name, size and wall time are read from the report's ``name``, ``bytes``
        and ``wall_time`` (also ``duration``/``elapsed``/``wall_s``) keys; the time
        from ``ended_at``/``finished_at``/``started_at``, else ``at``, else now.

        Returns the :class:`SessionRecord` as stored.
        """
        row = session_row(report, at, self._clock.now)
        self._db.write(
            [("INSERT INTO sessions (ts, name, bytes, duration, data) VALUES (?, ?, ?, ?, ?)", row)]
        )
        ts, name, size, duration, text = row
        return SessionRecord(utc(ts), name, size, duration, json.loads(text))

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
        now_ts = timestamp("now", now if now is not None else self._clock.now())
        assert now_ts is not None
        with self._db.lock:
            self._db.writable()
            self._since_prune = 0
            anchor = now_ts
            if automatic:
                newest = self._db.newest_sample()
                if newest is not None:
                    anchor = min(now_ts, newest)
            cutoff = anchor - self._retention
            session_cutoff = now_ts - self._session_retention
            return self._db.write(
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
        return utc(lo), utc(hi)

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
        return buckets(self._read, metric, bucket_seconds(bucket), since, until)

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
        where, params = time_range(since, until)
        rows = self._read(
            "SELECT ts, value FROM samples WHERE metric_id = "
            f"(SELECT id FROM metrics WHERE name = ?){where} ORDER BY ts LIMIT ?",
            [metric, *params, limit],
        )
        return [(utc(ts), float(v)) for ts, v in rows]

    def events(
        self,
        kind: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[StoredEvent]:
        """Stored events (of ``kind``, if given), oldest first."""
        return stored_events(self._read, kind, since, until)

    def sessions(
        self,
        name: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[SessionRecord]:
        """Stored session reports (named ``name``, if given), oldest first."""
        return stored_sessions(self._read, name, since, until)

    # -------------------------------------------------------------- weekly profile

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
        return season_profiles(
            self._read,
            metrics,
            tz=tz,
            seasons=seasons,
            min_weeks=min_weeks,
            since=since,
            until=until,
        )

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
        return season_profile(
            self._read,
            metrics,
            tz=tz,
            at=at if at is not None else self._clock.now(),
            seasons=seasons,
            min_weeks=min_weeks,
            since=since,
            until=until,
        )

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
        return fit_trend(self._read, name, since, until)

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
        label, limit = window_length(window)
        ahead = positive_duration("horizon", horizon) / 86400.0
        when = check_aware("at", at if at is not None else self._clock.now())
        trend = self.session_trend(name, since=since)
        if trend is None:
            return None
        return alert_on_overrun(trend, name, label, limit, when, ahead)
