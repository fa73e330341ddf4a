"""The SQLite file under a :class:`~wedguard.history.MetricsStore`: its schema, and
the connections that read and write it.

One writer connection takes every write, in short transactions; reads run on a small
pool of read-only connections, one per reading thread at a time (WAL: they never wait
for the writer). An in-memory database has one connection for all.

>>> db = Database(":memory:")
>>> db.insert_samples([("cpu.percent", 0.0, 12.5), ("cpu.percent", 60.0, 14.0)])
>>> db.read("SELECT COUNT(*) FROM samples")
[(2,)]
>>> db.close()
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import urllib.parse
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from wedguard.history.convert import timestamp
from wedguard.history.errors import HistoryError, StoreCorruptError, StoreLockedError

__all__ = ["SCHEMA_VERSION", "Database", "Reader", "floor_sql", "stats_sql", "time_range"]

log = logging.getLogger("wedguard.history")

SCHEMA_VERSION = 1
"""The schema this wedguard writes (SQLite's ``user_version``); newer files are refused."""

Reader = Callable[[str, Sequence[Any]], list[Any]]
"""Runs a query with its parameters and returns the rows (:meth:`Database.read`)."""

_TABLES = frozenset({"metrics", "samples", "events", "sessions"})
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


def floor_sql(expr: str) -> str:
    """SQL for floor(expr) without relying on SQLite's optional math functions."""
    return f"(CAST({expr} AS INTEGER) - (({expr}) < CAST({expr} AS INTEGER)))"


def stats_sql(source: str) -> str:
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


def time_range(since: datetime | None, until: datetime | None) -> tuple[str, list[Any]]:
    """SQL ``AND`` clauses on ``ts`` (and their parameters) for ``since <= ts < until``."""
    clauses, params = [], []
    lo, hi = timestamp("since", since), timestamp("until", until)
    if lo is not None:
        clauses.append("ts >= ?")
        params.append(lo)
    if hi is not None:
        clauses.append("ts < ?")
        params.append(hi)
    return "".join(f" AND {c}" for c in clauses), params


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back the open transaction, if SQLite has not already done so.

    On a full disk or an I/O error SQLite rolls the transaction back by itself; a
    second ROLLBACK would then fail with "cannot rollback - no transaction is active"
    and hide the real cause.
    """
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _close_all(writer: sqlite3.Connection, idle: list[sqlite3.Connection]) -> None:
    for conn in idle:
        conn.close()
    idle.clear()
    writer.close()


class Database:
    """The store's SQLite file: one writer connection and a pool of readers.

    Args:
        path: the database file, or ``":memory:"``.
        timeout: seconds to wait for another process's lock before giving up.
        verify: run SQLite's ``quick_check`` at open.
        read_only: open an existing file for reading only (``mode=ro``, else
            ``mode=ro&immutable=1`` where the ``-shm`` file cannot be created).

    Raises:
        StoreCorruptError: the file is not a SQLite database (or not a store).
        StoreLockedError: another process keeps the file locked.
        HistoryError: the file cannot be opened at all.

    Errors of every method are :class:`HistoryError` values naming the file.
    """

    def __init__(
        self, path: str, *, timeout: float = 5.0, verify: bool = False, read_only: bool = False
    ) -> None:
        self.path = path
        self.timeout = timeout
        self.memory = path == ":memory:"
        self.read_only = read_only
        self.immutable = False
        self.closed = False
        self.lock = threading.RLock()
        """Held around every use of the writer (and of the pool)."""
        self.idle: list[sqlite3.Connection] = []
        """Reading connections not in use."""
        self.metric_ids: dict[str, int] = {}
        """Metric name -> its row id, for every metric the file holds."""
        if read_only:
            self.writer = self._open_read_only()
        else:
            self.writer = self._open_writer(verify)
        # a database dropped without close() still closes its connections, quietly
        self._finalizer = weakref.finalize(self, _close_all, self.writer, self.idle)

    # ---------------------------------------------------------------- connections

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(
            self.path,
            timeout=self.timeout,
            isolation_level=None,
            check_same_thread=False,
        )

    def fail(self, exc: sqlite3.Error) -> HistoryError:
        """The :class:`HistoryError` that tells what the SQLite error ``exc`` means."""
        text = str(exc)
        lowered = text.lower()
        if "locked" in lowered or "busy" in lowered:
            return StoreLockedError(
                self.path, f"locked by another process for over {self.timeout:g} s ({text})"
            )
        if isinstance(exc, sqlite3.OperationalError):
            return HistoryError(self.path, text, transient=not self.closed)
        return StoreCorruptError(self.path, f"not a readable SQLite database ({text})")

    def _newer(self, version: int) -> HistoryError:
        return HistoryError(
            self.path,
            f"written by a newer wedguard (schema {version}, this one reads {SCHEMA_VERSION})",
        )

    def _open_read_only(self) -> sqlite3.Connection:
        """A read-only connection: ``mode=ro``, else ``mode=ro&immutable=1``."""
        if not os.path.isfile(self.path):
            raise HistoryError(self.path, "no such database (opened read-only)")
        # the name's bytes, percent-encoded: a name that is not UTF-8 (surrogates) too
        base = "file:" + urllib.parse.quote(os.fsencode(os.path.abspath(self.path)))
        last: sqlite3.Error | None = None
        for query in ("?mode=ro", "?mode=ro&immutable=1"):
            try:
                conn = sqlite3.connect(
                    base + query,
                    uri=True,
                    timeout=self.timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
            except sqlite3.OperationalError as exc:
                last = exc
                continue
            try:
                version, tables = _describe(conn)
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
                raise self.fail(exc) from exc
            if tables - _TABLES or "metrics" not in tables:
                conn.close()
                raise StoreCorruptError(
                    self.path, f"not a metrics store (tables: {', '.join(sorted(tables))})"
                )
            if version > SCHEMA_VERSION:
                conn.close()
                raise self._newer(version)
            self.immutable = "immutable" in query
            if self.immutable:
                self._warn_unread_wal()
            self.metric_ids.update((name, ident) for ident, name in ids)
            return conn
        assert last is not None
        raise self.fail(last) from last

    def _warn_unread_wal(self) -> None:
        wal = self.path + "-wal"
        if os.path.exists(wal) and os.path.getsize(wal) > 0:
            log.warning(
                "history %s opened immutable (its -shm cannot be created here): "
                "rows still in %s are not read",
                self.path,
                wal,
            )

    def _open_writer(self, verify: bool) -> sqlite3.Connection:
        if not self.memory:
            # a new database is the user's alone (mode 0600; SQLite gives its -wal and
            # -shm the same mode): it holds command lines and session reports
            with contextlib.suppress(OSError):  # exists, or cannot be made: SQLite says why
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            raise self.fail(exc) from exc
        try:
            if not self.memory:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()
                if mode is None or str(mode[0]).lower() != "wal":
                    raise StoreLockedError(self.path, "could not switch the journal to WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            self._migrate(conn)
            if verify:
                problems = [row[0] for row in conn.execute("PRAGMA quick_check(3)")]
                if problems != ["ok"]:
                    raise StoreCorruptError(self.path, "damaged: " + "; ".join(problems))
            for ident, name in conn.execute("SELECT id, name FROM metrics"):
                self.metric_ids[name] = ident
        except sqlite3.Error as exc:
            conn.close()
            raise self.fail(exc) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Create the schema in a file that has none yet (or check the one it has)."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            version, tables = _describe(conn)
            if tables - _TABLES:
                raise StoreCorruptError(
                    self.path,
                    f"not a metrics store: holds other tables ({', '.join(sorted(tables))})",
                )
            if version > SCHEMA_VERSION:
                raise self._newer(version)
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    # -------------------------------------------------------------- reads, writes

    def writable(self) -> None:
        """Raise :class:`HistoryError` unless the database may be written."""
        if self.closed:
            raise HistoryError(self.path, "the store is closed")
        if self.read_only:
            raise HistoryError(self.path, "opened read-only")

    def read(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]:
        """Run a query on a reading connection.

        A file keeps a small pool of read-only connections, one per reading thread at
        a time (WAL: they never wait for the writer); an in-memory or read-only
        database reads on its single connection under the lock.
        """
        if self.memory or self.read_only:
            with self.lock:
                if self.closed:
                    raise HistoryError(self.path, "the store is closed")
                try:
                    return self.writer.execute(sql, params).fetchall()
                except sqlite3.Error as exc:
                    raise self.fail(exc) from exc
        with self.lock:
            if self.closed:
                raise HistoryError(self.path, "the store is closed")
            conn = self.idle.pop() if self.idle else None
        try:
            if conn is None:
                conn = self._connect()
                conn.execute("PRAGMA query_only=ON")
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self.fail(exc) from exc
        finally:
            if conn is not None:
                with self.lock:
                    if self.closed or len(self.idle) >= _MAX_IDLE_READERS:
                        conn.close()
                    else:
                        self.idle.append(conn)

    def write(self, statements: Iterable[tuple[str, Sequence[Any]]]) -> int:
        """Run statements in one transaction on the writer; returns rows changed."""
        with self.lock:
            self.writable()
            conn = self.writer
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
                raise self.fail(exc) from exc
            return changed

    def _metric_id(self, name: str, added: list[str]) -> int:
        """The id of metric ``name``, created in the writer's open transaction if new."""
        ident = self.metric_ids.get(name)
        if ident is None:
            self.writer.execute("INSERT OR IGNORE INTO metrics (name) VALUES (?)", (name,))
            row = self.writer.execute("SELECT id FROM metrics WHERE name = ?", (name,)).fetchone()
            ident = int(row[0])
            self.metric_ids[name] = ident
            added.append(name)
        return ident

    def insert_samples(self, readings: Sequence[tuple[str, float, float]]) -> None:
        """Store ``(metric, unix time, value)`` readings in one transaction."""
        with self.lock:
            self.writable()
            conn = self.writer
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
                        self.metric_ids.pop(name, None)
                    raise
            except sqlite3.Error as exc:
                raise self.fail(exc) from exc

    def newest_sample(self) -> float | None:
        """The Unix time of the newest sample, read on the writer (``None``: none)."""
        with self.lock:
            try:
                newest = self.writer.execute("SELECT MAX(ts) FROM samples").fetchone()[0]
            except sqlite3.Error as exc:
                raise self.fail(exc) from exc
        return None if newest is None else float(newest)

    def close(self) -> None:
        """Close every connection; further use raises :class:`HistoryError`."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            self._finalizer()


def _describe(conn: sqlite3.Connection) -> tuple[int, set[str]]:
    """The file's schema version and the names of its tables."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    return version, tables
