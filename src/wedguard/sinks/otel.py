"""OpenTelemetry metrics and span events from wedguard's events (extra ``otel``).

Depends on ``opentelemetry-api`` only: the host chooses and configures the SDK and its
exporters. Instruments (created when the sink is built, never at import):

* ``wedguard.bytes`` (counter, By) and ``wedguard.wait`` (counter, s, attribute
  ``cause``) from ``session`` events; ``wedguard.last_success`` (gauge, s since the
  epoch) when a session succeeded;
* ``wedguard.allowed_rate`` (gauge, By/s) from ``decision`` events;
* ``wedguard.breaker.transitions`` (counter; ``breaker``, ``state``);
* ``wedguard.runtime.alerts`` (counter; ``severity``, ``status``) and
  ``wedguard.notifications`` (counter; ``severity``, ``status``).

Alerts, notifications and breaker transitions are also added as events to the current
span (if one is recording), named ``wedguard.<kind>``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from wedguard.errors import ConfigError
from wedguard.interfaces import Event
from wedguard.sinks._common import number as _number

__all__ = ["OtelSink"]


class OtelSink:
    """Record events as OpenTelemetry metrics and span events.

    Args:
        meter_provider: the provider to get the meter from (default: the global one).
        span_events: add alerts, notifications and breaker transitions to the
            current span (default True).

    .. versionadded:: 0.1.0
    """

    def __init__(
        self, meter_provider: Any = None, *, span_events: bool = True, name: str = "otel"
    ) -> None:
        try:
            from opentelemetry import metrics
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigError(
                "meter_provider",
                meter_provider,
                "opentelemetry-api installed (pip install wedguard[otel])",
            ) from exc
        from importlib.metadata import PackageNotFoundError, version

        try:
            ver = version("wedguard")
        except PackageNotFoundError:  # pragma: no cover
            ver = "0"
        meter = metrics.get_meter("wedguard", ver, meter_provider=meter_provider)
        self.name = name
        self.span_events = span_events
        self._bytes = meter.create_counter("wedguard.bytes", unit="By", description="Bytes moved")
        self._wait = meter.create_counter(
            "wedguard.wait", unit="s", description="Seconds waited, by cause"
        )
        self._rate = meter.create_gauge(
            "wedguard.allowed_rate", unit="By/s", description="Rate the guard allows"
        )
        self._last_success = meter.create_gauge(
            "wedguard.last_success", unit="s", description="Last successful session (Unix time)"
        )
        self._transitions = meter.create_counter(
            "wedguard.breaker.transitions", description="Circuit breaker transitions"
        )
        self._alerts = meter.create_counter("wedguard.alerts", description="Alert events")
        self._notifications = meter.create_counter(
            "wedguard.notifications", description="Alert notifications"
        )
        self._events = meter.create_counter("wedguard.events", description="Other events")

    def emit(self, event: Event) -> None:
        kind = event.kind
        data = event.to_dict()
        if kind == "session":
            moved = _number(data.get("bytes"))
            if moved is not None and moved > 0:
                self._bytes.add(moved)
            for cause, seconds in (data.get("wait_seconds") or {}).items():
                if isinstance(seconds, (int, float)) and seconds > 0:
                    self._wait.add(seconds, {"cause": str(cause)})
            if data.get("ok"):
                finished = data.get("finished_at")
                try:
                    when = datetime.fromisoformat(str(finished)).timestamp()
                except ValueError:
                    when = None
                if when is not None:
                    self._last_success.set(when)
        elif kind == "decision":
            rate = _number(data.get("rate"))
            if rate is not None:
                self._rate.set(rate)
        elif kind == "breaker":
            self._transitions.add(
                1, {"breaker": str(data.get("breaker", "")), "state": str(data.get("new", ""))}
            )
        elif kind == "alert":
            self._alerts.add(
                1,
                {"severity": str(data.get("severity")), "status": str(data.get("status"))},
            )
        elif kind == "notification":
            self._notifications.add(
                1,
                {"severity": str(data.get("severity")), "status": str(data.get("status"))},
            )
        else:
            self._events.add(1, {"kind": kind})
        if self.span_events and kind in ("alert", "notification", "breaker"):
            self._span_event(kind, data)

    def _span_event(self, kind: str, data: dict[str, Any]) -> None:
        from opentelemetry import trace

        span = trace.get_current_span()
        if not span.is_recording():
            return
        attributes = {
            f"wedguard.{k}": v if isinstance(v, (str, bool, int, float)) else str(v)
            for k, v in data.items()
            if v is not None and k not in ("alerts",)
        }
        span.add_event(f"wedguard.{kind}", attributes)

    def __repr__(self) -> str:
        return f"OtelSink(name={self.name!r})"
