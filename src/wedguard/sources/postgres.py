"""PostgresSource: a PostgreSQL server's latency and load, on one persistent connection.

psycopg (3.1 or later, the ``postgres`` extra) is imported when a source is built, never
when :mod:`wedguard` or :mod:`wedguard.sources` is imported.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import psutil

from wedguard.errors import ConfigError
from wedguard.redact import redact_dsn, redact_text
from wedguard.sources._util import TimedCall, check_timeout
from wedguard.sources.pg_backends import (
    BackendLowerer,
    BackendPriority,
    BackendPriorityError,
    ForkWatch,
)

__all__ = ["PostgresSource", "redact_dsn"]

log = logging.getLogger("wedguard.sources.postgres")

_MASK: Final = "***"

# pg_stat_database counters reported as per-second rates: column -> metric suffix
_RATES: Final = (
    ("xact_commit", "commits_per_s"),
    ("blks_read", "blks_read_per_s"),
    ("deadlocks", "deadlocks_per_s"),
    ("temp_bytes", "temp_bytes_per_s"),
)

_STATS_SQL: Final = """\
SELECT a.active, a.waiting, a.backends, current_setting('max_connections')::float8,
       d.xact_commit, d.blks_read, d.deadlocks, d.temp_bytes{stmt_cols}
FROM (SELECT count(*) FILTER (WHERE backend_type = 'client backend' AND state = 'active'
                              AND pid <> pg_backend_pid()) AS active,
             count(*) FILTER (WHERE wait_event_type = 'Lock') AS waiting,
             count(*) FILTER (WHERE backend_type = 'client backend') AS backends
      FROM pg_stat_activity) a
CROSS JOIN pg_stat_database d{stmt_join}
WHERE d.datname = current_database()"""

_STMT_COLS: Final = ", s.calls, s.ms"
_STMT_JOIN: Final = """
CROSS JOIN LATERAL (SELECT coalesce(sum(calls), 0)::float8 AS calls,
                           coalesce(sum({column}), 0)::float8 AS ms
                    FROM {schema}.pg_stat_statements(false) WHERE dbid = d.datid) s"""

_PLAIN_STATS_SQL: Final = _STATS_SQL.format(stmt_cols="", stmt_join="")
_BACKENDS_SQL: Final = (
    "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
    "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
)
# the server's new children, spotted by the watch: started and whether they match
# (a client backend's name is known once it is named, or half a second after its start)
_NEW_BACKENDS_SQL: Final = (
    "SELECT pid, backend_type = 'client backend' AND application_name = %s, "
    "backend_type <> 'client backend' OR application_name <> '' "
    "OR backend_start < now() - interval '0.5 s' "
    "FROM pg_stat_activity WHERE pid = ANY(%s) AND pid <> pg_backend_pid()"
)
_PENDING_S: Final = 2.0  # how long a new child is looked for in pg_stat_activity
_FIND_STATEMENTS: Final = (
    "SELECT n.nspname, e.extversion FROM pg_extension e "
    "JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_stat_statements'"
)


def _masked_invalid(dsn: str) -> str:
    """A DSN that libpq could not parse, with every value hidden (where the password
    is cannot be told): the URL's scheme and host, or the string's keys."""
    if "://" in dsn:
        scheme, _, rest = dsn.partition("://")
        hosts = rest.partition("/")[0].rpartition("@")[2]
        return f"{scheme}://{_MASK}@{hosts}/{_MASK}" if "@" in rest else f"{scheme}://{_MASK}"
    return " ".join(f"{key}={_MASK}" for key in re.findall(r"(\w+)\s*=", dsn)) or _MASK


def _reset_delta(prev: float, cur: float) -> float:
    """How far a 64-bit statistics counter advanced; after a reset (the counter went
    back) what it counts now is what happened since."""
    return cur - prev if cur >= prev else cur


def _load_psycopg() -> Any:
    try:
        return importlib.import_module("psycopg")
    except ImportError:
        raise ConfigError(
            "PostgresSource",
            "psycopg",
            "psycopg 3.1 or later installed (pip install 'wedguard[postgres]')",
        ) from None


def _check_lowering(lower_backends: object, backend_priority: object) -> None:
    """``lower_backends``: an application_name or None; ``backend_priority`` only with it."""
    if lower_backends is not None and (
        not isinstance(lower_backends, str) or not lower_backends.strip()
    ):
        raise ConfigError(
            "lower_backends", lower_backends, "an application_name such as 'pg_dump', or None"
        )
    if backend_priority is not None and lower_backends is None:
        raise ConfigError("backend_priority", backend_priority, "None without lower_backends")


def _dsn_params(psycopg: Any, dsn: str) -> dict[str, Any]:
    """The DSN's parameters, as libpq reads them (ConfigError, password hidden, if not)."""
    try:
        return dict(psycopg.conninfo.conninfo_to_dict(dsn))
    except psycopg.Error as exc:
        # libpq's message may quote any part of the string, the password included:
        # only the one naming an unknown key is passed on
        why = str(exc) if str(exc).startswith("invalid connection option") else ""
        raise ConfigError(
            "dsn",
            _masked_invalid(dsn),
            "a libpq connection string or postgresql:// URL" + (f" ({why})" if why else ""),
        ) from None


class PostgresSource:
    """A PostgreSQL server's latency and load, read on one persistent connection.

    Each ``sample()`` times ``query`` (the probe: ``SELECT 1`` by default) and reads, in
    one more round trip, what the server says about its load. With the default
    ``name="db"`` the metrics are:

    ===============================  ==========================================================
    ``db.latency_s``                 the probe's round trip, seconds (judged by
                                     :class:`~wedguard.Thresholds` ``db_latency``: +20 %)
    ``db.connections_active``        other client backends running a statement now
    ``db.connections_waiting``       backends waiting on a lock (``wait_event_type = 'Lock'``)
    ``db.connections_used_ratio``    client backends over ``max_connections``
    ``db.commits_per_s``             commits in this database per second
    ``db.blks_read_per_s``           blocks read from outside shared buffers per second
    ``db.deadlocks_per_s``           deadlocks detected per second
    ``db.temp_bytes_per_s``          bytes written to temporary files per second
    ``db.statement_mean_s``          mean execution time of the statements that finished
                                     since the last sample (``pg_stat_statements``, when
                                     the extension is installed in the database)
    ``db.backends_lowered``          with ``lower_backends``: the backends running at the
                                     lowered priority now
    ===============================  ==========================================================

    The rates need two samples; the statement mean needs statements in the interval
    (an interval without any gives ``db.statement_mean_s.idle``). The counts come from
    ``pg_stat_activity``, which shows other roles' sessions only to superusers and
    members of ``pg_monitor`` (or ``pg_read_all_stats``): grant the monitoring role one.

    A probe that fails, times out or cannot connect is reported as
    ``{"db.latency_s.error": 1.0}`` (with ``.error`` for every other metric the source
    had reported), never as a value, so the :class:`~wedguard.ImpactAnalyzer` never
    reads it as OK. :attr:`last_error` says why, with the password removed.

    The connection is opened on the first sample, in autocommit mode with
    ``statement_timeout`` and ``lock_timeout`` set to ``timeout``. After a connection
    failure the source waits ``backoff`` seconds before the next attempt, doubling up
    to ``backoff_max`` while attempts keep failing; samples in between fail at once. A
    probe whose query failed on a healthy connection (a statement timeout) keeps the
    connection.

    ``sample()`` never raises and returns within ``timeout``: the round trips run in a
    worker thread; one that overruns is left to finish (the server cancels it at
    ``statement_timeout``; a connection attempt ends at libpq's ``connect_timeout``,
    ``timeout`` rounded up, at least 2 s) and, while it runs, samples fail at once.

    The password (in the DSN, ``password=`` or the environment) never appears in the
    repr, :attr:`last_error` or the log.

    With ``lower_backends="pg_dump"`` each sample also finds the server's backends
    whose ``application_name`` is that (``pg_dump`` sets its own name) and lowers their
    CPU and I/O priority to ``backend_priority`` (default: nice 19, the idle I/O
    class; see :mod:`wedguard.sources.pg_backends`), so that the server process that
    serves the dump yields the cores to production's queries; :meth:`close` (and
    :meth:`restore_backends`) puts those still running back. The server must run on
    this host and the guard as root or as the server's OS user (root, or
    ``CAP_SYS_NICE``, to restore); when the system refuses, the sample reports
    ``db.backends_lowered.error`` and :attr:`backend_error` says what is missing (and
    the log, once), while the other metrics go on.

    A new backend is not left to the next sample: a thread wakes every
    ``backend_watch`` seconds (default 0.05) and reads the system's last process id
    (``/proc/loadavg``, no round trip to the server); only when the server has started
    a process since does it ask ``pg_stat_activity`` about that process, on a
    connection of its own (one more to the server), and lower it if it matches. A
    dump's backend is so lowered (confined, with ``cpus``) within about
    ``backend_watch`` of its start, before it does much work, where a 1 s sample would
    leave it a second on every core. The thread starts once a sample has found the
    server local and its backends lowerable, follows a server that restarts, and ends
    with :meth:`close`; ``backend_watch=None`` leaves the finding to the samples.

    Args:
        dsn: a libpq connection string, ``"host=db dbname=wed user=monitor"``, or URL,
            ``"postgresql://monitor@db/wed"``.
        query: the probe statement (default ``"SELECT 1"``).
        timeout: seconds a sample may take (default 2).
        name: the metrics' prefix (default ``"db"``: ``db.latency_s``...).
        password: a password kept out of the DSN (libpq's ``PGPASSWORD`` and
            ``.pgpass`` work too).
        statements: read ``pg_stat_statements`` when it is installed (default True).
        backoff: seconds before the first reconnection attempt after a failure.
        backoff_max: the longest wait between attempts.
        lower_backends: the ``application_name`` of the backends to lower
            (``"pg_dump"``), or None (default: none).
        backend_priority: what they run at (default
            :class:`~wedguard.sources.pg_backends.BackendPriority`: nice 19, idle I/O).
        backend_watch: seconds between looks for a new backend between samples
            (default 0.05), or None: only at each sample. Used with ``lower_backends``.
        monotonic: the time source for rates and backoff (default
            :func:`time.monotonic`).

    Example::

        db = PostgresSource("host=/run/postgresql dbname=wed user=monitor", timeout=1)
        db.sample()  # {'db.latency_s': 0.0003, 'db.connections_active': 4.0, ...}
                     # or {'db.latency_s.error': 1.0} while the server is down

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.3.0 ``backend_watch``.
    """

    __slots__ = (
        "__weakref__",
        "_call",
        "_cause",
        "_closing",
        "_conn",
        "_dsn",
        "_failures",
        "_kwargs",
        "_lowerer",
        "_monotonic",
        "_own_checked",
        "_prev",
        "_psycopg",
        "_reported",
        "_retry_at",
        "_secrets",
        "_stats_sql",
        "_watch",
        "_watch_stop",
        "attempts",
        "backend_error",
        "backend_watch",
        "backoff",
        "backoff_max",
        "last_error",
        "lower_backends",
        "name",
        "query",
        "statements",
        "timeout",
    )

    def __init__(
        self,
        dsn: str,
        *,
        query: str = "SELECT 1",
        timeout: float = 2.0,
        name: str = "db",
        password: str | None = None,
        statements: bool = True,
        backoff: float = 1.0,
        backoff_max: float = 60.0,
        lower_backends: str | None = None,
        backend_priority: BackendPriority | None = None,
        backend_watch: float | None = 0.05,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(dsn, str):
            raise ConfigError("dsn", type(dsn).__name__, "a libpq connection string or URL")
        if password is not None and (not isinstance(password, str) or not password):
            raise ConfigError("password", _MASK, "a non-empty string or None")
        if not isinstance(query, str) or not query.strip():
            raise ConfigError("query", query, "an SQL statement such as 'SELECT 1'")
        if not isinstance(name, str) or not name or name != name.strip(". "):
            raise ConfigError("name", name, "a metric prefix such as 'db'")
        self.timeout = check_timeout(timeout)
        self.backoff = check_timeout(backoff, "backoff")
        self.backoff_max = check_timeout(backoff_max, "backoff_max")
        if self.backoff_max < self.backoff:
            raise ConfigError("backoff_max", backoff_max, f"seconds >= backoff ({backoff:g})")
        if not callable(monotonic):
            raise ConfigError("monotonic", monotonic, "a callable returning seconds")
        _check_lowering(lower_backends, backend_priority)
        self.lower_backends = lower_backends
        self._lowerer = None if lower_backends is None else BackendLowerer(backend_priority)
        self.backend_watch = (
            None if backend_watch is None else check_timeout(backend_watch, "backend_watch")
        )
        self._watch: threading.Thread | None = None
        self._watch_stop = threading.Event()
        self._own_checked = False
        self.backend_error: str | None = None
        """Why the backends could not be lowered at the last sample (None: they were)."""
        self._psycopg = _load_psycopg()
        params = _dsn_params(self._psycopg, dsn)
        self._secrets = tuple(
            s for s in (params.get("password"), password) if isinstance(s, str) and s
        )
        self._dsn = dsn
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(2, math.ceil(self.timeout)),
        }
        if "application_name" not in params:
            kwargs["application_name"] = "wedguard"
        if password is not None:
            kwargs["password"] = password
        self._kwargs = kwargs
        self.query = query
        self.name = name
        self.statements = bool(statements)
        self._monotonic = monotonic
        self._conn: Any = None
        self._stats_sql = ""
        self._prev: tuple[float, tuple[float, ...]] | None = None
        self._reported: tuple[str, ...] = ()
        self._failures = 0
        self._retry_at = -math.inf
        self._closing = False
        self._cause = ""
        self.attempts = 0
        """Connection attempts made so far."""
        self.last_error: str | None = None
        """Why the last sample failed (password removed); None after a success."""
        self._call = TimedCall(self._probe, self.timeout, f"wedguard-postgres-{name}")

    # ---------------------------------------------------------------- public

    @property
    def connected(self) -> bool:
        """Whether the source holds an open connection."""
        conn = self._conn
        return conn is not None and not conn.closed

    def sample(self) -> Mapping[str, float]:
        """The metrics, or ``{name + ".latency_s.error": 1.0, ...}`` when the probe failed."""
        try:
            if self._closing:
                return self._failed("the source is closed")
            if self._conn is None and self._monotonic() < self._retry_at:
                wait = self._retry_at - self._monotonic()
                return self._failed(f"reconnecting in {wait:.1f} s; {self._cause}", cause=False)
            ok, result, _ = self._call.run()
            if ok:
                if self.last_error is not None:
                    log.info("%s: the probe answers again", self)
                    self.last_error = None
                return result  # type: ignore[no-any-return]
            return self._failed(self._describe(result))
        except Exception as exc:  # pragma: no cover - defensive: sample() never raises
            return self._failed(self._describe(exc))

    @property
    def backends_lowered(self) -> list[int]:
        """The pids of the backends lowered by ``lower_backends`` and running now."""
        return [] if self._lowerer is None else self._lowerer.lowered

    def restore_backends(self) -> list[int]:
        """Put the backends lowered so far back to their own priority (the next sample
        lowers those still matching again); returns the pids restored."""
        return [] if self._lowerer is None else self._lowerer.restore()

    def close(self) -> None:
        """Close the connection (a probe still running closes it when it ends) and
        restore the backends lowered by ``lower_backends``."""
        self._closing = True
        self._watch_stop.set()
        watch = self._watch
        if watch is not None and watch is not threading.current_thread():
            watch.join(self.timeout)  # it lowers nothing after this
        self.restore_backends()
        pending = self._call._pending
        if pending is None or pending.is_set():
            self._drop()

    def __enter__(self) -> PostgresSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"PostgresSource({redact_dsn(self._dsn)!r}, query={self.query!r}, "
            f"timeout={self.timeout:g}, name={self.name!r})"
        )

    # ---------------------------------------------------------------- worker

    def _probe(self) -> dict[str, float]:
        """One sample's round trips; runs in the worker thread, raises on failure."""
        conn = self._conn if self._conn is not None else self._connect()
        try:
            t0 = time.perf_counter()
            cur = conn.execute(self.query)
            if cur.description is not None:
                cur.fetchall()
            latency = time.perf_counter() - t0
            try:
                row = conn.execute(self._stats_sql).fetchone()
            except self._psycopg.errors.ObjectNotInPrerequisiteState:
                if self._stats_sql == _PLAIN_STATS_SQL:
                    raise
                # pg_stat_statements is installed but not preloaded: do without it
                log.info("%s: pg_stat_statements cannot be read; no statement times", self)
                self._stats_sql = _PLAIN_STATS_SQL
                row = conn.execute(self._stats_sql).fetchone()
            lowered = None if self._lowerer is None else self._lower(conn, self._lowerer)
        except BaseException:
            if conn.closed or conn.broken:
                self._drop()
                self._retry_at = -math.inf  # a lost connection is tried again at once
            raise
        finally:
            if self._closing:  # closed while this probe ran: undo what it did too
                self._drop()
                self.restore_backends()
        out = self._metrics(latency, row)
        if lowered is not None:
            key = self.name + ".backends_lowered"
            if lowered >= 0:
                out[key] = float(lowered)
            else:
                out[key + ".error"] = 1.0
            self._reported = (*self._reported, key)
        return out

    def _lower(self, conn: Any, lowerer: BackendLowerer) -> int:
        """Lower the matching backends; how many are lowered now, or -1 when the
        system refused (:attr:`backend_error` says why)."""
        seen_at = time.monotonic()
        rows = conn.execute(_BACKENDS_SQL, (self.lower_backends,)).fetchall()
        try:
            if not self._own_checked:  # the server is local and may be reniced
                own = conn.info.backend_pid
                lowerer.check(own)
                self._own_checked = True
                self._start_watch(own, lowerer)
            lowerer.update((r[0] for r in rows), seen_at=seen_at)
        except BackendPriorityError as exc:
            self._refused(exc)
            return -1
        self.backend_error = None
        return len(lowerer.lowered)

    def _refused(self, exc: BackendPriorityError) -> None:
        if self.backend_error is None:
            log.error("%s: %s", self, exc)
        self.backend_error = str(exc)

    def _start_watch(self, own: int, lowerer: BackendLowerer) -> None:
        """Start the thread that lowers a new backend between samples; it looks for
        the children the server (the parent of ``own``, this source's backend) starts
        from now on."""
        if self.backend_watch is None or self._watch is not None or self._closing:
            return
        try:
            forks = ForkWatch(psutil.Process(own).ppid())
        except (OSError, ValueError, psutil.Error) as exc:
            log.warning("%s: new backends are found at each sample only: %s", self, exc)
            return
        self._watch = threading.Thread(
            target=self._watch_loop,
            args=(forks, lowerer, self.backend_watch),
            name=f"wedguard-postgres-{self.name}-watch",
            daemon=True,
        )
        self._watch.start()

    def _watch_loop(self, forks: ForkWatch, lowerer: BackendLowerer, every: float) -> None:
        """Every ``every`` seconds: the server's new children; those that are backends
        with the application_name asked for are lowered. A child not yet in
        ``pg_stat_activity`` (still starting) is asked about again, for up to 2 s.

        The watch has a connection of its own (the probe's round trips are never
        timed behind its queries, and closing one never pulls the other from under
        a query). After a failure it connects again at the next look, at most once
        a second; a server that restarted (a new postmaster) is followed."""
        conn: Any = None
        pending: dict[int, float] = {}
        retry_at = -math.inf
        try:
            while not self._watch_stop.wait(every):
                now = time.monotonic()
                try:
                    if conn is None:
                        if now < retry_at:
                            continue
                        retry_at = now + 1.0
                        conn = self._open()
                        server = psutil.Process(conn.info.backend_pid).ppid()
                        if forks.parent != server:  # the server restarted
                            forks, pending = ForkWatch(server), {}
                    found = forks.new()
                    for pid in found or ():
                        pending.setdefault(pid, now)
                    for pid, since in list(pending.items()):
                        if now - since > _PENDING_S or not os.path.exists(f"/proc/{pid}"):
                            del pending[pid]  # never a backend, or ended
                    if found is None:  # too many processes started to look at each
                        rows = conn.execute(_BACKENDS_SQL, (self.lower_backends,)).fetchall()
                        pending.clear()
                        match = [r[0] for r in rows]
                    elif pending:
                        rows = conn.execute(
                            _NEW_BACKENDS_SQL, (self.lower_backends, list(pending))
                        ).fetchall()
                        match = [pid for pid, matches, _known in rows if matches]
                        for pid, _matches, known in rows:
                            if known:
                                pending.pop(pid, None)
                    else:
                        continue
                    if match and not self._watch_stop.is_set():
                        lowerer.add(match)
                except BackendPriorityError as exc:
                    self._refused(exc)
                except Exception as exc:  # the samples report the server's state
                    log.debug("%s: the backend watch missed a look: %s", self, self._describe(exc))
                    if conn is not None and (conn.closed or conn.broken):
                        with contextlib.suppress(Exception):
                            conn.close()
                        conn = None
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()

    def _open(self) -> Any:
        """A new connection, its statements and lock waits bounded by ``timeout``."""
        conn = self._psycopg.connect(self._dsn, **self._kwargs)
        try:
            ms = max(1, round(self.timeout * 1000))
            conn.execute(f"SET statement_timeout = {ms}; SET lock_timeout = {ms}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect(self) -> Any:
        self.attempts += 1
        conn: Any = None
        try:
            conn = self._open()
            self._stats_sql = self._find_stats_sql(conn)
        except BaseException:
            self._failures += 1
            delay = min(self.backoff_max, self.backoff * 2 ** (self._failures - 1))
            self._retry_at = self._monotonic() + delay
            if conn is not None:
                conn.close()
            raise
        if self._failures:
            log.info("%s: connected again after %d failed attempts", self, self._failures)
        self._failures = 0
        self._conn = conn
        return conn

    def _find_stats_sql(self, conn: Any) -> str:
        if self.statements:
            found = conn.execute(_FIND_STATEMENTS).fetchone()
            if found is not None:
                schema, version = found
                major_minor = tuple(int(x) for x in re.findall(r"\d+", version)[:2])
                column = "total_exec_time" if major_minor >= (1, 8) else "total_time"
                ident = self._psycopg.sql.Identifier(schema).as_string(conn)
                join = _STMT_JOIN.format(column=column, schema=ident)
                return _STATS_SQL.format(stmt_cols=_STMT_COLS, stmt_join=join)
        return _PLAIN_STATS_SQL

    def _metrics(self, latency: float, row: tuple[Any, ...] | None) -> dict[str, float]:
        p = self.name + "."
        out = {p + "latency_s": latency}
        if row is not None:
            active, waiting, backends, max_conn = (float(x) for x in row[:4])
            out[p + "connections_active"] = active
            out[p + "connections_waiting"] = waiting
            out[p + "connections_used_ratio"] = backends / max_conn if max_conn > 0 else 0.0
            counters = tuple(float(x or 0) for x in row[4:])
            now = self._monotonic()
            prev = self._prev
            self._prev = (now, counters)
            if prev is not None and len(prev[1]) == len(counters) and now > prev[0]:
                dt = now - prev[0]
                for i, (_col, metric) in enumerate(_RATES):
                    out[p + metric] = _reset_delta(prev[1][i], counters[i]) / dt
                if len(counters) > len(_RATES):
                    calls = _reset_delta(prev[1][-2], counters[-2])
                    ms = _reset_delta(prev[1][-1], counters[-1])
                    if calls > 0:
                        out[p + "statement_mean_s"] = ms / calls / 1000.0
                    else:
                        out[p + "statement_mean_s.idle"] = 1.0
        self._reported = tuple(k for k in out if not k.endswith(".idle"))
        return out

    # ---------------------------------------------------------------- helpers

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # closing a broken connection
                conn.close()

    def _describe(self, exc: object) -> str:
        """One line naming ``exc``, with the password hidden in every form it may take
        (:func:`wedguard.redact.redact_text`: as given, percent-encoded as in a URL,
        repr-escaped) and with any URL or ``password=`` pair in it hidden too."""
        return redact_text(" ".join(f"{type(exc).__name__}: {exc}".split()), self._secrets)

    def _failed(self, why: str, *, cause: bool = True) -> dict[str, float]:
        first = self.last_error is None
        self.last_error = why
        if cause:
            self._cause = why
        if first:
            log.warning("%s: probe failed: %s", self, why)
        p = self.name + "."
        names = dict.fromkeys((p + "latency_s", *self._reported))
        return {k + ".error": 1.0 for k in names}
