"""History for a guard that must never fail because of it: a sink that stores what the
guard emits, keeping a bounded backlog (and retrying) while the store cannot be written.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import contextlib
import logging
import math
import sqlite3
import threading
import time as _time
from collections import deque
from collections.abc import Mapping
from datetime import datetime
from os import PathLike
from typing import Any

from wedguard.clock import check_clock
from wedguard.errors import ConfigError, WedguardError
from wedguard.history.convert import as_dict, aware_instant, first
from wedguard.history.errors import HistoryError
from wedguard.history.store import MetricsStore
from wedguard.policy.alerting import Alert, Severity
from wedguard.sinks import backoff_delay

__all__ = ["HistorySink"]

log = logging.getLogger("wedguard.history")


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
            data = as_dict(event, "event")
        except ConfigError:
            return  # not an event: dropped
        if kind == "session":
            own = first(data, "ended_at", "finished_at", "end", "started_at", "start")
            self._submit("session", event, aware_instant(own) or self._clock.now())
        else:
            self._submit(
                "event",
                event,
                aware_instant(first(data, "at", "time", "started_at")) or self._clock.now(),
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
