"""Alerts as values, and the pure policy that decides who is told what, and when.

An :class:`Alert` is a frozen value: a ``key`` that identifies the condition (alerts
with the same key are the same alert, fired again or resolved), a :class:`Severity`,
a one-line ``summary``, free-form ``details`` and ``labels`` used for routing,
grouping and inhibition.

>>> from datetime import datetime, timezone
>>> a = Alert("photos/halt", Severity.CRITICAL, "backup halted: API +40 %",
...           labels={"session": "photos"},
...           started_at=datetime(2026, 6, 13, 14, 0, tzinfo=timezone.utc))
>>> a.firing, a.to_dict()["severity"]
(True, 'CRITICAL')

:class:`AlertPolicy` is Prometheus Alertmanager's manners as a pure core on a clock
(deduplication by key, grouping with ``group_wait``/``group_interval``,
``repeat_interval``, resolved notices, acknowledgement, escalation, inhibition,
silences): it does no I/O and starts no threads. :class:`~wedguard.runtime.alerts.AlertDispatcher`
runs it with a queue, a worker thread, delivery lanes and a disk spool.
"""

from wedguard.policy.alerting.policy import AlertPolicy
from wedguard.policy.alerting.values import (
    DEFAULT_INHIBIT_RULES,
    Alert,
    InhibitRule,
    Matcher,
    Notification,
    Route,
    Severity,
    Silence,
    alert_signature,
    check_sinks,
    parse_severity,
)

__all__ = [
    "DEFAULT_INHIBIT_RULES",
    "Alert",
    "AlertPolicy",
    "InhibitRule",
    "Matcher",
    "Notification",
    "Route",
    "Severity",
    "Silence",
    "alert_signature",
    "check_sinks",
    "parse_severity",
]
