"""Local sinks: logging, JSON Lines, Prometheus (parsed back), OpenTelemetry (SDK
readers), and the package's promise not to import optional dependencies."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import wedguard as wg
from wedguard.policy.alerting import Alert, Notification, Severity
from wedguard.sinks import JsonlSink, LoggingSink, OtelSink, PrometheusSink


class Ev:
    """A guard-style event: a kind and a dict."""

    def __init__(self, kind: str, **data: Any) -> None:
        self.kind = kind
        self.data = {"kind": kind, **data}

    def to_dict(self) -> dict[str, Any]:
        return dict(self.data)


DECISION = Ev("decision", level="PEAK", verdict="THROTTLE", rate=1_250_000.0, reasons=["api +7 %"])
SESSION = Ev(
    "session",
    name="photos",
    bytes=10_000_000,
    wait_seconds={"rate": 2.5, "impact": 1.0},
    ok=True,
    finished_at="2026-06-13T02:00:00+00:00",
)
BREAKER = Ev("breaker", breaker="s3", old="closed", new="open")


def test_import_does_not_pull_optional_dependencies() -> None:
    code = (
        "import sys, wedguard.sinks, wedguard.runtime.alerts;"
        "print(','.join(m for m in ('prometheus_client', 'opentelemetry', 'aiosmtpd')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_all_sinks_satisfy_the_protocol(tmp_path: Path) -> None:
    from wedguard.sinks import SlackSink, SmtpSink, WebhookSink

    sinks = [
        LoggingSink(),
        JsonlSink(tmp_path / "e.jsonl"),
        PrometheusSink(),
        OtelSink(),
        WebhookSink("https://example.org/x"),
        SlackSink("https://hooks.slack.com/services/x"),
        SmtpSink(sender="a@example.org", recipients="b@example.org"),
    ]
    for s in sinks:
        assert isinstance(s, wg.Sink), s


# -- logging ----------------------------------------------------------------------------


def test_logging_sink_levels_and_structured_extra(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="wedguard.events")
    sink = LoggingSink()
    sink.emit(Alert("photos/halt", Severity.CRITICAL, "backup halted", labels={"session": "p"}))
    sink.emit(Alert("photos/halt", Severity.CRITICAL, "x").resolved(wg.SystemClock().now()))
    sink.emit(BREAKER)
    sink.emit(DECISION)
    levels = [r.levelno for r in caplog.records]
    assert levels == [logging.CRITICAL, logging.INFO, logging.WARNING, logging.DEBUG]
    first = caplog.records[0]
    assert first.getMessage() == "[FIRING] CRITICAL backup halted"
    assert first.wedguard_kind == "alert"  # type: ignore[attr-defined]
    assert first.wedguard_event["labels"] == {"session": "p"}  # type: ignore[attr-defined]


def test_logging_sink_says_what_a_session_and_a_decision_were(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A session's end and a decision are logged with what they say, not as a bare
    "wedguard session" a reader cannot use."""
    from wedguard.testing import FakeClock

    caplog.set_level(logging.DEBUG, logger="wedguard.events")
    guard = wg.Guard(rate="1MB/s", calendar=None, sources=[], clock=FakeClock())
    with guard.session("photos") as s:
        s.throttle(3_000_000)
    report = s.report()
    guard.flush()
    LoggingSink().emit(guard.decision())
    guard.close()
    messages = {r.wedguard_kind: r.getMessage() for r in caplog.records}  # type: ignore[attr-defined]
    assert messages["session"] == f"session {report}"
    assert messages["session"].startswith("session photos: 3 MB in ")
    assert messages["decision"] == "decision OPEN/OK at 1 MB/s"


def test_logging_sink_skips_disabled_levels(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="wedguard.quiet")
    sink = LoggingSink("wedguard.quiet", level=logging.INFO)
    sink.emit(DECISION)
    assert caplog.records == []
    with pytest.raises(wg.ConfigError):
        LoggingSink(42)  # type: ignore[arg-type]


# -- JSON Lines -------------------------------------------------------------------------


def test_jsonl_rotates_by_size_and_keeps_n_files(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = JsonlSink(path, max_bytes=1000, backups=2)
    for i in range(100):
        sink.emit(Alert(f"k{i:03d}", Severity.LOW, "x" * 50))
    sink.close()
    files = sink.files()
    assert [f.name for f in files] == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    keys = []
    for f in reversed(files):
        assert f.stat().st_size <= 1000
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
        keys += [json.loads(line)["key"] for line in f.read_text().splitlines()]
    assert keys == [f"k{i:03d}" for i in range(100 - len(keys), 100)]  # newest kept, in order
    assert not (tmp_path / "events.jsonl.3").exists()


def test_jsonl_without_backups_and_appending(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    first = JsonlSink(path)
    first.emit(DECISION)
    first.close()
    sink = JsonlSink(path, max_bytes="300B", backups=0)
    for _ in range(10):
        sink.emit(SESSION)
    sink.close()
    assert sink.files() == [path]
    assert path.stat().st_size <= 300


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"max_bytes": "lots"}, "max_bytes"),
        ({"backups": -1}, "backups"),
        ({"max_bytes": 0}, "max_bytes"),
    ],
)
def test_jsonl_bad_configuration(tmp_path: Path, kw: dict[str, Any], field: str) -> None:
    with pytest.raises(wg.ConfigError) as err:
        JsonlSink(tmp_path / "x", **kw)
    assert err.value.field == field


# -- Prometheus -------------------------------------------------------------------------


def _parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_prometheus_metrics_parsed_back() -> None:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    sink = PrometheusSink(registry=registry)
    for event in (DECISION, SESSION, SESSION, BREAKER, Ev("heartbeat")):
        sink.emit(event)
    sink.emit(Alert("a", Severity.HIGH, "x"))
    sink.emit(Alert("b", Severity.HIGH, "y"))
    sink.emit(Alert("a", Severity.HIGH, "x").resolved(wg.SystemClock().now()))
    sink.emit(Notification("g", "HIGH", (Alert("b", Severity.HIGH, "y"),)))
    m = _parse(sink.text().decode())
    assert m[("wedguard_bytes_total", ())] == 20_000_000
    assert m[("wedguard_wait_seconds_total", (("cause", "rate"),))] == 5.0
    assert m[("wedguard_wait_seconds_total", (("cause", "impact"),))] == 2.0
    assert m[("wedguard_allowed_rate_bytes_per_second", ())] == 1_250_000.0
    assert m[("wedguard_last_success_timestamp_seconds", ())] == 1_781_316_000.0
    assert m[("wedguard_level", ())] == 1
    assert m[("wedguard_verdict", ())] == 1
    assert m[("wedguard_decisions_total", (("verdict", "THROTTLE"),))] == 1
    assert m[("wedguard_breaker_state", (("breaker", "s3"),))] == 2
    assert m[("wedguard_sessions_total", (("result", "ok"),))] == 2
    assert m[("wedguard_alerts_total", (("severity", "HIGH"),))] == 2
    assert m[("wedguard_alerts_total", (("severity", "LOW"),))] == 0
    assert m[("wedguard_alerts_resolved_total", (("severity", "HIGH"),))] == 1
    assert m[("wedguard_alerts_firing", (("severity", "HIGH"),))] == 1
    assert m[("wedguard_notifications_total", (("severity", "HIGH"),))] == 1
    assert m[("wedguard_events_total", (("kind", "heartbeat"),))] == 1


def test_prometheus_guard_style_fields() -> None:
    """The guard writes unlimited rates as "inf" and reports paused and ops."""
    sink = PrometheusSink()
    sink.emit(Ev("decision", level="BLACKOUT", verdict="HALT", rate="inf", paused=True))
    sink.emit(Ev("session", name="x", bytes=5, ops=3, wait_seconds={}, ok=True, finished_at=None))
    m = _parse(sink.text().decode())
    assert m[("wedguard_allowed_rate_bytes_per_second", ())] == float("inf")
    assert m[("wedguard_paused", ())] == 1
    assert m[("wedguard_level", ())] == 2
    assert m[("wedguard_verdict", ())] == 2
    assert m[("wedguard_operations_total", ())] == 3
    assert m[("wedguard_last_success_timestamp_seconds", ())] > 1_700_000_000


def test_prometheus_unlimited_rate_and_failed_session() -> None:
    sink = PrometheusSink()
    sink.emit(Ev("decision", level=0, verdict="OK", rate=None, reasons=[]))
    sink.emit(Ev("session", name="x", bytes=0, wait_seconds={}, ok=False, finished_at=None))
    m = _parse(sink.text().decode())
    assert m[("wedguard_allowed_rate_bytes_per_second", ())] == float("inf")
    assert m[("wedguard_last_success_timestamp_seconds", ())] == 0
    assert m[("wedguard_sessions_total", (("result", "failed"),))] == 1


def test_prometheus_creates_nothing_at_import_and_sinks_do_not_clash() -> None:
    from prometheus_client import REGISTRY

    import wedguard.sinks.prometheus  # noqa: F401

    assert not [n for n in REGISTRY._names_to_collectors if n.startswith("wedguard")]
    PrometheusSink()
    PrometheusSink()  # each has its own registry by default
    with pytest.raises(wg.ConfigError) as err:
        PrometheusSink(registry="default")  # type: ignore[arg-type]
    assert err.value.field == "registry"


def test_prometheus_textfile_is_written_atomically(tmp_path: Path) -> None:
    sink = PrometheusSink()
    sink.emit(SESSION)
    target = tmp_path / "wedguard.prom"
    target.write_text("old")
    sink.write_textfile(target)
    assert os.listdir(tmp_path) == ["wedguard.prom"]  # no temporary file left behind
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    m = _parse(target.read_text())
    assert m[("wedguard_last_success_timestamp_seconds", ())] == 1_781_316_000.0


# -- OpenTelemetry ----------------------------------------------------------------------


def test_otel_metrics_and_span_events() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    reader = InMemoryMetricReader()
    sink = OtelSink(MeterProvider(metric_readers=[reader]))
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    with tracer_provider.get_tracer("test").start_as_current_span("backup"):
        for event in (DECISION, SESSION, BREAKER, Ev("heartbeat")):
            sink.emit(event)
        sink.emit(Alert("a", Severity.HIGH, "x"))
    data = reader.get_metrics_data()
    points: dict[str, list[Any]] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                points[metric.name] = list(metric.data.data_points)
    assert points["wedguard.bytes"][0].value == 10_000_000
    assert {p.attributes["cause"]: p.value for p in points["wedguard.wait"]} == {
        "rate": 2.5,
        "impact": 1.0,
    }
    assert points["wedguard.allowed_rate"][0].value == 1_250_000.0
    assert points["wedguard.last_success"][0].value == 1_781_316_000.0
    assert points["wedguard.alerts"][0].attributes == {
        "severity": "HIGH",
        "status": "firing",
    }
    assert points["wedguard.breaker.transitions"][0].attributes == {
        "breaker": "s3",
        "state": "open",
    }
    (span,) = exporter.get_finished_spans()
    assert [e.name for e in span.events] == ["wedguard.breaker", "wedguard.alert"]
    assert span.events[1].attributes["wedguard.key"] == "a"  # type: ignore[index]


def test_a_dropped_jsonl_sink_closes_its_file(tmp_path: Path) -> None:
    """A sink dropped without close() (its guard replaced) closes its file when it is
    collected: no file left open, no ResourceWarning (an error in this suite)."""
    import gc

    sink = JsonlSink(tmp_path / "events.jsonl")
    sink.emit(Alert("k", Severity.LOW, "one"))
    fd_dir = Path("/proc/self/fd")
    path = str(tmp_path / "events.jsonl")
    assert any(os.path.realpath(p) == path for p in fd_dir.iterdir())
    del sink
    gc.collect()
    assert not any(os.path.realpath(p) == path for p in fd_dir.iterdir())


def test_jsonl_never_writes_through_a_planted_link(tmp_path: Path) -> None:
    """A link planted at the sink's path (in a shared directory, by another user) is
    not followed: the file it points at is untouched, the error is counted."""
    target = tmp_path / "precious"
    target.write_bytes(b"keep\n")
    path = tmp_path / "events.jsonl"
    path.symlink_to(target)
    sink = JsonlSink(path)
    try:
        sink.emit(Alert("k", Severity.LOW, "hello"))
    finally:
        sink.close()
    assert target.read_bytes() == b"keep\n"
    assert sink.errors == 1
    assert path.is_symlink()
