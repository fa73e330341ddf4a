"""Prometheus metrics from wedguard's events (extra ``prometheus``).

Nothing is created at import time: the metrics are registered in the registry you
pass (default: a fresh :class:`prometheus_client.CollectorRegistry`, so two sinks never
clash; pass ``registry=prometheus_client.REGISTRY`` to expose them with
``start_http_server``). For batch jobs, :meth:`PrometheusSink.write_textfile` writes the
node-exporter textfile format with an atomic rename.

How events map to metrics (by ``event.kind`` and the fields of ``event.to_dict()``):

| kind | fields used | metrics |
|---|---|---|
| `decision` | `rate` (bytes/s; None, inf or `"inf"`: unlimited), `level`, `verdict`, `paused`, `stopped` | `wedguard_allowed_rate_bytes_per_second`, `wedguard_level`, `wedguard_verdict`, `wedguard_decisions_total{verdict}`, `wedguard_paused` |
| `session` | `bytes`, `ops`, `wait_seconds` (`{cause: seconds}`), `ok`, `finished_at` (ISO 8601) | `wedguard_bytes_total`, `wedguard_operations_total`, `wedguard_wait_seconds_total{cause}`, `wedguard_sessions_total{result}`, `wedguard_last_success_timestamp_seconds` |
| `breaker` | `breaker`, `new` (closed / half_open / open) | `wedguard_breaker_state{breaker}` (0 closed, 1 half-open, 2 open), `wedguard_breaker_transitions_total{breaker,state}` |
| `alert` | `key`, `severity`, `status` | `wedguard_alerts_total{severity}` (fired), `wedguard_alerts_resolved_total{severity}`, `wedguard_alerts_firing{severity}` |
| `notification` | `severity` | `wedguard_notifications_total{severity}` |
| anything else | `kind` | `wedguard_events_total{kind}` |

``level`` and ``verdict`` may be names (``"PEAK"``) or numbers; gauges hold
``OPEN=0, PEAK=1, BLACKOUT=2`` and ``OK=0, THROTTLE=1, HALT=2``.

>>> from prometheus_client import CollectorRegistry, generate_latest
>>> from wedguard.policy.alerting import Alert, Severity
>>> registry = CollectorRegistry()
>>> sink = PrometheusSink(registry=registry)
>>> sink.emit(Alert("k", Severity.HIGH, "slow"))
>>> registry.get_sample_value("wedguard_alerts_firing", {"severity": "HIGH"})
1.0
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wedguard.errors import ConfigError
from wedguard.interfaces import Event
from wedguard.levels import Level, Verdict
from wedguard.sinks._common import number as _number

if TYPE_CHECKING:  # pragma: no cover
    from prometheus_client import CollectorRegistry

__all__ = ["PrometheusSink"]

_BREAKER_STATES = {"closed": 0.0, "half_open": 1.0, "halfopen": 1.0, "open": 2.0}


def _code(value: object, names: type[Level] | type[Verdict]) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    name = getattr(value, "name", value)
    if isinstance(name, str) and name.upper() in names.__members__:
        return float(names[name.upper()])
    return None


def _name(value: object) -> str:
    name = getattr(value, "name", value)
    return str(name)


class PrometheusSink:
    """Keep Prometheus metrics up to date from events (see the module table).

    Args:
        registry: where the metrics are registered (default: a new registry,
            available as :attr:`registry`).
        namespace: the metric name prefix (default ``wedguard``).

    ``emit`` only updates in-memory metrics: it never blocks.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "wedguard",
        name: str = "prometheus",
    ) -> None:
        try:
            import prometheus_client as pc
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigError(
                "registry",
                registry,
                "prometheus_client installed (pip install wedguard[prometheus])",
            ) from exc
        if registry is None:
            registry = pc.CollectorRegistry()
        elif not isinstance(registry, pc.CollectorRegistry):
            raise ConfigError("registry", registry, "a prometheus_client.CollectorRegistry")
        if not isinstance(namespace, str) or not namespace.replace("_", "").isalnum():
            raise ConfigError("namespace", namespace, "letters, digits and underscores")
        self.registry = registry
        self.name = name
        self._define_metrics(pc, namespace, registry)
        self._firing_keys: dict[str, str] = {}
        for severity in ("LOW", "MEDIUM", "HIGH", "CRITICAL"):
            self._firing.labels(severity).set(0)
            self._alerts.labels(severity)

    def _define_metrics(self, pc: Any, namespace: str, registry: CollectorRegistry) -> None:
        """The counters and gauges this sink keeps, registered in ``registry``."""
        ns = namespace
        r = registry
        self._bytes = pc.Counter(f"{ns}_bytes", "Bytes the backup moved.", registry=r)
        self._wait = pc.Counter(
            f"{ns}_wait_seconds", "Seconds the backup waited, by cause.", ["cause"], registry=r
        )
        self._rate = pc.Gauge(
            f"{ns}_allowed_rate_bytes_per_second",
            "The rate the guard allows now (+Inf: unlimited).",
            registry=r,
        )
        self._last_success = pc.Gauge(
            f"{ns}_last_success_timestamp_seconds",
            "When a backup session last finished successfully (Unix time).",
            registry=r,
        )
        self._sessions = pc.Counter(
            f"{ns}_sessions", "Backup sessions finished, by result.", ["result"], registry=r
        )
        self._ops = pc.Counter(
            f"{ns}_operations", "Operations (files, requests) the backup made.", registry=r
        )
        self._paused = pc.Gauge(
            f"{ns}_paused", "1 while the guard holds the backup (paused or stopped).", registry=r
        )
        self._level = pc.Gauge(
            f"{ns}_level", "Calendar level: 0 open, 1 peak, 2 blackout.", registry=r
        )
        self._verdict = pc.Gauge(
            f"{ns}_verdict", "Impact verdict: 0 ok, 1 throttle, 2 halt.", registry=r
        )
        self._decisions = pc.Counter(
            f"{ns}_decisions", "Guard decisions, by verdict.", ["verdict"], registry=r
        )
        self._breaker = pc.Gauge(
            f"{ns}_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            ["breaker"],
            registry=r,
        )
        self._transitions = pc.Counter(
            f"{ns}_breaker_transitions",
            "Circuit breaker transitions, by new state.",
            ["breaker", "state"],
            registry=r,
        )
        self._alerts = pc.Counter(
            f"{ns}_alerts", "Alerts fired, by severity.", ["severity"], registry=r
        )
        self._resolved = pc.Counter(
            f"{ns}_alerts_resolved", "Alerts resolved, by severity.", ["severity"], registry=r
        )
        self._firing = pc.Gauge(
            f"{ns}_alerts_firing", "Alerts firing now, by severity.", ["severity"], registry=r
        )
        self._notifications = pc.Counter(
            f"{ns}_notifications",
            "Alert notifications sent, by severity (the highest alert in each).",
            ["severity"],
            registry=r,
        )
        self._events = pc.Counter(f"{ns}_events", "Other events, by kind.", ["kind"], registry=r)

    def emit(self, event: Event) -> None:
        kind = event.kind
        data = event.to_dict()
        handler = getattr(self, f"_on_{kind}", None)
        if handler is None:
            self._events.labels(kind).inc()
        else:
            handler(data)

    def _on_decision(self, data: dict[str, Any]) -> None:
        if "rate" in data:
            rate = data["rate"]
            value = math.inf if rate is None else _number(rate)
            if value is not None:
                self._rate.set(value)
        paused = data.get("paused", data.get("stopped"))
        if isinstance(paused, bool):
            self._paused.set(1.0 if paused or data.get("stopped") else 0.0)
        level = _code(data.get("level"), Level)
        if level is not None:
            self._level.set(level)
        verdict = data.get("verdict")
        code = _code(verdict, Verdict)
        if code is not None:
            self._verdict.set(code)
            self._decisions.labels(_name(verdict).upper()).inc()

    def _on_session(self, data: dict[str, Any]) -> None:
        moved = _number(data.get("bytes"))
        if moved is not None and moved > 0:
            self._bytes.inc(moved)
        ops = _number(data.get("ops"))
        if ops is not None and ops > 0:
            self._ops.inc(ops)
        waits = data.get("wait_seconds") or {}
        if isinstance(waits, dict):
            for cause, seconds in waits.items():
                if isinstance(seconds, (int, float)) and seconds > 0:
                    self._wait.labels(str(cause)).inc(seconds)
        ok = data.get("ok")
        if ok is not None:
            self._sessions.labels("ok" if ok else "failed").inc()
        if ok:
            finished = data.get("finished_at")
            when: float | None = None
            if isinstance(finished, str):
                try:
                    when = datetime.fromisoformat(finished).timestamp()
                except ValueError:
                    when = None
            elif isinstance(finished, (int, float)):
                when = float(finished)
            if when is None:
                self._last_success.set_to_current_time()
            else:
                self._last_success.set(when)

    def _on_breaker(self, data: dict[str, Any]) -> None:
        breaker = str(data.get("breaker", "default"))
        new = _name(data.get("new", "")).lower().replace("-", "_")
        code = _BREAKER_STATES.get(new)
        if code is not None:
            self._breaker.labels(breaker).set(code)
            self._transitions.labels(breaker, new).inc()

    def _on_alert(self, data: dict[str, Any]) -> None:
        severity = str(data.get("severity", "LOW"))
        status = str(data.get("status", "firing"))
        key = str(data.get("key", ""))
        (self._alerts if status == "firing" else self._resolved).labels(severity).inc()
        old = self._firing_keys.pop(key, None)
        if old is not None:
            self._firing.labels(old).dec()
        if status == "firing":
            self._firing_keys[key] = severity
            self._firing.labels(severity).inc()

    def _on_notification(self, data: dict[str, Any]) -> None:
        self._notifications.labels(str(data.get("severity", "LOW"))).inc()

    def text(self) -> bytes:
        """The registry in the Prometheus text format."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def write_textfile(self, path: str | os.PathLike[str]) -> None:
        """Write the metrics for node-exporter's textfile collector, atomically.

        The text goes to a temporary file in the same directory, is fsync'ed, made
        world-readable (0644) and renamed over ``path``: the collector never reads a
        half-written file.
        """
        target = Path(path)
        data = self.text()
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def __repr__(self) -> str:
        return f"PrometheusSink(name={self.name!r})"
