"""The alert dispatcher's spool keeper: what survives a crash, and the spool's own health.

:class:`SpoolKeeper` holds the dispatcher's side of its :class:`~wedguard.sinks.spool.Spool`:

* at start, it gives the undelivered notifications back to their sinks' lanes and fires
  again the alerts that were still waiting for their group's first notification;
* while running, it keeps in the spool the alerts no notification has told yet, so a
  crash loses neither those nor the notifications;
* when the spool fails (a full disk, a read-only file system, an I/O error) or works
  again, it tells the policy with the dispatcher's own alert :data:`SPOOL_ALERT_KEY`, and
  it tries the spool again every ``retry`` seconds of real time.

It runs on the dispatcher's worker thread (``fault`` may be called from any thread: it
only appends to a deque and wakes the worker).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from wedguard.errors import ConfigError
from wedguard.policy.alerting import Alert, AlertPolicy, Notification, Severity, alert_signature
from wedguard.sinks.spool import Spool

__all__ = ["DURABLE_PREFIX", "SPOOL_ALERT_KEY", "UNSENT", "SpoolKeeper", "check_retry"]

log = logging.getLogger("wedguard.alerts")

UNSENT = "@unsent"
"""The spool's "sink" for alerts still waiting for a notification."""
ALERT_PREFIX = "alert:"
DURABLE_PREFIX = "fired:"
"""The record prefix of an alert written by ``fire(durable=True)``, not yet seen."""
SPOOL_ALERT_KEY = "wedguard/alert-spool"
"""The key of the dispatcher's own alert when its spool cannot be written."""


def check_retry(value: object) -> float:
    """``spool_retry``: a finite number of seconds > 0."""
    if isinstance(value, bool) or not (isinstance(value, (int, float)) and 0 < value < math.inf):
        raise ConfigError("spool_retry", value, "a finite number of seconds > 0")
    return float(value)


class _Lane(Protocol):
    def put(self, item: Notification) -> Any: ...


class SpoolKeeper:
    """The dispatcher's spool: restore at start, keep unsent alerts, tell its health.

    >>> import tempfile, os
    >>> from wedguard.policy.alerting import AlertPolicy, Severity
    >>> d = tempfile.mkdtemp()
    >>> keeper = SpoolKeeper(Spool(os.path.join(d, "spool")), 5.0, wake=lambda: None)
    >>> keeper.restore(AlertPolicy([Severity.HIGH]), {})
    False
    >>> keeper.spool.close()
    """

    def __init__(self, spool: Spool, retry: float, wake: Callable[[], None]) -> None:
        if isinstance(retry, bool) or not (
            isinstance(retry, (int, float)) and 0 < retry < math.inf
        ):
            raise ConfigError("spool_retry", retry, "a finite number of seconds > 0")
        self.spool = spool
        self.retry = float(retry)
        self._wake = wake
        self._tried = -math.inf
        # the spool's own health, told as an alert: appended from any thread, read by
        # the worker (deque appends and pops are atomic)
        self.news: deque[OSError | None] = deque()
        self._alerting = False
        self._kept: dict[str, tuple[Any, ...]] = {}
        spool.on_fault = self.fault
        if spool.error is not None:
            self.news.append(spool.error)

    def fault(self, error: OSError | None) -> None:
        """The spool failed (``error``) or works again (None): tell the worker."""
        self.news.append(error)
        self._wake()

    def retry_limit(self) -> float:
        """Try a failed spool again when it is due; the longest the worker may sleep."""
        if self.spool.durable:
            return math.inf
        if not self.news:
            now = time.monotonic()
            if now - self._tried >= self.retry:
                self._tried = now
                self.spool.recover()
        return self.retry

    def restore(self, core: AlertPolicy, lanes: Mapping[str, _Lane]) -> bool:
        """Give what a previous dispatcher left to ``lanes`` and ``core``; True when
        alerts were fired again (the caller asks the policy for its next wakeup)."""
        restored = refired = 0
        spool = self.spool
        for nid, sink, data in spool.pending():
            if sink == UNSENT:  # an alert that was waiting for its first notification
                if self._refire(core, nid, data):
                    refired += 1
                continue
            lane = lanes.get(sink)
            if lane is None:
                continue  # no such sink now: the record stays in the spool
            try:
                note = Notification.from_dict(data)
            except (KeyError, ValueError, TypeError, ConfigError):
                spool.done(nid, sink)
                continue
            lane.put(note)
            restored += 1
        if restored:
            log.info("alerts: %d undelivered notification(s) restored from the spool", restored)
        if refired:
            log.info("alerts: %d alert(s) not yet notified restored from the spool", refired)
        return refired > 0

    def _refire(self, core: AlertPolicy, nid: str, data: Any) -> bool:
        spool = self.spool
        try:
            alert = Alert.from_dict(data)
        except (KeyError, ValueError, TypeError, ConfigError):
            spool.done(nid, UNSENT)
            return False
        if nid != ALERT_PREFIX + alert.key:  # written by fire(durable=True)
            spool.add(ALERT_PREFIX + alert.key, UNSENT, data)
            spool.done(nid, UNSENT)
        core.fire(alert)
        self._kept[alert.key] = alert_signature(alert)
        return True

    def tell_health(self, core: AlertPolicy) -> None:
        """Fire (or resolve) the dispatcher's own alert about its spool."""
        while self.news:
            error = self.news.popleft()
            if error is not None and not self._alerting:
                self._alerting = True
                core.fire(
                    Alert(
                        SPOOL_ALERT_KEY,
                        Severity.HIGH,
                        "alert spool unavailable: alerts are delivered from memory only",
                        details=f"{self.spool.path}: {error}",
                        labels={"component": "alerts"},
                    )
                )
            elif error is None and self._alerting:
                self._alerting = False
                core.resolve(SPOOL_ALERT_KEY)

    def keep_unsent(self, unsent: list[Alert]) -> None:
        """Keep the alerts no notification has told yet in the spool (after the
        notifications that tell the others are spooled), so a crash loses neither."""
        now = {a.key: alert_signature(a) for a in unsent}
        kept = self._kept
        for alert in unsent:
            if kept.get(alert.key) != now[alert.key]:
                self.spool.add(ALERT_PREFIX + alert.key, UNSENT, alert.to_dict())
                kept[alert.key] = now[alert.key]
        for key in [k for k in kept if k not in now]:
            self.spool.done(ALERT_PREFIX + key, UNSENT)
            del kept[key]
