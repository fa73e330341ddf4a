"""Sinks: where wedguard's events go.

Every sink has ``emit(event)``, which never blocks a backup: local sinks (logging,
JSON Lines, Prometheus, OpenTelemetry) record at once; network sinks (webhook, Slack,
SMTP) queue the event for their own worker thread, with a timeout per attempt and
retries with backoff. Network sinks also offer ``send(event)``, which delivers at once
and raises on failure: an :class:`~wedguard.AlertDispatcher` calls it from its own
delivery lane, with its retries and its disk spool.

Optional dependencies are imported only when a sink that needs them is built:
``import wedguard.sinks`` imports neither ``prometheus_client`` nor ``opentelemetry``.

Secrets (webhook URLs, signing keys, passwords) come from arguments or environment
variables (``url_env=``, ``secret_env=``, ``password_env=``) and never appear in a
repr, a log message or an event.
"""

from __future__ import annotations

from wedguard.sinks._common import Secret
from wedguard.sinks.delivery import DeliveryError, backoff_delay
from wedguard.sinks.jsonl import JsonlSink
from wedguard.sinks.logging import LoggingSink
from wedguard.sinks.otel import OtelSink
from wedguard.sinks.prometheus import PrometheusSink
from wedguard.sinks.slack import SlackSink
from wedguard.sinks.smtp import SmtpSink
from wedguard.sinks.webhook import WebhookSink, sign_headers, verify_signature

__all__ = [
    "DeliveryError",
    "JsonlSink",
    "LoggingSink",
    "OtelSink",
    "PrometheusSink",
    "Secret",
    "SlackSink",
    "SmtpSink",
    "WebhookSink",
    "backoff_delay",
    "sign_headers",
    "verify_signature",
]
