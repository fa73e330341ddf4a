"""The store's reads: aggregated buckets, stored events and session reports.

Everything is computed inside SQLite, percentiles included: one row per bucket
reaches Python.
"""

from __future__ import annotations

import json
from datetime import datetime

from wedguard.history.convert import utc
from wedguard.history.db import Reader, floor_sql, stats_sql, time_range
from wedguard.history.values import Bucket, SessionRecord, StoredEvent

__all__ = ["buckets", "stored_events", "stored_sessions"]


def buckets(
    read: Reader, metric: str, width: int, since: datetime | None, until: datetime | None
) -> list[Bucket]:
    """``metric`` in epoch-aligned buckets of ``width`` seconds, oldest first."""
    where, params = time_range(since, until)
    source = (
        f"SELECT {floor_sql(f'ts / {width}')} AS k, value AS v FROM samples "
        f"WHERE metric_id = (SELECT id FROM metrics WHERE name = ?){where}"
    )
    rows = read(stats_sql(source), [metric, *params])
    return [
        Bucket(
            start=utc(float(k) * width),
            mean=float(mean),
            p50=float(p50),
            p95=float(p95),
            max=float(hi),
            count=int(cnt),
            min=float(lo),
        )
        for k, mean, lo, hi, cnt, p50, p95 in rows
    ]


def stored_events(
    read: Reader, kind: str | None, since: datetime | None, until: datetime | None
) -> list[StoredEvent]:
    """Stored events (of ``kind``, if given), oldest first."""
    where, params = time_range(since, until)
    if kind is not None:
        where += " AND kind = ?"
        params.append(kind)
    rows = read(f"SELECT ts, kind, data FROM events WHERE 1{where} ORDER BY ts", params)
    return [StoredEvent(utc(ts), k, json.loads(d)) for ts, k, d in rows]


def stored_sessions(
    read: Reader, name: str | None, since: datetime | None, until: datetime | None
) -> list[SessionRecord]:
    """Stored session reports (named ``name``, if given), oldest first."""
    where, params = time_range(since, until)
    if name is not None:
        where += " AND name = ?"
        params.append(name)
    rows = read(
        f"SELECT ts, name, bytes, duration, data FROM sessions WHERE 1{where} ORDER BY ts",
        params,
    )
    return [SessionRecord(utc(ts), n, b, d, json.loads(data)) for ts, n, b, d, data in rows]
