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

The package, by concern: :mod:`~wedguard.history.store` (the store's API) over
:mod:`~wedguard.history.db` (the SQLite file: schema, connections),
:mod:`~wedguard.history.queries`, :mod:`~wedguard.history.profile` and
:mod:`~wedguard.history.trend` (what it computes); :mod:`~wedguard.history.recommend`
(windows); :mod:`~wedguard.history.sink` (the guard's side). Every name is
importable from ``wedguard.history`` itself.

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

from wedguard.history.errors import HistoryError, StoreCorruptError, StoreLockedError
from wedguard.history.recommend import (
    LOAD_METRICS,
    RecommendedWindow,
    default_metric,
    recommend_windows,
    windows_to_rules,
)
from wedguard.history.sink import HistorySink
from wedguard.history.store import MetricsStore
from wedguard.history.values import (
    DAY_NAMES,
    DEFAULT_SEASONS,
    HOURS_PER_WEEK,
    Bucket,
    GrowthTrend,
    HourStats,
    SessionRecord,
    StoredEvent,
    WeeklyProfile,
    WeekTime,
)

__all__ = [
    "DAY_NAMES",
    "DEFAULT_SEASONS",
    "HOURS_PER_WEEK",
    "LOAD_METRICS",
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
