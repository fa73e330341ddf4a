"""What the sinks share: secrets, text rendering, HTTP posting, the async base."""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from wedguard import _checks
from wedguard.clock import SYSTEM_CLOCK, Clock, check_clock
from wedguard.errors import ConfigError
from wedguard.interfaces import Event
from wedguard.sinks.delivery import AsyncDelivery, DeliveryError, redact

__all__ = [
    "NetworkSink",
    "Secret",
    "event_colour",
    "event_lines",
    "event_resolved",
    "event_severity",
    "event_title",
    "post",
    "resolve_secret",
    "url_hint",
]

SEVERITY_COLOURS = {
    "LOW": "#439FE0",
    "MEDIUM": "#DAA038",
    "HIGH": "#E8912D",
    "CRITICAL": "#A30200",
    "RESOLVED": "#2EB886",
    "INFO": "#808080",
}
"""Colours by severity (Slack attachment bar, HTML mail); resolved is green."""


class Secret:
    """A string that never shows itself: ``repr`` and ``str`` give ``***``.

    >>> s = Secret("hunter2")
    >>> s, str(s), s.reveal()
    (Secret('***'), '***', 'hunter2')
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __reduce__(self) -> Any:  # no pickling a secret into a log by accident
        raise TypeError("a Secret cannot be pickled")


def resolve_secret(
    value: str | Secret | None, env: str | None, *, field: str, env_field: str
) -> Secret | None:
    """The secret given directly, or read from the environment variable ``env``.

    A named variable that is not set is a :class:`~wedguard.errors.ConfigError`
    (naming the variable, never its value).
    """
    if value is not None and env is not None:
        raise ConfigError(field, "***", f"either {field} or {env_field}, not both")
    if isinstance(value, Secret):
        if not isinstance(value.reveal(), str) or not value.reveal():
            raise ConfigError(field, "***", "a non-empty secret")
        return value
    if value is not None:
        if not isinstance(value, str) or not value:
            raise ConfigError(field, "***", "a non-empty string")
        return Secret(value)
    if env is not None:
        if not isinstance(env, str) or not env:
            raise ConfigError(env_field, env, "the name of an environment variable")
        found = os.environ.get(env)
        if not found:
            raise ConfigError(env_field, env, "the name of a set, non-empty environment variable")
        return Secret(found)
    return None


def url_hint(url: str) -> str:
    """Scheme and host of ``url`` only: safe to show (paths and queries hold tokens).

    Never raises: a URL that cannot be parsed gives ``<invalid url>``, text with neither
    a scheme nor a host (a placeholder copied from a page) ``<not a URL>``.

    >>> url_hint("https://user:pw@hooks.example.org:8443/T0KEN?sig=x")
    'https://hooks.example.org:8443/***'
    >>> url_hint("http://[::1")
    '<invalid url>'
    >>> url_hint("...")
    '<not a URL>'
    """
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or "?"
        port = parts.port
    except ValueError:
        return "<invalid url>"
    if not parts.scheme and not parts.hostname:
        return "<not a URL>"
    if port:
        host = f"{host}:{port}"
    return f"{parts.scheme}://{host}/***"


_UNSAFE_URL_CHARS = re.compile(r"[^\x21-\x7e]")


def check_url(secret: Secret, field: str) -> None:
    """An ``http://`` or ``https://`` URL of printable ASCII, with a valid host and port.

    The :class:`~wedguard.errors.ConfigError` shows only :func:`url_hint` of it (the URL
    may hold a token): a URL that ``urllib`` would refuse only when posting (a space, a
    control character, a bad port) is refused here, where its error cannot leak it.
    """
    url = secret.reveal()
    hint = url_hint(url)
    if hint == "<invalid url>":
        raise ConfigError(field, hint, "an http:// or https:// URL")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(field, hint, "an http:// or https:// URL")
    if _UNSAFE_URL_CHARS.search(url):
        raise ConfigError(
            field,
            hint,
            "a URL of printable ASCII characters (no spaces or control characters;"
            " percent-encode the others)",
        )


def number(value: object) -> float | None:
    """A float from a number or a numeric string (``"inf"`` for unlimited rates)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def event_resolved(event: Event) -> bool:
    """True for an alert or notification that is over (resolved, no longer firing)."""
    return getattr(event, "status", None) == "resolved" or getattr(event, "firing", True) is False


def event_severity(event: Event) -> str:
    """``LOW``..``CRITICAL`` for alerts and notifications, ``RESOLVED`` when over,
    ``INFO`` for other events."""
    if event_resolved(event):
        return "RESOLVED"
    severity = getattr(event, "severity", None)
    name = getattr(severity, "name", None)
    return name if isinstance(name, str) else "INFO"


def event_colour(event: Event) -> str:
    """The :data:`SEVERITY_COLOURS` entry for ``event`` (grey when none fits)."""
    return SEVERITY_COLOURS.get(event_severity(event), SEVERITY_COLOURS["INFO"])


def event_title(event: Event) -> str:
    """One line for a subject or a chat message."""
    kind = event.kind
    if kind == "notification":
        return str(getattr(event, "title", "notification"))
    if kind == "alert":
        status = "RESOLVED" if getattr(event, "firing", True) is False else "FIRING"
        severity = getattr(getattr(event, "severity", None), "name", "")
        return f"[{status}] {severity} {getattr(event, 'summary', '')}".strip()
    data = event.to_dict()
    if kind == "breaker":
        reason = data.get("reason") or ""
        return (
            f"breaker {data.get('breaker', '')}: {data.get('old', '?')} -> {data.get('new', '?')}"
            + (f" ({reason})" if reason else "")
        )
    text = str(event) if type(event).__str__ is not object.__str__ else ""
    if kind in ("session", "decision") and text:
        # a session's summary, a decision's first line: what a reader of the log wants
        return f"{kind} {text.splitlines()[0]}"
    return f"wedguard {kind}"


def _alert_lines(alert: Mapping[str, Any]) -> list[str]:
    status = alert.get("status", "firing").upper()
    lines = [f"{status} {alert.get('severity', '')} {alert.get('summary', '')}".rstrip()]
    lines.append(f"  key: {alert.get('key', '')}")
    labels = alert.get("labels") or {}
    if labels:
        lines.append("  labels: " + ", ".join(f"{k}={v}" for k, v in sorted(labels.items())))
    if alert.get("started_at"):
        lines.append(f"  since: {alert['started_at']}")
    if alert.get("resolved_at"):
        lines.append(f"  resolved: {alert['resolved_at']}")
    details = alert.get("details")
    if details:
        lines.extend("  " + line for line in str(details).splitlines())
    return lines


def event_lines(event: Event) -> list[str]:
    """The event as plain text lines (mail bodies, logs, chat fallbacks)."""
    data = event.to_dict()
    if event.kind == "notification":
        lines: list[str] = []
        for alert in data.get("alerts", []):
            lines.extend(_alert_lines(alert))
        return lines
    if event.kind == "alert":
        return _alert_lines(data)
    return [f"{k}: {json.dumps(v, default=str)}" for k, v in data.items() if k != "kind"]


def dumps(event: Event) -> bytes:
    """The JSON body for ``event``: compact, sorted keys, UTF-8."""
    return json.dumps(
        event.to_dict(), separators=(",", ":"), sort_keys=True, default=str, ensure_ascii=False
    ).encode("utf-8")


def _retry_after(value: str | None, now: datetime) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - now).total_seconds())


_OPENER = urllib.request.build_opener()

#: the most of a receiver's answer read: only its status counts, and a receiver that
#: streams an endless body must not hold the delivery (a timeout bounds each read only)
MAX_RESPONSE_BYTES = 64 * 1024


def post(
    url: Secret,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout: float,
    clock: Clock = SYSTEM_CLOCK,
) -> int:
    """POST ``body``; return the status, or raise :class:`DeliveryError`.

    429 and 503 carry ``retry_after`` from the ``Retry-After`` header; other 4xx
    (except 408) are permanent. Messages never contain the URL.
    """
    request = urllib.request.Request(url.reveal(), data=body, headers=dict(headers), method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(MAX_RESPONSE_BYTES)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        code = exc.code
        retry_after = _retry_after(exc.headers.get("Retry-After"), clock.now())
        exc.close()
        permanent = 400 <= code < 500 and code not in (408, 425, 429)
        raise DeliveryError(
            f"HTTP {code} from {url_hint(url.reveal())}",
            retry_after=retry_after if code in (429, 503) else None,
            permanent=permanent,
        ) from None
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        # http.client.InvalidURL (an HTTPException) quotes the URL's path: redact it too
        reason = getattr(exc, "reason", exc)
        text = redact(str(reason), (url.reveal(),))
        raise DeliveryError(
            f"{type(exc).__name__} posting to {url_hint(url.reveal())}: {text}"
        ) from None


class _Outgoing:
    __slots__ = ("event", "id")

    def __init__(self, event: Event) -> None:
        self.event = event
        self.id = ""  # made by the worker on the first attempt, kept for retries


def _outgoing_priority(item: _Outgoing) -> int:
    severity = getattr(item.event, "severity", None)
    return int(severity) if isinstance(severity, int) else 1


def _message_id(event: Event) -> str:
    """The event's own id, or a fresh one: a receiver dedupes retries on it."""
    return str(getattr(event, "id", "") or uuid.uuid4().hex)


class NetworkSink:
    """Base of the sinks that talk to the network.

    ``send(event)`` delivers at once and raises :class:`DeliveryError` on failure
    (the alert dispatcher calls it from its own delivery lane, with retries and a
    spool). ``emit(event)`` never blocks: it queues the event for this sink's own
    worker thread (started on first use), which retries with backoff.
    """

    name: str

    def __init__(
        self,
        *,
        name: str,
        timeout: float,
        queue_size: int,
        max_attempts: int | None,
        backoff: float,
        backoff_max: float,
        clock: Clock | None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError("name", name, "a non-empty string")
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not 0 < timeout <= _checks.MAX_TIMEOUT
        ):
            raise ConfigError(
                "timeout", timeout, f"a number of seconds > 0 and <= {_checks.MAX_TIMEOUT:g}"
            )
        self.name = name
        self.timeout = float(timeout)
        self._clock = check_clock(clock)
        self._delivery: AsyncDelivery[_Outgoing] = AsyncDelivery(
            self._send_outgoing,
            name=name,
            queue_size=queue_size,
            priority=_outgoing_priority,
            max_attempts=max_attempts,
            backoff=backoff,
            backoff_max=backoff_max,
            clock=self._clock,
            secrets=self._secrets,
        )

    def _secrets(self) -> Iterable[str]:
        return ()

    def _send_outgoing(self, item: _Outgoing) -> None:
        if not item.id:
            item.id = _message_id(item.event)
        self._send(item.event, item.id)

    def _send(self, event: Event, msg_id: str) -> None:
        raise NotImplementedError

    def send(self, event: Event) -> None:
        """Deliver ``event`` now (blocking up to ``timeout``); raise on failure."""
        self._send(event, _message_id(event))

    def emit(self, event: Event) -> None:
        """Queue ``event`` for delivery from this sink's worker; never blocks."""
        self._delivery.put(_Outgoing(event))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the events given to :meth:`emit` are delivered (or given up)."""
        return self._delivery.flush(timeout)

    def close(self, timeout: float | None = 5.0) -> bool:
        return self._delivery.close(timeout)

    @property
    def dropped(self) -> int:
        return self._delivery.dropped

    @property
    def failed(self) -> int:
        return self._delivery.failed

    @property
    def delivered(self) -> int:
        return self._delivery.delivered
